//! Bidirectional byte relay between a client Unix stream and an upstream Unix stream.
//!
//! sockbroker accepts a client connection (for example a container's `docker`
//! CLI), connects to the real upstream socket (for example
//! `/var/run/docker.sock`), and then hands both streams to [`relay`]. This crate
//! only moves bytes (and, in [`Listener`], accepts them into sockets the relay
//! registers for reading only); policy (who may connect, which upstream,
//! limits, metrics) lives in the broker.
//!
//! # Semantics
//!
//! * **Full duplex in one task.** Both directions are driven concurrently by a
//!   single future that borrows both streams; no task or thread is spawned
//!   per connection.
//! * **Two kinds of stream** ([`RelayStream`]): tokio's `UnixStream`, and
//!   [`ReadRegistered`], registered with the runtime for reading only, which
//!   the broker's byte relay uses: a peer draining what the relay wrote
//!   then wakes nobody (docs/performance.md). Both behave the same here.
//! * **Half-close is propagated.** When one side sends EOF, the relay calls
//!   `shutdown(SHUT_WR)` on the other side and keeps relaying the opposite
//!   direction until it, too, reaches EOF. `docker run -i`, `docker exec -i`,
//!   `attach` and hijacked HTTP streams depend on this: the client closes
//!   stdin but must still receive all remaining output.
//! * **A hang-up ends the relay at once.** When the side that sent EOF has
//!   closed its socket altogether (`EPOLLHUP`, not just `shutdown(SHUT_WR)`),
//!   nothing can be delivered to it any more, so after passing on all it sent
//!   the relay ends and closes the other side (which reads EOF) instead of
//!   waiting for that side's EOF too. The end reason names the side that hung
//!   up. This is the common end of short connections (a CLI that sends a
//!   request, reads the answer and exits), and saves a `shutdown(2)`, a
//!   wake-up and a `recv(2)` per connection.
//! * **The relay ends** when a side hung up (above) or both directions have
//!   seen EOF and propagated it
//!   ([`EndReason::ClientClosed`] / [`EndReason::UpstreamClosed`], named after
//!   the side whose direction finished first), when no byte moved in either
//!   direction for [`RelayOptions::idle_timeout`] ([`EndReason::Idle`]), when
//!   [`RelayOptions::cancel`] fires ([`EndReason::Cancelled`]), or when a read,
//!   write or shutdown fails ([`EndReason::Error`], e.g. `EPIPE` or
//!   `ECONNRESET` after a peer vanished). A `shutdown` that fails with
//!   `ENOTCONN` because the peer is already gone is not an error. On any end
//!   the streams are dropped, which closes both connections.
//! * **An ended connection's last steps go behind ready work.** When the relay
//!   ends because a side hung up or both reached EOF, it closes the other
//!   side at once, then yields to the runtime once before closing the first
//!   side and returning, so that other tasks already woken on its thread (a
//!   new connection's accept) run before the teardown and whatever the
//!   caller does after `relay` returns.
//! * **Live byte counts.** [`ByteSink::add`] is called after every successful
//!   write, so long-lived streams (a day-long `docker events`) show up in
//!   metrics while they are still open. [`Outcome`] carries the totals written
//!   to each destination.
//! * **Cheap connections.** A direction reads into its thread's scratch
//!   buffer and sends what it read at once; it allocates a buffer of its own
//!   only when the destination cannot take everything (a full socket), keeps
//!   it while that goes on, gives it back once its source has been quiet for
//!   [`RelayOptions::buffer_release`] (half a second by default), and frees it
//!   when that direction finishes. So a connection whose peers keep up — a
//!   request and its answer, a `docker events` or `logs -f` stream that idles
//!   for hours — holds no relay buffer at any time, and one writing into a
//!   slow reader keeps its buffer: no allocation per message either way.
//! * **Zero-copy bulk transfers.** On Linux, a direction whose reads fill the
//!   whole buffer switches to `splice(2)` through a kernel pipe and frees its
//!   buffer ([`RelayOptions::splice`]); small messages keep the plain copy,
//!   so request/response connections never create a pipe.
//!   docs/performance.md has the measurements.
//!
//! # Example
//!
//! ```no_run
//! use sockbroker_relay::{relay, Counters, RelayOptions};
//! use tokio::net::UnixStream;
//!
//! # async fn example(client: UnixStream) -> std::io::Result<()> {
//! let upstream = UnixStream::connect("/var/run/docker.sock").await?;
//! let counters = Counters::default();
//! let outcome = relay(client, upstream, &RelayOptions::default(), &counters).await;
//! println!(
//!     "ended: {} (up {} B, down {} B)",
//!     outcome.end, outcome.bytes_upstream, outcome.bytes_downstream
//! );
//! # Ok(())
//! # }
//! ```
// `unsafe` is denied everywhere but `registered` (registering a socket for
// reading only, and `accept4(2)`; that module says why).
#![deny(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms)]

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Default most bytes per read, and size of a direction's own buffer (16 KiB).
///
/// Large enough that bulk transfers (image pulls, `docker cp`) move in few
/// syscalls, small enough that a connection writing into a slow reader,
/// which keeps a buffer this size, stays cheap.
pub const DEFAULT_BUFFER_SIZE: usize = 16 * 1024;

/// Default quiet time after which a direction gives its buffer back (500 ms).
///
/// Short enough that connections idling between messages (`docker events`,
/// `logs -f`, keep-alive API connections) cost almost nothing after a second,
/// long enough that a busy connection never reallocates: at most one buffer
/// allocation per quiet period.
pub const DEFAULT_BUFFER_RELEASE: Duration = Duration::from_millis(500);

/// Which way bytes flow.
///
/// Used to label byte counts so that metrics can tell requests (client to
/// upstream) from responses and streams (upstream to client).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client → upstream: requests, stdin of `exec -i`/`attach`, uploads.
    Upstream,
    /// Upstream → client: responses, logs, events, container output.
    Downstream,
}

impl Direction {
    /// Stable lowercase name (`"upstream"` / `"downstream"`), for log fields
    /// and metric labels, which must not change when the enum is reworded.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Upstream => "upstream",
            Direction::Downstream => "downstream",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One of the two connections a relay joins.
///
/// Used to attribute errors, so operators can tell a misbehaving client from
/// a failing upstream daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The accepted connection (e.g. the docker CLI in a container).
    Client,
    /// The connection to the real socket (e.g. `/var/run/docker.sock`).
    Upstream,
}

impl Side {
    /// Stable lowercase name (`"client"` / `"upstream"`), for log fields and
    /// metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Receives byte counts as they are relayed, while the connection is still
/// open.
///
/// This exists so that a day-long `docker events` or `logs -f` stream shows up
/// in metrics during that day, not only once it closes. The relay calls
/// [`add`](ByteSink::add) after every successful write, from the relay's own
/// task, so implementations must be cheap and must not block (atomics are
/// ideal). The trait keeps this crate free of any metrics dependency.
pub trait ByteSink: Send + Sync {
    /// Record that `n` bytes were written to the destination in direction
    /// `dir`.
    fn add(&self, dir: Direction, n: u64);
}

/// Simple atomic byte counters implementing [`ByteSink`].
///
/// Exists so callers (and tests) can observe per-connection progress from
/// another task at any time without bringing their own sink.
#[derive(Default, Debug)]
pub struct Counters {
    /// Bytes written to the upstream so far; atomic so it can be read while
    /// the relay is still writing it.
    upstream: AtomicU64,
    /// Bytes written to the client so far; atomic for the same reason.
    downstream: AtomicU64,
}

impl Counters {
    /// Bytes relayed client → upstream so far.
    pub fn upstream(&self) -> u64 {
        self.upstream.load(Ordering::Relaxed)
    }

    /// Bytes relayed upstream → client so far.
    pub fn downstream(&self) -> u64 {
        self.downstream.load(Ordering::Relaxed)
    }
}

impl ByteSink for Counters {
    fn add(&self, dir: Direction, n: u64) {
        let counter = match dir {
            Direction::Upstream => &self.upstream,
            Direction::Downstream => &self.downstream,
        };
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Relay settings.
///
/// Cloneable and taken by reference, so the broker can keep one per listener
/// and settings version that all of its connections share.
#[derive(Clone, Debug)]
pub struct RelayOptions {
    /// End the relay with [`EndReason::Idle`] once no byte has moved in either
    /// direction for this long; `None` disables it. Exists to reclaim
    /// connections abandoned by clients that never close them. Note that a
    /// quiet but legitimate stream (`docker events` with nothing happening)
    /// is also idle, so pick this generously.
    pub idle_timeout: Option<Duration>,
    /// When cancelled, the relay returns [`EndReason::Cancelled`] promptly and
    /// closes both streams. Exists for shutdown and for drain deadlines
    /// (e.g. a child of a per-listener token).
    pub cancel: CancellationToken,
    /// The most bytes moved per read: the size of the thread's scratch
    /// buffer reads go into, and of the buffer a direction keeps while its
    /// destination is full. Exists so memory per connection writing into a
    /// slow reader can be tuned; values below 1 are treated as 1. Defaults
    /// to [`DEFAULT_BUFFER_SIZE`].
    /// A direction that switched to [`splice`](RelayOptions::splice) holds no
    /// buffer and moves up to 256 KiB (its pipe's capacity) per call.
    pub buffer_size: usize,
    /// On Linux, once a read fills the whole buffer (bulk data), move the
    /// rest of that direction with `splice(2)` through a kernel pipe instead
    /// of copying it through this process; the buffer is freed then. Exists
    /// because it measures faster for bulk transfers (docs/performance.md);
    /// `false` keeps the plain read/write copy. Defaults to `true`.
    pub splice: bool,
    /// Give a direction's own buffer (held since its destination was full)
    /// back once its source has sent nothing for this long (it is released
    /// between one and two such periods after the last read; reads then go
    /// through the thread's scratch buffer again). Exists because long-lived
    /// connections idle for hours and would otherwise each keep their
    /// touched buffer pages. `None` keeps the buffer until the direction
    /// ends. Defaults to [`DEFAULT_BUFFER_RELEASE`].
    pub buffer_release: Option<Duration>,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            idle_timeout: None,
            cancel: CancellationToken::new(),
            buffer_size: DEFAULT_BUFFER_SIZE,
            splice: true,
            buffer_release: Some(DEFAULT_BUFFER_RELEASE),
        }
    }
}

/// How a relayed connection ended.
///
/// Exists so the broker can log and count endings by cause; see
/// [`as_str`](EndReason::as_str) for the stable label of each.
#[derive(Debug)]
pub enum EndReason {
    /// Both directions finished normally and the client's direction finished
    /// first (the usual case: the client closes, then the upstream follows).
    ClientClosed,
    /// Both directions finished normally and the upstream's direction
    /// finished first.
    UpstreamClosed,
    /// [`RelayOptions::idle_timeout`] elapsed with no byte moving either way.
    Idle,
    /// [`RelayOptions::cancel`] fired.
    Cancelled,
    /// A read, write or shutdown failed, e.g. `ECONNRESET` or `EPIPE` after a
    /// peer vanished.
    Error {
        /// The connection on which the failing operation was performed.
        side: Side,
        /// The underlying error, kept for logs.
        error: io::Error,
    },
}

impl EndReason {
    /// Stable label: `"client_closed"`, `"upstream_closed"`, `"idle"`,
    /// `"cancelled"`, `"client_error"` or `"upstream_error"`. Used as a log
    /// field and metric label, so it has a small fixed set of values.
    pub fn as_str(&self) -> &'static str {
        match self {
            EndReason::ClientClosed => "client_closed",
            EndReason::UpstreamClosed => "upstream_closed",
            EndReason::Idle => "idle",
            EndReason::Cancelled => "cancelled",
            EndReason::Error {
                side: Side::Client, ..
            } => "client_error",
            EndReason::Error {
                side: Side::Upstream,
                ..
            } => "upstream_error",
        }
    }

    /// Whether the relay ended because an I/O operation failed, so callers
    /// can pick a log level without matching on every variant.
    pub fn is_error(&self) -> bool {
        matches!(self, EndReason::Error { .. })
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndReason::Error { error, .. } => write!(f, "{}: {}", self.as_str(), error),
            _ => f.write_str(self.as_str()),
        }
    }
}

/// Result of one relayed connection.
///
/// Exists so the broker gets the ending and the final totals in one value for
/// its per-connection log line.
#[derive(Debug)]
pub struct Outcome {
    /// Why the relay stopped.
    pub end: EndReason,
    /// Bytes written to the upstream (client → upstream) in total.
    pub bytes_upstream: u64,
    /// Bytes written to the client (upstream → client) in total.
    pub bytes_downstream: u64,
}

/// Relay bytes between `client` and `upstream` until both directions are done,
/// or the idle timeout, cancellation or an I/O error ends it.
///
/// Both streams are consumed and closed (dropped) when this returns. The
/// returned future is `Send`, so it can run in a spawned task; it spawns
/// nothing itself. See the [crate docs](crate) for the exact semantics.
pub async fn relay<C: RelayStream, U: RelayStream>(
    client: C,
    upstream: U,
    opts: &RelayOptions,
    sink: &dyn ByteSink,
) -> Outcome {
    let shared = Shared {
        activity: Activity::new(),
        buffers: Buffers::default(),
    };
    let mut bytes_upstream = 0;
    let mut bytes_downstream = 0;

    let end = {
        let up = pump(
            &client,
            &upstream,
            Direction::Upstream,
            opts,
            &shared,
            sink,
            &mut bytes_upstream,
        );
        let down = pump(
            &upstream,
            &client,
            Direction::Downstream,
            opts,
            &shared,
            sink,
            &mut bytes_downstream,
        );
        // `drive` consumes both direction futures, so their borrows of the
        // totals end when it returns.
        // Pinned here and lent to `drive`: moved into its future they were
        // copied whole once more per connection.
        tokio::pin!(up, down);
        drive(up, down, opts, &shared).await
    };
    // The side still connected learns of the end at once; the one that hung
    // up (nobody is waiting on it) is closed after a turn of the runtime, and
    // so is the caller's bookkeeping after this returns (the broker's audit
    // line): on a busy worker, the next connection's accept, typically in the
    // same `epoll_wait` batch as this one's hang-up, goes first
    // (docs/performance.md "What was tried", session 10).
    match end {
        EndReason::ClientClosed => {
            drop(upstream);
            tokio::task::yield_now().await;
        }
        EndReason::UpstreamClosed => {
            drop(client);
            tokio::task::yield_now().await;
        }
        _ => {}
    }

    Outcome {
        end,
        bytes_upstream,
        bytes_downstream,
    }
}

/// A failed I/O operation and the side it was performed on.
type PumpError = (Side, io::Error);

/// What woke `drive`.
enum Step {
    Cancelled,
    Up(Result<Eof, PumpError>),
    Down(Result<Eof, PumpError>),
    Idle,
}

/// Run both directions to completion, racing them against cancellation, the
/// idle timer and the buffer-release timer.
async fn drive<U, D>(
    mut up: std::pin::Pin<&mut U>,
    mut down: std::pin::Pin<&mut D>,
    opts: &RelayOptions,
    shared: &Shared,
) -> EndReason
where
    U: Future<Output = Result<Eof, PumpError>>,
    D: Future<Output = Result<Eof, PumpError>>,
{
    let Shared { activity, buffers } = shared;
    let cancelled = opts.cancel.cancelled();
    tokio::pin!(cancelled);

    // One timer for the whole connection. Activity only records a timestamp;
    // when the timer fires we either end (truly idle) or push the deadline to
    // `last activity + timeout`. This avoids touching the timer wheel on
    // every read and write. Made only when there is a timeout.
    let mut idle_timeout = opts.idle_timeout;
    let idle_sleep = idle_timeout.map(tokio::time::sleep);
    tokio::pin!(idle_sleep);

    // The buffer-release timer (see `Buffers`): runs while a direction holds
    // a buffer, fires every `buffer_release`, and is re-armed only when a
    // direction read during the period that ended.
    let release_after = opts.buffer_release;
    let quiet = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(quiet);
    let mut quiet_armed = false;

    let mut events: Option<EventWaker> = None;
    // Poll the token and the timers with `events`' waker on the next turn
    // whatever its flag says: at the start, and after a turn that changed
    // a timer.
    let mut poll_events = true;
    // The same for each direction: at the start, and when the release
    // timer asked them to give their buffers back.
    let mut poll_up = true;
    let mut poll_down = true;

    let mut up_done = false;
    let mut down_done = false;
    let mut first_done: Option<Side> = None;

    loop {
        let step = std::future::poll_fn(|cx| {
            let ev = events.get_or_insert_with(|| EventWaker::new(cx));
            ev.follow(cx);
            let fired = ev.events.take() | std::mem::take(&mut poll_events);
            let mut ecx = Context::from_waker(&ev.events.waker);
            if fired && cancelled.as_mut().poll(&mut ecx).is_ready() {
                return Poll::Ready(Step::Cancelled);
            }
            if !up_done && (ev.up.take() | std::mem::take(&mut poll_up)) {
                if let Poll::Ready(r) = up.as_mut().poll(&mut Context::from_waker(&ev.up.waker)) {
                    return Poll::Ready(Step::Up(r));
                }
            }
            if !down_done && (ev.down.take() | std::mem::take(&mut poll_down)) {
                if let Poll::Ready(r) = down.as_mut().poll(&mut Context::from_waker(&ev.down.waker))
                {
                    return Poll::Ready(Step::Down(r));
                }
            }
            if fired {
                if let Some(sleep) = idle_sleep.as_mut().as_pin_mut() {
                    if idle_timeout.is_some() && sleep.poll(&mut ecx).is_ready() {
                        return Poll::Ready(Step::Idle);
                    }
                }
            }
            // After the directions, so that a buffer allocated while polling
            // them arms the timer in the same turn; when the timer fires, the
            // next turn polls them with their release requests set.
            if let Some(after) = release_after {
                let mut poll_quiet = fired;
                if !quiet_armed && buffers.want_timer() {
                    quiet.as_mut().reset(Instant::now() + after);
                    quiet_armed = true;
                    poll_quiet = true;
                }
                if quiet_armed && poll_quiet && quiet.as_mut().poll(&mut ecx).is_ready() {
                    quiet_armed = buffers.period_over();
                    if quiet_armed {
                        quiet.as_mut().reset(Instant::now() + after);
                    }
                    // The directions see their release requests, and a
                    // re-armed timer gets polled, on the next turn.
                    cx.waker().wake_by_ref();
                    poll_events = true;
                    poll_up = true;
                    poll_down = true;
                }
            }
            Poll::Pending
        })
        .await;

        match step {
            Step::Cancelled => return EndReason::Cancelled,
            Step::Up(res) => {
                match res {
                    Err((side, error)) => return EndReason::Error { side, error },
                    // Nothing can reach the client any more: the other
                    // direction has nobody to deliver to, so it is done too.
                    Ok(Eof::HungUp) => down_done = true,
                    Ok(Eof::Propagated) => {}
                }
                up_done = true;
                first_done.get_or_insert(Side::Client);
            }
            Step::Down(res) => {
                match res {
                    Err((side, error)) => return EndReason::Error { side, error },
                    Ok(Eof::HungUp) => up_done = true,
                    Ok(Eof::Propagated) => {}
                }
                down_done = true;
                first_done.get_or_insert(Side::Upstream);
            }
            Step::Idle => {
                let timeout = idle_timeout.unwrap_or_default();
                match activity.last().checked_add(timeout) {
                    Some(deadline) if deadline <= Instant::now() => return EndReason::Idle,
                    Some(deadline) => {
                        if let Some(sleep) = idle_sleep.as_mut().as_pin_mut() {
                            sleep.reset(deadline);
                        }
                    }
                    // Timeout so large it can never elapse.
                    None => idle_timeout = None,
                }
                poll_events = true;
            }
        }

        if up_done && down_done {
            return match first_done {
                Some(Side::Upstream) => EndReason::UpstreamClosed,
                _ => EndReason::ClientClosed,
            };
        }
    }
}

/// How a direction ended (without an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Eof {
    /// The source shut down its writing only; the EOF was passed on with
    /// `shutdown(SHUT_WR)` and the other direction keeps flowing.
    Propagated,
    /// The source closed its socket altogether (`EPOLLHUP`: it can neither
    /// send nor receive). Nothing the other direction reads could be
    /// delivered to it, so the relay ends now instead of passing the EOF on
    /// and waiting for the other side's: one `shutdown(2)`, one wake-up and
    /// one `recv(2)` less per connection, and no `EPIPE` from writing to a
    /// closed client.
    HungUp,
}

/// Copy one direction until EOF, then propagate the EOF with
/// `shutdown(SHUT_WR)` on the destination (or report [`Eof::HungUp`]).
///
/// Reads go into the thread's scratch buffer and are sent at once. Only when
/// the destination cannot take all of a read does the direction allocate a
/// buffer of its own for the rest; it then reads into that buffer until `src`
/// has been quiet for [`RelayOptions::buffer_release`] and frees it when this
/// future completes. So connections whose peers keep up, busy or idle, hold
/// no buffers, and a connection writing into a full socket does not
/// allocate per message. Once a
/// read fills the whole buffer (a bulk transfer) and [`RelayOptions::splice`]
/// allows it, the direction switches to `splice(2)` through a kernel pipe and
/// frees the buffer (see [`zero_copy`]).
async fn pump<S: RelayStream, D: RelayStream>(
    src: &S,
    dst: &D,
    dir: Direction,
    opts: &RelayOptions,
    shared: &Shared,
    sink: &dyn ByteSink,
    total: &mut u64,
) -> Result<Eof, PumpError> {
    // Timestamps are only needed (and only taken) when an idle timeout is set.
    let activity = opts.idle_timeout.is_some().then_some(&shared.activity);
    let buffers = &shared.buffers;
    let (src_side, dst_side) = match dir {
        Direction::Upstream => (Side::Client, Side::Upstream),
        Direction::Downstream => (Side::Upstream, Side::Client),
    };
    let buffer_size = opts.buffer_size.max(1);
    let mut moved = |n: usize| {
        *total += n as u64;
        sink.add(dir, n as u64);
        if let Some(a) = activity {
            a.touch();
        }
    };

    // This direction's own buffer: held only after a write could not take
    // everything read (the destination was full), until the release timer
    // finds the source quiet. Otherwise reads go through the thread's
    // scratch buffer and are sent at once.
    let mut buf: Vec<u8> = Vec::new();
    // The buffer is given back after a quiet period: `drive` runs one timer
    // for both directions and asks through `buffers`; this direction marks
    // its reads there, a flag store per message, not a timer per message.
    let release = opts.buffer_release.is_some();
    let bit = Buffers::bit(dir);
    loop {
        // One wait for both, so the future holds one readiness future.
        // `poll_read_ready` keeps the waker in the socket's one reader slot;
        // `readable()` made a future per turn that, while pending, joined the
        // socket's waiter list under its lock and left it again when dropped.
        let holding = release && buf.capacity() > 0;
        let give_back = std::future::poll_fn(|cx| match src.poll_read_ready(cx) {
            Poll::Ready(r) => Poll::Ready(r.map(|()| false)),
            Poll::Pending if holding && buffers.asked(bit) => Poll::Ready(Ok(true)),
            Poll::Pending => Poll::Pending,
        })
        .await
        .map_err(|e| (src_side, e))?;
        if give_back {
            buf = Vec::new();
            buffers.dropped(bit);
            continue;
        }

        // What was read, and how much of it is still to be written from `buf`.
        let (n, mut written) = if buf.capacity() == 0 {
            // The usual case: read into the thread's scratch buffer and send
            // it on without waiting. Only what the destination cannot take
            // now is copied into a buffer of this direction's own.
            let (read, sent) = scratch::with(buffer_size, |scratch| {
                let n = match read_once(src, scratch).map_err(|e| (src_side, e))? {
                    Read::Data(n) => n,
                    other => return Ok((other, 0)),
                };
                if let Some(a) = activity {
                    a.touch();
                }
                let mut sent = 0;
                while sent < n {
                    match dst.try_write_io(|| stream::send(dst, &scratch[sent..n])) {
                        Ok(0) => return Err((dst_side, io::ErrorKind::WriteZero.into())),
                        Ok(w) => {
                            sent += w;
                            moved(w);
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err((dst_side, e)),
                    }
                }
                if sent < n {
                    // The destination is full: keep the rest (and, from now
                    // on, read into a buffer of this direction's own until
                    // the release timer finds the source quiet). Only this
                    // read's bytes leave the scratch buffer.
                    buf = Vec::with_capacity(buffer_size);
                    buf.extend_from_slice(&scratch[..n]);
                    if release {
                        buffers.allocated(bit);
                    }
                }
                Ok((Read::Data(n), sent))
            })?;
            match read {
                Read::Eof => break,
                Read::Nothing => continue,
                Read::Data(n) => (n, sent),
            }
        } else {
            buf.clear();
            let n = match read_once(src, &mut buf).map_err(|e| (src_side, e))? {
                Read::Eof => break,
                Read::Nothing => continue,
                Read::Data(n) => n,
            };
            if release {
                buffers.read(bit);
            }
            if let Some(a) = activity {
                a.touch();
            }
            (n, 0)
        };

        while written < n {
            // Straight to `send` (the usual case); only when the socket is
            // full does the write wait (`stream::poll_write`).
            let data = &buf[written..n];
            let r = std::future::poll_fn(|cx| stream::poll_write(dst, cx, data)).await;
            match r {
                Ok(0) => return Err((dst_side, io::ErrorKind::WriteZero.into())),
                Ok(w) => {
                    written += w;
                    moved(w);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err((dst_side, e)),
            }
        }

        #[cfg(target_os = "linux")]
        if n >= buffer_size && opts.splice {
            // A full read: bulk data. Move the rest through a pipe, without
            // copying it through this process, and give the buffer back.
            if let Ok(pipe) = zero_copy::Pipe::new() {
                drop(std::mem::take(&mut buf));
                buffers.dropped(bit);
                // Boxed: the splice loop's state exists only on bulk
                // connections and must not grow every idle relay's future.
                Box::pin(zero_copy::pump(
                    src, dst, &pipe, src_side, dst_side, &mut moved,
                ))
                .await?;
                break;
            }
        }
    }
    // This direction is done; release its buffer even if the other direction
    // keeps the connection open for hours.
    drop(buf);
    buffers.dropped(bit);

    if src.hung_up() {
        return Ok(Eof::HungUp);
    }
    match dst.shutdown_write() {
        // The peer already closed: there is nobody left to tell about EOF,
        // which is not a failure of this direction.
        Err(e) if e.kind() != io::ErrorKind::NotConnected => Err((dst_side, e)),
        _ => Ok(Eof::Propagated),
    }
}

/// What one read from a direction's source gave.
enum Read {
    /// This many bytes (at least one).
    Data(usize),
    /// The source sent EOF.
    Eof,
    /// Readiness without data (freshly accepted sockets get one such
    /// wake-up), or a signal interrupted the read: wait again.
    Nothing,
}

/// One non-blocking read from `src` into `buf`'s spare capacity.
fn read_once<S: RelayStream>(src: &S, buf: &mut Vec<u8>) -> io::Result<Read> {
    match src.read_into(buf) {
        Ok(0) => Ok(Read::Eof),
        Ok(n) => Ok(Read::Data(n)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(Read::Nothing)
        }
        Err(e) => Err(e),
    }
}

/// Zero-copy relaying with `splice(2)` (Linux): socket → pipe → socket.
///
/// For bulk transfers this moves page references instead of copying every
/// byte into this process and out again. It costs a pipe (two descriptors)
/// per direction, created only once a direction has shown bulk traffic.
#[cfg(target_os = "linux")]
mod zero_copy;

/// One read buffer per thread: a direction reads into it and sends at once,
/// so it needs a buffer of its own only while its destination is full.
mod scratch;

/// What both directions and `drive` share: the last activity and the
/// buffer-release bits.
mod shared;
use shared::{Activity, Buffers, Shared};

/// The relay's own wakers, which let `drive` poll only what woke it.
mod wake;
use wake::EventWaker;

/// The streams a relay joins ([`RelayStream`]).
mod stream;

/// Sockets registered for reading only ([`ReadRegistered`], [`Listener`]).
mod registered;

pub use registered::{Listener, ReadRegistered};
pub use stream::RelayStream;

#[cfg(test)]
mod tests;
