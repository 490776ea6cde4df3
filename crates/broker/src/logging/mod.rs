//! Log output: the subscriber, and a writer thread that keeps `write(2)` off
//! the relay's workers.
//!
//! Every line — the per-connection audit line above all — is formatted on the
//! thread that logs it, but written by a thread of its own ([`writer`]), so a
//! slow or busy stderr (journald, a pipe, a file on a loaded disk) never
//! stalls a relay worker, and a connection's end costs no syscall for its line
//! (docs/performance.md). It is not lossy: no line is dropped; if the writer
//! falls [`QUEUE_LINES`] behind, loggers wait for it. The writer thread
//! lingers [`LINGER`] before each write, so under load it writes one batch per
//! linger and is mostly not waiting for lines: a logger then wakes nobody
//! (waking the writer for each line cost a `futex(2)` and a context switch per
//! connection, more than the `write(2)` it saved: docs/performance.md). A line
//! reaches stderr at most a few milliseconds after it was logged.

use std::sync::Mutex;
use std::time::Duration;

use crate::cli::LogFormat;

mod text;
mod timestamp;
mod writer;

use text::Text;
use timestamp::Timestamp;

/// Log lines queued for the writer thread before loggers wait for it.
pub const QUEUE_LINES: usize = 64 * 1024;

/// How long the writer thread waits before writing what it has: lines
/// logged meanwhile join the same `write(2)`.
pub const LINGER: Duration = Duration::from_millis(5);

/// How long [`flush`] waits for the writer thread.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// The writer and its thread, until [`flush`].
static WRITER: Mutex<Option<(writer::Writer, writer::Thread)>> = Mutex::new(None);

/// Install the subscriber (filter from `RUST_LOG`, default `info`) writing to
/// stderr through the writer thread. Call once, before the runtime starts.
pub fn init(format: LogFormat) {
    let (writer, thread) =
        match writer::Writer::spawn(std::io::stderr(), QUEUE_LINES, LINGER, "sockbroker-log") {
            Ok(w) => w,
            Err(e) => {
                // No thread to spare: lines are written by the loggers.
                eprintln!(
                "sockbroker: cannot start the log writer thread ({e}); writing log lines directly"
            );
                return init_with(format, std::io::stderr);
            }
        };
    let keep = writer.clone();
    init_with(format, writer);
    if let Ok(mut w) = WRITER.lock() {
        *w = Some((keep, thread));
    }
}

/// Install the subscriber writing through `writer`.
fn init_with<W>(format: LogFormat, writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_timer(Timestamp)
        .with_env_filter(filter)
        // Plain text even on a terminal: tracing-subscriber is built without
        // its `ansi` feature (docs/decisions.md "Logging").
        .with_ansi(false)
        .with_writer(writer);
    match format {
        // The default text format's lines, assembled with fewer
        // instructions (text.rs; docs/decisions.md "Logging").
        LogFormat::Text => b.event_format(Text::new(Timestamp)).init(),
        LogFormat::Json => b.json().flatten_event(true).init(),
    }
}

/// Write out every queued line and stop the writer thread (waits up to a
/// second). Call before the process ends — also on `std::process::exit`,
/// which skips destructors. Lines logged afterwards are lost.
pub fn flush() {
    let taken = WRITER.lock().ok().and_then(|mut w| w.take());
    if let Some((writer, thread)) = taken {
        writer.finish(thread, FLUSH_TIMEOUT);
    }
}
