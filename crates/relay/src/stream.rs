// The streams a relay can join: documented where lib.rs declares the module.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::task::{Context, Poll};

use tokio::io::Interest;
use tokio::net::UnixStream;

/// A connected Unix stream the relay can drive: readiness from the runtime
/// and non-blocking operations on the socket.
///
/// Implemented for [`tokio::net::UnixStream`] (registered with the runtime
/// for reading and writing) and for [`ReadRegistered`](crate::ReadRegistered)
/// (registered for reading only; docs/performance.md says why). Sealed: the
/// relay's semantics depend on exactly how these two report readiness.
pub trait RelayStream: AsFd + Send + Sync + sealed::Sealed {
    /// Ready when the source may have data, an EOF or an error to read.
    /// Only one task may wait on a stream's read readiness (the relay's).
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Read what is queued into `buf`'s spare capacity, without waiting.
    ///
    /// A short read means the socket's queue was drained, so it also clears
    /// the read readiness, as tokio's own `AsyncRead` does for epoll: the
    /// next wait then sleeps until new data instead of costing one more
    /// `recv(2)` that says `EAGAIN` (one syscall per message in
    /// request/response traffic). An event that arrives during the read is
    /// never lost: the readiness snapshot is taken before it.
    fn read_into(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        let want = buf.capacity() - buf.len();
        let mut got = None;
        let res = self.try_read_io(|| {
            let n = self.recv_spare(buf)?;
            got = Some(n);
            if n > 0 && n < want {
                // Reported as "would block" so that the readiness is
                // cleared; the bytes are returned through `got`.
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                Ok(n)
            }
        });
        match got {
            Some(n) => Ok(n),
            None => res,
        }
    }

    /// One `recv(2)` into `buf`'s spare capacity (not zeroed first: no
    /// `memset` per buffer, no page touched before data lands in it).
    fn recv_spare(&self, buf: &mut Vec<u8>) -> io::Result<usize>;

    /// Run a read-side operation (a `splice(2)` out of the socket) now;
    /// "would block" clears the read readiness.
    fn try_read_io<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R>;

    /// Ready when the destination may take more bytes.
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Run a write-side operation (`send(2)` or a `splice(2)` into the
    /// socket) now; "would block" clears the write readiness.
    fn try_write_io<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R>;

    /// Whether the last readiness event said the peer is gone for good
    /// (`EPOLLHUP`, or an error), not merely done writing (`EPOLLRDHUP`).
    /// Reads the readiness the runtime already has, without a syscall and
    /// without waiting: closed states never go stale in tokio, so `true` is
    /// exact; a hang-up whose event has not been processed yet reads as
    /// `false`.
    fn hung_up(&self) -> bool;

    /// `shutdown(SHUT_WR)`: pass an EOF on.
    fn shutdown_write(&self) -> io::Result<()> {
        nix::sys::socket::shutdown(self.as_fd().as_raw_fd(), nix::sys::socket::Shutdown::Write)
            .map_err(io::Error::from)
    }
}

pub(crate) mod sealed {
    pub trait Sealed {}
    impl Sealed for tokio::net::UnixStream {}
    impl Sealed for crate::ReadRegistered {}
}

/// Write `data` to `dst`, waiting while it is full.
pub(crate) fn poll_write<S: RelayStream>(
    dst: &S,
    cx: &mut Context<'_>,
    data: &[u8],
) -> Poll<io::Result<usize>> {
    loop {
        match dst.try_write_io(|| send(dst, data)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::task::ready!(dst.poll_write_ready(cx))?
            }
            r => return Poll::Ready(r),
        }
    }
}

/// One non-blocking `send(2)`; `MSG_NOSIGNAL`, so a vanished peer is
/// `EPIPE`, not a signal.
pub(crate) fn send(dst: &impl AsFd, data: &[u8]) -> io::Result<usize> {
    nix::sys::socket::send(
        dst.as_fd().as_raw_fd(),
        data,
        nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
    )
    .map_err(io::Error::from)
}

/// Poll a readiness future once, without registering to be woken.
pub(crate) fn poll_now<F: std::future::Future>(f: F) -> Option<F::Output> {
    let f = std::pin::pin!(f);
    match f.poll(&mut Context::from_waker(std::task::Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

impl RelayStream for UnixStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        UnixStream::poll_read_ready(self, cx)
    }

    fn recv_spare(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        self.try_read_buf(buf)
    }

    fn try_read_io<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        self.try_io(Interest::READABLE, f)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        UnixStream::poll_write_ready(self, cx)
    }

    fn try_write_io<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        self.try_io(Interest::WRITABLE, f)
    }

    fn hung_up(&self) -> bool {
        matches!(poll_now(self.ready(Interest::WRITABLE)), Some(Ok(r)) if r.is_write_closed())
    }
}
