// Zero-copy relaying with `splice(2)`: documented where lib.rs declares it.

use std::io;
use std::os::fd::OwnedFd;

use super::{PumpError, RelayStream, Side};
use nix::fcntl::{splice, OFlag, SpliceFFlags};

/// Pipe capacity asked for, and so the most bytes moved per `splice(2)`:
/// 256 KiB measured 0.79–0.88x the relay CPU per MB of the 64 KiB default
/// (docs/performance.md). Unprivileged users have a budget of pipe pages
/// (`/proc/sys/fs/pipe-user-pages-soft`); past it the kernel hands out
/// smaller pipes, which only means smaller splices.
pub(super) const CHUNK: usize = 256 * 1024;

/// A non-blocking pipe; empty between calls of [`pump`]'s loop.
pub(super) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Its capacity: `CHUNK`, or the 64 KiB default if resizing failed.
    len: usize,
}

impl Pipe {
    pub(super) fn new() -> io::Result<Pipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        let len = nix::fcntl::fcntl(&write, nix::fcntl::FcntlArg::F_SETPIPE_SZ(CHUNK as i32))
            .map_or(64 * 1024, |n| (n as usize).min(CHUNK));
        Ok(Pipe { read, write, len })
    }
}

fn flags() -> SpliceFFlags {
    SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE
}

/// Relay `src` to `dst` until EOF on `src`, calling `moved` with every
/// byte count written to `dst`. The pipe is always drained before the
/// next read, so "would block" on a read means `src` has nothing, and on
/// a write means `dst` is full.
pub(super) async fn pump<S: RelayStream, D: RelayStream>(
    src: &S,
    dst: &D,
    pipe: &Pipe,
    src_side: Side,
    dst_side: Side,
    moved: &mut impl FnMut(usize),
) -> Result<(), PumpError> {
    loop {
        let n = loop {
            match src.try_read_io(|| {
                splice(src, None, &pipe.write, None, pipe.len, flags()).map_err(io::Error::from)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::future::poll_fn(|cx| src.poll_read_ready(cx))
                        .await
                        .map_err(|e| (src_side, e))?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err((src_side, e)),
            }
        };
        if n == 0 {
            return Ok(());
        }
        let mut left = n;
        while left > 0 {
            match dst.try_write_io(|| {
                splice(&pipe.read, None, dst, None, left, flags()).map_err(io::Error::from)
            }) {
                Ok(0) => return Err((dst_side, io::ErrorKind::WriteZero.into())),
                Ok(w) => {
                    left -= w;
                    moved(w);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::future::poll_fn(|cx| dst.poll_write_ready(cx))
                        .await
                        .map_err(|e| (dst_side, e))?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err((dst_side, e)),
            }
        }
    }
}
