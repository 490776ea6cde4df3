//! The systemd units in deploy/systemd: `systemd-analyze verify` and the
//! settings the docs promise.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use sockbroker_e2e::*;
use sockbroker_e2e::{output_text as text, run_cmd as run};

use super::*;

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

/// What docs/operations.md promises of the units, and that the user variant
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
