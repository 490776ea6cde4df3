//! sd_notify spoken to a real notify socket: READY=1, STATUS=, RELOADING=1
//! with MONOTONIC_USEC=, STOPPING=1; a socket nobody reads does not stall the broker.

use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::sys::signal::Signal;
use sockbroker_e2e::*;

/// CLOCK_MONOTONIC in microseconds (what MONOTONIC_USEC= carries).
fn monotonic_usec() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    ts.tv_sec() as u64 * 1_000_000 + ts.tv_nsec() as u64 / 1_000
}

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
pub(crate) struct NotifySocket {
    path: PathBuf,
    notices: Arc<Mutex<Vec<Notice>>>,
}

impl NotifySocket {
    pub(crate) fn bind(path: &Path, watched: Vec<PathBuf>) -> NotifySocket {
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
