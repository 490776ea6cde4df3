//! Restarts, crashes and upgrades without a gap (docs/operations.md
//! "Restarts, crashes and upgrades"), with the real binary:
//! SIGUSR2 under load, a failed upgrade, sockets handed over with
//! `LISTEN_FDS`, the descriptor store across `kill -9`, what SIGTERM and
//! SIGINT leave behind, the second signal, and a real engine restarted under
//! a running broker.
#![deny(unsafe_code)]

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use sockbroker_e2e::*;

mod harness;
use harness::*;

#[test]
fn sigusr2_upgrades_in_place_under_load() {
    let _serial = serial();
    let s = Scene::new();
    let tenants = ["a", "b", "c"];
    // systemd's part, played by the test: the notification socket and store.
    let mut ns = NotifySocket::bind(s.dir.path());
    let (exe, mut old, addr) = upgrade_scene(&s, &tenants, &ns.env());
    ns.wait_line_n("READY=1", 1);
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
    // The new process is the service's main process now, and ready.
    ns.wait_line_n(&format!("MAINPID={}", new.0), 1);
    ns.wait_line_n("READY=1", 2);
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
    // The old process never told systemd it was stopping (that would stop
    // the service); the listeners are in the store under their names.
    ns.poll();
    assert!(
        !ns.messages.iter().any(|m| m.contains("STOPPING=1")),
        "{:?}",
        ns.messages
    );
    for name in tenants.iter().chain(&["metrics"]) {
        assert!(
            ns.store.contains_key(*name),
            "{name} not stored: {:?}",
            ns.messages
        );
    }
    assert_eq!(paths.iter().map(|p| inode(p)).collect::<Vec<_>>(), inodes);
}

#[test]
fn failed_upgrade_leaves_the_old_process_serving() {
    let _serial = serial();
    let s = Scene::new();
    let tenants = ["a", "b"];
    let (exe, old, addr) = upgrade_scene(&s, &tenants, &[]);
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

/// While the old process drains after an upgrade, only the new one answers
/// on the metrics listener: both accepting on it made scrapes alternate
/// between the two processes' counters (a reset on every other scrape), and
/// the success was counted where nobody could scrape it.
#[test]
fn after_an_upgrade_only_the_new_process_answers_metrics() {
    let _serial = serial();
    let s = Scene::new();
    let (exe, mut old, addr) = upgrade_scene(&s, &["a"], &[]);
    // Keeps the old process draining (its only connection).
    let mut stream = echo_conn(&s.sock("a"), b"before\n");
    install_by_rename(&broker_bin(), &exe);
    old.signal(Signal::SIGUSR2);
    let new = new_pid(&old);
    for i in 0..30 {
        let (code, body) = http_get(&addr, "/metrics").unwrap();
        assert_eq!(code, 200);
        assert_eq!(
            metric_value(&body, "sockbroker_connections_active{tenant=\"a\"}"),
            Some(0.0),
            "scrape {i} was answered by the old process: {body}"
        );
        assert_eq!(
            metric_value(&body, "sockbroker_upgrades_total{result=\"success\"}"),
            Some(1.0),
            "scrape {i}: {body}"
        );
    }
    assert!(old.child.try_wait().unwrap().is_none());
    echo_again(&mut stream, b"still served\n");
    drop(stream);
    assert_eq!(old.wait_exit(DEADLINE).code(), Some(0), "{}", old.logs());
    assert!(new.alive());
}

/// An upgrade with nothing to hand over (the package's shipped config: no
/// tenant; here without metrics either). `LISTEN_FDNAMES=` with zero
/// descriptors is one empty name for zero sockets, which the new process
/// rejected as a whole, ready pipe included: it never said ready and was
/// killed after 30 s.
#[test]
fn an_upgrade_with_no_listener_hands_over() {
    let _serial = serial();
    let s = Scene::new();
    write_config(&s.config(), "tenants: {}\n");
    let exe = s.dir.path().join("sockbroker");
    std::fs::copy(broker_bin(), &exe).unwrap();
    let mut cmd = Command::new(&exe);
    cmd.arg("run").arg("--config").arg(s.config());
    let mut old = Broker::spawn(cmd);
    old.wait_log("sockbroker started");
    old.signal(Signal::SIGUSR2);
    let new = new_pid(&old);
    assert_eq!(old.wait_exit(DEADLINE).code(), Some(0), "{}", old.logs());
    assert!(new.alive());
    assert!(
        !old.logs().contains("ignoring handed-over"),
        "{}",
        old.logs()
    );
}

/// `LISTEN_*` variables meant for another process (`LISTEN_PID` is not
/// ours) are ignored without a word: the broker used to warn "invalid
/// LISTEN_FDNAMES" (it counted zero descriptors for us against the names).
#[test]
fn listen_fds_for_another_pid_are_ignored_quietly() {
    let _serial = serial();
    let s = Scene::new();
    write_config(&s.config(), "tenants: {}\n");
    let mut b = Broker::start(
        &s.config(),
        &[],
        &[
            ("LISTEN_PID", "1"),
            ("LISTEN_FDS", "1"),
            ("LISTEN_FDNAMES", "a"),
        ],
    );
    b.wait_log("sockbroker started");
    b.signal(Signal::SIGINT);
    assert_eq!(b.wait_exit(DEADLINE).code(), Some(0));
    assert!(!b.logs().contains("ignoring handed-over"), "{}", b.logs());
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

/// A handed-over `metrics` listener that no longer matches (metrics.listen
/// was changed before a restart) is closed and dropped from the store by
/// name; the listener bound instead must be stored after that, not before
/// (it was removed with the stale one, so a crash lost it).
#[test]
fn a_metrics_listener_that_moved_stays_in_the_store() {
    let _serial = serial();
    let s = Scene::new();
    let mut ns = NotifySocket::bind(s.dir.path());
    let stale = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    write_config(
        &s.config(),
        &format!("metrics:\n  listen: {addr}\n{}", s.yaml(&[("a", &me(""))])),
    );
    let broker = start_with_fds(&s.config(), &[("metrics", stale.as_fd())], &ns.env());
    ns.wait_line_n("READY=1", 1);
    broker.wait_log("closing handed-over socket");
    drop(stale);
    assert!(matches!(http_get(&addr, "/healthz"), Ok((200, _))));
    ns.poll();
    let stored = ns.store.get("metrics").map_or(0, Vec::len);
    assert_eq!(stored, 1, "{:?}", ns.messages);
    assert!(ns.store.contains_key("a"), "{:?}", ns.messages);
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
