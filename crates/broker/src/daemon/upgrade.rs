//! SIGUSR2, upgrade in place (docs/operations.md "Upgrade"): start the binary
//! at the path this process was started from, with the same arguments and
//! every listener, and wait until it says it serves them all.
//!
//! The path, not `/proc/self/exe`: after a package upgrade replaced the file
//! by rename, `/proc/self/exe` names the old, deleted binary; the path names
//! the new one.

use std::ffi::OsString;
use std::io::Write as _;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncReadExt as _;

use crate::handover;

/// How long a successor may take to load the config and take over every
/// listener before it is stopped and this process goes on serving.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How to start this program again: the resolved path it was started from
/// and its arguments (`argv[0]` included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartCommand {
    /// The program to execute (absolute, symlinks not resolved: a symlink
    /// switched to a new version is followed at upgrade time).
    pub exe: PathBuf,
    /// Every argument, `argv[0]` first.
    pub args: Vec<OsString>,
}

impl StartCommand {
    /// This process's command line, with `argv[0]` resolved as the shell did:
    /// a path with a `/` against the current directory (now, at startup,
    /// before anything could change it), a bare name through `PATH`;
    /// `/proc/self/exe` only when neither works.
    pub fn of_this_process() -> StartCommand {
        let args: Vec<OsString> = std::env::args_os().collect();
        let argv0 = args.first().cloned().unwrap_or_default();
        let exe = resolve(Path::new(&argv0)).unwrap_or_else(|| {
            std::fs::read_link("/proc/self/exe").unwrap_or_else(|_| PathBuf::from(&argv0))
        });
        StartCommand { exe, args }
    }
}

fn resolve(argv0: &Path) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    if argv0.as_os_str().is_empty() {
        return None;
    }
    if argv0.as_os_str().as_bytes().contains(&b'/') {
        // Without `.` components: `./sockbroker` names `/dir/sockbroker`.
        return Some(if argv0.is_absolute() {
            argv0.components().collect()
        } else {
            std::env::current_dir()
                .ok()?
                .join(argv0)
                .components()
                .collect()
        });
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(argv0))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
            }
        })
}

/// Start the successor with `fds` and wait up to `timeout` for its
/// [`handover::READY_MESSAGE`]. Returns its pid; on failure it has been
/// stopped (if it still ran) and the error says what happened.
pub async fn start_successor(
    start: &StartCommand,
    fds: &[(String, BorrowedFd<'_>)],
    timeout: Duration,
) -> Result<u32, String> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| format!("cannot create the ready pipe: {e}"))?;
    let env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let mut child = handover::spawn(&start.exe, &start.args, &env, fds, w.as_fd())
        .map_err(|e| format!("cannot start {}: {e}", start.exe.display()))?;
    drop(w);
    let pid = child.id();
    tracing::info!(pid, exe = %start.exe.display(), listeners = fds.len(),
        "upgrade: started the new process; waiting until it is ready");
    let mut said = Vec::new();
    let read = async {
        let rx = tokio::net::unix::pipe::Receiver::from_owned_fd(r)?;
        rx.take(64).read_to_end(&mut said).await
    };
    let waited = tokio::time::timeout(timeout, read).await;
    if matches!(waited, Ok(Ok(_))) && said.starts_with(handover::READY_MESSAGE) {
        return Ok(pid);
    }
    // Not ready: say why, and make sure it is gone.
    let timed_out = waited.is_err();
    let why = match waited {
        Err(_) => format!("was not ready within {timeout:?} and was stopped"),
        Ok(Err(e)) => format!("could not be heard from (its ready pipe: {e})"),
        Ok(Ok(_)) => "gave up before it was ready".to_string(),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if tokio::time::Instant::now() < deadline && !timed_out => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            _ => {
                let _ = child.kill();
                break child.wait().ok();
            }
        }
    };
    let ended = status.map(|st| format!(" ({st})")).unwrap_or_default();
    Err(format!(
        "the new process {} (pid {pid}) {why}{ended}; its own log lines say why: fix that and send SIGUSR2 again",
        start.exe.display()
    ))
}

/// In the successor: tell the previous process that we serve every tenant.
pub fn tell_ready(pipe: OwnedFd) {
    let mut f = std::fs::File::from(pipe);
    if let Err(e) = f.write_all(handover::READY_MESSAGE) {
        tracing::warn!(error = %e, "cannot tell the previous process that we are ready");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv0_resolution() {
        assert_eq!(
            resolve(Path::new("/usr/bin/x")),
            Some(PathBuf::from("/usr/bin/x"))
        );
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(resolve(Path::new("target/x")), Some(cwd.join("target/x")));
        assert_eq!(resolve(Path::new("./x")), Some(cwd.join("x")));
        assert_eq!(resolve(Path::new("/a/./b")), Some(PathBuf::from("/a/b")));
        // A bare name is found through PATH (sh is everywhere).
        let sh = resolve(Path::new("sh")).unwrap();
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{sh:?}");
        assert_eq!(resolve(Path::new("")), None);
    }
}
