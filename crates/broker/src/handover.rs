//! Handing listening sockets from one process to the next: taking the
//! descriptors a service manager or the previous broker passed in
//! (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`, sd_listen_fds(3)), and
//! starting the next broker with ours for an upgrade in place
//! (docs/operations.md "Upgrade").
//!
//! This is the one module of the crate with `unsafe` code, and only for two
//! things the standard library cannot express safely:
//!
//! - taking ownership of an inherited descriptor number
//!   (`OwnedFd::from_raw_fd`): sound because [`take`] runs once per process
//!   (guarded) and the numbers are exactly those the protocol says were
//!   passed to this very process (`LISTEN_PID` = our pid);
//! - the code that runs in the forked child between `fork` and `exec`
//!   (`CommandExt::pre_exec`): it must place the sockets at descriptors 3, 4, …
//!   and write the child's own pid into `LISTEN_PID`, which nobody knows
//!   before the fork. It only calls async-signal-safe functions (`getpid`,
//!   `fcntl`, `dup2`, `execve`) on memory prepared before the fork, and never
//!   allocates.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// The first passed descriptor (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;
/// Environment variable naming the descriptor on which an upgraded broker
/// reports that it is ready (a pipe to the previous broker).
pub const READY_FD_ENV: &str = "SOCKBROKER_READY_FD";
/// What the new broker writes on that pipe once it serves every tenant.
pub const READY_MESSAGE: &[u8] = b"READY\n";

/// Descriptors handed to this process.
#[derive(Debug, Default)]
pub struct Inherited {
    /// Passed sockets by `LISTEN_FDNAMES` name (a name may repeat).
    pub sockets: BTreeMap<String, Vec<OwnedFd>>,
    /// The previous broker's ready pipe when we are its upgrade.
    pub ready: Option<OwnedFd>,
}

impl Inherited {
    /// Remove and return the descriptors passed under `name`.
    pub fn take_named(&mut self, name: &str) -> Vec<OwnedFd> {
        self.sockets.remove(name).unwrap_or_default()
    }

    /// True when nothing was passed.
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty() && self.ready.is_none()
    }
}

/// Guards [`take`]: a descriptor number may be owned only once.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Take the descriptors passed to this process, once. Later calls (and a
/// `LISTEN_PID` that is not ours) give nothing. The descriptors are made
/// close-on-exec, as sd_listen_fds(3) does.
pub fn take() -> io::Result<Inherited> {
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(Inherited::default());
    }
    let mut out = Inherited::default();
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    if !ours {
        // Not passed to us (inherited from a process that was handed them, or
        // none at all): nothing to take, and nothing wrong with the names.
        return Ok(out);
    }
    // Names default to "unknown" when LISTEN_FDNAMES is absent.
    for (fd, name) in sd_notify::listen_fds_with_names(false)? {
        // SAFETY: `fd` is in 3..3+LISTEN_FDS and LISTEN_PID names this
        // process (checked by sd_notify), so the descriptor was passed to us
        // and nothing in this process owns it yet; TAKEN makes this run once.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        out.sockets.entry(name).or_default().push(owned);
    }
    if let Some(n) = std::env::var(READY_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<RawFd>().ok())
    {
        let passed = out.sockets.values().map(Vec::len).sum::<usize>() as RawFd;
        // Only the descriptor right after the sockets, where `spawn` puts it.
        if n == FIRST_FD + passed && nix::fcntl::fcntl(fd_ref(n), nix::fcntl::F_GETFD).is_ok() {
            // SAFETY: as above: the previous broker passed this descriptor
            // (named in our environment, with our pid in LISTEN_PID) and
            // nothing has taken it; it is open (F_GETFD succeeded).
            let owned = unsafe { OwnedFd::from_raw_fd(n) };
            nix::fcntl::fcntl(&owned, nix::fcntl::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))?;
            out.ready = Some(owned);
        }
    }
    Ok(out)
}

/// A borrowed view of a descriptor number for one `fcntl` probe.
fn fd_ref(n: RawFd) -> BorrowedFd<'static> {
    // SAFETY: used only for F_GETFD, which fails harmlessly with EBADF when
    // `n` is not open; the borrow does not outlive that call's statement.
    unsafe { BorrowedFd::borrow_raw(n) }
}

/// Environment variables that describe passed descriptors: never inherited
/// by a process we start (it gets its own).
pub fn is_handover_var(key: &OsStr) -> bool {
    matches!(
        key.as_bytes(),
        b"LISTEN_PID" | b"LISTEN_FDS" | b"LISTEN_FDNAMES"
    ) || key == READY_FD_ENV
}

/// Everything the forked child needs, built before the fork (no allocation after it).
struct ExecPlan {
    /// NUL-terminated program path.
    program: CString,
    /// The argument strings and the NULL-terminated pointer array to them.
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    /// The environment; `pid_slot` points into the `LISTEN_PID=` entry.
    _envp: Vec<Vec<u8>>,
    envp_ptrs: Vec<*const libc::c_char>,
    /// Where the child writes its pid (digits, then NUL), inside `_envp`.
    pid_slot: *mut u8,
    /// Source descriptors, in the order they go to 3, 4, ….
    sources: Vec<RawFd>,
}

// SAFETY: the raw pointers point into buffers owned by the same value; they
// are only dereferenced in the forked child (a copy of this memory), never
// concurrently. `pre_exec` requires Send + Sync of its closure.
unsafe impl Send for ExecPlan {}
// SAFETY: see above.
unsafe impl Sync for ExecPlan {}

/// Room for a pid's decimal digits and the NUL.
const PID_DIGITS: usize = 12;

impl ExecPlan {
    /// Runs in the child after `fork`: only async-signal-safe calls.
    fn exec_in_child(&mut self) -> io::Result<()> {
        let n = self.sources.len() as RawFd;
        let above = FIRST_FD + n;
        // First move every source above the target range, so placing one
        // never clobbers another that still has to be moved.
        for src in self.sources.iter_mut() {
            // SAFETY: fcntl(F_DUPFD_CLOEXEC) is async-signal-safe.
            let high = unsafe { libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, above) };
            if high < 0 {
                return Err(io::Error::last_os_error());
            }
            *src = high;
        }
        for (i, src) in self.sources.iter().enumerate() {
            // dup2 clears close-on-exec on the target: exactly these survive exec.
            // SAFETY: dup2 is async-signal-safe; `src` is open (just duplicated).
            if unsafe { libc::dup2(*src, FIRST_FD + i as RawFd) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // LISTEN_PID=<our pid>: digits into the slot reserved before the fork.
        // SAFETY: getpid is async-signal-safe.
        let mut pid = unsafe { libc::getpid() } as u32;
        let mut digits = [0u8; PID_DIGITS];
        let mut len = 0;
        loop {
            digits[len] = b'0' + (pid % 10) as u8;
            len += 1;
            pid /= 10;
            if pid == 0 {
                break;
            }
        }
        for i in 0..len {
            // SAFETY: the slot has PID_DIGITS bytes (a u32 has at most 10
            // digits, the last byte stays NUL); this is the child's own copy.
            unsafe { *self.pid_slot.add(i) = digits[len - 1 - i] };
        }
        // SAFETY: program, argv and envp are NUL-terminated strings and
        // NULL-terminated arrays built before the fork; execve is
        // async-signal-safe and only returns on failure.
        unsafe {
            libc::execve(
                self.program.as_ptr(),
                self.argv_ptrs.as_ptr(),
                self.envp_ptrs.as_ptr(),
            )
        };
        Err(io::Error::last_os_error())
    }
}

fn cstring(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in an argument"))
}

/// Start `program` with `args` (the first is its `argv[0]`) and `env`, handing
/// it `sockets` as `LISTEN_FDS`/`LISTEN_FDNAMES` (at 3, 4, …, with
/// `LISTEN_PID` = the child's pid) and `ready` right after them, named by
/// `SOCKBROKER_READY_FD`. The parent's own descriptors are untouched.
pub fn spawn(
    program: &Path,
    args: &[OsString],
    env: &[(OsString, OsString)],
    sockets: &[(String, BorrowedFd<'_>)],
    ready: BorrowedFd<'_>,
) -> io::Result<std::process::Child> {
    let n = sockets.len();
    let argv: Vec<CString> = args
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<io::Result<_>>()?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());

    let names: Vec<&str> = sockets.iter().map(|(name, _)| name.as_str()).collect();
    let mut envp: Vec<Vec<u8>> = Vec::new();
    for (k, v) in env.iter().filter(|(k, _)| !is_handover_var(k)) {
        let mut e = k.as_bytes().to_vec();
        e.push(b'=');
        e.extend_from_slice(v.as_bytes());
        if e.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "NUL in the environment",
            ));
        }
        e.push(0);
        envp.push(e);
    }
    envp.push(format!("LISTEN_FDS={n}\0").into_bytes());
    // No names for no sockets: an empty LISTEN_FDNAMES is one (empty) name,
    // and a count that does not match makes the receiver reject everything.
    if n > 0 {
        envp.push(format!("LISTEN_FDNAMES={}\0", names.join(":")).into_bytes());
    }
    envp.push(format!("{READY_FD_ENV}={}\0", FIRST_FD + n as RawFd).into_bytes());
    let mut pid_entry = b"LISTEN_PID=".to_vec();
    pid_entry.extend_from_slice(&[0u8; PID_DIGITS]);
    envp.push(pid_entry);
    let last = envp.len() - 1;
    // The Vec's heap buffer does not move when `envp` (the outer Vec) does.
    let pid_slot = envp[last][b"LISTEN_PID=".len()..].as_mut_ptr();
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr().cast()).collect();
    envp_ptrs.push(std::ptr::null());

    let mut sources: Vec<RawFd> = sockets.iter().map(|(_, fd)| fd.as_raw_fd()).collect();
    sources.push(ready.as_raw_fd());
    let mut plan = ExecPlan {
        program: cstring(program.as_os_str().as_bytes())?,
        _argv: argv,
        argv_ptrs,
        _envp: envp,
        envp_ptrs,
        pid_slot,
        sources,
    };
    let mut cmd = std::process::Command::new(program);
    // SAFETY: the closure only runs `exec_in_child`, which is
    // async-signal-safe and does not allocate (see above); the borrowed
    // descriptors stay open in the parent until `spawn` returns, so they are
    // open in the child's copy.
    unsafe {
        cmd.pre_exec(move || plan.exec_in_child());
    }
    cmd.spawn()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handover_variables_are_recognised() {
        for k in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", READY_FD_ENV] {
            assert!(is_handover_var(OsStr::new(k)), "{k}");
        }
        assert!(!is_handover_var(OsStr::new("NOTIFY_SOCKET")));
        assert!(!is_handover_var(OsStr::new("LISTEN_FDS_X")));
    }

    /// A child started by `spawn` sees the sockets at 3, 4, … with its own
    /// pid in LISTEN_PID, and the ready pipe right after them.
    #[test]
    fn child_gets_sockets_at_three_and_its_own_pid() {
        let dir = tempfile::tempdir().unwrap();
        let a = std::os::unix::net::UnixListener::bind(dir.path().join("a")).unwrap();
        let b = std::os::unix::net::UnixListener::bind(dir.path().join("b")).unwrap();
        let (_r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let out = dir.path().join("out");
        let script = format!(
            "echo \"$LISTEN_PID $$ $LISTEN_FDS $LISTEN_FDNAMES ${READY_FD_ENV}\" > {out}; \
             ls -l /proc/$$/fd/3 /proc/$$/fd/4 /proc/$$/fd/5 >> {out}",
            out = out.display()
        );
        let args: Vec<OsString> = ["sh", "-c", &script].iter().map(Into::into).collect();
        let env: Vec<(OsString, OsString)> = vec![
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("LISTEN_FDS".into(), "99".into()),
        ];
        let mut child = spawn(
            Path::new("/bin/sh"),
            &args,
            &env,
            &[
                ("a".into(), std::os::fd::AsFd::as_fd(&a)),
                ("b".into(), std::os::fd::AsFd::as_fd(&b)),
            ],
            std::os::fd::AsFd::as_fd(&w),
        )
        .unwrap();
        assert!(child.wait().unwrap().success());
        let text = std::fs::read_to_string(&out).unwrap();
        let first: Vec<&str> = text.lines().next().unwrap().split(' ').collect();
        assert_eq!(first[0], first[1], "LISTEN_PID is the child's pid: {text}");
        assert_eq!(&first[2..], ["2", "a:b", "5"], "{text}");
        assert_eq!(text.matches("socket:").count(), 2, "{text}");
        assert_eq!(text.matches("pipe:").count(), 1, "{text}");
    }
}
