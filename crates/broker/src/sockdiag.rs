//! Asking the kernel whether anything listens on a Unix socket file, without
//! connecting to it: `NETLINK_SOCK_DIAG` (what `ss -xl` uses) lists listening
//! Unix sockets with the device and inode of the file each is bound to.
//!
//! Why: a broker with only CAP_CHOWN + CAP_FOWNER (the shipped units, the
//! container, the DaemonSet) may not `connect(2)` to a socket file it left
//! behind when it crashed, because that file now belongs to the tenant
//! (`0660`): the connect probe says EACCES, not ECONNREFUSED, and the tenant
//! would stay down until someone removed the file. The listing needs no
//! permission on the file.
//!
//! Limit: the kernel lists the sockets of the caller's network namespace only.
//! A listener in another network namespace (a second broker in another pod on
//! the same host directory) is not seen, so this is asked only after the
//! connect probe could not answer (`socket::bind`), and docs/operations.md
//! says to run one broker per socket directory.
//!
//! The messages are built and read as plain bytes (layouts from
//! `linux/netlink.h`, `linux/sock_diag.h`, `linux/unix_diag.h`); no `unsafe`.

use std::io;
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};

/// `SOCK_DIAG_BY_FAMILY` (linux/sock_diag.h).
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `NLM_F_REQUEST | NLM_F_DUMP` (linux/netlink.h).
const DUMP_REQUEST: u16 = 0x1 | 0x300;
/// `NLMSG_ERROR`, `NLMSG_DONE` (linux/netlink.h).
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// `TCP_LISTEN`: Unix sockets use the TCP state numbers in sock_diag.
const TCP_LISTEN: u32 = 10;
/// `UDIAG_SHOW_VFS`: report the bound file's device and inode.
const UDIAG_SHOW_VFS: u32 = 0x2;
/// `UNIX_DIAG_VFS` attribute: `struct unix_diag_vfs { u32 ino; u32 dev; }`.
const UNIX_DIAG_VFS: u16 = 1;
/// `sizeof(struct nlmsghdr)`, `sizeof(struct unix_diag_msg)`.
const NLMSG_HDR: usize = 16;
const UNIX_DIAG_MSG: usize = 16;

/// The dump request: an `nlmsghdr` and a `unix_diag_req` for listening sockets.
fn request() -> Vec<u8> {
    let mut m = Vec::with_capacity(40);
    m.extend_from_slice(&40u32.to_ne_bytes()); // nlmsg_len
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes()); // nlmsg_type
    m.extend_from_slice(&DUMP_REQUEST.to_ne_bytes()); // nlmsg_flags
    m.extend_from_slice(&1u32.to_ne_bytes()); // nlmsg_seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid
    m.push(libc::AF_UNIX as u8); // sdiag_family
    m.push(0); // sdiag_protocol
    m.extend_from_slice(&0u16.to_ne_bytes()); // pad
    m.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes()); // udiag_states
    m.extend_from_slice(&0u32.to_ne_bytes()); // udiag_ino
    m.extend_from_slice(&UDIAG_SHOW_VFS.to_ne_bytes()); // udiag_show
    m.extend_from_slice(&[0xff; 8]); // udiag_cookie: none
    m
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// What one datagram of the dump said.
#[derive(Debug, PartialEq)]
enum Batch {
    /// More messages follow in the next datagram.
    More,
    /// The dump is complete.
    Done,
}

/// One listening socket as the kernel lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// The socket's own inode (`st_ino` of `fstat` on its descriptor).
    sock_ino: u32,
    /// The bound file's device, in the kernel's internal encoding.
    dev: u32,
    /// The bound file's inode, truncated to 32 bits as `unix_diag_vfs` carries it.
    ino: u32,
}

/// Parse one datagram: push every listening socket that is bound to a file
/// into `out`.
fn parse(buf: &[u8], out: &mut Vec<Entry>) -> io::Result<Batch> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed sock_diag reply");
    let mut at = 0;
    while at + NLMSG_HDR <= buf.len() {
        let len = u32_at(buf, at).ok_or_else(bad)? as usize;
        let kind = u16_at(buf, at + 4).ok_or_else(bad)?;
        if len < NLMSG_HDR || at + len > buf.len() {
            return Err(bad());
        }
        let msg = &buf[at + NLMSG_HDR..at + len];
        match kind {
            NLMSG_DONE => return Ok(Batch::Done),
            NLMSG_ERROR => {
                let errno = i32::from_ne_bytes(msg.get(..4).ok_or_else(bad)?.try_into().unwrap());
                return Err(io::Error::from_raw_os_error(-errno));
            }
            SOCK_DIAG_BY_FAMILY => {
                // unix_diag_msg (family, type, state, pad, u32 ino, cookie),
                // then attributes (struct rtattr: u16 len, u16 type).
                let sock_ino = u32_at(msg, 4).ok_or_else(bad)?;
                let mut a = UNIX_DIAG_MSG;
                while a + 4 <= msg.len() {
                    let alen = usize::from(u16_at(msg, a).ok_or_else(bad)?);
                    let atype = u16_at(msg, a + 2).ok_or_else(bad)?;
                    if alen < 4 || a + alen > msg.len() {
                        return Err(bad());
                    }
                    if atype == UNIX_DIAG_VFS && alen >= 12 {
                        let ino = u32_at(msg, a + 4).ok_or_else(bad)?;
                        let dev = u32_at(msg, a + 8).ok_or_else(bad)?;
                        out.push(Entry { sock_ino, dev, ino });
                    }
                    a += align4(alen);
                }
            }
            _ => {}
        }
        at += align4(len);
    }
    Ok(Batch::More)
}

/// The kernel's internal `dev_t` (`MKDEV`: major << 20 | minor), which
/// `unix_diag_vfs` reports, for a `st_dev` as `stat(2)` returns it.
fn kernel_dev(st_dev: u64) -> u32 {
    let major = nix::sys::stat::major(st_dev);
    let minor = nix::sys::stat::minor(st_dev);
    ((major << 20) | (minor & 0xf_ffff)) as u32
}

/// Walk the kernel's list of listening Unix sockets until `found` says stop.
fn dump(mut found: impl FnMut(&Entry) -> bool) -> io::Result<bool> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )?;
    sendto(
        fd.as_raw_fd(),
        &request(),
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    let mut entries = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "sock_diag dump ended early",
            ));
        }
        let batch = parse(&buf[..n], &mut entries)?;
        if entries.iter().any(&mut found) {
            return Ok(true);
        }
        entries.clear();
        if batch == Batch::Done {
            return Ok(false);
        }
    }
}

/// Whether a socket in this network namespace listens on the file with
/// `st_dev`/`st_ino` (from `stat(2)` of the socket path).
///
/// An error means the kernel could not be asked (no `CONFIG_UNIX_DIAG`, a
/// seccomp or address-family filter): the caller must then assume "maybe".
pub fn listening_on(st_dev: u64, st_ino: u64) -> io::Result<bool> {
    let want = (kernel_dev(st_dev), st_ino as u32);
    dump(|e| (e.dev, e.ino) == want)
}

/// Whether the listening socket whose own inode is `sock_ino` (`fstat` of its
/// descriptor) is bound to the file with `st_dev`/`st_ino` (`stat` of a
/// path): "the file at that path is still this socket". Used before adopting
/// a handed-over listener.
pub fn is_bound_to(sock_ino: u64, st_dev: u64, st_ino: u64) -> io::Result<bool> {
    let want = Entry {
        sock_ino: sock_ino as u32,
        dev: kernel_dev(st_dev),
        ino: st_ino as u32,
    };
    dump(|e| *e == want)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::net::UnixListener;

    #[test]
    fn sees_a_listener_by_its_file_and_not_after_it_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let l = UnixListener::bind(&path).unwrap();
        let m = std::fs::metadata(&path).unwrap();
        assert!(listening_on(m.dev(), m.ino()).unwrap());
        drop(l);
        // The file stays, nobody listens: stale.
        assert!(!listening_on(m.dev(), m.ino()).unwrap());
        // A different inode on the same device is not confused with it.
        let other = dir.path().join("other.sock");
        let _l2 = UnixListener::bind(&other).unwrap();
        assert!(!listening_on(m.dev(), m.ino()).unwrap());
        let m2 = std::fs::metadata(&other).unwrap();
        assert!(listening_on(m2.dev(), m2.ino()).unwrap());
    }

    #[test]
    fn knows_which_file_a_listening_descriptor_is_bound_to() {
        use std::os::fd::AsFd;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let l = UnixListener::bind(&path).unwrap();
        let sock = nix::sys::stat::fstat(l.as_fd()).unwrap();
        let m = std::fs::metadata(&path).unwrap();
        assert!(is_bound_to(sock.st_ino, m.dev(), m.ino()).unwrap());
        // Another socket now at that path: the descriptor is not bound to it.
        std::fs::remove_file(&path).unwrap();
        let _other = UnixListener::bind(&path).unwrap();
        let m2 = std::fs::metadata(&path).unwrap();
        assert!(!is_bound_to(sock.st_ino, m2.dev(), m2.ino()).unwrap());
    }

    #[test]
    fn many_listeners_span_several_datagrams() {
        let dir = tempfile::tempdir().unwrap();
        let listeners: Vec<_> = (0..600)
            .map(|i| UnixListener::bind(dir.path().join(format!("{i}.sock"))).unwrap())
            .collect();
        let last = std::fs::metadata(dir.path().join("599.sock")).unwrap();
        let first = std::fs::metadata(dir.path().join("0.sock")).unwrap();
        assert!(listening_on(last.dev(), last.ino()).unwrap());
        assert!(listening_on(first.dev(), first.ino()).unwrap());
        drop(listeners);
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        let mut out = Vec::new();
        // Length field larger than the datagram.
        let mut b = vec![0u8; 16];
        b[..4].copy_from_slice(&64u32.to_ne_bytes());
        assert!(parse(&b, &mut out).is_err());
        // An attribute running past its message.
        let mut b = Vec::new();
        b.extend_from_slice(&40u32.to_ne_bytes());
        b.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        b.extend_from_slice(&[0; 10]);
        b.extend_from_slice(&[0; UNIX_DIAG_MSG]);
        b.extend_from_slice(&200u16.to_ne_bytes());
        b.extend_from_slice(&UNIX_DIAG_VFS.to_ne_bytes());
        b.extend_from_slice(&[0; 4]);
        assert!(parse(&b, &mut out).is_err());
        // Truncated header bytes at the end are ignored, an error reply is an error.
        let mut b = Vec::new();
        b.extend_from_slice(&20u32.to_ne_bytes());
        b.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        b.extend_from_slice(&[0; 10]);
        b.extend_from_slice(&(-libc::EPERM).to_ne_bytes());
        let e = parse(&b, &mut out).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
        assert!(out.is_empty());
    }

    #[test]
    fn kernel_dev_encoding() {
        // st_dev 0x0803 (major 8, minor 3) is MKDEV(8, 3) = 8 << 20 | 3 inside the kernel.
        assert_eq!(kernel_dev(nix::sys::stat::makedev(8, 3)), (8 << 20) | 3);
        assert_eq!(kernel_dev(nix::sys::stat::makedev(0, 300)), 300);
    }
}
