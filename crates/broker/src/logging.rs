//! Log output: the subscriber, and a writer thread that keeps `write(2)` off
//! the relay's workers.
//!
//! Every line — the per-connection audit line above all — is formatted on the
//! thread that logs it, but written by a thread of its own (tracing-appender's
//! `non_blocking`), so a slow or busy stderr (journald, a pipe, a file on a
//! loaded disk) never stalls a relay worker, and a connection's end costs no
//! syscall for its line (docs/performance.md). It is not lossy: no line is
//! dropped; if the writer falls [`QUEUE_LINES`] behind, loggers wait for it.
//! The writer thread lingers [`LINGER`] before each flush of its buffer, so
//! under load it writes one batch per linger and is mostly not waiting on its
//! queue: a logger then wakes nobody (waking the writer for each line cost a
//! `futex(2)` and a context switch per connection, more than the `write(2)`
//! it saved: docs/performance.md). A line reaches stderr at most a few
//! milliseconds after it was logged.

use std::cell::Cell;
use std::io::{BufWriter, Write};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};

use crate::cli::LogFormat;

/// Log lines queued for the writer thread before loggers wait for it.
pub const QUEUE_LINES: usize = 64 * 1024;

/// How long the writer thread waits before flushing what it has: lines
/// logged meanwhile join the same `write(2)`.
pub const LINGER: Duration = Duration::from_millis(5);

/// stderr through a buffer whose flush first lingers (see the module docs).
/// tracing-appender's writer thread writes every queued line and then calls
/// `flush` once its queue is empty.
struct Lingering(BufWriter<std::io::Stderr>);

impl Write for Lingering {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.0.buffer().is_empty() {
            std::thread::sleep(LINGER);
        }
        self.0.flush()
    }
}

/// The writer thread's guard; dropping it writes out what is queued.
static WRITER: Mutex<Option<WorkerGuard>> = Mutex::new(None);

/// Install the subscriber (filter from `RUST_LOG`, default `info`) writing to
/// stderr through the writer thread. Call once, before the runtime starts.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(QUEUE_LINES)
        .thread_name("sockbroker-log")
        .finish(Lingering(BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        )));
    let b = tracing_subscriber::fmt()
        .with_timer(Timestamp)
        .with_env_filter(filter)
        // Plain text even on a terminal: tracing-subscriber is built without
        // its `ansi` feature (docs/decisions.md "Logging").
        .with_ansi(false)
        .with_writer(writer);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().flatten_event(true).init(),
    }
    if let Ok(mut w) = WRITER.lock() {
        *w = Some(guard);
    }
}

/// Write out every queued line and stop the writer thread (waits up to a
/// second). Call before the process ends — also on `std::process::exit`,
/// which skips destructors. Lines logged afterwards are lost.
pub fn flush() {
    let guard = WRITER.lock().ok().and_then(|mut w| w.take());
    drop(guard);
}

/// The timestamp of every line: tracing-subscriber's default (`SystemTime`:
/// RFC 3339, UTC, microseconds, e.g. `2026-12-04T22:46:40.485227Z`), with the
/// date and time of day formatted once per second and thread instead of once
/// per line (about 2,400 of the ~15,000 instructions an audit line cost,
/// docs/performance.md).
struct Timestamp;

thread_local! {
    /// The second last formatted on this thread and its `YYYY-MM-DDTHH:MM:SS`.
    static SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
}

impl FormatTime for Timestamp {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        let Ok(now) = SystemTime::now().duration_since(UNIX_EPOCH) else {
            return tracing_subscriber::fmt::time::SystemTime.format_time(w);
        };
        let secs = now.as_secs();
        let (cached, mut prefix) = SECOND.with(Cell::get);
        if cached != secs {
            match date_time(secs) {
                Some(p) => prefix = p,
                // Past year 9999: the default formatter's own notation.
                None => return tracing_subscriber::fmt::time::SystemTime.format_time(w),
            }
            SECOND.with(|c| c.set((secs, prefix)));
        }
        let mut line = [0u8; 27];
        line[..19].copy_from_slice(&prefix);
        line[19] = b'.';
        let mut micros = now.subsec_micros();
        for i in (20..26).rev() {
            line[i] = b'0' + (micros % 10) as u8;
            micros /= 10;
        }
        line[26] = b'Z';
        w.write_str(std::str::from_utf8(&line).map_err(|_| std::fmt::Error)?)
    }
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) of `secs` after the Unix epoch; `None` past
/// year 9999. Days to a civil date as in Howard Hinnant's `civil_from_days`.
fn date_time(secs: u64) -> Option<[u8; 19]> {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if year > 9999 {
        return None;
    }
    let mut out = *b"0000-00-00T00:00:00";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, (rem / 3600) as i64);
    put(14, 2, (rem / 60 % 60) as i64);
    put(17, 2, (rem % 60) as i64);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(secs: u64) -> String {
        String::from_utf8(date_time(secs).unwrap().to_vec()).unwrap()
    }

    #[test]
    fn date_time_of_known_instants() {
        assert_eq!(text(0), "1970-01-01T00:00:00");
        assert_eq!(text(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(text(951_868_799), "2000-02-29T23:59:59");
        assert_eq!(text(951_868_800), "2000-03-01T00:00:00");
        assert_eq!(text(1_709_251_199), "2024-02-29T23:59:59");
        assert_eq!(text(1_798_761_599), "2026-12-31T23:59:59");
        assert_eq!(text(4_102_444_800), "2100-01-01T00:00:00");
        assert_eq!(text(253_402_300_799), "9999-12-31T23:59:59");
        assert_eq!(date_time(253_402_300_800), None);
    }

    #[test]
    fn same_text_as_the_default_timer() {
        // Both read the clock; retry until both calls fell into one second.
        for _ in 0..100 {
            let (mut ours, mut theirs) = (String::new(), String::new());
            tracing_subscriber::fmt::time::SystemTime
                .format_time(&mut Writer::new(&mut theirs))
                .unwrap();
            Timestamp.format_time(&mut Writer::new(&mut ours)).unwrap();
            assert_eq!(ours.len(), theirs.len(), "{ours} vs {theirs}");
            assert!(ours.ends_with('Z') && ours.as_bytes()[19] == b'.', "{ours}");
            if ours[..19] == theirs[..19] {
                return;
            }
        }
        panic!("the two timers never agreed on the second");
    }
}
