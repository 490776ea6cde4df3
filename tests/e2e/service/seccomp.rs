//! The units' system-call filter against the syscalls the broker really
//! makes (strace).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use sockbroker_e2e::*;
use sockbroker_e2e::{output_text as text, run_ok as ok};

use super::notify::NotifySocket;
use super::*;

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
