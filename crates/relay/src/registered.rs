//! Sockets registered with the runtime for reading only, and the one
//! `unsafe` module of this crate.
//!
//! tokio registers every `UnixStream` for `EPOLLIN | EPOLLOUT` (edge
//! triggered). For a relay that is a wake-up per message it does not need:
//! each time a peer reads what the relay wrote, the kernel signals
//! `EPOLLOUT` on the relay's socket, and if the relay is asleep in
//! `epoll_wait` it is woken — an inter-processor interrupt on a VM — to find
//! nothing to do. Registered for `EPOLLIN` only, the kernel drops that
//! signal at once. The floor relay measured 0.90× the round-trip rate and
//! 1.18–1.29× the CPU per round trip with `EPOLLOUT` added
//! (docs/performance.md). A write that finds the socket full (bulk data)
//! registers a duplicate of the descriptor for `EPOLLOUT` then, once per
//! direction; with no descriptor to spare it polls instead
//! ([`WRITE_RETRY`]).
//!
//! Why `unsafe`: tokio 1.54 registers a descriptor with a chosen interest
//! only through `AsyncFd::register_with_interest`, which is `unsafe` because
//! it cannot check that the descriptor stays open and the same while
//! registered. Here it always owns the descriptor (a `UnixStream` or
//! `UnixListener`, whose `as_raw_fd` never changes). And `accept4(2)` hands
//! back a raw descriptor that only this function owns. Nothing else in the
//! crate uses `unsafe`.
#![allow(unsafe_code)]

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::pin::Pin;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::stream::{poll_now, RelayStream};

/// Register `inner` with the current runtime for `interest`.
fn register<T: AsRawFd>(inner: T, interest: Interest) -> io::Result<AsyncFd<T>> {
    // SAFETY: `AsyncFd` owns `inner` (a `UnixStream` or `UnixListener`, which
    // own their descriptor and always return the same one), so the descriptor
    // stays open and the same until the `AsyncFd` is dropped, which
    // deregisters it first.
    unsafe { AsyncFd::register_with_interest(inner, interest) }.map_err(io::Error::from)
}

/// A connected Unix stream registered with the runtime for readability
/// only (the `registered` module says why). Relay it with
/// [`relay`](crate::relay).
#[derive(Debug)]
pub struct ReadRegistered {
    fd: AsyncFd<UnixStream>,
    /// A duplicate registered for writability, made the first time a write
    /// finds the socket full.
    writer: OnceLock<AsyncFd<UnixStream>>,
    /// While that duplicate cannot be made (no descriptor left): when to
    /// try the write again (see [`WRITE_RETRY`]).
    retry: Mutex<Option<Pin<Box<tokio::time::Sleep>>>>,
}

/// How long a write that found the socket full waits before trying again
/// when no descriptor is left for the write registration (`EMFILE`,
/// `ENFILE`) or the kernel refuses the registration (`ENOMEM`, `ENOSPC`:
/// `fs.epoll.max_user_watches`). Polling is slow but keeps the connection:
/// tokio's `UnixStream`, which needs no second descriptor, never failed a
/// transfer there, and a broker at its descriptor limit must not cut a
/// `docker pull` short (docs/decisions.md).
const WRITE_RETRY: Duration = Duration::from_millis(5);

/// Errors of making the write registration that pass with time.
fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOSPC)
    )
}

impl ReadRegistered {
    /// Register `stream`, which must already be non-blocking (as from
    /// [`Listener::accept`], or a socket made with `SOCK_NONBLOCK`), with the
    /// current runtime. Not set here: that would be an `ioctl(2)` per socket
    /// on the connection path. Must be called within a tokio runtime.
    pub fn new(stream: UnixStream) -> io::Result<ReadRegistered> {
        Ok(ReadRegistered {
            fd: register(stream, Interest::READABLE)?,
            writer: OnceLock::new(),
            retry: Mutex::new(None),
        })
    }

    /// The socket.
    pub fn get_ref(&self) -> &UnixStream {
        self.fd.get_ref()
    }

    /// The write registration, made on first use.
    fn writer(&self) -> io::Result<&AsyncFd<UnixStream>> {
        if let Some(w) = self.writer.get() {
            return Ok(w);
        }
        let dup = self.fd.get_ref().try_clone()?;
        let w = register(dup, Interest::WRITABLE)?;
        // Only one direction writes to a stream, so nobody raced us; if
        // somebody did, theirs is kept and ours dropped.
        let _ = self.writer.set(w);
        self.writer
            .get()
            .ok_or_else(|| io::Error::other("write registration vanished"))
    }
}

impl AsFd for ReadRegistered {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.get_ref().as_fd()
    }
}

impl RelayStream for ReadRegistered {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The guard is dropped without clearing: the readiness stays until
        // a read says the queue is drained.
        self.fd.poll_read_ready(cx).map_ok(drop)
    }

    fn recv_spare(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        recv_into_spare(self.fd.get_ref(), buf)
    }

    fn try_read_io<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        self.fd.try_io(Interest::READABLE, |_| f())
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.writer() {
            Ok(w) => w.poll_write_ready(cx).map_ok(drop),
            Err(e) if is_resource_exhaustion(&e) => {
                // Ready after a short wait: the caller tries the write again
                // (unregistered, so it runs), and on "would block" asks
                // here again, which retries the registration first.
                let mut retry = self.retry.lock().unwrap_or_else(PoisonError::into_inner);
                let sleep = retry.get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_RETRY)));
                std::task::ready!(sleep.as_mut().poll(cx));
                *retry = None;
                Poll::Ready(Ok(()))
            }
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn try_write_io<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        match self.writer.get() {
            Some(w) => w.try_io(Interest::WRITABLE, |_| f()),
            // Not registered for writing: nothing to clear; a "would block"
            // makes the caller register (`poll_write_ready`).
            None => f(),
        }
    }

    fn hung_up(&self) -> bool {
        // `EPOLLHUP` is reported whatever the registration asked for, and
        // tokio keeps it as "write closed" in the same readiness.
        matches!(poll_now(self.fd.ready(Interest::WRITABLE)), Some(Ok(g)) if g.ready().is_write_closed())
    }
}

impl ReadRegistered {
    /// One non-blocking `recv(2)` into `buf`; "would block" clears the read
    /// readiness. For a caller that only peeks whether anything arrived.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.fd
            .try_io(Interest::READABLE, |s| std::io::Read::read(&mut &*s, buf))
    }
}

/// tokio's byte-stream traits, for the policy relay (which reads and writes
/// through them); the byte relay uses [`RelayStream`]. Implemented on a
/// shared reference, so one task can hold a reading and a writing end of
/// the same socket at once (as `UnixStream::split` gives).
impl tokio::io::AsyncRead for &ReadRegistered {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let want = buf.remaining();
        loop {
            let mut guard = std::task::ready!(self.fd.poll_read_ready(cx))?;
            let got = guard.try_io(|s| {
                // SAFETY: `recv` only writes into the unfilled part, at most
                // its length, and never de-initialises it.
                let unfilled = unsafe { buf.unfilled_mut() };
                let n = unsafe {
                    libc::recv(
                        s.as_raw_fd(),
                        unfilled.as_mut_ptr().cast(),
                        unfilled.len(),
                        0,
                    )
                };
                if n < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(n as usize)
            });
            match got {
                Ok(Ok(n)) => {
                    // SAFETY: the kernel initialised `n` bytes of the
                    // unfilled part.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    if n > 0 && n < want {
                        // A short read drained the queue (as tokio's own
                        // streams assume for epoll): wait for new data next.
                        guard.clear_ready();
                    }
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                // Would block: the readiness is cleared; wait again.
                Err(_) => continue,
            }
        }
    }
}

impl tokio::io::AsyncWrite for &ReadRegistered {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        crate::stream::poll_write(*self, cx, buf)
    }

    fn poll_flush(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.shutdown_write())
    }
}

/// `recv(2)` into `buf`'s spare capacity (not zeroed first: no `memset` per
/// buffer and no page touched before data lands in it).
fn recv_into_spare(s: &UnixStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    // SAFETY: `recv` writes at most `spare.len()` bytes into the spare
    // capacity, which is valid for writes of that length; it reads nothing
    // from it.
    let n = unsafe { libc::recv(s.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: the kernel initialised the first `n` spare bytes.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// A listening Unix socket registered with the runtime for readability,
/// whose connections arrive unregistered, so that they can become
/// [`ReadRegistered`] without a registration to undo first.
#[derive(Debug)]
pub struct Listener(AsyncFd<UnixListener>);

impl Listener {
    /// Register `listener` (set to non-blocking here: once per listener, not
    /// per connection, and a blocking one would stall a runtime thread in
    /// `accept`) with the current runtime. Must be called within a tokio
    /// runtime.
    pub fn new(listener: UnixListener) -> io::Result<Listener> {
        listener.set_nonblocking(true)?;
        Ok(Listener(register(listener, Interest::READABLE)?))
    }

    /// The next connection: non-blocking and close-on-exec, from one
    /// `accept4(2)`.
    pub async fn accept(&self) -> io::Result<UnixStream> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// [`accept`](Listener::accept) as a poll: the waker is kept in the
    /// socket's one reader slot (no future joining its waiter list per
    /// connection). Only one task may accept.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<UnixStream>> {
        loop {
            let mut guard = std::task::ready!(self.0.poll_read_ready(cx))?;
            match guard.try_io(|l| accept_nonblocking(l.get_ref())) {
                Ok(r) => return Poll::Ready(r),
                // Drained: the readiness is cleared; wait again.
                Err(_would_block) => continue,
            }
        }
    }

    /// The socket.
    pub fn get_ref(&self) -> &UnixListener {
        self.0.get_ref()
    }
}

fn accept_nonblocking(l: &UnixListener) -> io::Result<UnixStream> {
    // SAFETY: null address pointers are allowed (the peer's address is not
    // asked for).
    let fd = unsafe {
        libc::accept4(
            l.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `accept4` returned a new descriptor that nothing else owns.
    Ok(UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}
