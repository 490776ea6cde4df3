//! The client side of a policy-mode connection: the socket with its read
//! buffer, reading request heads and bodies (the framing, from
//! [`http1`](super::http1)) and writing answers. Nothing here decides about a
//! request; [`request`](super::request) does.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use sockbroker_relay::{ByteSink, Direction};
use sockbroker_relay::{ReadRegistered, RelayStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::http1::{self, ChunkError, Chunked, Framing, HeadError, RequestHead};
use crate::metrics::TenantMetrics;

/// Read buffer growth step.
pub(super) const READ_CHUNK: usize = 16 * 1024;
/// How long [`Connection::linger_close`] keeps reading after an answer.
const LINGER: std::time::Duration = std::time::Duration::from_millis(500);
/// How much [`Connection::linger_close`] reads and drops at most.
const LINGER_BYTES: usize = 64 * 1024 * 1024;

/// Bytes moved and last activity, shared by both sides of a connection.
pub(super) struct Stats {
    metrics: TenantMetrics,
    up: AtomicU64,
    down: AtomicU64,
    start: Instant,
    /// Milliseconds since `start` of the last read or write.
    last: AtomicU64,
}

impl Stats {
    pub(super) fn new(metrics: TenantMetrics) -> Self {
        Stats {
            metrics,
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            start: Instant::now(),
            last: AtomicU64::new(0),
        }
    }
    pub(super) fn touch(&self) {
        self.last
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    pub(super) fn add(&self, dir: Direction, n: usize) {
        self.count(dir, n as u64);
        self.metrics.add(dir, n as u64);
        self.touch();
    }
    /// Count bytes the raw relay moved (it has counted the metric itself).
    pub(super) fn count(&self, dir: Direction, n: u64) {
        match dir {
            Direction::Upstream => self.up.fetch_add(n, Ordering::Relaxed),
            Direction::Downstream => self.down.fetch_add(n, Ordering::Relaxed),
        };
    }
    /// Bytes moved `(upstream, downstream)`.
    pub(super) fn bytes(&self) -> (u64, u64) {
        (
            self.up.load(Ordering::Relaxed),
            self.down.load(Ordering::Relaxed),
        )
    }
    /// Resolves once nothing moved for `idle`.
    pub(super) async fn idle(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

/// Why reading a request failed; the connection cannot go on.
#[derive(Debug)]
pub(super) enum ReadError {
    /// The client closed in the middle of a head or body.
    Eof,
    /// Reading failed.
    Io(io::Error),
    /// `request_timeout` (this long) passed before the head and body were in.
    TimedOut(Duration),
    /// The head cannot be checked (malformed, too large, bad framing).
    Head(HeadError),
    /// The chunked body is malformed.
    Chunk(ChunkError),
}

/// What arrived from the client.
pub(super) enum Incoming {
    /// A request head (still in the buffer: [`Connection::take`] its bytes).
    Request(RequestHead),
    /// The connection opened with the HTTP/2 preface.
    Http2,
    /// The client closed between requests.
    Closed,
}

/// A request body read whole: as sent (chunk framing included) and decoded.
#[derive(Debug, Default, Clone)]
pub struct Body {
    /// The bytes as the client framed them.
    pub raw: Vec<u8>,
    /// The body itself (chunk framing removed).
    pub decoded: Vec<u8>,
}

/// The client socket, its read buffer and the request deadline.
pub(super) struct Connection<'s> {
    stream: ReadRegistered,
    /// Bytes read from the client and not yet handled.
    buf: BytesMut,
    stats: &'s Stats,
    /// No request seen yet (the HTTP/2 preface is only valid first).
    first: bool,
    /// `request_timeout`: how long a head and its body may take to arrive.
    request_timeout: Option<Duration>,
    /// When the request being read must be complete.
    deadline: Option<tokio::time::Instant>,
}

impl<'s> Connection<'s> {
    pub(super) fn new(stream: ReadRegistered, stats: &'s Stats) -> Self {
        Connection {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
            stats,
            first: true,
            request_timeout: None,
            deadline: None,
        }
    }

    /// Set the `request_timeout` for the next request read (the policy relay
    /// reads the tenant's settings per request).
    pub(super) fn set_request_timeout(&mut self, t: Option<Duration>) {
        self.request_timeout = t;
    }

    /// Read until a request head is complete (or the connection's first
    /// bytes are the HTTP/2 preface). The request deadline starts with its
    /// first byte.
    pub(super) async fn read_head(&mut self) -> Result<Incoming, ReadError> {
        self.deadline = None;
        let mut scanned: usize = 0;
        loop {
            if self.first && !self.buf.is_empty() {
                match http1::h2_preface(&self.buf) {
                    Some(true) => return Ok(Incoming::Http2),
                    Some(false) => {
                        self.first = false;
                        scanned = 0;
                    }
                    None => {}
                }
            }
            // (Nothing new, as before the first read: nothing to look at.)
            if !self.first
                && self.buf.len() > scanned
                && http1::may_hold_head(&self.buf[scanned.saturating_sub(3)..])
            {
                if let Some(h) = http1::parse_request(&self.buf).map_err(ReadError::Head)? {
                    return Ok(Incoming::Request(h));
                }
            } else if self.buf.len() > http1::MAX_HEAD {
                return Err(ReadError::Head(HeadError::TooLarge));
            }
            scanned = self.buf.len();
            if !self.buf.is_empty() && self.deadline.is_none() {
                self.start_deadline();
            }
            match self.fill().await? {
                0 if self.buf.is_empty() => return Ok(Incoming::Closed),
                0 => return Err(ReadError::Eof),
                _ => {}
            }
        }
    }

    fn start_deadline(&mut self) {
        self.deadline = self
            .request_timeout
            .map(|t| tokio::time::Instant::now() + t);
    }

    /// Read more bytes, within the request deadline if one runs.
    async fn fill(&mut self) -> Result<usize, ReadError> {
        let mut stream = &self.stream;
        let read = read_more(&mut stream, &mut self.buf, self.stats);
        let n = match self.deadline {
            Some(d) => tokio::time::timeout_at(d, read)
                .await
                .map_err(|_| ReadError::TimedOut(self.request_timeout.unwrap_or_default()))?,
            None => read.await,
        };
        let n = n.map_err(ReadError::Io)?;
        if n > 0 && self.deadline.is_none() && self.request_timeout.is_some() {
            self.start_deadline();
        }
        Ok(n)
    }

    /// The bytes read and not yet taken (a head just read is at the start:
    /// [`RequestHead::target`] reads from here).
    pub(super) fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Take `n` bytes (a head) from the buffer.
    pub(super) fn take(&mut self, n: usize) -> Vec<u8> {
        // Copied out, then dropped from the buffer (`split_to` would share
        // the buffer, and count references, for a view dropped at once).
        let head = self.buf[..n].to_vec();
        self.buf.advance(n);
        head
    }

    /// Read a whole body (its head already taken) of at most `limit` raw
    /// bytes, within the request deadline. `Ok(None)`: over the limit (the
    /// rest is unread).
    pub(super) async fn read_body(
        &mut self,
        framing: Framing,
        limit: u64,
    ) -> Result<Option<Body>, ReadError> {
        let mut body = Body::default();
        match framing {
            Framing::Empty | Framing::UntilClose => {}
            Framing::Length(n) => {
                if n > limit {
                    return Ok(None);
                }
                let n = n as usize;
                while self.buf.len() < n {
                    self.buf.reserve(READ_CHUNK.min(n - self.buf.len()));
                    if self.fill().await? == 0 {
                        return Err(ReadError::Eof);
                    }
                }
                body.raw = self.buf.split_to(n).to_vec();
                body.decoded = body.raw.clone();
            }
            Framing::Chunked => {
                let mut c = Chunked::default();
                loop {
                    let decoded = &mut body.decoded;
                    let used = c
                        .advance(&self.buf, |d| decoded.extend_from_slice(d))
                        .map_err(ReadError::Chunk)?;
                    body.raw.extend_from_slice(&self.buf[..used]);
                    self.buf.advance(used);
                    if body.raw.len() as u64 > limit {
                        return Ok(None);
                    }
                    if c.is_done() {
                        break;
                    }
                    if self.fill().await? == 0 {
                        return Err(ReadError::Eof);
                    }
                }
            }
        }
        Ok(Some(body))
    }

    /// Write `bytes` to the client.
    pub(super) async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        (&self.stream).write_all(bytes).await?;
        self.stats.add(Direction::Downstream, bytes.len());
        Ok(())
    }

    /// Shut down the write side: the client sees the end of the connection.
    pub(super) async fn shutdown(&mut self) {
        let _ = self.stream.shutdown_write();
    }

    /// Shut down the write side after an answer to a request whose body the
    /// client may still be sending, then read and drop what still comes for
    /// a moment (up to [`LINGER`] or [`LINGER_BYTES`], until the client's
    /// end): closing a Unix socket with unread bytes makes the client's
    /// writes fail and its reads reset, so it would see a broken pipe
    /// instead of the answer (as Go's server does, the "lingering close").
    pub(super) async fn linger_close(&mut self) {
        let _ = self.stream.shutdown_write();
        let drain = async {
            let mut buf = vec![0u8; READ_CHUNK];
            let mut total = 0usize;
            while total < LINGER_BYTES {
                match (&self.stream).read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, drain).await;
    }

    /// The socket halves and the read buffer, for an exchange that streams
    /// both ways at once.
    pub(super) fn parts(&mut self) -> (&ReadRegistered, &ReadRegistered, &mut BytesMut) {
        (&self.stream, &self.stream, &mut self.buf)
    }

    /// The socket and whatever is still buffered, for the raw relay.
    pub(super) fn into_parts(self) -> (ReadRegistered, BytesMut) {
        (self.stream, self.buf)
    }
}

/// Read more bytes from `r` into `buf` (growing it by [`READ_CHUNK`]).
pub(super) async fn read_more<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    stats: &Stats,
) -> io::Result<usize> {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
    let n = r.read_buf(buf).await?;
    stats.touch();
    Ok(n)
}

/// Write `buf[..n]` to `w` and consume it from `buf`, one `write` at a time so
/// that a cancelled call never loses track of what was written.
pub(super) async fn write_out<W: AsyncWrite + Unpin>(
    w: &mut W,
    buf: &mut BytesMut,
    n: usize,
    dir: Direction,
    stats: &Stats,
) -> io::Result<()> {
    let mut left = n;
    while left > 0 {
        let k = w.write(&buf[..left]).await?;
        if k == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf.advance(k);
        left -= k;
        stats.add(dir, k);
    }
    Ok(())
}
