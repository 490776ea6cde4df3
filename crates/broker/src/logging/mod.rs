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

use std::io::{BufWriter, Write};
use std::sync::Mutex;
use std::time::Duration;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};

use crate::cli::LogFormat;

mod text;
mod timestamp;

use text::Text;
use timestamp::Timestamp;

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
        // The default text format's lines, assembled with fewer
        // instructions (text.rs; docs/decisions.md "Logging").
        LogFormat::Text => b.event_format(Text::new(Timestamp)).init(),
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
