//! End-to-end tests of the foundation: the real binary, real sockets, real uids.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use sockbroker_e2e::*;

const ROOTMAP: u32 = 231072;

fn config(dir: &Path, upstream: &Path, tenants: &[(&str, &str)]) -> String {
    config_yaml(dir, upstream, tenants)
}

struct Setup {
    dir: tempfile::TempDir,
    upstream: Upstream,
}

impl Setup {
    fn new() -> Setup {
        let Scene { dir, upstream } = Scene::new();
        Setup { dir, upstream }
    }
    fn sock(&self, tenant: &str) -> std::path::PathBuf {
        self.dir.path().join(tenant).join("docker.sock")
    }
    fn start(&self, tenants: &[(&str, &str)]) -> Broker {
        let cfg = self.dir.path().join("sockbroker.yaml");
        write_config(&cfg, &config(self.dir.path(), &self.upstream.path, tenants));
        Broker::start(&cfg, &["--retry-interval", "200ms"], &[])
    }
}

const CONTAINER_ROOT: &str = "uid: 231072\ngid: 231072\nmode: \"0660\"";

#[test]
fn container_uid_relays_both_ways_with_half_close() {
    if skip_unless_root("chown to other uids, setpriv, user namespaces") {
        return;
    }
    let s = Setup::new();
    let _b = s.start(&[("ci", CONTAINER_ROOT)]);
    wait_socket(&s.sock("ci"));
    let input = payload(3 << 20, 1);
    let out = run_client(&s.sock("ci"), &input, As::Ids(ROOTMAP, ROOTMAP));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), input.len());
    assert!(out.stdout == input, "reply differs from what was sent");
}

#[test]
fn socket_has_owner_and_mode_and_no_temporary_names_remain() {
    if skip_unless_root("chown to other uids, setpriv, user namespaces") {
        return;
    }
    let s = Setup::new();
    let _b = s.start(&[
        ("ci", CONTAINER_ROOT),
        ("ro", "uid: 1000\ngid: 1001\nmode: \"0600\""),
    ]);
    wait_socket(&s.sock("ci"));
    wait_socket(&s.sock("ro"));
    let (uid, gid, mode, _) = socket_meta(&s.sock("ci"));
    assert_eq!((uid, gid, mode), (ROOTMAP, ROOTMAP, 0o660));
    let (uid, gid, mode, _) = socket_meta(&s.sock("ro"));
    assert_eq!((uid, gid, mode), (1000, 1001, 0o600));
    for t in ["ci", "ro"] {
        let names: Vec<_> = std::fs::read_dir(s.dir.path().join(t))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["docker.sock".to_string()], "tenant {t}");
    }
}

#[test]
fn other_uid_is_refused_by_the_file_mode() {
    if skip_unless_root("chown to other uids, setpriv, user namespaces") {
        return;
    }
    let s = Setup::new();
    let _b = s.start(&[("ci", CONTAINER_ROOT)]);
    wait_socket(&s.sock("ci"));
    let out = run_client(&s.sock("ci"), b"hello", As::Ids(1000, 1000));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn allow_list_refuses_peers_outside_it() {
    if skip_unless_root("chown to other uids, setpriv, user namespaces") {
        return;
    }
    let s = Setup::new();
    let b = s.start(&[(
        "ci",
        "uid: 231072\ngid: 231072\nmode: \"0660\"\nallow:\n  uids: [\"231072\"]",
    )]);
    wait_socket(&s.sock("ci"));
    // Host uid 231073 with group 231072: the socket's group bit lets it connect,
    // so only the peer-credential check stands in the way.
    let out = run_client(&s.sock("ci"), b"hello", As::Ids(ROOTMAP + 1, ROOTMAP));
    assert!(out.stdout.is_empty(), "refused peer got data back");
    // Not just "peer_not_allowed": wait_socket's own probe (as root) is
    // refused too, and log lines reach stderr a few ms after the fact.
    b.wait_log("uid=231073");
    assert!(b.logs().contains("peer_not_allowed"), "{}", b.logs());
    let out = run_client(&s.sock("ci"), b"hello", As::Ids(ROOTMAP, ROOTMAP));
    assert_eq!(out.stdout, b"hello");
}

#[test]
fn client_in_a_real_user_namespace_gets_through() {
    if skip_unless_root("chown to other uids, setpriv, user namespaces") {
        return;
    }
    let s = Setup::new();
    let b = s.start(&[("ci", CONTAINER_ROOT)]);
    wait_socket(&s.sock("ci"));
    let out = run_client(
        &s.sock("ci"),
        b"from the namespace",
        As::UsernsRoot(ROOTMAP, ROOTMAP),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"from the namespace");
    // The broker saw the host uid the namespace's root maps to.
    b.wait_log("uid=231072");
    // A namespace whose root maps elsewhere is refused by the socket's mode.
    let out = run_client(&s.sock("ci"), b"x", As::UsernsRoot(300000, 300000));
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn stale_socket_is_replaced_and_a_regular_file_is_left_alone() {
    if skip_unless_root("chown to other uids, setpriv, user namespaces") {
        return;
    }
    let s = Setup::new();
    std::fs::create_dir_all(s.dir.path().join("stale")).unwrap();
    std::fs::create_dir_all(s.dir.path().join("file")).unwrap();
    drop(std::os::unix::net::UnixListener::bind(s.sock("stale")).unwrap());
    std::fs::write(s.sock("file"), b"not a socket\n").unwrap();
    let b = s.start(&[
        ("stale", CONTAINER_ROOT),
        ("file", CONTAINER_ROOT),
        ("ok", CONTAINER_ROOT),
    ]);
    wait_socket(&s.sock("stale"));
    wait_socket(&s.sock("ok"));
    b.wait_log("regular file");
    assert_eq!(std::fs::read(s.sock("file")).unwrap(), b"not a socket\n");
    let out = run_client(&s.sock("ok"), b"still served", As::Me);
    assert_eq!(out.stdout, b"still served");
    let out = run_client(&s.sock("stale"), b"replaced", As::Me);
    assert_eq!(out.stdout, b"replaced");
}

#[test]
fn data_path_threads_follow_the_worker_setting_and_serve_every_tenant() {
    let s = Setup::new();
    let owner = own_owner();
    let cfg = s.dir.path().join("sockbroker.yaml");
    let tenants = [("a", owner), ("b", owner), ("c", owner), ("d", owner)];
    write_config(&cfg, &config(s.dir.path(), &s.upstream.path, &tenants));
    let b = Broker::start(
        &cfg,
        &["--retry-interval", "200ms"],
        &[("TOKIO_WORKER_THREADS", "3")],
    );
    // Four listeners on three workers (round-robin): every one serves.
    for (t, _) in tenants {
        wait_socket(&s.sock(t));
        echo_conn(&s.sock(t), t.as_bytes());
    }
    // The data path's threads by name (docs/decisions.md "Threads").
    let mut workers: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", b.child.id()))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .filter(|n| n.starts_with("sockbroker-w"))
        .collect();
    workers.sort();
    assert_eq!(workers, ["sockbroker-w0", "sockbroker-w1", "sockbroker-w2"]);
    // What reading the config left free went back to the system after
    // start-up (docs/decisions.md "Threads", memory).
    b.wait_log("gave free heap memory back after=\"start-up\"");
}

#[test]
fn workers_are_pinned_one_per_cpu_only_when_asked() {
    let s = Setup::new();
    let cfg = s.dir.path().join("sockbroker.yaml");
    let tenants = [("a", own_owner())];
    write_config(&cfg, &config(s.dir.path(), &s.upstream.path, &tenants));
    let mine = cpus_allowed("self");
    let cpus = std::thread::available_parallelism().unwrap().get();
    // Asked, with as many workers as CPUs: each on a CPU of its own.
    {
        let b = Broker::start(&cfg, &[], &[("SOCKBROKER_PIN_WORKERS", "1")]);
        wait_socket(&s.sock("a"));
        echo_conn(&s.sock("a"), b"a");
        let workers = worker_cpus(b.child.id());
        assert_eq!(workers.len(), cpus, "{workers:?}");
        let mut pinned: Vec<&str> = workers.iter().map(|(_, c)| c.as_str()).collect();
        assert!(
            pinned.iter().all(|c| c.parse::<usize>().is_ok()),
            "every worker on one CPU: {workers:?}"
        );
        pinned.sort();
        pinned.dedup();
        assert_eq!(pinned.len(), cpus, "each on a different CPU: {workers:?}");
        // The rest of the process is not pinned.
        assert_eq!(cpus_allowed(&b.child.id().to_string()), mine);
    }
    // By default, with a worker count set by hand, or with a value that
    // means nothing: the kernel places them, and the last two say why.
    /// The broker's environment, and the warning it must log.
    type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
    let cases: [Case; 4] = [
        (&[], None),
        (&[("SOCKBROKER_PIN_WORKERS", "0")], None),
        (
            &[
                ("SOCKBROKER_PIN_WORKERS", "1"),
                ("TOKIO_WORKER_THREADS", "3"),
            ],
            Some("they run unpinned"),
        ),
        (
            &[("SOCKBROKER_PIN_WORKERS", "yes")],
            Some("SOCKBROKER_PIN_WORKERS takes 0 or 1"),
        ),
    ];
    for (env, says) in cases {
        let b = Broker::start(&cfg, &[], env);
        wait_socket(&s.sock("a"));
        echo_conn(&s.sock("a"), b"a");
        let workers = worker_cpus(b.child.id());
        assert!(!workers.is_empty());
        for (name, list) in &workers {
            assert_eq!(list, &mine, "{name} with {env:?}");
        }
        match says {
            Some(warning) => b.wait_log(warning),
            None => assert!(!b.logs().contains("SOCKBROKER_PIN_WORKERS"), "{env:?}"),
        }
    }
}

/// `Cpus_allowed_list` of /proc/`task`/status (`self`, a pid, `PID/task/TID`).
fn cpus_allowed(task: &str) -> String {
    std::fs::read_to_string(format!("/proc/{task}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_owned()
}

/// Each data-path worker thread of process `pid` with the CPUs it may run on.
fn worker_cpus(pid: u32) -> Vec<(String, String)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| {
            let tid = t.ok()?.file_name().into_string().ok()?;
            let name = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).ok()?;
            let name = name.trim();
            name.starts_with("sockbroker-w")
                .then(|| (name.to_owned(), cpus_allowed(&format!("{pid}/task/{tid}"))))
        })
        .collect()
}

/// How many of process `pid`'s descriptors are the listening socket at
/// `path` (its inode from /proc/net/unix, which shows the name it was bound
/// to: a temporary one in the same directory, renamed into place).
fn listener_fds(pid: u32, path: &Path) -> usize {
    let inode =
        listening_inode(path).unwrap_or_else(|| panic!("{} not in /proc/net/unix", path.display()));
    let link = format!("socket:[{inode}]");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.as_os_str() == link.as_str())
        .count()
}

/// The inode of the listening socket at `path` while any process holds it
/// open.
fn listening_inode(path: &Path) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/unix").unwrap();
    let dir = format!("{}/", path.parent().unwrap().display());
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        // Listening (__SO_ACCEPTCON): the connections it accepted show
        // the same name.
        .find(|f| f.len() == 8 && f[3] == "00010000" && f[7].starts_with(&dir))
        .map(|f| f[6].to_owned())
}

#[test]
fn a_busy_listener_accepts_on_both_workers_until_it_is_calm_again() {
    let s = Setup::new();
    let cfg = s.dir.path().join("sockbroker.yaml");
    let tenant = format!("{}\nmax_connections: 1000", own_owner());
    write_config(
        &cfg,
        &config(s.dir.path(), &s.upstream.path, &[("ci", &tenant)]),
    );
    let b = Broker::start(
        &cfg,
        &["--retry-interval", "200ms"],
        &[("TOKIO_WORKER_THREADS", "2")],
    );
    let path = s.sock("ci");
    wait_socket(&path);
    let pid = b.child.id();
    assert_eq!(listener_fds(pid, &path), 1);
    // Many connections open at once: the listener's worker hands every
    // other one to the other worker, and after 32 of those the other
    // worker accepts for the listener too, on a duplicate descriptor
    // (docs/decisions.md "Threads").
    let open = |n: usize| -> Vec<UnixStream> {
        (0..n)
            .map(|i| echo_conn(&path, format!("busy {i}").as_bytes()))
            .collect()
    };
    let mut busy = open(150);
    b.wait_log("busy listener: accepting on one more worker");
    wait_until("a second descriptor for the listener", DEADLINE, || {
        listener_fds(pid, &path) == 2
    });
    // Both loops serve: every connection, old and new, relays exactly.
    busy.extend(open(50));
    for (i, c) in busy.iter_mut().enumerate() {
        echo_again(c, format!("again {i}").as_bytes());
    }
    drop(busy);
    // One connection after another: the first loop accepts alone again
    // and the duplicate descriptor is closed.
    let deadline = Instant::now() + DEADLINE;
    let mut n = 0;
    while !b
        .logs()
        .contains("calm listener: accepting on one worker again")
    {
        assert!(
            Instant::now() < deadline,
            "still spread after {n} connections one after another"
        );
        drop(echo_conn(&path, b"calm"));
        n += 1;
    }
    wait_until("the duplicate descriptor closed", DEADLINE, || {
        listener_fds(pid, &path) == 1
    });
    // And it spreads again when busy again.
    let busy = open(150);
    b.wait_log_n("busy listener: accepting on one more worker", 2);
    wait_until("a second descriptor again", DEADLINE, || {
        listener_fds(pid, &path) == 2
    });
    drop(busy);
    // Removed while spread: both descriptors are closed, so the socket is
    // gone from the system, and the broker goes on serving.
    write_config(
        &cfg,
        &config(s.dir.path(), &s.upstream.path, &[("next", own_owner())]),
    );
    wait_socket(&s.sock("next"));
    wait_until("the removed listener closed everywhere", DEADLINE, || {
        listening_inode(&path).is_none()
    });
    assert!(!path.exists());
    drop(echo_conn(&s.sock("next"), b"after"));
}

#[test]
fn two_hundred_concurrent_connections_all_exact() {
    let s = Setup::new();
    let _b = s.start(&[("ci", &format!("{}\nmax_connections: 1000", own_owner()))]);
    wait_socket(&s.sock("ci"));
    let path = s.sock("ci");
    let mut conns: Vec<(UnixStream, Vec<u8>)> = (0..200)
        .map(|i| {
            (
                UnixStream::connect(&path).unwrap(),
                payload(20_000 + i * 37, i as u64),
            )
        })
        .collect();
    // All 200 open at once, then each writes, half-closes and reads its echo.
    let handles: Vec<_> = conns
        .drain(..)
        .map(|(mut c, p)| {
            std::thread::spawn(move || {
                c.set_read_timeout(Some(DEADLINE)).unwrap();
                let mut r = c.try_clone().unwrap();
                let expect = p.clone();
                let w = std::thread::spawn(move || {
                    c.write_all(&p).unwrap();
                    c.shutdown(std::net::Shutdown::Write).unwrap();
                });
                let mut got = Vec::new();
                r.read_to_end(&mut got).unwrap();
                w.join().unwrap();
                got == expect
            })
        })
        .collect();
    let ok = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|exact| *exact)
        .count();
    assert_eq!(ok, 200);
}

#[test]
fn missing_upstream_closes_the_client_promptly_and_others_keep_working() {
    if skip_unless_root("chown to other uids, setpriv, user namespaces") {
        return;
    }
    let s = Setup::new();
    let cfg = s.dir.path().join("sockbroker.yaml");
    let text = config(s.dir.path(), &s.upstream.path, &[("ok", CONTAINER_ROOT)])
        + &format!(
            "  gone:\n    listen: {}/gone/docker.sock\n    upstream: {}/nothing-here.sock\n    uid: 0\n    gid: 0\n",
            s.dir.path().display(),
            s.dir.path().display()
        );
    write_config(&cfg, &text);
    let b = Broker::start(&cfg, &[], &[]);
    wait_socket(&s.sock("gone"));
    let started = Instant::now();
    let out = run_client(&s.sock("gone"), b"anyone there?", As::Me);
    assert!(out.stdout.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    b.wait_log("upstream unavailable");
    assert!(b.logs().contains("nothing-here.sock"));
    let out = run_client(&s.sock("ok"), b"fine", As::Ids(ROOTMAP, ROOTMAP));
    assert_eq!(out.stdout, b"fine");
}

#[test]
fn sigterm_removes_sockets_and_exits_zero() {
    if skip_unless_root("chown to other uids, setpriv, user namespaces") {
        return;
    }
    let s = Setup::new();
    let mut b = s.start(&[("a", CONTAINER_ROOT), ("b", CONTAINER_ROOT)]);
    wait_socket(&s.sock("a"));
    wait_socket(&s.sock("b"));
    b.signal(Signal::SIGTERM);
    let st = b.wait_exit(DEADLINE);
    assert_eq!(st.code(), Some(0), "{}", b.logs());
    assert!(!s.sock("a").exists() && !s.sock("b").exists());
}

#[test]
fn sigterm_drains_open_connections_until_they_finish() {
    let s = Setup::new();
    let mut b = s.start(&[("a", &format!("{}\ndrain_timeout: 30s", own_ids()))]);
    wait_socket(&s.sock("a"));
    let mut c = UnixStream::connect(s.sock("a")).unwrap();
    c.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    c.read_exact(&mut buf).unwrap();
    b.signal(Signal::SIGTERM);
    wait_gone(&s.sock("a"));
    // Still relaying during the drain.
    c.write_all(b"pong").unwrap();
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");
    assert!(
        b.child.try_wait().unwrap().is_none(),
        "exited before the connection ended"
    );
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert_eq!(b.wait_exit(DEADLINE).code(), Some(0));
}

#[test]
fn invalid_config_at_startup_exits_nonzero_and_creates_nothing() {
    let s = Setup::new();
    let cfg = s.dir.path().join("sockbroker.yaml");
    let text = config(
        s.dir.path(),
        &s.upstream.path,
        &[("ci", "uid: 1\ngid: 1\nmode: 660")],
    );
    write_config(&cfg, &text);
    let mut b = Broker::start(&cfg, &[], &[]);
    let st = b.wait_exit(DEADLINE);
    assert_eq!(st.code(), Some(1));
    assert!(b.logs().contains("\"0660\""), "{}", b.logs());
    assert!(!s.dir.path().join("ci").exists());
}

#[test]
fn check_accepts_every_valid_fixture_and_rejects_every_invalid_one() {
    let fixtures = workspace().join("crates/broker/tests/fixtures");
    let env = [
        ("SOCKBROKER_SUBUID", fixtures.join("subuid")),
        ("SOCKBROKER_SUBGID", fixtures.join("subgid")),
    ];
    let mut seen = 0;
    for (kind, want) in [("valid", true), ("invalid", false)] {
        for e in std::fs::read_dir(fixtures.join(kind)).unwrap() {
            let p = e.unwrap().path();
            let out = std::process::Command::new(broker_bin())
                .args(["check", "--config"])
                .arg(&p)
                .envs(env.iter().map(|(k, v)| (k, v)))
                .output()
                .unwrap();
            assert_eq!(
                out.status.success(),
                want,
                "{}: stdout {} stderr {}",
                p.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if want {
                assert!(String::from_utf8_lossy(&out.stdout).contains("TENANT"));
            } else {
                assert!(String::from_utf8_lossy(&out.stderr).contains(&*p.to_string_lossy()));
                assert_eq!(out.status.code(), Some(1));
            }
            seen += 1;
        }
    }
    assert!(seen >= 20, "only {seen} fixtures");
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn raises_nofile_and_backs_off_when_out_of_descriptors() {
    let s = Setup::new();
    let cfg = s.dir.path().join("sockbroker.yaml");
    write_config(
        &cfg,
        &config(s.dir.path(), &s.upstream.path, &[("a", own_ids())]),
    );
    // Soft limit 64, hard limit 96: the broker raises the soft limit to 96 at startup.
    let b = Broker::start_wrapped(&["prlimit", "--nofile=64:96", "--"], &cfg, &[], &[]);
    wait_socket(&s.sock("a"));
    let pid = b.child.id();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(line.split_whitespace().nth(3), Some("96"), "{line}");

    // Each relayed connection costs two descriptors. Make the headroom even, so
    // the descriptor that runs out is always the accept's, not the upstream's
    // (that one waits for a descriptor: at_the_descriptor_limit.rs).
    // Counted once the count holds still: the probe connection's two
    // descriptors close just after its log line, and one counted while the
    // other is already closed made the headroom odd.
    b.wait_log("connection closed: ");
    let open_fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    };
    let mut used = open_fds();
    wait_until(
        "the broker's descriptor count to hold still",
        DEADLINE,
        || {
            std::thread::sleep(Duration::from_millis(50));
            let now = open_fds();
            std::mem::replace(&mut used, now) == now
        },
    );
    let limit = used + 40;
    let st = std::process::Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .unwrap();
    assert!(st.success());
    let conns: Vec<UnixStream> = (0..80)
        .map(|_| UnixStream::connect(s.sock("a")).unwrap())
        .collect();
    b.wait_log("backing off");
    // Backing off, not spinning: well under half a core over a second.
    let t0 = cpu_ticks(pid);
    let started = Instant::now();
    wait_until("a second to pass", DEADLINE, || {
        started.elapsed() >= Duration::from_secs(1)
    });
    let ticks = cpu_ticks(pid) - t0; // 100 ticks per second of CPU
    assert!(
        ticks < 50,
        "broker used {ticks} ticks of CPU in 1s while out of descriptors"
    );
    drop(conns);
    // Recovered: the listener is still there and serves again.
    wait_until("the broker to relay again", DEADLINE, || {
        run_client(&s.sock("a"), b"back", As::Me).stdout == b"back"
    });
}

#[test]
fn max_connections_refuses_beyond_the_limit_instead_of_queueing() {
    let s = Setup::new();
    let b = s.start(&[("a", &format!("{}\nmax_connections: 2", own_ids()))]);
    wait_socket(&s.sock("a"));
    // wait_socket's probe is a connection too: let it end before counting.
    b.wait_log("connection closed: ");
    let mut c1 = echo_conn(&s.sock("a"), b"one");
    let _c2 = echo_conn(&s.sock("a"), b"two");
    let mut c3 = UnixStream::connect(s.sock("a")).unwrap();
    wait_until("the third connection to be closed", DEADLINE, || {
        is_closed(&mut c3)
    });
    b.wait_log("max_connections reached");
    echo_again(&mut c1, b"first still works");
    drop(c1);
    // A slot is free again.
    wait_until("a new connection to be served", DEADLINE, || {
        run_client(&s.sock("a"), b"three", As::Me).stdout == b"three"
    });
}

#[test]
fn second_signal_exits_at_once_during_a_drain() {
    let s = Setup::new();
    let mut b = s.start(&[("a", &format!("{}\ndrain_timeout: 1h", own_ids()))]);
    wait_socket(&s.sock("a"));
    let _c = echo_conn(&s.sock("a"), b"held open");
    b.signal(Signal::SIGTERM);
    b.wait_log("draining open connections");
    assert!(!s.sock("a").exists());
    b.signal(Signal::SIGINT);
    let st = b.wait_exit(DEADLINE);
    assert_eq!(st.code(), Some(1), "{}", b.logs());
    b.wait_log("second signal");
}

#[test]
fn example_config_is_valid() {
    let out = std::process::Command::new(broker_bin())
        .args(["check", "--config"])
        .arg(workspace().join("config/sockbroker.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("ci-runner") && table.contains("231072:231072"),
        "{table}"
    );
}

/// A listening Unix socket at `path` with the smallest backlog, filled with
/// connections nobody accepts: a `connect(2)` to it now says `EAGAIN`. The
/// returned sockets keep the backlog full while they live.
fn full_backlog_listener(path: &Path) -> (std::os::fd::OwnedFd, Vec<std::os::fd::OwnedFd>) {
    use nix::sys::socket::{
        bind, connect, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
    };
    use std::os::fd::AsRawFd;
    let addr = UnixAddr::new(path).unwrap();
    let l = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .unwrap();
    bind(l.as_raw_fd(), &addr).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
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
        match connect(c.as_raw_fd(), &addr) {
            Ok(()) => pending.push(c),
            Err(nix::errno::Errno::EAGAIN) => return (l, pending),
            Err(e) => panic!("connect: {e}"),
        }
        assert!(pending.len() < 100, "the backlog never filled");
    }
}

/// An upstream whose backlog is full (a burst on the engine) is waited for up
/// to `connect_timeout`: a client is served once the upstream accepts again,
/// and closed, counted and logged when the timeout passes first.
#[test]
fn busy_upstream_is_waited_for_up_to_connect_timeout() {
    let s = Scene::new();
    let slow = s.dir.path().join("slow.sock");
    let stuck = s.dir.path().join("stuck.sock");
    let (slow_l, _slow_pending) = full_backlog_listener(&slow);
    let (_stuck_l, _stuck_pending) = full_backlog_listener(&stuck);
    let b = s.start(
        &[
            (
                "slow",
                &format!("{}\nupstream: {}", own_ids(), slow.display()),
            ),
            (
                "stuck",
                &format!(
                    "{}\nupstream: {}\nconnect_timeout: 300ms",
                    own_ids(),
                    stuck.display()
                ),
            ),
        ],
        &[],
    );
    wait_socket(&s.sock("slow"));
    wait_socket(&s.sock("stuck"));

    // The slow upstream starts accepting (and echoing) after 500 ms.
    let l = std::os::unix::net::UnixListener::from(slow_l);
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 || c.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let started = Instant::now();
    echo_conn(&s.sock("slow"), b"waited");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "served before the upstream accepted?"
    );

    // The stuck one never accepts: closed after about 300 ms, not at once.
    let started = Instant::now();
    let mut c = UnixStream::connect(s.sock("stuck")).unwrap();
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(c.read(&mut buf).unwrap_or(0), 0);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    b.wait_log("upstream connect timed out");
}

/// A client that exits closes its socket altogether (not a half-close): the
/// broker delivers what it sent and then closes its upstream connection at once,
/// instead of passing the EOF on with `shutdown(2)` and waiting for the upstream
/// to finish too. The upstream sees all the bytes, then EOF, and its next write
/// fails (after a mere shutdown it would succeed); the line says `client_closed`.
#[test]
fn a_client_that_hangs_up_ends_its_connection_without_waiting_for_the_upstream() {
    let dir = scratch();
    let up = dir.path().join("up.sock");
    let listener = std::os::unix::net::UnixListener::bind(&up).unwrap();
    // An upstream that never closes on its own: it reads each connection to its
    // end, then tries one write, and reports both.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let read = conn.read_to_end(&mut got).map(|_| ());
                let late = conn.write_all(b"late reply");
                let _ = tx.send((got, read, late));
            });
        }
    });
    let cfg = dir.path().join("sockbroker.yaml");
    write_config(&cfg, &config(dir.path(), &up, &[("a", own_ids())]));
    let b = Broker::start(&cfg, &[], &[]);
    let sock = dir.path().join("a").join("docker.sock");
    wait_socket(&sock);

    let mut c = UnixStream::connect(&sock).unwrap();
    c.write_all(b"request").unwrap();
    drop(c);
    // wait_socket's probes are connections too: find ours by its bytes.
    let (read, late) = loop {
        let (got, read, late) = rx
            .recv_timeout(DEADLINE)
            .expect("the upstream never saw the request end (the broker kept waiting?)");
        if got == b"request" {
            break (read, late);
        }
    };
    assert!(read.is_ok(), "upstream read: {read:?}");
    let err = late.expect_err("the upstream could still write: the broker only shut down");
    assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe, "{err}");
    b.wait_log("bytes_upstream=7");
    let line = b
        .logs()
        .lines()
        .find(|l| l.contains("bytes_upstream=7"))
        .unwrap_or_default()
        .to_owned();
    assert!(line.contains("client_closed"), "{line}");
}

/// A relayed connection's audit line, as the real binary writes it in both
/// formats: every field, in order, with its exact text (the broker writes the
/// text format's lines with a formatter of its own, docs/decisions.md
/// "Logging"; this pins what it writes).
#[test]
fn audit_line_of_a_connection_in_text_and_json() {
    let (pid, uid, gid) = (
        std::process::id(),
        nix::unistd::geteuid(),
        nix::unistd::getegid(),
    );
    for json in [false, true] {
        let scene = Scene::new();
        let args: &[&str] = if json { &["--log-format", "json"] } else { &[] };
        let b = scene.start(&[("a", own_ids())], args);
        wait_socket(&scene.sock("a"));
        let mut c = UnixStream::connect(scene.sock("a")).unwrap();
        c.write_all(b"hello").unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).unwrap();
        assert_eq!(back, b"hello");
        drop(c);
        // wait_socket's probes are connections too: find ours by its bytes.
        let ours = if json {
            "\"bytes_upstream\":5,"
        } else {
            "bytes_upstream=5 "
        };
        b.wait_log(ours);
        let logs = b.logs();
        let line = logs.lines().find(|l| l.contains(ours)).unwrap();
        let end = ["client_closed", "upstream_closed"]
            .into_iter()
            .find(|e| line.contains(&format!("connection closed: {e}")))
            .unwrap_or_else(|| panic!("no end in {line}"));
        let (time, duration) = if json {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let time = v["timestamp"].as_str().unwrap().to_owned();
            let duration = line.split("\"duration_s\":").nth(1).unwrap();
            (time, duration.split(',').next().unwrap().to_owned())
        } else {
            let duration = line.split(" duration_s=").nth(1).unwrap();
            (
                line[..27].to_owned(),
                duration.split(' ').next().unwrap().to_owned(),
            )
        };
        let expected = if json {
            format!(
                "{{\"timestamp\":\"{time}\",\"level\":\"INFO\",\
                 \"message\":\"connection closed: {end}\",\"tenant\":\"a\",\
                 \"pid\":{pid},\"uid\":{uid},\"gid\":{gid},\"bytes_upstream\":5,\
                 \"bytes_downstream\":5,\"duration_s\":{duration},\"end\":\"{end}\",\
                 \"target\":\"sockbroker::listener\"}}"
            )
        } else {
            format!(
                "{time}  INFO sockbroker::listener: connection closed: {end} tenant=a \
                 pid={pid} uid={uid} gid={gid} bytes_upstream=5 bytes_downstream=5 \
                 duration_s={duration} end=\"{end}\""
            )
        };
        assert_eq!(line, expected);
        // RFC 3339, UTC, microseconds; the duration's shortest text.
        let t = time.as_bytes();
        assert_eq!(t.len(), 27, "{time}");
        for (i, &c) in t.iter().enumerate() {
            match i {
                4 | 7 => assert_eq!(c, b'-', "{time}"),
                10 => assert_eq!(c, b'T', "{time}"),
                13 | 16 => assert_eq!(c, b':', "{time}"),
                19 => assert_eq!(c, b'.', "{time}"),
                26 => assert_eq!(c, b'Z', "{time}"),
                _ => assert!(c.is_ascii_digit(), "{time}"),
            }
        }
        let seconds: f64 = duration.parse().unwrap();
        // Text: `{:?}`'s shortest text (`9.7505e-5` below 1e-4); JSON:
        // serde_json's (`0.000097505`), as tracing-subscriber writes them.
        let shortest = if json {
            serde_json::to_string(&seconds).unwrap()
        } else {
            format!("{seconds:?}")
        };
        assert_eq!(shortest, duration);
        assert!(seconds > 0.0 && seconds < 60.0, "{duration}");
    }
}
