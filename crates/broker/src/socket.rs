//! Creating, adjusting, adopting and removing tenant sockets safely
//! (docs/decisions.md "Sockets", docs/security.md).
//!
//! A tenant socket is bound under a short temporary name in its target directory,
//! chowned and chmodded there, and only then renamed onto its final path, so no
//! peer ever sees it with the wrong owner or mode. What already sits at the final
//! path decides what happens: nothing or a stale socket (connect refused, or,
//! when we may not connect, no listener on that file per [`crate::sockdiag`]) is
//! replaced; a live socket, a symlink, a regular file or a directory is never
//! touched and the tenant is reported down with that reason.
//!
//! Every socket we create is remembered by its (device, inode) pair, and only a
//! path that still carries that identity is ever unlinked or re-permissioned.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::errno::Errno;
use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};

/// The longest path a `sockaddr_un` can carry (108 bytes including the NUL).
pub const SUN_PATH_MAX: usize = 107;

/// Why a tenant's socket could not be set up. Each message says what is wrong
/// and what the operator can do about it; the tenant stays down and is retried.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The listen path has no parent directory (it is `/`).
    #[error("{0} has no parent directory")]
    NoParent(PathBuf),
    /// Creating the missing parent directory failed.
    #[error(
        "cannot create parent directory {path}: {source}; create it (mode 0755) or fix its parents"
    )]
    CreateParent {
        /// The directory we tried to create.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The parent exists but is not a directory.
    #[error("parent {0} exists but is not a directory; choose another listen path")]
    ParentNotDirectory(PathBuf),
    /// The parent is writable by others without the sticky bit: anyone could swap our socket.
    #[error(
        "parent directory {path} has mode {mode:04o}: group/world-writable without the sticky bit, \
         so others could replace the socket; use a directory of its own (e.g. chmod 0755 {path})"
    )]
    ParentInsecure {
        /// The refused directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Something that is not a stale socket of ours occupies the listen path.
    #[error("{path} is {what}; sockbroker never replaces it: remove or move it and the tenant comes up by itself")]
    Occupied {
        /// The listen path.
        path: PathBuf,
        /// What is there ("a regular file", "a live socket someone is listening on", ...).
        what: &'static str,
    },
    /// The temporary name beside the listen path would not fit in `sun_path`.
    #[error("{0}: no room for a temporary socket name within the {SUN_PATH_MAX}-byte socket path limit; shorten the directory part of the listen path")]
    TooLong(PathBuf),
    /// A system call on the way failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What we were doing (bind, chown, chmod, rename, stat).
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

impl SocketError {
    fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        SocketError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }
}

/// Identifies a socket file we created, so we never unlink or chmod someone else's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketFile {
    /// The final, public path.
    pub path: PathBuf,
    /// Device of the inode we created.
    pub dev: u64,
    /// Inode number we created; a path with any other inode is not ours.
    pub ino: u64,
}

impl SocketFile {
    /// True while `path` still names the inode we created.
    pub fn is_ours(&self) -> bool {
        match fs::symlink_metadata(&self.path) {
            Ok(m) => m.file_type().is_socket() && m.dev() == self.dev && m.ino() == self.ino,
            Err(_) => false,
        }
    }

    /// Unlink the socket if the path still names our inode. Returns whether it did.
    pub fn remove(&self) -> bool {
        if self.is_ours() {
            match fs::remove_file(&self.path) {
                Ok(()) => return true,
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "could not remove socket")
                }
            }
        }
        false
    }

    /// The owner and mode the path really has now, if it is still our socket.
    pub fn owner_mode(&self) -> Option<(u32, u32, u32)> {
        let m = fs::symlink_metadata(&self.path).ok()?;
        (m.file_type().is_socket() && m.dev() == self.dev && m.ino() == self.ino)
            .then(|| (m.uid(), m.gid(), m.mode() & 0o7777))
    }

    /// Change owner and mode in place on the existing inode (no rebind, open
    /// connections untouched). Refuses when the path no longer names our inode.
    pub fn set_owner_mode(&self, uid: u32, gid: u32, mode: u32) -> Result<(), SocketError> {
        let Some(now) = self.owner_mode() else {
            return Err(SocketError::Occupied {
                path: self.path.clone(),
                what: "no longer the socket sockbroker created",
            });
        };
        change_owner_mode(&self.path, now, (uid, gid, mode))
    }
}

/// Move a live socket from owner/mode `from` to `to` without a moment in
/// which anyone outside both may connect: first narrow the mode to what both
/// allow, then change the owner, then widen to the new mode. (Changing the
/// owner first would hand a narrowed group the old, wider mode; changing the
/// mode first would hand the old group the new, wider mode.)
fn change_owner_mode(
    path: &Path,
    from: (u32, u32, u32),
    to: (u32, u32, u32),
) -> Result<(), SocketError> {
    for step in owner_mode_steps(from, to) {
        match step {
            Step::Chmod(mode) => fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .map_err(|e| SocketError::io("chmod", path, e))?,
            Step::Chown(uid, gid) => nix::unistd::chown(
                path,
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .map_err(|e| SocketError::io("chown", path, e.into()))?,
        }
    }
    Ok(())
}

/// One system call of an owner/mode change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Chmod(u32),
    Chown(u32, u32),
}

/// The steps from `from` to `to` (uid, gid, mode): narrow, chown, widen.
fn owner_mode_steps(from: (u32, u32, u32), to: (u32, u32, u32)) -> Vec<Step> {
    let (uid, gid, mode) = to;
    let mut steps = Vec::new();
    if (from.0, from.1) != (uid, gid) {
        let narrow = from.2 & mode;
        if narrow != from.2 {
            steps.push(Step::Chmod(narrow));
        }
        steps.push(Step::Chown(uid, gid));
        if narrow != mode {
            steps.push(Step::Chmod(mode));
        }
    } else if from.2 != mode {
        steps.push(Step::Chmod(mode));
    }
    steps
}

/// Take over a listening socket handed to this process (`LISTEN_FDS`) as the
/// socket at `path`: only when it is a listening Unix stream socket bound to
/// `path` and the file at `path` is still that socket (same device and inode,
/// asked of the kernel through [`crate::sockdiag`]). Owner and mode are moved
/// to `uid:gid`/`mode` in place if they differ. On refusal the descriptor is
/// closed by the caller dropping it; the message says why.
pub fn adopt(
    fd: std::os::fd::OwnedFd,
    path: &Path,
    uid: u32,
    gid: u32,
    mode: u32,
) -> Result<(UnixListener, SocketFile), (std::os::fd::OwnedFd, String)> {
    use nix::sys::socket::{getsockname, getsockopt, sockopt, SockType, UnixAddr};
    use std::os::fd::AsRawFd;
    let check = || -> Result<SocketFile, String> {
        match getsockopt(&fd, sockopt::SockType) {
            Ok(SockType::Stream) => {}
            Ok(t) => return Err(format!("it is a {t:?} socket, not a stream socket")),
            Err(e) => return Err(format!("it is not a socket ({e})")),
        }
        if !getsockopt(&fd, sockopt::AcceptConn).unwrap_or(false) {
            return Err("it is not listening".into());
        }
        // The name it was bound under: ours are bound under a temporary
        // name and renamed into place, so this is only for messages; the
        // file identity below is what counts.
        let bound = getsockname::<UnixAddr>(fd.as_raw_fd())
            .ok()
            .and_then(|a| a.path().map(Path::to_path_buf))
            .ok_or("it is not a Unix socket bound to a path")?;
        let m = fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if !m.file_type().is_socket() {
            return Err(format!("{} is not a socket", path.display()));
        }
        let sock = nix::sys::stat::fstat(&fd).map_err(|e| format!("fstat: {e}"))?;
        match crate::sockdiag::is_bound_to(sock.st_ino, m.dev(), m.ino()) {
            Ok(true) => {}
            Ok(false) => {
                return Err(format!(
                    "the file at {} is not this socket (it was bound as {})",
                    path.display(),
                    bound.display()
                ))
            }
            Err(e) => {
                return Err(format!(
                    "cannot ask the kernel which file it is bound to: {e}"
                ))
            }
        }
        change_owner_mode(
            path,
            (m.uid(), m.gid(), m.mode() & 0o7777),
            (uid, gid, mode),
        )
        .map_err(|e| e.to_string())?;
        Ok(SocketFile {
            path: path.to_owned(),
            dev: m.dev(),
            ino: m.ino(),
        })
    };
    match check() {
        Ok(file) => {
            let l = UnixListener::from(fd);
            match l.set_nonblocking(true) {
                Ok(()) => Ok((l, file)),
                Err(e) => Err((l.into(), format!("set_nonblocking: {e}"))),
            }
        }
        Err(why) => Err((fd, why)),
    }
}

fn chown_chmod(path: &Path, uid: u32, gid: u32, mode: u32) -> Result<(), SocketError> {
    nix::unistd::chown(
        path,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .map_err(|e| SocketError::io("chown", path, e.into()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| SocketError::io("chmod", path, e))
}

/// Distinguishes temporary names of concurrent binds within this process.
static TMP_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Bind a listening socket at `path` owned by `uid:gid` with `mode`, safely.
///
/// The returned listener is non-blocking, ready for `tokio::net::UnixListener::from_std`.
pub fn bind(
    path: &Path,
    uid: u32,
    gid: u32,
    mode: u32,
) -> Result<(UnixListener, SocketFile), SocketError> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| SocketError::NoParent(path.to_owned()))?;
    ensure_parent(parent)?;

    // What is at the final path decides whether we may put our socket there.
    let replace_stale = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(SocketError::io("stat", path, e)),
        Ok(m) => {
            let ft = m.file_type();
            let what = if ft.is_symlink() {
                "a symlink"
            } else if ft.is_file() {
                "a regular file"
            } else if ft.is_dir() {
                "a directory"
            } else if ft.is_socket() {
                match probe_connect(path) {
                    Err(Errno::ECONNREFUSED) => "",
                    // Without CAP_DAC_OVERRIDE a leftover socket owned by the
                    // tenant cannot be connected to; ask the kernel instead.
                    Err(Errno::EACCES) => match crate::sockdiag::listening_on(m.dev(), m.ino()) {
                        Ok(false) => "",
                        Ok(true) => "a live socket someone is listening on",
                        Err(_) => "a socket that could not be probed",
                    },
                    // A full backlog: someone listens (and does not accept).
                    Ok(()) | Err(Errno::EAGAIN) => "a live socket someone is listening on",
                    Err(_) => "a socket that could not be probed",
                }
            } else {
                "a special file"
            };
            if !what.is_empty() {
                return Err(SocketError::Occupied {
                    path: path.to_owned(),
                    what,
                });
            }
            true
        }
    };

    let tmp = temp_name(parent, path)?;
    let listener = UnixListener::bind(&tmp).map_err(|e| SocketError::io("bind", &tmp, e))?;
    let result = (|| {
        chown_chmod(&tmp, uid, gid, mode)?;
        let meta = fs::symlink_metadata(&tmp).map_err(|e| SocketError::io("stat", &tmp, e))?;
        let flags = if replace_stale {
            // A stale socket is replaced atomically: there is never a moment without one.
            RenameFlags::empty()
        } else {
            // Nothing was there: never clobber whatever appeared since we looked.
            RenameFlags::RENAME_NOREPLACE
        };
        match renameat2(AT_FDCWD, &tmp, AT_FDCWD, path, flags) {
            Ok(()) => {}
            Err(Errno::EEXIST) => {
                return Err(SocketError::Occupied {
                    path: path.to_owned(),
                    what: "something that appeared while the socket was being created",
                })
            }
            Err(e) => return Err(SocketError::io("rename", path, e.into())),
        }
        Ok(SocketFile {
            path: path.to_owned(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    })();
    match result {
        Ok(file) => {
            listener
                .set_nonblocking(true)
                .map_err(|e| SocketError::io("set_nonblocking", path, e))?;
            Ok((listener, file))
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Try to connect to the socket at `path` without ever waiting: a blocking
/// connect to a listener whose backlog is full would hang the daemon loop
/// (this runs on it, at startup, reloads and retries).
fn probe_connect(path: &Path) -> Result<(), Errno> {
    connect_nonblocking(path).map(drop)
}

/// A non-blocking, close-on-exec Unix stream socket connected to `path`.
///
/// A Unix-socket `connect(2)` completes or fails at once; on a non-blocking
/// socket a listener whose backlog is full gives `EAGAIN` instead of making
/// the caller wait. Used by the stale-socket probe and the upstream connect.
pub(crate) fn connect_nonblocking(path: &Path) -> Result<std::os::fd::OwnedFd, Errno> {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    connect(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
    Ok(fd)
}

/// A short hidden name in the same directory (rename(2) must not cross filesystems),
/// short enough for `sun_path`.
fn temp_name(parent: &Path, path: &Path) -> Result<PathBuf, SocketError> {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!(".sb{:x}.{:x}", std::process::id() & 0xfffff, n & 0xffff);
    let tmp = parent.join(name);
    if tmp.as_os_str().len() > SUN_PATH_MAX {
        return Err(SocketError::TooLong(path.to_owned()));
    }
    Ok(tmp)
}

/// Create a missing parent (0755, owned by us), refuse an unsafe existing one.
fn ensure_parent(parent: &Path) -> Result<(), SocketError> {
    match fs::metadata(parent) {
        Ok(m) => {
            if !m.is_dir() {
                return Err(SocketError::ParentNotDirectory(parent.to_owned()));
            }
            let mode = m.mode() & 0o7777;
            if mode & 0o022 != 0 && mode & 0o1000 == 0 {
                return Err(SocketError::ParentInsecure {
                    path: parent.to_owned(),
                    mode,
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Create every missing ancestor 0755 explicitly: the broker runs with
            // umask 077, and tenants must be able to traverse the whole chain.
            let mut missing = vec![parent.to_path_buf()];
            while let Some(p) = missing.last().and_then(|p| p.parent()) {
                if p.as_os_str().is_empty() || p.exists() {
                    break;
                }
                missing.push(p.to_path_buf());
            }
            let mut created_parent = false;
            for dir in missing.iter().rev() {
                let created = match fs::DirBuilder::new().mode(0o755).create(dir) {
                    Ok(()) => true,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
                    Err(source) => {
                        return Err(SocketError::CreateParent {
                            path: dir.clone(),
                            source,
                        })
                    }
                };
                if created {
                    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).map_err(
                        |source| SocketError::CreateParent {
                            path: dir.clone(),
                            source,
                        },
                    )?;
                }
                created_parent = created;
            }
            if created_parent {
                // We just made it a 0755 directory: no need to look again
                // (one stat per tenant less at startup, docs/performance.md).
                return Ok(());
            }
            ensure_parent(parent)
        }
        Err(e) => Err(SocketError::io("stat", parent, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> (u32, u32) {
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn binds_with_mode_and_leaves_no_temporary_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/t/docker.sock");
        let (uid, gid) = me();
        // As in the daemon: a strict umask must not narrow created directories.
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
        let bound = bind(&path, uid, gid, 0o640);
        nix::sys::stat::umask(old);
        let (_l, file) = bound.unwrap();
        let m = fs::symlink_metadata(&path).unwrap();
        assert!(m.file_type().is_socket());
        assert_eq!(m.mode() & 0o7777, 0o640);
        assert_eq!(m.ino(), file.ino);
        for d in ["a", "a/t"] {
            assert_eq!(
                fs::metadata(dir.path().join(d)).unwrap().mode() & 0o7777,
                0o755,
                "{d}"
            );
        }
        assert_eq!(entries(&dir.path().join("a/t")), vec!["docker.sock"]);
        std::os::unix::net::UnixStream::connect(&path).unwrap();
        assert!(file.remove());
        assert!(!path.exists());
    }

    #[test]
    fn replaces_stale_socket_but_not_live_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let (uid, gid) = me();
        drop(UnixListener::bind(&path).unwrap()); // stale: file remains, nobody listens
        let (live, file) = bind(&path, uid, gid, 0o600).unwrap();
        let err = bind(&path, uid, gid, 0o600).unwrap_err();
        assert!(err.to_string().contains("live socket"), "{err}");
        assert!(file.is_ours());
        drop(live);
    }

    #[test]
    fn a_listener_that_never_accepts_is_live_and_probing_it_does_not_hang() {
        use nix::sys::socket::{
            bind as nix_bind, connect, listen, socket, AddressFamily, Backlog, SockFlag, SockType,
            UnixAddr,
        };
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let (uid, gid) = me();
        // A listener with the smallest backlog, filled by connections nobody accepts.
        let l = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::empty(),
            None,
        )
        .unwrap();
        nix_bind(l.as_raw_fd(), &UnixAddr::new(&path).unwrap()).unwrap();
        listen(&l, Backlog::new(0).unwrap()).unwrap();
        let mut pending = Vec::new();
        loop {
            let c = socket(
                AddressFamily::Unix,
                SockType::Stream,
                SockFlag::SOCK_NONBLOCK,
                None,
            )
            .unwrap();
            match connect(c.as_raw_fd(), &UnixAddr::new(&path).unwrap()) {
                Ok(()) => pending.push(c),
                Err(Errno::EAGAIN) => break,
                Err(e) => panic!("connect: {e}"),
            }
            assert!(pending.len() < 100, "the backlog never filled");
        }
        // A blocking connect here would wait forever.
        let err = bind(&path, uid, gid, 0o600).unwrap_err();
        assert!(err.to_string().contains("live socket"), "{err}");
        assert!(path.exists());
    }

    #[test]
    fn never_touches_file_symlink_or_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (uid, gid) = me();
        let file = dir.path().join("f");
        fs::write(&file, b"precious").unwrap();
        let e = bind(&file, uid, gid, 0o600).unwrap_err();
        assert!(e.to_string().contains("regular file"), "{e}");
        assert_eq!(fs::read(&file).unwrap(), b"precious");

        let link = dir.path().join("l");
        std::os::unix::fs::symlink("/nonexistent", &link).unwrap();
        let e = bind(&link, uid, gid, 0o600).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");

        let sub = dir.path().join("d");
        fs::create_dir(&sub).unwrap();
        let e = bind(&sub, uid, gid, 0o600).unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
        assert_eq!(entries(dir.path()), vec!["d", "f", "l"]);
    }

    #[test]
    fn refuses_world_writable_parent_without_sticky_bit() {
        let dir = tempfile::tempdir().unwrap();
        let (uid, gid) = me();
        let open = dir.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let e = bind(&open.join("s"), uid, gid, 0o600).unwrap_err();
        assert!(matches!(e, SocketError::ParentInsecure { .. }), "{e}");
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
        bind(&open.join("s"), uid, gid, 0o600).unwrap();
    }

    #[test]
    fn remove_only_unlinks_our_inode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let (uid, gid) = me();
        let (l, file) = bind(&path, uid, gid, 0o600).unwrap();
        drop(l);
        fs::remove_file(&path).unwrap();
        fs::write(&path, b"someone else's").unwrap();
        assert!(!file.remove());
        assert_eq!(fs::read(&path).unwrap(), b"someone else's");
        assert!(file.set_owner_mode(uid, gid, 0o666).is_err());
    }

    #[test]
    fn owner_mode_changes_never_pass_through_a_wider_state() {
        let cases = [
            ((1, 1, 0o660), (2, 2, 0o600)),
            ((1, 1, 0o600), (2, 2, 0o660)),
            ((1, 1, 0o666), (1, 2, 0o660)),
            ((1, 1, 0o640), (1, 1, 0o660)),
            ((1, 1, 0o660), (1, 1, 0o660)),
            ((1, 1, 0o606), (2, 1, 0o660)),
        ];
        for (from, to) in cases {
            let mut now = from;
            for step in owner_mode_steps(from, to) {
                match step {
                    Step::Chmod(m) => now.2 = m,
                    Step::Chown(u, g) => (now.0, now.1) = (u, g),
                }
                // With the old owner, never more than the old mode allows; with
                // the new owner, never more than the new one.
                let mut limit = 0;
                if (now.0, now.1) == (from.0, from.1) {
                    limit |= from.2;
                }
                if (now.0, now.1) == (to.0, to.1) {
                    limit |= to.2;
                }
                assert_eq!(now.2 & !limit, 0, "{from:?} -> {to:?}: passed {now:?}");
            }
            assert_eq!(now, to, "{from:?} -> {to:?}");
        }
    }

    #[test]
    fn adopts_its_own_socket_by_file_identity_and_refuses_others() {
        use std::os::fd::OwnedFd;
        let dir = tempfile::tempdir().unwrap();
        let (uid, gid) = me();
        let path = dir.path().join("s");
        // Bound under a temporary name and renamed, as `bind` does.
        let (l, file) = bind(&path, uid, gid, 0o600).unwrap();
        let (adopted, f2) = adopt(OwnedFd::from(l), &path, uid, gid, 0o660)
            .map_err(|(_, why)| why)
            .unwrap();
        assert_eq!((f2.dev, f2.ino), (file.dev, file.ino));
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o660);
        drop(adopted);

        // Another path's listener, a non-listening socket, a datagram socket.
        let other = UnixListener::bind(dir.path().join("other")).unwrap();
        let why = adopt(OwnedFd::from(other), &path, uid, gid, 0o660)
            .unwrap_err()
            .1;
        assert!(why.contains("is not this socket"), "{why}");
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let why = adopt(OwnedFd::from(a), &path, uid, gid, 0o660)
            .unwrap_err()
            .1;
        assert!(why.contains("not listening"), "{why}");
        let d = std::os::unix::net::UnixDatagram::unbound().unwrap();
        let why = adopt(OwnedFd::from(d), &path, uid, gid, 0o660)
            .unwrap_err()
            .1;
        assert!(why.contains("not a stream socket"), "{why}");
        let f = fs::File::open(&path).err();
        assert!(f.is_some(), "sockets cannot be opened");
        let file_fd = OwnedFd::from(fs::File::open(dir.path()).unwrap());
        let why = adopt(file_fd, &path, uid, gid, 0o660).unwrap_err().1;
        assert!(why.contains("not a socket"), "{why}");
    }

    #[test]
    fn set_owner_mode_keeps_inode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let (uid, gid) = me();
        let (_l, file) = bind(&path, uid, gid, 0o600).unwrap();
        file.set_owner_mode(uid, gid, 0o660).unwrap();
        let m = fs::symlink_metadata(&path).unwrap();
        assert_eq!(m.ino(), file.ino);
        assert_eq!(m.mode() & 0o777, 0o660);
    }
}
