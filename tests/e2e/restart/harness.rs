//! What the restart tests share: handing descriptors to a broker the way
//! systemd does, a stand-in for systemd's notification socket and
//! descriptor store, continuous load, and a broker run from its own copy of
//! the binary (so a test can replace that file as a package upgrade does).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use sockbroker_e2e::*;

/// The tests here clear close-on-exec on descriptors to hand them to a
/// broker; run them one at a time so no other test's child inherits those.
pub(crate) static SERIAL: Mutex<()> = Mutex::new(());

/// Tenant settings: owned by whoever runs the tests.
pub(crate) fn me(extra: &str) -> String {
    format!(
        "uid: {}\ngid: {}\n{extra}",
        nix::unistd::geteuid(),
        nix::unistd::getegid()
    )
}

pub(crate) fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Receiving descriptors (SCM_RIGHTS) needs `OwnedFd::from_raw_fd`: the one
/// place in this file allowed `unsafe`.
#[allow(unsafe_code)]
pub(crate) mod received {
    use std::os::fd::{FromRawFd, OwnedFd, RawFd};

    /// Own descriptors the kernel just installed in this process for us.
    pub fn own(fds: Vec<RawFd>) -> Vec<OwnedFd> {
        // SAFETY: these numbers come from an SCM_RIGHTS message received a
        // moment ago: new descriptors nothing else in the process owns.
        fds.into_iter()
            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
            .collect()
    }
}

/// A stand-in for systemd's notification socket: records every datagram and
/// keeps the descriptors sent with `FDSTORE=1`, by `FDNAME`.
pub(crate) struct NotifySocket {
    pub(crate) path: PathBuf,
    pub(crate) sock: UnixDatagram,
    /// Every message received so far.
    pub(crate) messages: Vec<String>,
    /// The descriptor store: FDNAME → descriptors.
    pub(crate) store: BTreeMap<String, Vec<OwnedFd>>,
}

impl NotifySocket {
    pub(crate) fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        NotifySocket {
            path,
            sock,
            messages: Vec::new(),
            store: BTreeMap::new(),
        }
    }

    /// The environment a broker needs to talk to us with a descriptor store.
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("NOTIFY_SOCKET", self.path.display().to_string()),
            ("FDSTORE", "16".into()),
        ]
    }

    /// Receive what is there (up to 100 ms of quiet), handling the store
    /// messages as systemd does.
    pub(crate) fn poll(&mut self) {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
        loop {
            let mut buf = [0u8; 4096];
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let mut space = nix::cmsg_space!([std::os::fd::RawFd; 16]);
            let (text, fds) = match recvmsg::<UnixAddr>(
                self.sock.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(msg) => {
                    let mut fds = Vec::new();
                    for c in msg.cmsgs().unwrap() {
                        if let ControlMessageOwned::ScmRights(r) = c {
                            fds.extend(r);
                        }
                    }
                    let n = msg.bytes;
                    (String::from_utf8_lossy(&buf[..n]).into_owned(), fds)
                }
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(e) => panic!("recvmsg: {e}"),
            };
            let fds = received::own(fds);
            let name = text
                .lines()
                .find_map(|l| l.strip_prefix("FDNAME="))
                .unwrap_or("stored")
                .to_owned();
            if text.lines().any(|l| l == "FDSTORE=1") {
                self.store.entry(name).or_default().extend(fds);
            } else if text.lines().any(|l| l == "FDSTOREREMOVE=1") {
                self.store.remove(&name);
            }
            self.messages.push(text);
        }
    }

    /// Wait until a received message has a line `line`, `n` times in all.
    pub(crate) fn wait_line_n(&mut self, line: &str, n: usize) {
        let end = Instant::now() + DEADLINE;
        loop {
            self.poll();
            let seen = self
                .messages
                .iter()
                .filter(|m| m.lines().any(|l| l == line))
                .count();
            if seen >= n {
                return;
            }
            assert!(
                Instant::now() < end,
                "no {line:?} x{n} on NOTIFY_SOCKET; got {:?}",
                self.messages
            );
        }
    }
}

/// Start `sockbroker run` with `fds` handed over the way systemd does
/// (descriptors 3, 4, … with `LISTEN_FDS`, `LISTEN_FDNAMES`, and
/// `LISTEN_PID` = the broker's pid): bash places them and `exec`s the
/// broker, so its `$$` is the broker's pid. Callers hold [`serial`].
pub(crate) fn start_with_fds(
    config: &Path,
    fds: &[(&str, BorrowedFd<'_>)],
    envs: &[(&str, String)],
) -> Broker {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let n = fds.len();
    let mut script = String::from("exec");
    for (i, (_, fd)) in fds.iter().enumerate() {
        script.push_str(&format!(" {}<&{}", 1000 + i, fd.as_raw_fd()));
    }
    // Close the originals (bash inherited them without close-on-exec).
    script.push_str("; exec");
    for (_, fd) in fds {
        script.push_str(&format!(" {}<&-", fd.as_raw_fd()));
    }
    script.push_str("; exec");
    for i in 0..n {
        script.push_str(&format!(" {}<&{} {}<&-", 3 + i, 1000 + i, 1000 + i));
    }
    let names: Vec<&str> = fds.iter().map(|(name, _)| *name).collect();
    script.push_str(&format!(
        "; export LISTEN_PID=$$ LISTEN_FDS={n} LISTEN_FDNAMES={}; exec \"$0\" \"$@\"",
        names.join(":")
    ));
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(script)
        .arg(broker_bin())
        .arg("run")
        .arg("--config")
        .arg(config)
        .args(["--retry-interval", "200ms"]);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    for (_, fd) in fds {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
    }
    let b = Broker::spawn(cmd);
    for (_, fd) in fds {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).unwrap();
    }
    b
}

pub(crate) fn inode(path: &Path) -> u64 {
    std::fs::symlink_metadata(path).unwrap().ino()
}

/// A process we did not spawn ourselves (the upgraded broker): killed on drop.
pub(crate) struct Pid(pub(crate) i32);

impl Pid {
    pub(crate) fn alive(&self) -> bool {
        // A zombie (reparented, not reaped yet) counts as gone.
        std::fs::read_to_string(format!("/proc/{}/stat", self.0))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
    }
}

impl Drop for Pid {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0), Signal::SIGKILL);
    }
}

/// The pid in the old broker's "handed over" log line.
pub(crate) fn new_pid(old: &Broker) -> Pid {
    old.wait_log("handed over to the new process");
    let logs = old.logs();
    let at = logs.find("new_pid=").expect("new_pid in the log") + "new_pid=".len();
    let digits: String = logs[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Pid(digits.parse().unwrap())
}

/// Continuous connect → round trip → close on every path, from a few
/// threads, until stopped; counts successes and keeps every failure.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    pub(crate) fn start(paths: &[PathBuf], threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let handles = (0..threads)
            .map(|i| {
                let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
                let paths = paths.to_vec();
                std::thread::spawn(move || {
                    let mut n = i;
                    while !stop.load(Ordering::Relaxed) {
                        let path = &paths[n % paths.len()];
                        n += 1;
                        let msg = format!("ping {i} {n}\n");
                        let r = (|| -> std::io::Result<()> {
                            let mut c = UnixStream::connect(path)?;
                            c.set_read_timeout(Some(DEADLINE))?;
                            c.write_all(msg.as_bytes())?;
                            let mut back = vec![0u8; msg.len()];
                            c.read_exact(&mut back)?;
                            if back != msg.as_bytes() {
                                return Err(std::io::Error::other("wrong echo"));
                            }
                            Ok(())
                        })();
                        match r {
                            Ok(()) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => failures
                                .lock()
                                .unwrap()
                                .push(format!("{}: {e}", path.display())),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failures,
            threads: handles,
        }
    }

    pub(crate) fn ok(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    /// Wait for `more` further successful round trips.
    pub(crate) fn wait_more(&self, more: usize) {
        let target = self.ok() + more;
        wait_until(&format!("{more} more round trips"), DEADLINE, || {
            self.ok() >= target
        });
    }

    /// Stop; return (successes, failures).
    pub(crate) fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
        (self.ok(), self.failures.lock().unwrap().clone())
    }
}

/// Replace the file at `path` by a copy of `from`, by rename (as dpkg does).
pub(crate) fn install_by_rename(from: &Path, path: &Path) {
    let tmp = path.with_extension("dpkg-new");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A scene whose broker runs from a copy of the binary in its own directory
/// (so the test can replace that file), with a metrics listener.
pub(crate) fn upgrade_scene(
    s: &Scene,
    tenants: &[&str],
    envs: &[(&str, String)],
) -> (PathBuf, Broker, String) {
    let bin_dir = s.dir.path().join("bin");
    std::fs::create_dir(&bin_dir).unwrap();
    let exe = bin_dir.join("sockbroker");
    std::fs::copy(broker_bin(), &exe).unwrap();
    let ids = me("");
    let t: Vec<(&str, &str)> = tenants.iter().map(|n| (*n, ids.as_str())).collect();
    for _ in 0..5 {
        let addr = format!("127.0.0.1:{}", free_port());
        write_config(
            &s.config(),
            &format!("metrics:\n  listen: {addr}\n{}", s.yaml(&t)),
        );
        let mut cmd = Command::new(&exe);
        cmd.arg("run")
            .arg("--config")
            .arg(s.config())
            .args(["--retry-interval", "200ms"]);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut b = Broker::spawn(cmd);
        let mut exited = false;
        wait_until("the broker to answer /healthz (or exit)", DEADLINE, || {
            exited = b.child.try_wait().unwrap().is_some();
            exited || matches!(http_get(&addr, "/healthz"), Ok((200, _)))
        });
        if !exited {
            for n in tenants {
                wait_socket(&s.sock(n));
            }
            return (exe, b, addr);
        }
    }
    panic!("could not start the broker on a free port");
}
