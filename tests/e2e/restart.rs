//! Restarts, crashes and upgrades without a gap (docs/operations.md
//! "Restarts, crashes and upgrades"), with the real binary:
//! SIGUSR2 under load, a failed upgrade, sockets handed over with
//! `LISTEN_FDS`, the descriptor store across `kill -9`, what SIGTERM and
//! SIGINT leave behind, the second signal, and a real engine restarted under
//! a running broker.
#![deny(unsafe_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use sockbroker_e2e::*;

/// The tests here clear close-on-exec on descriptors to hand them to a
/// broker; run them one at a time so no other test's child inherits those.
static SERIAL: Mutex<()> = Mutex::new(());

/// Tenant settings: owned by whoever runs the tests.
fn me(extra: &str) -> String {
    format!(
        "uid: {}\ngid: {}\n{extra}",
        nix::unistd::geteuid(),
        nix::unistd::getegid()
    )
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Receiving descriptors (SCM_RIGHTS) needs `OwnedFd::from_raw_fd`: the one
/// place in this file allowed `unsafe`.
#[allow(unsafe_code)]
mod received {
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
struct NotifySocket {
    path: PathBuf,
    sock: UnixDatagram,
    /// Every message received so far.
    messages: Vec<String>,
    /// The descriptor store: FDNAME → descriptors.
    store: BTreeMap<String, Vec<OwnedFd>>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
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
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("NOTIFY_SOCKET", self.path.display().to_string()),
            ("FDSTORE", "16".into()),
        ]
    }

    /// Receive what is there (up to 100 ms of quiet), handling the store
    /// messages as systemd does.
    fn poll(&mut self) {
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
    fn wait_line_n(&mut self, line: &str, n: usize) {
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
fn start_with_fds(
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

fn inode(path: &Path) -> u64 {
    std::fs::symlink_metadata(path).unwrap().ino()
}

/// A process we did not spawn ourselves (the upgraded broker): killed on drop.
struct Pid(i32);

impl Pid {
    fn alive(&self) -> bool {
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
fn new_pid(old: &Broker) -> Pid {
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
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(paths: &[PathBuf], threads: usize) -> Load {
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

    fn ok(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    /// Wait for `more` further successful round trips.
    fn wait_more(&self, more: usize) {
        let target = self.ok() + more;
        wait_until(&format!("{more} more round trips"), DEADLINE, || {
            self.ok() >= target
        });
    }

    /// Stop; return (successes, failures).
    fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
        (self.ok(), self.failures.lock().unwrap().clone())
    }
}

/// Replace the file at `path` by a copy of `from`, by rename (as dpkg does).
fn install_by_rename(from: &Path, path: &Path) {
    let tmp = path.with_extension("dpkg-new");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A scene whose broker runs from a copy of the binary in its own directory
/// (so the test can replace that file), with a metrics listener.
fn upgrade_scene(s: &Scene, tenants: &[&str]) -> (PathBuf, Broker, String) {
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

#[test]
fn sigusr2_upgrades_in_place_under_load() {
    let _serial = serial();
    let s = Scene::new();
    let tenants = ["a", "b", "c"];
    let (exe, mut old, addr) = upgrade_scene(&s, &tenants);
    let paths: Vec<PathBuf> = tenants.iter().map(|n| s.sock(n)).collect();
    let inodes: Vec<u64> = paths.iter().map(|p| inode(p)).collect();
    // A long stream (think `docker logs -f`) opened before the upgrade.
    let mut stream = echo_conn(&s.sock("a"), b"before\n");
    let load = Load::start(&paths, 4);
    load.wait_more(50);

    // A package upgrade: the binary's path now names a new file.
    install_by_rename(&broker_bin(), &exe);
    let new_ino = inode(&exe);
    old.signal(Signal::SIGUSR2);
    let new = new_pid(&old);
    load.wait_more(200);
    let (ok, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} failed of {}: {:?}",
        failures.len(),
        ok + failures.len(),
        &failures[..failures.len().min(5)]
    );

    // The new process runs the new file at that path (not a deleted one).
    let proc_exe = std::fs::read_link(format!("/proc/{}/exe", new.0)).unwrap();
    assert_eq!(proc_exe, exe, "/proc/{}/exe", new.0);
    assert_eq!(
        std::fs::metadata(format!("/proc/{}/exe", new.0))
            .unwrap()
            .ino(),
        new_ino
    );
    // Same sockets, served by the new process.
    let now: Vec<u64> = paths.iter().map(|p| inode(p)).collect();
    assert_eq!(now, inodes, "socket inodes changed");
    for p in &paths {
        echo_conn(p, b"after\n");
    }
    assert!(matches!(http_get(&addr, "/healthz"), Ok((200, _))));
    // The stream opened before still works, served by the old process,
    // which exits 0 once it ends.
    echo_again(&mut stream, b"still here\n");
    assert!(
        old.child.try_wait().unwrap().is_none(),
        "the old process left before its stream ended"
    );
    drop(stream);
    let st = old.wait_exit(DEADLINE);
    assert_eq!(st.code(), Some(0), "{}", old.logs());
    assert!(new.alive());
    for p in &paths {
        echo_conn(p, b"after the old one left\n");
    }
    assert_eq!(paths.iter().map(|p| inode(p)).collect::<Vec<_>>(), inodes);
}

#[test]
fn failed_upgrade_leaves_the_old_process_serving() {
    let _serial = serial();
    let s = Scene::new();
    let tenants = ["a", "b"];
    let (exe, old, addr) = upgrade_scene(&s, &tenants);
    let paths: Vec<PathBuf> = tenants.iter().map(|n| s.sock(n)).collect();
    let inodes: Vec<u64> = paths.iter().map(|p| inode(p)).collect();
    // The "new version" at that path exits 1 at once.
    let bad = s.dir.path().join("bad");
    std::fs::write(&bad, "#!/bin/sh\necho 'broken build' >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(&bad, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    install_by_rename(&bad, &exe);
    let load = Load::start(&paths, 3);
    load.wait_more(30);
    old.signal(Signal::SIGUSR2);
    old.wait_log("upgrade failed; this process keeps serving");
    load.wait_more(100);
    let (ok, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} failed of {}: {:?}",
        failures.len(),
        ok,
        &failures[..failures.len().min(5)]
    );
    assert!(old.logs().contains("exit status: 1"), "{}", old.logs());
    let (_, body) = http_get(&addr, "/metrics").unwrap();
    assert_eq!(
        metric_value(&body, "sockbroker_upgrades_total{result=\"failure\"}"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(paths.iter().map(|p| inode(p)).collect::<Vec<_>>(), inodes);
    for p in &paths {
        echo_conn(p, b"still served\n");
    }
}

#[test]
fn handed_over_sockets_are_adopted_and_mismatched_ones_closed() {
    let _serial = serial();
    let s = Scene::new();
    s.write(&[("a", &me("mode: \"0660\"")), ("b", &me(""))]);
    // a: a listening socket at a's path, 0600 (the config says 0660).
    std::fs::create_dir(s.dir.path().join("a")).unwrap();
    std::fs::set_permissions(
        s.dir.path().join("a"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let a = UnixListener::bind(s.sock("a")).unwrap();
    std::fs::set_permissions(
        s.sock("a"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let a_ino = inode(&s.sock("a"));
    // b: named b but bound elsewhere (b's path holds a stale socket);
    // ghost: no such tenant.
    std::fs::create_dir(s.dir.path().join("b")).unwrap();
    std::fs::set_permissions(
        s.dir.path().join("b"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    drop(UnixListener::bind(s.sock("b")).unwrap());
    let elsewhere = s.dir.path().join("elsewhere.sock");
    let b = UnixListener::bind(&elsewhere).unwrap();
    let ghost_path = s.dir.path().join("ghost.sock");
    let ghost = UnixListener::bind(&ghost_path).unwrap();
    let broker = start_with_fds(
        &s.config(),
        &[("a", a.as_fd()), ("b", b.as_fd()), ("ghost", ghost.as_fd())],
        &[],
    );
    wait_socket(&s.sock("b"));
    broker.wait_log("closing handed-over socket");
    // Only the broker holds them now.
    drop((a, b, ghost));
    // a: the same inode, owner/mode fixed in place, relayed.
    let (_, _, mode, ino) = socket_meta(&s.sock("a"));
    assert_eq!(ino, a_ino);
    assert_eq!(mode, 0o660);
    echo_conn(&s.sock("a"), b"adopted\n");
    let logs = broker.logs();
    assert!(logs.contains("adopted=true"), "{logs}");
    assert!(
        logs.contains(&format!("(it was bound as {})", elsewhere.display())),
        "{logs}"
    );
    // b: bound afresh at its path; the mismatched socket and the ghost were closed.
    echo_conn(&s.sock("b"), b"fresh\n");
    for p in [&elsewhere, &ghost_path] {
        let e = UnixStream::connect(p).unwrap_err();
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "{}: {e}",
            p.display()
        );
    }
}

#[test]
fn descriptor_store_bridges_a_kill_9() {
    let _serial = serial();
    let s = Scene::new();
    s.write(&[("a", &me("")), ("b", &me(""))]);
    let mut ns = NotifySocket::bind(s.dir.path());
    let env = ns.env();
    let envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut first = Broker::start(&s.config(), &["--retry-interval", "200ms"], &envs);
    ns.wait_line_n("READY=1", 1);
    ns.wait_line_n("FDSTORE=1", 2);
    assert_eq!(
        ns.store.keys().collect::<Vec<_>>(),
        ["a", "b"],
        "{:?}",
        ns.messages
    );
    let inodes = [inode(&s.sock("a")), inode(&s.sock("b"))];

    first.signal(Signal::SIGKILL);
    first.wait_exit(DEADLINE);
    // The paths stay; a client connecting in the gap waits in the backlog.
    let mut early = UnixStream::connect(s.sock("a")).expect("connect during the gap");
    early.set_read_timeout(Some(DEADLINE)).unwrap();
    early.write_all(b"in the gap\n").unwrap();

    // The next instance is handed what the store kept.
    let a = ns.store["a"][0].try_clone().unwrap();
    let b = ns.store["b"][0].try_clone().unwrap();
    let mut second = start_with_fds(&s.config(), &[("a", a.as_fd()), ("b", b.as_fd())], &env);
    drop((a, b));
    let mut back = [0u8; 11];
    early.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"in the gap\n");
    assert_eq!([inode(&s.sock("a")), inode(&s.sock("b"))], inodes);
    echo_conn(&s.sock("b"), b"b too\n");
    ns.wait_line_n("READY=1", 2);

    // SIGTERM under a store: the files stay (systemd keeps their inodes).
    second.signal(Signal::SIGTERM);
    assert_eq!(second.wait_exit(DEADLINE).code(), Some(0));
    assert_eq!([inode(&s.sock("a")), inode(&s.sock("b"))], inodes);
    // Still served from the store by the next one; SIGINT removes them for good.
    let a = ns.store["a"][0].try_clone().unwrap();
    let b = ns.store["b"][0].try_clone().unwrap();
    let mut third = start_with_fds(&s.config(), &[("a", a.as_fd()), ("b", b.as_fd())], &env);
    drop((a, b));
    third.wait_log("adopted=true");
    echo_conn(&s.sock("a"), b"third\n");
    third.signal(Signal::SIGINT);
    assert_eq!(third.wait_exit(DEADLINE).code(), Some(0));
    wait_gone(&s.sock("a"));
    wait_gone(&s.sock("b"));
    ns.wait_line_n("FDSTOREREMOVE=1", 2);
    assert!(ns.store.is_empty(), "{:?}", ns.store.keys());
}

#[test]
fn second_signal_exits_at_once_and_removes_the_metrics_socket() {
    let _serial = serial();
    let s = Scene::new();
    let metrics_sock = s.dir.path().join("metrics.sock");
    write_config(
        &s.config(),
        &format!(
            "metrics:\n  listen: unix:{}\n{}",
            metrics_sock.display(),
            s.yaml(&[("a", &me("drain_timeout: 60s"))])
        ),
    );
    let mut b = Broker::start(&s.config(), &[], &[]);
    wait_socket(&s.sock("a"));
    wait_socket(&metrics_sock);
    // An open connection keeps the drain going.
    let _open = echo_conn(&s.sock("a"), b"hold\n");
    b.signal(Signal::SIGTERM);
    b.wait_log("draining open connections");
    wait_gone(&s.sock("a"));
    b.signal(Signal::SIGTERM);
    let st = b.wait_exit(DEADLINE);
    assert_eq!(st.code(), Some(1));
    assert!(
        std::fs::symlink_metadata(&metrics_sock).is_err(),
        "the unix: metrics socket was left behind"
    );
}

/// The real remapped engine restarted under a running broker: clients
/// through the broker work again by themselves, and the broker reports the
/// upstream as down meanwhile.
#[test]
fn engine_restart_under_a_running_broker() {
    if skip_unless_root("a Docker engine")
        || !have("dockerd", "--version", "apt-get install docker.io")
    {
        return;
    }
    let engine = match DockerEngine::start(1, "dockremap") {
        Ok(e) => e,
        Err(e) => panic!("{e}"),
    };
    let _serial = serial();
    let s = Scene::new();
    let yaml = |addr: &str| {
        format!(
            "metrics:\n  listen: {addr}\ndefaults:\n  upstream: {}\ntenants:\n  t:\n    listen: {}\n    uid: 0\n    gid: 0\n",
            engine.sock.display(),
            s.sock("t").display()
        )
    };
    let (broker, addr) = start_with_metrics(&s.config(), yaml, &["--retry-interval", "200ms"], &[]);
    wait_socket(&s.sock("t"));
    let version = || {
        let mut c = Command::new("docker");
        c.arg("-H")
            .arg(format!("unix://{}", s.sock("t").display()))
            .args(["version", "--format", "{{.Server.Version}}"]);
        run_cmd(c, Duration::from_secs(30))
    };
    let o = version();
    assert!(o.status.success(), "{}", output_text(&o));
    let upstream_up = || {
        let (_, body) = http_get(&addr, "/metrics").unwrap();
        metric_value(&body, "sockbroker_upstream_up{tenant=\"t\"}")
    };
    wait_until("upstream_up 1", DEADLINE, || upstream_up() == Some(1.0));

    // Stop the engine (its socket goes away), then start it again.
    let mut c = Command::new("bash");
    c.arg(workspace().join("tests/docker/teardown.sh"))
        .arg("1")
        .env("SB_DOCKER_ROOT", docker_root());
    run_ok(c, Duration::from_secs(120));
    assert!(!version().status.success());
    wait_until("upstream_up 0", DEADLINE, || upstream_up() == Some(0.0));
    let (_, tenants) = http_get(&addr, "/tenants").unwrap();
    assert!(
        tenants.contains("\"upstream_state\": \"down\""),
        "{tenants}"
    );
    let mut c = Command::new("bash");
    c.arg(workspace().join("tests/docker/setup.sh"))
        .args(["engine", "1", "dockremap"])
        .env("SB_DOCKER_ROOT", docker_root());
    run_ok(c, Duration::from_secs(300));
    // Nobody touches the broker: clients work again.
    wait_until(
        "docker version through the broker",
        Duration::from_secs(60),
        || version().status.success(),
    );
    wait_until("upstream_up 1 again", DEADLINE, || {
        upstream_up() == Some(1.0)
    });
    assert!(
        broker.logs().contains("upstream unavailable"),
        "{}",
        broker.logs()
    );
    drop(engine);
}

/// Bug: a failed in-place owner change was only logged, and `/tenants`
/// showed the desired owner as if applied. Now the tenant is degraded with
/// the reason, `/tenants` shows the socket's real owner, and the change is
/// tried again (here: the config reverts it, and the tenant is up again).
#[test]
fn failed_owner_change_shows_the_tenant_degraded_with_the_real_owner() {
    if skip_unless_root("runs the broker as another uid, which may not chown") {
        return;
    }
    let _serial = serial();
    const U: u32 = 4242;
    let s = Scene::new();
    let socks = s.dir.path().join("socks");
    std::fs::create_dir(&socks).unwrap();
    nix::unistd::chown(&socks, Some(U.into()), Some(U.into())).unwrap();
    std::fs::set_permissions(&socks, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let sock = socks.join("a.sock");
    let yaml = |addr: &str, uid: u32| {
        format!(
            "metrics:\n  listen: {addr}\ndefaults:\n  upstream: {}\ntenants:\n  a:\n    listen: {}\n    uid: {uid}\n    gid: {U}\n    mode: \"0660\"\n",
            s.upstream.path.display(),
            sock.display()
        )
    };
    let (_b, addr) = (0..5)
        .find_map(|_| {
            let addr = format!("127.0.0.1:{}", free_port());
            write_config(&s.config(), &yaml(&addr, U));
            let b = Broker::start_wrapped(
                &[
                    "setpriv",
                    &format!("--reuid={U}"),
                    &format!("--regid={U}"),
                    "--clear-groups",
                ],
                &s.config(),
                &["--retry-interval", "200ms"],
                &[],
            );
            let mut b = b;
            let mut exited = false;
            wait_until("/healthz (or exit)", DEADLINE, || {
                exited = b.child.try_wait().unwrap().is_some();
                exited || matches!(http_get(&addr, "/healthz"), Ok((200, _)))
            });
            (!exited).then_some((b, addr))
        })
        .expect("a free port");
    wait_socket(&sock);
    let tenant = || -> serde_json::Value {
        let (_, body) = http_get(&addr, "/tenants").unwrap();
        serde_json::from_str::<serde_json::Value>(&body).unwrap()[0].clone()
    };
    assert_eq!(tenant()["state"], "up");

    // A uid this unprivileged broker cannot give the socket.
    write_config(&s.config(), &yaml(&addr, U + 1));
    wait_until("tenant a degraded", DEADLINE, || {
        tenant()["state"] == "degraded"
    });
    let t = tenant();
    assert_eq!(t["uid"], U, "{t}");
    assert!(t["reason"].as_str().unwrap().contains("chown"), "{t}");
    assert_eq!(socket_meta(&sock).0, U);
    let (code, body) = http_get(&addr, "/readyz").unwrap();
    assert_eq!(code, 503);
    assert!(body.contains("tenant a degraded"), "{body}");
    // Still serving meanwhile.
    echo_conn(&sock, b"degraded but serving\n");

    // The config asks for what the socket has again: up.
    write_config(&s.config(), &yaml(&addr, U));
    wait_until("tenant a up again", DEADLINE, || tenant()["state"] == "up");
    assert!(matches!(http_get(&addr, "/readyz"), Ok((200, _))));
}

/// The shipped units give the broker a descriptor store, tell it so, let the
/// upgraded process talk to systemd, start before the engine, and never
/// delete the socket files systemd hands back.
#[test]
fn systemd_units_keep_sockets_across_restarts() {
    for unit in ["sockbroker.service", "sockbroker-user.service"] {
        let text = std::fs::read_to_string(workspace().join("deploy/systemd").join(unit)).unwrap();
        let values = |key: &str| -> Vec<String> {
            text.lines()
                .filter_map(|l| l.trim().strip_prefix(&format!("{key}=")))
                .map(str::to_owned)
                .collect()
        };
        let max = values("FileDescriptorStoreMax");
        assert_eq!(max.len(), 1, "{unit}: FileDescriptorStoreMax=");
        assert!(max[0].parse::<u32>().unwrap() > 0, "{unit}");
        assert!(
            values("Environment").contains(&format!("FDSTORE={}", max[0])),
            "{unit}: Environment=FDSTORE= must equal FileDescriptorStoreMax="
        );
        assert_eq!(values("NotifyAccess"), ["all"], "{unit}");
        assert!(
            values("Before")
                .iter()
                .any(|v| v.split(' ').any(|u| u == "docker.service")),
            "{unit}: Before=docker.service"
        );
        assert!(
            values("After")
                .iter()
                .all(|v| !v.contains("docker.service")),
            "{unit}: must not start after docker.service"
        );
        assert!(
            values("ExecStartPre")
                .iter()
                .all(|v| !v.contains("-delete")),
            "{unit}: deleting sockets before start orphans what the store hands back"
        );
    }
}
