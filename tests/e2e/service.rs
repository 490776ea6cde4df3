//! Running sockbroker as a service: the sd_notify protocol spoken to a real
//! notify socket, the systemd units in deploy/systemd (systemd-analyze verify,
//! the seccomp filter against the syscalls the broker really makes, the broker
//! as a non-root uid holding only CAP_CHOWN + CAP_FOWNER), the Kubernetes
//! manifests in deploy/kubernetes, the Grafana dashboard in deploy/grafana, and
//! the container image in deploy/container built and run on a network-less engine.
//!
//! Tests that need a tool (systemd-analyze, strace, promtool,
//! kubernetes-validate, dockerd) print `SKIPPED: …` and pass when it is absent,
//! and fail under `CI=true`; tests/setup.sh installs them.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use sockbroker_e2e::*;
use sockbroker_e2e::{output_text as text, run_cmd as run, run_ok as ok};

/// Host uid/gid of root in `--userns-remap=default` containers (dockremap 231072:65536).
const ROOTMAP: u32 = 231072;

fn deploy(rel: &str) -> PathBuf {
    workspace().join("deploy").join(rel)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// CLOCK_MONOTONIC in microseconds (what MONOTONIC_USEC= carries).
fn monotonic_usec() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    ts.tv_sec() as u64 * 1_000_000 + ts.tv_nsec() as u64 / 1_000
}

// ---------------------------------------------------------------------------
// sd_notify
// ---------------------------------------------------------------------------

/// One datagram received on the notify socket.
#[derive(Debug, Clone)]
struct Notice {
    /// `KEY=VALUE` lines, in order.
    fields: Vec<(String, String)>,
    /// At receipt: was every watched path a socket (bound and listening)?
    watched_live: bool,
    /// CLOCK_MONOTONIC (µs) at receipt.
    at_usec: u64,
}

impl Notice {
    fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    fn has(&self, key: &str, value: &str) -> bool {
        self.get(key) == Some(value)
    }
}

/// A service manager's notify socket: a datagram socket whose messages are
/// collected by a thread. On each message it also checks whether the `watched`
/// sockets exist, which is what READY=1 promises.
struct NotifySocket {
    path: PathBuf,
    notices: Arc<Mutex<Vec<Notice>>>,
}

impl NotifySocket {
    fn bind(path: &Path, watched: Vec<PathBuf>) -> NotifySocket {
        let sock = UnixDatagram::bind(path).unwrap();
        let notices = Arc::new(Mutex::new(Vec::new()));
        let n2 = notices.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf) {
                let at_usec = monotonic_usec();
                // Existence, not a connection: a probe would show in STATUS's count.
                // The broker renames a socket into place only once it listens.
                let watched_live = watched
                    .iter()
                    .all(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket()));
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let fields = msg
                    .lines()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                n2.lock().unwrap().push(Notice {
                    fields,
                    watched_live,
                    at_usec,
                });
            }
        });
        NotifySocket {
            path: path.to_owned(),
            notices,
        }
    }

    fn all(&self) -> Vec<Notice> {
        self.notices.lock().unwrap().clone()
    }

    /// Wait for a notice at index ≥ `from` that satisfies `pred`; return its index.
    fn wait_from(&self, from: usize, what: &str, pred: impl Fn(&Notice) -> bool) -> usize {
        let mut found = None;
        wait_until(what, DEADLINE, || {
            found = self.all().iter().skip(from).position(&pred);
            found.is_some()
        });
        from + found.unwrap()
    }

    fn dump(&self) -> String {
        self.all()
            .iter()
            .map(|n| format!("{:?}", n.fields))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// READY=1 only after every tenant was tried (its socket accepts connections),
/// STATUS= with tenants up/total and connections, RELOADING=1 with
/// MONOTONIC_USEC= then READY=1 around every reload (file edit, SIGHUP without
/// a change, a rejected file), STOPPING=1 on SIGTERM.
#[test]
fn sd_notify_ready_status_reloading_stopping() {
    if skip_unless_root("chown to other uids, setpriv") {
        return;
    }
    const T: &str = "uid: 0\ngid: 0\nmode: \"0600\"";
    let s = Scene::new();
    // Tenant c cannot come up: a regular file occupies its path.
    std::fs::create_dir_all(s.dir.path().join("c")).unwrap();
    std::fs::write(s.sock("c"), "not a socket").unwrap();
    s.write(&[("a", T), ("b", T), ("c", T)]);
    let notify = NotifySocket::bind(
        &s.dir.path().join("notify.sock"),
        vec![s.sock("a"), s.sock("b")],
    );
    let mut b = Broker::start(
        &s.config(),
        &["--retry-interval", "200ms"],
        &[("NOTIFY_SOCKET", notify.path.to_str().unwrap())],
    );

    // Startup: READY=1 once every tenant was tried; a and b already listen.
    let ready = notify.wait_from(0, "READY=1 at startup", |n| n.has("READY", "1"));
    let all = notify.all();
    let n = &all[ready];
    assert!(
        n.watched_live,
        "READY=1 arrived before every tenant socket existed"
    );
    assert_eq!(
        n.get("STATUS"),
        Some("2/3 tenants up, 0 connections"),
        "{}",
        notify.dump()
    );
    assert!(
        all[..ready].iter().all(|n| n.get("RELOADING").is_none()),
        "RELOADING=1 before the first READY=1:\n{}",
        notify.dump()
    );

    // STATUS follows the connection count.
    let mut conn = echo_conn(&s.sock("a"), b"hello");
    notify.wait_from(ready + 1, "STATUS with 1 connection", |n| {
        n.has("STATUS", "2/3 tenants up, 1 connections")
    });

    // An edit (tenant c removed): RELOADING=1 + MONOTONIC_USEC, then READY=1.
    let before = monotonic_usec();
    let from = notify.all().len();
    s.write(&[("a", T), ("b", T)]);
    let reloading = notify.wait_from(from, "RELOADING=1 after an edit", |n| {
        n.has("RELOADING", "1")
    });
    let r = &notify.all()[reloading];
    let usec: u64 = r
        .get("MONOTONIC_USEC")
        .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC: {:?}", r.fields))
        .parse()
        .expect("MONOTONIC_USEC is a number");
    assert!(
        before <= usec && usec <= r.at_usec,
        "MONOTONIC_USEC={usec} is not between the edit ({before}) and its receipt ({})",
        r.at_usec
    );
    let ready2 = notify.wait_from(reloading + 1, "READY=1 after the reload", |n| {
        n.has("READY", "1")
    });
    assert_eq!(
        notify.all()[ready2].get("STATUS"),
        Some("2/2 tenants up, 1 connections"),
        "{}",
        notify.dump()
    );
    echo_again(&mut conn, b"still here");

    // SIGHUP with nothing changed: systemd (notify-reload) still waits for the pair.
    let from = notify.all().len();
    b.signal(Signal::SIGHUP);
    let rl = notify.wait_from(from, "RELOADING=1 after SIGHUP", |n| {
        n.has("RELOADING", "1") && n.get("MONOTONIC_USEC").is_some()
    });
    notify.wait_from(rl + 1, "READY=1 after SIGHUP", |n| n.has("READY", "1"));

    // A rejected file: the reload still ends with READY=1, tenants unchanged.
    let from = notify.all().len();
    write_config(&s.config(), "tenants:\n  a:\n    guid: 1\n");
    let rl = notify.wait_from(from, "RELOADING=1 for a bad file", |n| {
        n.has("RELOADING", "1")
    });
    let rd = notify.wait_from(rl + 1, "READY=1 after a rejected file", |n| {
        n.has("READY", "1")
    });
    assert_eq!(
        notify.all()[rd].get("STATUS"),
        Some("2/2 tenants up, 1 connections")
    );
    b.wait_log("reload rejected");

    // SIGTERM: STOPPING=1, sockets removed, exit 0.
    drop(conn);
    let from = notify.all().len();
    b.signal(Signal::SIGTERM);
    notify.wait_from(from, "STOPPING=1 on SIGTERM", |n| n.has("STOPPING", "1"));
    assert!(b.wait_exit(DEADLINE).success(), "{}", b.logs());
    assert!(!s.sock("a").exists() && !s.sock("b").exists());
}

// ---------------------------------------------------------------------------
// systemd units
// ---------------------------------------------------------------------------

const UNITS: [&str; 2] = ["sockbroker.service", "sockbroker-user.service"];

/// `systemd-analyze verify` on a copy of `unit_text` (ExecStart pointed at the
/// built binary: verify insists that it exists) plus optional drop-ins; returns
/// (exit status ok, everything it printed).
fn verify(name: &str, unit_text: &str, dropins: &[(&str, String)]) -> (bool, String) {
    let dir = scratch();
    let bin = broker_bin();
    let unit = unit_text.replace(
        "ExecStart=sockbroker ",
        &format!("ExecStart={} ", bin.display()),
    );
    std::fs::write(dir.path().join(name), unit).unwrap();
    if !dropins.is_empty() {
        let d = dir.path().join(format!("{name}.d"));
        std::fs::create_dir(&d).unwrap();
        for (file, body) in dropins {
            std::fs::write(d.join(file), body).unwrap();
        }
    }
    let mut c = Command::new("systemd-analyze");
    c.arg("verify").arg(dir.path().join(name));
    let o = run(c, Duration::from_secs(60));
    (o.status.success(), text(&o))
}

fn systemd_version() -> u32 {
    let o = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A NOTIFY_SOCKET nobody reads (its queue holds net.unix.max_dgram_qlen = 10
/// datagrams; then a send blocks) must not stall the broker: after a dozen
/// reloads, each announced with RELOADING=1 and READY=1, it still applies
/// edits and shuts down.
#[test]
fn an_unread_notify_socket_does_not_stall_the_broker() {
    if skip_unless_root("tenant sockets are chowned") {
        return;
    }
    const T: &str = "uid: 0\ngid: 0\nmode: \"0600\"";
    let s = Scene::new();
    s.write(&[("a", T)]);
    let path = s.dir.path().join("notify.sock");
    let _never_read = UnixDatagram::bind(&path).unwrap();
    let mut b = Broker::start(
        &s.config(),
        &[],
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
    );
    wait_socket(&s.sock("a"));
    for i in 1..=12 {
        b.signal(Signal::SIGHUP);
        b.wait_log_n("SIGHUP: reloading", i);
    }
    s.write(&[("a", T), ("b", T)]);
    wait_socket(&s.sock("b"));
    b.signal(Signal::SIGTERM);
    assert!(b.wait_exit(DEADLINE).success(), "{}", b.logs());
}

/// Every unit passes `systemd-analyze verify` without a single warning (an
/// unknown or misspelt key is only a warning there, so any output fails). The
/// notify-reload drop-in too, where systemd is new enough (≥ 253); on older
/// systemd the only complaints allowed are about the two keys it does not know.
#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    if !have(
        "systemd-analyze",
        "--version",
        "apt-get install systemd; it works without systemd as PID 1",
    ) {
        return;
    }
    for name in UNITS {
        let (ok, out) = verify(name, &read(&deploy("systemd").join(name)), &[]);
        assert!(
            ok && out.trim().is_empty(),
            "systemd-analyze verify {name}:\n{out}"
        );
    }
    let dropin = read(&deploy("systemd/notify-reload.conf"));
    let (ok, out) = verify(
        "sockbroker.service",
        &read(&deploy("systemd/sockbroker.service")),
        &[("notify-reload.conf", dropin)],
    );
    let v = systemd_version();
    if v >= 253 {
        assert!(
            ok && out.trim().is_empty(),
            "systemd-analyze verify with notify-reload.conf:\n{out}"
        );
    } else {
        assert!(ok, "{out}");
        for line in out.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                line.contains("notify-reload") || line.contains("ReloadSignal"),
                "systemd {v} complains about more than Type=notify-reload: {line}"
            );
        }
        eprintln!("systemd {v} < 253: notify-reload.conf checked for everything but its type");
    }
}

/// The directives of a unit, `(section, key) → values` in order.
fn directives(unit: &str) -> BTreeMap<(String, String), Vec<String>> {
    let mut m: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for l in unit.lines().map(str::trim) {
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if l.starts_with('[') {
            section = l.to_string();
            continue;
        }
        let (k, v) = l.split_once('=').expect("KEY=VALUE");
        m.entry((section.clone(), k.to_string()))
            .or_default()
            .push(v.to_string());
    }
    m
}

/// What the issue and DESIGN.md ask of the units, and that the user variant
/// differs from the root one only in who runs it.
#[test]
fn systemd_units_have_the_promised_settings() {
    let root = directives(&read(&deploy("systemd/sockbroker.service")));
    let user = directives(&read(&deploy("systemd/sockbroker-user.service")));
    let get = |m: &BTreeMap<(String, String), Vec<String>>, k: &str| -> Vec<String> {
        m.get(&("[Service]".to_string(), k.to_string()))
            .cloned()
            .unwrap_or_default()
    };
    for (unit, m) in [
        ("sockbroker.service", &root),
        ("sockbroker-user.service", &user),
    ] {
        for (k, v) in [
            ("Type", "notify"),
            ("ExecReload", "/bin/kill -HUP $MAINPID"),
            ("Restart", "on-failure"),
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("ReadWritePaths", "/run/sockbroker"),
            ("RuntimeDirectory", "sockbroker"),
            ("RuntimeDirectoryPreserve", "yes"),
            (
                "RestrictAddressFamilies",
                "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
            ),
            ("SystemCallFilter", "@system-service"),
            ("CapabilityBoundingSet", "CAP_CHOWN CAP_FOWNER"),
        ] {
            assert_eq!(get(m, k), vec![v.to_string()], "{unit}: {k}=");
        }
        assert!(!get(m, "LimitNOFILE").is_empty(), "{unit}: LimitNOFILE=");
        let start = get(m, "ExecStart");
        assert!(
            start.len() == 1 && start[0].contains(" run --config /etc/sockbroker/sockbroker.yaml"),
            "{unit}: ExecStart={start:?}"
        );
        // Longer than the default drain_timeout (30s), or systemd SIGKILLs a drain.
        let stop = get(m, "TimeoutStopSec");
        let secs: u64 = stop[0].trim_end_matches('s').parse().unwrap();
        assert!(secs > 30, "{unit}: TimeoutStopSec={secs}");
    }
    assert!(get(&root, "User").is_empty(), "root variant runs as root");
    assert_eq!(get(&user, "User"), vec!["sockbroker"]);
    assert_eq!(get(&user, "SupplementaryGroups"), vec!["docker"]);
    assert_eq!(
        get(&user, "AmbientCapabilities"),
        vec!["CAP_CHOWN CAP_FOWNER"]
    );
    // Apart from those, the two are the same unit.
    let strip = |m: &BTreeMap<(String, String), Vec<String>>| {
        let mut m = m.clone();
        for k in [
            "User",
            "Group",
            "SupplementaryGroups",
            "AmbientCapabilities",
        ] {
            m.remove(&("[Service]".to_string(), k.to_string()));
        }
        m
    };
    assert_eq!(strip(&root), strip(&user));
    // The drop-in for systemd >= 253.
    let d = directives(&read(&deploy("systemd/notify-reload.conf")));
    assert_eq!(
        d.get(&("[Service]".into(), "Type".into())),
        Some(&vec!["notify-reload".to_string()])
    );
    assert_eq!(
        d.get(&("[Service]".into(), "ExecReload".into())),
        Some(&vec![String::new()]),
        "notify-reload.conf must reset ExecReload="
    );
}

/// The process whose parent is `ppid` (strace's child: the broker).
fn child_of(ppid: u32) -> Option<u32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        if rest.split_whitespace().nth(1) == Some(&ppid.to_string()) {
            return Some(pid);
        }
    }
    None
}

/// Every syscall of `group` in `systemd-analyze syscall-filter`, groups expanded.
fn syscall_group(group: &str) -> BTreeSet<String> {
    let out = ok(
        {
            let mut c = Command::new("systemd-analyze");
            c.arg("syscall-filter");
            c
        },
        Duration::from_secs(30),
    );
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = None;
    for l in out.lines() {
        if l.starts_with('@') {
            current = Some(l.trim().to_string());
            groups.entry(l.trim().to_string()).or_default();
        } else if l.starts_with(|c: char| !c.is_whitespace()) {
            current = None; // "# Unlisted system calls …" and the like
        } else if let Some(g) = &current {
            let m = l.trim();
            if !m.is_empty() && !m.starts_with('#') {
                groups.get_mut(g).unwrap().push(m.to_string());
            }
        }
    }
    fn expand(
        g: &str,
        groups: &BTreeMap<String, Vec<String>>,
        out: &mut BTreeSet<String>,
        seen: &mut BTreeSet<String>,
    ) {
        if !seen.insert(g.to_string()) {
            return;
        }
        for m in groups.get(g).unwrap_or_else(|| panic!("no group {g}")) {
            if m.starts_with('@') {
                expand(m, groups, out, seen);
            } else {
                out.insert(m.clone());
            }
        }
    }
    let mut set = BTreeSet::new();
    expand(group, &groups, &mut set, &mut BTreeSet::new());
    set
}

/// The units allow `@system-service` and AF_UNIX/AF_INET/AF_INET6/AF_NETLINK only. Run the
/// real broker under strace through a busy life (startup, relaying, metrics
/// scrapes, a reload by edit and by SIGHUP, a rejected file, a tenant added
/// and removed, shutdown) and check every syscall and socket family it uses is
/// allowed — a filtered call would fail with EPERM in production only.
#[test]
fn broker_syscalls_fit_the_units_seccomp_filter() {
    if skip_unless_root("chown to other uids, setpriv")
        || !have("strace", "-V", "apt-get install strace")
        || !have("systemd-analyze", "--version", "apt-get install systemd")
    {
        return;
    }
    const T: &str = "uid: 231072\ngid: 231072\nmode: \"0660\"";
    let s = Scene::new();
    let trace = s.dir.path().join("strace.out");
    let mut addr = String::new();
    let mut broker = None;
    // A notify socket, so the sd_notify path is traced too. It must be read:
    // sd_notify's send blocks once the datagram queue (10 by default) is full.
    let notify = s.dir.path().join("notify.sock");
    let _notify = NotifySocket::bind(&notify, vec![]);
    for _ in 0..5 {
        addr = format!("127.0.0.1:{}", free_port());
        write_config(
            &s.config(),
            &format!("metrics:\n  listen: {addr}\n{}", s.yaml(&[("a", T)])),
        );
        let mut c = Command::new("strace");
        c.args(["-f", "-qq", "-o"])
            .arg(&trace)
            .arg("--")
            .arg(broker_bin())
            .args(["run", "--retry-interval", "200ms", "--config"])
            .arg(s.config())
            .env("NOTIFY_SOCKET", &notify);
        let mut b = Broker::spawn(c);
        let mut exited = false;
        wait_until("broker under strace to answer /healthz", DEADLINE, || {
            exited = b.child.try_wait().unwrap().is_some();
            exited || matches!(http_get(&addr, "/healthz"), Ok((200, _)))
        });
        if !exited {
            broker = Some(b);
            break;
        }
    }
    let mut b = broker.expect("broker under strace did not start");
    let pid = child_of(b.child.id()).expect("the broker under strace");
    let kill = |sig| {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
    };
    wait_socket(&s.sock("a"));
    let out = run_client(
        &s.sock("a"),
        &payload(1 << 20, 3),
        As::Ids(ROOTMAP, ROOTMAP),
    );
    assert!(out.status.success(), "{}", text(&out));
    for p in ["/metrics", "/readyz", "/tenants", "/healthz"] {
        http_get(&addr, p).unwrap();
    }
    write_config(
        &s.config(),
        &format!(
            "metrics:\n  listen: {addr}\n{}",
            s.yaml(&[("a", "uid: 231073\ngid: 231073\nmode: \"0640\""), ("b", T)])
        ),
    );
    wait_socket(&s.sock("b"));
    kill(Signal::SIGHUP);
    write_config(&s.config(), "tenants: [\n");
    b.wait_log("reload rejected");
    write_config(
        &s.config(),
        &format!("metrics:\n  listen: {addr}\n{}", s.yaml(&[("b", T)])),
    );
    wait_gone(&s.sock("a"));
    kill(Signal::SIGTERM);
    assert!(b.wait_exit(DEADLINE).success(), "{}", b.logs());

    let allowed = syscall_group("@system-service");
    let mut used = BTreeSet::new();
    let mut families = BTreeSet::new();
    for l in read(&trace).lines() {
        // "PID name(args) = ret", "PID <... name resumed>…", "PID --- SIG… ---", "PID +++ exited …"
        let rest = l.split_once(' ').map(|x| x.1).unwrap_or("").trim_start();
        let rest = rest.strip_prefix("<... ").unwrap_or(rest);
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            continue;
        }
        // MemoryDenyWriteExecute=yes: no writable+executable mapping, no
        // mapping made executable afterwards.
        assert!(
            !(rest.contains("PROT_WRITE|PROT_EXEC")
                || (name == "mprotect" && rest.contains("PROT_EXEC"))),
            "MemoryDenyWriteExecute would refuse: {l}"
        );
        if name == "socket" {
            if let Some(f) = rest
                .strip_prefix("socket(")
                .and_then(|a| a.split(',').next())
            {
                families.insert(f.to_string());
            }
        }
        used.insert(name);
    }
    assert!(used.contains("splice") || used.contains("read"), "{used:?}");
    // The exec that strace itself performs is allowed by systemd's filter anyway.
    let forbidden: Vec<_> = used
        .iter()
        .filter(|c| !allowed.contains(*c) && c.as_str() != "execve")
        .collect();
    assert!(
        forbidden.is_empty(),
        "the broker calls {forbidden:?}, outside SystemCallFilter=@system-service"
    );
    let bad: Vec<_> = families
        .iter()
        .filter(|f| !["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"].contains(&f.as_str()))
        .collect();
    assert!(
        bad.is_empty(),
        "the broker opens sockets of families {bad:?}, outside RestrictAddressFamilies="
    );
    eprintln!(
        "{} distinct syscalls, families {families:?}, all allowed: {used:?}",
        used.len()
    );
}

/// A uid with no passwd entry for the broker, and a group standing in for `docker`.
const BROKER_UID: u32 = 46_801;
const DOCKER_GID: u32 = 46_802;

/// How the two systemd units run the broker.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Identity {
    /// sockbroker-user.service: a non-root uid with the docker-like group as a
    /// supplementary group and CAP_CHOWN + CAP_FOWNER as ambient capabilities.
    ServiceUser,
    /// sockbroker.service: root whose capability bounding set is CAP_CHOWN +
    /// CAP_FOWNER (so its exec gets those two and nothing else).
    BoundedRoot,
}

impl Identity {
    fn uid(self) -> u32 {
        match self {
            Identity::ServiceUser => BROKER_UID,
            Identity::BoundedRoot => 0,
        }
    }

    /// `setpriv … sockbroker run --config CONFIG` as this identity.
    fn command(self, config: &Path) -> Command {
        let mut c = Command::new("setpriv");
        if self == Identity::ServiceUser {
            c.arg(format!("--reuid={BROKER_UID}"))
                .arg(format!("--regid={BROKER_UID}"))
                .arg(format!("--groups={DOCKER_GID}"))
                .arg("--ambient-caps=-all,+chown,+fowner");
        }
        c.args([
            "--inh-caps=-all,+chown,+fowner",
            "--bounding-set=-all,+chown,+fowner",
            "--",
        ])
        .arg(broker_bin())
        .args(["run", "--retry-interval", "200ms", "--config"])
        .arg(config);
        c
    }
}

fn proc_status(pid: u32, key: &str) -> String {
    read(Path::new(&format!("/proc/{pid}/status")))
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{key}:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default()
}

/// Give `path` owner `uid:gid` and permission bits `mode`.
fn own(path: &Path, uid: u32, gid: u32, mode: u32) {
    nix::unistd::chown(
        path,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The systemd units in miniature (without systemd): the broker with only
/// CAP_CHOWN and CAP_FOWNER, the upstream `root:docker 0660`, the socket
/// directory owned by the broker's uid (RuntimeDirectory=). The tenant socket
/// belongs to 231072 (chown needs CAP_CHOWN, the chmod after it CAP_FOWNER),
/// relays for a client of that uid, is re-owned in place on reload, and is
/// removed on SIGTERM.
fn run_with_only_chown_and_fowner(who: Identity) {
    if skip_unless_root("chown to other uids, setpriv")
        || !have("setpriv", "--version", "apt-get install util-linux")
    {
        return;
    }
    let s = Scene::new();
    // The upstream, like /var/run/docker.sock: root:docker 0660.
    own(&s.upstream.path, 0, DOCKER_GID, 0o660);
    // /run/sockbroker as RuntimeDirectory= makes it: owned by the unit's user, 0755.
    let run_dir = s.dir.path().join("run");
    std::fs::create_dir(&run_dir).unwrap();
    own(&run_dir, who.uid(), who.uid(), 0o755);
    // A root-owned directory: the service user may not create tenant directories there.
    let root_dir = s.dir.path().join("rootonly");
    std::fs::create_dir(&root_dir).unwrap();
    std::fs::set_permissions(&root_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = run_dir.join("ci/docker.sock");
    let other = root_dir.join("other/docker.sock");
    let yaml = |uid: u32, mode: &str| {
        format!(
            "defaults:\n  upstream: {}\n  drain_timeout: 2s\ntenants:\n  ci:\n    listen: {}\n    uid: {uid}\n    gid: {uid}\n    mode: \"{mode}\"\n  other:\n    listen: {}\n    uid: {ROOTMAP}\n    gid: {ROOTMAP}\n",
            s.upstream.path.display(),
            sock.display(),
            other.display()
        )
    };
    write_config(&s.config(), &yaml(ROOTMAP, "0660"));
    let mut b = Broker::spawn(who.command(&s.config()));
    wait_socket(&sock);
    let pid = b.child.id();
    assert_eq!(
        proc_status(pid, "Uid").split_whitespace().next(),
        Some(who.uid().to_string().as_str()),
        "the broker's uid"
    );
    // CAP_CHOWN = bit 0, CAP_FOWNER = bit 3.
    let ambient = if who == Identity::ServiceUser {
        0b1001
    } else {
        0
    };
    for (key, want) in [
        ("CapEff", 0b1001),
        ("CapPrm", 0b1001),
        ("CapBnd", 0b1001),
        ("CapAmb", ambient),
    ] {
        assert_eq!(
            u64::from_str_radix(&proc_status(pid, key), 16).unwrap(),
            want,
            "{key}"
        );
    }
    let (uid, gid, mode, ino) = socket_meta(&sock);
    assert_eq!((uid, gid, mode), (ROOTMAP, ROOTMAP, 0o660));
    let dir_meta = std::fs::metadata(sock.parent().unwrap()).unwrap();
    assert_eq!(
        (dir_meta.uid(), dir_meta.mode() & 0o7777),
        (who.uid(), 0o755),
        "the tenant directory the broker created"
    );
    // Relays for the tenant uid, through the upstream (group or owner access).
    let input = payload(256 << 10, 7);
    let out = run_client(&sock, &input, As::Ids(ROOTMAP, ROOTMAP));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(out.stdout, input);
    match who {
        // The service user cannot write into root's directory: down, saying why.
        Identity::ServiceUser => {
            b.wait_log("cannot create parent directory");
            assert!(!other.exists());
        }
        // Root owns it: no CAP_DAC_OVERRIDE needed.
        Identity::BoundedRoot => wait_socket(&other),
    }
    // Owner and mode changed in place: CAP_CHOWN + CAP_FOWNER on a socket that
    // belongs to someone else; same inode.
    write_config(&s.config(), &yaml(ROOTMAP + 1, "0640"));
    wait_until("socket re-owned in place", DEADLINE, || {
        socket_meta(&sock) == (ROOTMAP + 1, ROOTMAP + 1, 0o640, ino)
    });
    // SIGTERM removes the socket (the directory is the broker's) and exits 0.
    b.signal(Signal::SIGTERM);
    assert!(b.wait_exit(DEADLINE).success(), "{}", b.logs());
    assert!(!sock.exists(), "socket left behind after SIGTERM");
    assert!(!other.exists(), "socket left behind after SIGTERM");
    assert!(
        sock.parent().unwrap().is_dir(),
        "the tenant directory stays"
    );
}

/// sockbroker-user.service: uid 46801, supplementary group "docker", ambient
/// CAP_CHOWN + CAP_FOWNER. A tenant under a root-owned directory is down with the reason.
#[test]
fn runs_as_service_user_with_only_chown_and_fowner() {
    run_with_only_chown_and_fowner(Identity::ServiceUser);
}

/// sockbroker.service: root with the bounding set CAP_CHOWN + CAP_FOWNER.
#[test]
fn runs_as_root_with_only_chown_and_fowner() {
    run_with_only_chown_and_fowner(Identity::BoundedRoot);
}

/// A crashed broker leaves its sockets behind, owned by the tenants (`0660`).
/// A broker with only CAP_CHOWN + CAP_FOWNER may not connect to them to see
/// whether they are stale (EACCES), so it asks the kernel which sockets listen
/// (sock_diag): the leftover is replaced and the tenant comes up, while a live
/// socket it cannot connect to either is left alone and the tenant is down.
#[test]
fn replaces_a_leftover_socket_it_may_not_connect_to() {
    if skip_unless_root("chown to other uids, setpriv")
        || !have("setpriv", "--version", "apt-get install util-linux")
    {
        return;
    }
    let who = Identity::ServiceUser;
    let s = Scene::new();
    let run_dir = s.dir.path().join("run");
    for d in [run_dir.clone(), run_dir.join("stale"), run_dir.join("live")] {
        std::fs::create_dir(&d).unwrap();
        own(&d, who.uid(), who.uid(), 0o755);
    }
    let tenant_owned = |p: &Path| own(p, ROOTMAP, ROOTMAP, 0o660);
    // What a crash leaves: the file, nobody listening.
    let stale = run_dir.join("stale/docker.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    tenant_owned(&stale);
    let stale_ino = std::fs::metadata(&stale).unwrap().ino();
    // Someone else's live socket, also out of the broker's reach.
    let live = run_dir.join("live/docker.sock");
    let _live_listener = std::os::unix::net::UnixListener::bind(&live).unwrap();
    tenant_owned(&live);
    let live_ino = std::fs::metadata(&live).unwrap().ino();
    write_config(
        &s.config(),
        &format!(
            "defaults:\n  upstream: {}\ntenants:\n  stale:\n    listen: {}\n    uid: {ROOTMAP}\n    gid: {ROOTMAP}\n  live:\n    listen: {}\n    uid: {ROOTMAP}\n    gid: {ROOTMAP}\n",
            s.upstream.path.display(),
            stale.display(),
            live.display()
        ),
    );
    let mut b = Broker::spawn(who.command(&s.config()));
    b.wait_log("a live socket someone is listening on");
    wait_until("the leftover socket replaced", DEADLINE, || {
        std::fs::metadata(&stale).is_ok_and(|m| m.ino() != stale_ino)
    });
    let out = run_client(&stale, b"ping", As::Ids(ROOTMAP, ROOTMAP));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(out.stdout, b"ping");
    assert_eq!(
        std::fs::metadata(&live).unwrap().ino(),
        live_ino,
        "a live socket was replaced"
    );
    assert!(!b.logs().contains("could not be probed"), "{}", b.logs());
    b.signal(Signal::SIGTERM);
    assert!(b.wait_exit(DEADLINE).success(), "{}", b.logs());
}

// ---------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------

type Yaml = serde_yaml::Value;

fn y<'a>(v: &'a Yaml, path: &str) -> &'a Yaml {
    let mut cur = v;
    for k in path.split('.') {
        cur = match k.parse::<usize>() {
            Ok(i) => cur.get(i),
            Err(_) => cur.get(k),
        }
        .unwrap_or_else(|| panic!("no {path} (at {k}) in {v:?}"));
    }
    cur
}

fn ys<'a>(v: &'a Yaml, path: &str) -> &'a str {
    y(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string"))
}

fn yseq<'a>(v: &'a Yaml, path: &str) -> &'a Vec<Yaml> {
    y(v, path)
        .as_sequence()
        .unwrap_or_else(|| panic!("{path} is not a list"))
}

/// Every document of every manifest in deploy/kubernetes (kustomization excluded), by kind.
fn manifests() -> BTreeMap<String, Yaml> {
    let dir = deploy("kubernetes");
    let kust: Yaml = serde_yaml::from_str(&read(&dir.join("kustomization.yaml"))).unwrap();
    let listed: BTreeSet<String> = yseq(&kust, "resources")
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let mut files = BTreeSet::new();
    let mut by_kind = BTreeMap::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if !name.ends_with(".yaml") || name == "kustomization.yaml" {
            continue;
        }
        files.insert(name.clone());
        let text = read(&dir.join(&name));
        // Documents are separated by `---` lines.
        let mut docs = vec![String::new()];
        for l in text.lines() {
            if l.trim_end() == "---" {
                docs.push(String::new());
            } else {
                docs.last_mut().unwrap().push_str(&format!("{l}\n"));
            }
        }
        for doc in docs.iter().filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        }) {
            let v: Yaml = serde_yaml::from_str(doc).unwrap_or_else(|e| panic!("{name}: {e}"));
            let kind = ys(&v, "kind").to_string();
            assert!(
                by_kind.insert(kind.clone(), v).is_none(),
                "two {kind}s in deploy/kubernetes"
            );
        }
    }
    assert_eq!(files, listed, "kustomization.yaml must list every manifest");
    by_kind
}

/// The port of `metrics.listen` (`HOST:PORT`) in a broker config.
fn metrics_port(cfg: &Yaml) -> (String, u16) {
    let listen = ys(cfg, "metrics.listen");
    let (host, port) = listen.rsplit_once(':').unwrap();
    (host.to_string(), port.parse().unwrap())
}

/// The essentials of the DaemonSet, ConfigMap and metrics Service, checked
/// against each other and against the embedded config, which `sockbroker check`
/// must accept: probes on /readyz and /healthz at metrics.listen's port, the
/// ConfigMap mounted as a directory (no subPath: it would never update) where
/// --config points, the socket directory a hostPath at the same path as every
/// tenant's listen, the upstream mounted, requests set, capabilities minimal,
/// a grace period above the drain timeout, and a Service selecting the pods.
#[test]
fn kubernetes_manifests_fit_together() {
    let m = manifests();
    for (kind, api) in [
        ("Namespace", "v1"),
        ("ConfigMap", "v1"),
        ("DaemonSet", "apps/v1"),
        ("Service", "v1"),
    ] {
        let v = m.get(kind).unwrap_or_else(|| panic!("no {kind}"));
        assert_eq!(ys(v, "apiVersion"), api, "{kind}");
    }
    let ns = ys(&m["Namespace"], "metadata.name");
    for kind in ["ConfigMap", "DaemonSet", "Service"] {
        assert_eq!(ys(&m[kind], "metadata.namespace"), ns, "{kind} namespace");
    }

    // The embedded config is valid for the real binary.
    let cm = &m["ConfigMap"];
    let data = y(cm, "data").as_mapping().unwrap();
    assert_eq!(data.len(), 1, "one config file in the ConfigMap");
    let (key, cfg_text) = data.iter().next().unwrap();
    let key = key.as_str().unwrap();
    let cfg_text = cfg_text.as_str().unwrap();
    let dir = scratch();
    let cfg_path = dir.path().join(key);
    std::fs::write(&cfg_path, cfg_text).unwrap();
    let mut c = Command::new(broker_bin());
    c.arg("check").arg("--config").arg(&cfg_path);
    ok(c, DEADLINE);
    let cfg: Yaml = serde_yaml::from_str(cfg_text).unwrap();
    let (host, port) = metrics_port(&cfg);
    assert!(
        host == "0.0.0.0" || host == "[::]",
        "metrics.listen {host}: the kubelet probes the pod IP, not loopback"
    );

    let ds = &m["DaemonSet"];
    let labels = y(ds, "spec.template.metadata.labels");
    assert_eq!(y(ds, "spec.selector.matchLabels"), labels);
    let pod = y(ds, "spec.template.spec");
    let containers = yseq(pod, "containers");
    assert_eq!(containers.len(), 1);
    let ctr = &containers[0];
    let volumes = yseq(pod, "volumes");
    let volume = |name: &str| {
        volumes
            .iter()
            .find(|v| ys(v, "name") == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
    };
    let mounts = yseq(ctr, "volumeMounts");

    // --config points into the ConfigMap volume, mounted as a directory.
    let args: Vec<&str> = yseq(ctr, "args")
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "run");
    let at = args
        .iter()
        .position(|a| *a == "--config")
        .expect("--config");
    let config_arg = Path::new(args[at + 1]);
    let cfg_mount = mounts
        .iter()
        .find(|mt| {
            y(volume(ys(mt, "name")), "configMap")
                .get("name")
                .and_then(|n| n.as_str())
                == Some(ys(cm, "metadata.name"))
        })
        .expect("the ConfigMap is mounted");
    assert!(
        cfg_mount.get("subPath").is_none(),
        "subPath mounts never see ConfigMap updates"
    );
    assert_eq!(
        config_arg.parent().unwrap(),
        Path::new(ys(cfg_mount, "mountPath"))
    );
    assert_eq!(config_arg.file_name().unwrap().to_str().unwrap(), key);

    // Every listen path is under a hostPath mounted at the same path as on the node.
    let host_mount = |p: &Path| {
        mounts.iter().find(|mt| {
            let v = volume(ys(mt, "name"));
            let mp = Path::new(ys(mt, "mountPath"));
            v.get("hostPath").is_some() && p.starts_with(mp)
        })
    };
    let tenants = y(&cfg, "tenants").as_mapping().unwrap();
    assert!(!tenants.is_empty());
    for (name, t) in tenants {
        let listen = Path::new(ys(t, "listen"));
        let mt =
            host_mount(listen).unwrap_or_else(|| panic!("{name:?}: {listen:?} not on a hostPath"));
        assert_eq!(
            ys(volume(ys(mt, "name")), "hostPath.path"),
            ys(mt, "mountPath"),
            "tenant sockets must have the same path in the pod and on the node"
        );
        assert!(mt.get("readOnly").and_then(|r| r.as_bool()) != Some(true));
        let upstream = t
            .get("upstream")
            .or_else(|| cfg.get("defaults").and_then(|d| d.get("upstream")))
            .and_then(|u| u.as_str())
            .expect("an upstream");
        assert!(
            host_mount(Path::new(upstream)).is_some(),
            "upstream {upstream} is not mounted from the node"
        );
    }

    // Probes and the port.
    let ports = yseq(ctr, "ports");
    let port_name = ports
        .iter()
        .find(|p| y(p, "containerPort").as_u64() == Some(port as u64))
        .map(|p| ys(p, "name"))
        .unwrap_or_else(|| panic!("no containerPort {port}"));
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let g = y(ctr, &format!("{probe}.httpGet"));
        assert_eq!(ys(g, "path"), path, "{probe}");
        let p = y(g, "port");
        assert!(
            p.as_u64() == Some(port as u64) || p.as_str() == Some(port_name),
            "{probe} port {p:?} is not metrics.listen's {port}"
        );
    }
    for r in ["cpu", "memory"] {
        assert!(
            y(ctr, "resources.requests").get(r).is_some(),
            "requests.{r}"
        );
    }
    let caps = |k: &str| -> BTreeSet<String> {
        yseq(ctr, &format!("securityContext.capabilities.{k}"))
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(caps("drop"), BTreeSet::from(["ALL".to_string()]));
    assert_eq!(
        caps("add"),
        BTreeSet::from(["CHOWN".to_string(), "FOWNER".to_string()])
    );
    assert_eq!(
        y(ctr, "securityContext.allowPrivilegeEscalation").as_bool(),
        Some(false)
    );
    assert!(pod.get("hostUsers").and_then(|h| h.as_bool()) != Some(false));
    // Grace period above the largest drain timeout (30s unless set).
    let mut drain = 30u64;
    for d in std::iter::once(cfg.get("defaults"))
        .chain(tenants.values().map(Some))
        .flatten()
    {
        if let Some(s) = d.get("drain_timeout").and_then(|s| s.as_str()) {
            let secs: u64 = s.trim_end_matches('s').parse().expect("drain_timeout in s");
            drain = drain.max(secs);
        }
    }
    assert!(
        y(pod, "terminationGracePeriodSeconds").as_u64().unwrap() > drain,
        "terminationGracePeriodSeconds must exceed drain_timeout {drain}s"
    );

    // The metrics Service selects the pods and targets the metrics port.
    let svc = &m["Service"];
    for (k, v) in y(svc, "spec.selector").as_mapping().unwrap() {
        assert_eq!(labels.get(k.as_str().unwrap()), Some(v), "Service selector");
    }
    let sp = &yseq(svc, "spec.ports")[0];
    let tp = y(sp, "targetPort");
    assert!(tp.as_u64() == Some(port as u64) || tp.as_str() == Some(port_name));
    assert_eq!(
        y(svc, "spec.publishNotReadyAddresses").as_bool(),
        Some(true),
        "a broker with a tenant down is not ready, and its metrics matter then"
    );
}

/// Schema validation of the manifests with `kubernetes-validate --strict` (PyPI;
/// ships the Kubernetes JSON schemas, works offline). Found at
/// `$SB_KUBERNETES_VALIDATE`, else where tests/setup.sh installs it, else on PATH.
#[test]
fn kubernetes_manifests_pass_schema_validation() {
    let prog = std::env::var("SB_KUBERNETES_VALIDATE").unwrap_or_else(|_| {
        let venv = "/opt/sockbroker-ci/kv/bin/kubernetes-validate";
        if Path::new(venv).exists() {
            venv.into()
        } else {
            "kubernetes-validate".into()
        }
    });
    if !have(
        &prog,
        "--version",
        "tests/setup.sh installs it in a venv (or pip install kubernetes-validate==1.37.0 and set SB_KUBERNETES_VALIDATE)",
    ) {
        return;
    }
    let dir = deploy("kubernetes");
    let mut c = Command::new(&prog);
    c.arg("--strict");
    for f in [
        "namespace.yaml",
        "configmap.yaml",
        "daemonset.yaml",
        "service.yaml",
    ] {
        c.arg(dir.join(f));
    }
    let o = run(c, Duration::from_secs(120));
    assert!(o.status.success(), "kubernetes-validate:\n{}", text(&o));
    assert!(!text(&o).contains("ERROR"), "{}", text(&o));
}

// ---------------------------------------------------------------------------
// Grafana
// ---------------------------------------------------------------------------

/// Every PromQL expression in the dashboard (panel targets and annotations).
fn dashboard_exprs() -> Vec<String> {
    let d: serde_json::Value =
        serde_json::from_str(&read(&deploy("grafana/sockbroker.json"))).unwrap();
    let mut exprs = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    if k == "expr" {
                        out.push(v.as_str().unwrap().to_string());
                    } else {
                        walk(v, out);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&d["panels"], &mut exprs);
    walk(&d["annotations"], &mut exprs);
    for t in d["templating"]["list"].as_array().unwrap() {
        if let Some(q) = t["query"]["query"].as_str() {
            exprs.push(q.to_string());
        }
    }
    assert!(exprs.len() > 10, "{exprs:?}");
    exprs
}

/// Metric names (`sockbroker_*`, `process_*`) in an expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let word_start = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if word_start && (expr[i..].starts_with("sockbroker_") || expr[i..].starts_with("process_"))
        {
            let end = expr[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(b.len(), |e| i + e);
            out.insert(expr[i..end].to_string());
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// Every metric the dashboard queries is in a real broker's /metrics, and every
/// label it groups or filters by exists on the series it uses.
#[test]
fn grafana_dashboard_queries_only_exported_metrics() {
    if skip_unless_root("chown to other uids, setpriv") {
        return;
    }
    const T: &str = "uid: 0\ngid: 0\nmode: \"0600\"";
    let s = Scene::new();
    let (_b, addr) = start_with_metrics(
        &s.config(),
        |addr| format!("metrics:\n  listen: {addr}\n{}", s.yaml(&[("a", T)])),
        &["--retry-interval", "200ms"],
        &[],
    );
    wait_socket(&s.sock("a"));
    // One relayed connection, so the histograms have observations.
    drop(echo_conn(&s.sock("a"), b"ping"));
    let mut exposition = String::new();
    wait_until("a finished connection in /metrics", DEADLINE, || {
        exposition = http_get(&addr, "/metrics").unwrap().1;
        metric_value(
            &exposition,
            "sockbroker_connection_duration_seconds_count{tenant=\"a\"}",
        )
        .is_some_and(|n| n >= 1.0)
    });
    // name → label names seen on its series.
    let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for l in exposition.lines().filter(|l| !l.starts_with('#')) {
        let name_end = l.find(['{', ' ']).unwrap_or(l.len());
        let labels = series.entry(l[..name_end].to_string()).or_default();
        if let Some(body) = l[name_end..].strip_prefix('{') {
            let body = &body[..body.rfind('}').unwrap()];
            for kv in body.split("\",") {
                if let Some((k, _)) = kv.split_once('=') {
                    labels.insert(k.trim().to_string());
                }
            }
        }
    }
    let mut checked = BTreeSet::new();
    for expr in dashboard_exprs() {
        let names = metric_names(&expr);
        assert!(!names.is_empty() || expr.contains("time()"), "{expr}");
        for n in &names {
            assert!(
                series.contains_key(n),
                "the dashboard queries {n}, which /metrics does not have:\n  {expr}"
            );
            checked.insert(n.clone());
        }
        // Labels in `by (…)` and `{…}` matchers exist on one of the expression's metrics
        // (instance and job are added by Prometheus).
        let mut labels = BTreeSet::new();
        for part in expr.split("by (").skip(1) {
            for l in part[..part.find(')').unwrap()].split(',') {
                labels.insert(l.trim().to_string());
            }
        }
        for part in expr.split('{').skip(1) {
            for m in part[..part.find('}').unwrap()].split(',') {
                if let Some(i) = m.find(['=', '!']) {
                    labels.insert(m[..i].trim().to_string());
                }
            }
        }
        for l in labels {
            if ["instance", "job", ""].contains(&l.as_str()) {
                continue;
            }
            let has = names.iter().any(|n| {
                series.get(n).is_some_and(|ls| ls.contains(&l))
                    || (l == "le" && n.ends_with("_bucket"))
            });
            assert!(has, "label {l} is on none of {names:?}:\n  {expr}");
        }
    }
    for must in [
        "sockbroker_tenant_up",
        "sockbroker_connections_active",
        "sockbroker_bytes_total",
        "sockbroker_connections_rejected_total",
        "sockbroker_config_last_reload_successful",
    ] {
        assert!(checked.contains(must), "the dashboard does not show {must}");
    }
}

/// Every expression of the dashboard parses as PromQL: `promtool check rules` on
/// a rule file made of them (Grafana's variables replaced by plain values).
#[test]
fn grafana_dashboard_exprs_are_valid_promql() {
    if !have("promtool", "--version", "apt-get install prometheus") {
        return;
    }
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in dashboard_exprs().iter().enumerate() {
        if e.starts_with("label_values(") {
            continue; // Grafana's own function, not PromQL
        }
        let e = e
            .replace("$__rate_interval", "5m")
            .replace("$instance", ".*")
            .replace("$tenant", ".*")
            .replace("$job", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:expr{i}\n        expr: {}\n",
            serde_json::to_string(&e).unwrap()
        ));
    }
    let dir = scratch();
    let f = dir.path().join("rules.yml");
    std::fs::write(&f, rules).unwrap();
    let mut c = Command::new("promtool");
    c.args(["check", "rules"]).arg(&f);
    ok(c, Duration::from_secs(60));
}

// ---------------------------------------------------------------------------
// Container image
// ---------------------------------------------------------------------------

/// A static sockbroker: `$SB_STATIC_BIN`, else built here with
/// `+crt-static` for the host's glibc target into target/static.
fn static_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SB_STATIC_BIN") {
        return p.into();
    }
    let rustc = Command::new("rustc").arg("-vV").output().unwrap();
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .unwrap();
    let target_dir = workspace().join("target/static");
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace())
        .args(["build", "--locked", "-p", "sockbroker", "--target", &host])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static");
    ok(c, Duration::from_secs(1200));
    target_dir.join(&host).join("debug/sockbroker")
}

/// deploy/container/Dockerfile's final stage is Dockerfile.prebuilt's, so
/// building the latter tests the former's image.
#[test]
fn dockerfiles_share_the_final_stage() {
    let tail = |f: &str| {
        let t = read(&deploy("container").join(f));
        let i = t.find("# ---- final stage").expect("final stage marker");
        t[i..]
            .lines()
            .skip(1)
            .filter(|l| !l.starts_with("COPY "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(tail("Dockerfile"), tail("Dockerfile.prebuilt"));
    let full = read(&deploy("container/Dockerfile"));
    assert!(full.contains("FROM scratch") && full.contains("+crt-static"));
    assert!(full.contains("COPY --from=build /sockbroker /usr/local/bin/sockbroker"));
    assert!(read(&deploy("container/Dockerfile.prebuilt"))
        .contains("COPY sockbroker /usr/local/bin/sockbroker"));
}

/// Build deploy/container/Dockerfile.prebuilt with a static binary on a
/// network-less engine (`--network none`, no registry), check the image is just
/// the binary, run `--version` and `check` in it, then run the broker from it
/// as the docs say (host user namespace, only CHOWN + FOWNER, read-only root,
/// no network): its tenant socket appears on the host owned by 231072, relays
/// to an upstream on the host, and is removed by `docker stop`.
#[test]
fn container_image_builds_and_runs_without_network() {
    if skip_unless_root("chown to other uids, setpriv")
        || !have("dockerd", "--version", "apt-get install docker.io")
    {
        return;
    }
    let bin = static_binary();
    let ldd = Command::new("ldd").arg(&bin).output().unwrap();
    assert!(
        !ldd.status.success() || String::from_utf8_lossy(&ldd.stdout).contains("statically"),
        "{} is not static:\n{}",
        bin.display(),
        String::from_utf8_lossy(&ldd.stdout)
    );
    let engine = match DockerEngine::start(3, "dockremap") {
        Ok(e) => e,
        Err(e) => panic!("{e}"),
    };
    let d = |args: &[&str]| {
        let mut c = engine.docker();
        c.args(args);
        c
    };
    let image = format!("sockbroker-e2e:{}", std::process::id());

    // Build context: the binary only.
    let ctx = scratch();
    std::fs::copy(&bin, ctx.path().join("sockbroker")).unwrap();
    let mut c = d(&["build", "--network", "none", "-q", "-t", &image, "-f"]);
    c.arg(deploy("container/Dockerfile.prebuilt"))
        .arg(ctx.path())
        .env("DOCKER_BUILDKIT", "0");
    ok(c, Duration::from_secs(300));
    let cleanup = Cleanup(vec![d(&["rmi", "-f", &image])]);
    let size: u64 = ok(
        d(&["image", "inspect", "-f", "{{.Size}}", &image]),
        DEADLINE,
    )
    .trim()
    .parse()
    .unwrap();
    assert!(
        size <= std::fs::metadata(&bin).unwrap().len() + (1 << 20),
        "the image ({size} bytes) should hold little but the binary"
    );

    let version = ok(
        d(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--pull",
            "never",
            &image,
            "--version",
        ]),
        DEADLINE,
    );
    assert!(version.starts_with("sockbroker "), "{version}");

    // The broker's scene on the host: a config directory, the socket directory, an upstream.
    let s = Scene::new();
    let etc = s.dir.path().join("etc");
    let run_dir = s.dir.path().join("run");
    std::fs::create_dir(&etc).unwrap();
    std::fs::create_dir(&run_dir).unwrap();
    for p in [&etc, &run_dir] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let sock = run_dir.join("ci/docker.sock");
    std::fs::write(
        etc.join("sockbroker.yaml"),
        format!(
            "defaults:\n  upstream: /upstream/upstream.sock\n  drain_timeout: 2s\ntenants:\n  ci:\n    listen: {}\n    uid: {ROOTMAP}\n    gid: {ROOTMAP}\n    mode: \"0660\"\n",
            sock.display()
        ),
    )
    .unwrap();
    let vols = [
        format!("{}:/etc/sockbroker:ro", etc.display()),
        format!("{}:{}", run_dir.display(), run_dir.display()),
        format!("{}:/upstream", s.dir.path().display()),
    ];
    let base = |extra: &[&str]| {
        let mut c = d(&[
            "run",
            "--network",
            "none",
            "--pull",
            "never",
            "--userns",
            "host",
        ]);
        for v in &vols {
            c.arg("-v").arg(v);
        }
        c.args(extra);
        c
    };

    // `check` as an unprivileged user, no capabilities at all.
    let mut c = base(&["--rm", "--user", "65534:65534", "--cap-drop", "ALL"]);
    c.args([&image, "check"]);
    let out = ok(c, DEADLINE);
    assert!(out.contains("valid, 1 tenant(s)"), "{out}");

    // `run` as documented.
    let name = format!("sbe2e-{}-broker", std::process::id());
    let mut c = base(&[
        "-d",
        "--name",
        &name,
        "--read-only",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "CHOWN",
        "--cap-add",
        "FOWNER",
        "--security-opt",
        "no-new-privileges",
        "--stop-timeout",
        "20",
    ]);
    c.arg(&image);
    ok(c, DEADLINE);
    let cleanup = cleanup.and(d(&["rm", "-f", &name]));
    wait_until("the container's tenant socket", DEADLINE, || {
        UnixStream::connect(&sock).is_ok()
    });
    let (uid, gid, mode, _) = socket_meta(&sock);
    assert_eq!((uid, gid, mode), (ROOTMAP, ROOTMAP, 0o660));
    let input = payload(128 << 10, 11);
    let out = run_client(&sock, &input, As::Ids(ROOTMAP, ROOTMAP));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(out.stdout, input);
    ok(d(&["stop", &name]), Duration::from_secs(60));
    let code = ok(
        d(&["inspect", "-f", "{{.State.ExitCode}}", &name]),
        DEADLINE,
    );
    let logs = run(d(&["logs", &name]), DEADLINE);
    assert_eq!(
        code.trim(),
        "0",
        "broker in the container:\n{}",
        text(&logs)
    );
    assert!(!sock.exists(), "docker stop must remove the tenant socket");
    drop(cleanup);
    drop(engine);
}

/// Commands run at drop (best effort), e.g. removing images and containers.
struct Cleanup(Vec<Command>);

impl Cleanup {
    fn and(mut self, c: Command) -> Cleanup {
        self.0.push(c);
        self
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in self.0.iter_mut().rev() {
            let _ = c
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
