//! The log writer thread: loggers append their line to one shared buffer,
//! the thread swaps it for an empty one and writes the batch.
//!
//! A logger's cost is a lock and a copy into a buffer that keeps its
//! capacity: no allocation per line, no channel message, nothing freed on
//! another thread (tracing-appender's `non_blocking`, used before, copied
//! each line into a `Vec` of its own and sent it through a channel: about
//! 470 instructions per line on the logger and 410 on the writer thread,
//! docs/performance.md). It keeps what `non_blocking` gave: the `write(2)`
//! off the relay's workers, no line dropped (a logger waits once
//! `queue_lines` lines are waiting), a linger before each write so a burst is
//! one `write(2)` and loggers rarely wake the thread, and [`Writer::finish`]
//! to write out what is queued before the process ends.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

/// A batch buffer larger than this after a write is not kept.
const KEEP_CAPACITY: usize = 1024 * 1024;

/// The lines waiting for the writer thread.
struct Queue {
    buf: Vec<u8>,
    /// Lines in `buf`.
    lines: usize,
    /// The writer thread waits for lines: the next logger wakes it.
    idle: bool,
    /// [`Writer::finish`] was called: write what is queued, then end.
    closing: bool,
    /// The writer thread has ended; later lines are dropped.
    done: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    /// The writer thread waits here for lines.
    queued: Condvar,
    /// Loggers wait here for room, [`Writer::finish`] for the thread's end.
    room: Condvar,
    queue_lines: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The handle loggers write through (a tracing-subscriber `MakeWriter`).
#[derive(Clone)]
pub struct Writer {
    shared: Arc<Shared>,
}

/// The writer thread, until [`Writer::finish`].
pub struct Thread(JoinHandle<()>);

impl Writer {
    /// Start the thread writing to `out`; loggers wait once `queue_lines`
    /// lines are queued; it waits `linger` before each write.
    pub fn spawn<W: Write + Send + 'static>(
        out: W,
        queue_lines: usize,
        linger: Duration,
        name: &str,
    ) -> std::io::Result<(Writer, Thread)> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                buf: Vec::new(),
                lines: 0,
                idle: false,
                closing: false,
                done: false,
            }),
            queued: Condvar::new(),
            room: Condvar::new(),
            queue_lines: queue_lines.max(1),
        });
        let theirs = shared.clone();
        let handle = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || run(&theirs, out, linger))?;
        Ok((Writer { shared }, Thread(handle)))
    }

    /// Write out every queued line and stop the thread, waiting at most
    /// `timeout` for it (a stderr that blocks must not hold up the exit).
    /// Lines logged afterwards are dropped.
    pub fn finish(&self, thread: Thread, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut q = self.shared.lock();
        q.closing = true;
        self.shared.queued.notify_one();
        while !q.done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            q = match self.shared.room.wait_timeout(q, left) {
                Ok((q, _)) => q,
                Err(e) => e.into_inner().0,
            };
        }
        drop(q);
        let _ = thread.0.join();
    }
}

/// One line's writer (tracing-subscriber writes each event with one
/// `write_all`).
pub struct Line<'a>(&'a Shared);

impl Write for Line<'_> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let shared = self.0;
        let mut q = shared.lock();
        while q.lines >= shared.queue_lines && !q.done {
            q = shared.room.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        if q.done {
            return Ok(line.len());
        }
        q.buf.extend_from_slice(line);
        q.lines += 1;
        let wake = std::mem::take(&mut q.idle);
        drop(q);
        if wake {
            shared.queued.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Writer {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line(&self.shared)
    }
}

/// The thread: wait for lines, linger, take the batch, write it.
fn run<W: Write>(shared: &Shared, mut out: W, linger: Duration) {
    let mut batch = Vec::new();
    loop {
        let mut q = shared.lock();
        while q.buf.is_empty() {
            if q.closing {
                q.done = true;
                drop(q);
                shared.room.notify_all();
                return;
            }
            q.idle = true;
            q = shared.queued.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        q.idle = false;
        if !q.closing && !linger.is_zero() {
            // Lines logged meanwhile join this write.
            drop(q);
            std::thread::sleep(linger);
            q = shared.lock();
        }
        std::mem::swap(&mut q.buf, &mut batch);
        let was_full = q.lines >= shared.queue_lines;
        q.lines = 0;
        drop(q);
        if was_full {
            shared.room.notify_all();
        }
        // Nowhere to report a failed write to: the lines are dropped.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        if batch.capacity() > KEEP_CAPACITY {
            batch = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// An output that records its writes, and can be held up.
    #[derive(Clone, Default)]
    struct Out {
        written: Arc<Mutex<Vec<Vec<u8>>>>,
        gate: Arc<Mutex<()>>,
    }

    impl Write for Out {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _open = self.gate.lock().unwrap();
            self.written.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Out {
        fn text(&self) -> String {
            String::from_utf8(self.written.lock().unwrap().concat()).unwrap()
        }
    }

    #[test]
    fn every_line_is_written_in_order_and_finish_writes_the_rest() {
        let out = Out::default();
        let (w, thread) =
            Writer::spawn(out.clone(), 1000, Duration::from_millis(2), "test-log").unwrap();
        let loggers: Vec<_> = (0..4)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..5000 {
                        let line = format!("t{t} line {i}\n");
                        w.make_writer().write_all(line.as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for l in loggers {
            l.join().unwrap();
        }
        w.finish(thread, Duration::from_secs(10));
        let text = out.text();
        assert_eq!(text.lines().count(), 20_000);
        for t in 0..4 {
            let mine: Vec<_> = text
                .lines()
                .filter(|l| l.starts_with(&format!("t{t} ")))
                .collect();
            let want: Vec<_> = (0..5000).map(|i| format!("t{t} line {i}")).collect();
            assert_eq!(mine, want);
        }
        // Batched: far fewer writes than lines.
        assert!(out.written.lock().unwrap().len() < 20_000 / 2);
        // After finish: dropped, not blocking.
        w.make_writer().write_all(b"late\n").unwrap();
        assert!(!out.text().contains("late"));
    }

    #[test]
    fn a_full_queue_holds_loggers_until_the_writer_catches_up() {
        let out = Out::default();
        let held = out.gate.lock().unwrap();
        let (w, thread) = Writer::spawn(out.clone(), 3, Duration::ZERO, "test-log").unwrap();
        // The first line goes to the (held) output; three more fill the queue.
        w.make_writer().write_all(b"0\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !w.shared.lock().buf.is_empty() {
            assert!(Instant::now() < deadline, "the writer never took line 0");
            std::thread::sleep(Duration::from_millis(1));
        }
        for i in 1..4 {
            w.make_writer()
                .write_all(format!("{i}\n").as_bytes())
                .unwrap();
        }
        let (tx, rx) = mpsc::channel();
        let w2 = w.clone();
        let blocked = std::thread::spawn(move || {
            w2.make_writer().write_all(b"4\n").unwrap();
            tx.send(()).unwrap();
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "a logger went past a full queue"
        );
        drop(held);
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the logger never got room");
        blocked.join().unwrap();
        w.finish(thread, Duration::from_secs(10));
        assert_eq!(out.text(), "0\n1\n2\n3\n4\n");
    }

    #[test]
    fn finish_gives_up_on_an_output_that_blocks() {
        let out = Out::default();
        let held = out.gate.lock().unwrap();
        let (w, thread) = Writer::spawn(out.clone(), 10, Duration::ZERO, "test-log").unwrap();
        w.make_writer().write_all(b"stuck\n").unwrap();
        let started = Instant::now();
        w.finish(thread, Duration::from_millis(100));
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(held);
    }
}
