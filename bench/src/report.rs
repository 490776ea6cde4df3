//! The report around the tables: machine, versions, targets.

use crate::opts::Opts;
use crate::procs::kib_field;
use crate::table::{fmt_num, Row};
use crate::target::Kind;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|x| x.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = kib_field(
        &std::fs::read_to_string("/proc/meminfo").unwrap_or_default(),
        "MemTotal",
    ) / 1024
        / 1024;
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, {mem} GiB RAM, Linux {}",
        kernel.trim()
    )
}

pub(crate) fn fs_label(dir: &Path) -> String {
    let tmpfs = nix::sys::statfs::statfs(dir)
        .map(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
        .unwrap_or(false);
    format!(
        "{} ({})",
        dir.display(),
        if tmpfs { "tmpfs" } else { "not tmpfs" }
    )
}

pub(crate) fn socat_version(opts: &Opts) -> String {
    Command::new(&opts.socat)
        .arg("-V")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find(|l| l.contains("socat version"))
                .map(|l| l.trim().to_owned())
        })
        .unwrap_or_else(|| "socat (version unknown)".into())
}

/// The 1, 5 and 15 minute load averages (/proc/loadavg): how busy the
/// machine was, which the rates depend on.
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// One target's verdict line.
fn verdict(out: &mut String, label: &str, ok: Option<bool>, detail: &str) {
    let v = match ok {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "not measured",
    };
    let _ = writeln!(out, "- {label}: {v} ({detail})");
}

/// The targets of issue #17 (docs/performance.md "Targets"), each checked
/// against this run's medians: `rows` from the main table, `policy` from the
/// policy group's.
pub(crate) fn targets_summary(rows: &[Row], policy: &[Row]) -> String {
    let find = |name: &str| rows.iter().find(|r| r.name == name);
    let mut out = String::new();
    // sockbroker's value over another column's, for a rate row.
    let over = |name: &str, k: Kind| -> Option<f64> {
        let r = find(name)?;
        Some(r.med(Kind::Broker)? / r.med(k)?)
    };
    let c2 = Kind::Socat.name();
    for tag in ["", " [threads]"] {
        for c in ["1 conn", "16 conns"] {
            let name = format!("round trips, {c}{tag}");
            if find(&name).is_none() {
                continue;
            }
            let (s, f) = (over(&name, Kind::Socat), over(&name, Kind::Floor));
            let ok = match (s, f) {
                (Some(s), Some(f)) => Some(s >= 1.0 && f >= 0.95),
                _ => None,
            };
            let detail = format!("{} {c2}, {} floor", ratio_text(s), ratio_text(f));
            verdict(
                &mut out,
                &format!("{name} ≥ 1.0x {c2} and ≥ 0.95x floor"),
                ok,
                &detail,
            );
        }
        for w in ["1 worker", "16 workers"] {
            let name = format!("connection rate, {w}{tag}");
            if find(&name).is_none() {
                continue;
            }
            let f = over(&name, Kind::Floor);
            verdict(
                &mut out,
                &format!("{name} ≥ 0.9x floor"),
                f.map(|f| f >= 0.9),
                &format!("{} floor", ratio_text(f)),
            );
        }
        let up = format!("throughput up (into sink), 8 conns{tag}");
        let down = format!("throughput down (out of source), 8 conns{tag}");
        if find(&up).is_some() || find(&down).is_some() {
            let (u, d) = (over(&up, Kind::Socat), over(&down, Kind::Socat));
            verdict(
                &mut out,
                &format!("throughput, 8 connections{tag} ≥ 2.5x {c2}"),
                u.zip(d).map(|(u, d)| u >= 2.5 && d >= 2.5),
                &format!("up {}, down {}", ratio_text(u), ratio_text(d)),
            );
        }
    }
    let med = |name: &str| find(name).and_then(|r| r.med(Kind::Broker));
    let after = med("relay memory per connection after one round trip (1.5 s later)");
    verdict(
        &mut out,
        "≤ 6 KiB relay memory per connection after it carried data",
        after.map(|v| v <= 6.0),
        &format!(
            "{} KiB; idle {} KiB",
            fmt_num(after),
            fmt_num(med("relay memory per idle connection"))
        ),
    );
    let cpu8 = policy
        .iter()
        .find(|r| r.name == "GET /_ping, 8 keep-alive conns: relay CPU per request");
    let pol = |k: Kind| cpu8.and_then(|r| Some(r.med(k)? / r.med(Kind::Broker)?));
    let (ro, ns) = (pol(Kind::ReadOnly), pol(Kind::UsernsSafe));
    verdict(
        &mut out,
        "policy mode, 8 keep-alive connections: relay CPU per request ≤ 1.3x the byte relay's",
        ro.zip(ns).map(|(a, b)| a <= 1.3 && b <= 1.3),
        &format!(
            "read-only {}, userns-safe {}; haproxy {}",
            ratio_text(ro),
            ratio_text(ns),
            ratio_text(pol(Kind::Haproxy))
        ),
    );
    let n = 10_000;
    // A socket is renamed into place only after listen(2): present = accepting.
    let st = med(&format!(
        "startup, {n} tenants: all sockets present (= accepting)"
    ));
    let verified = med(&format!("startup, {n} tenants: then a connection to each"));
    let rss = med(&format!("RSS with {n} tenants"));
    verdict(
        &mut out,
        "regression guard: 10,000 tenants up in ≤ 2 s with RSS ≤ 64 MiB",
        st.zip(rss).map(|(s, m)| s <= 2.0 && m <= 64.0),
        &format!(
            "all present {} s, a connection to each by {} s; {} MiB",
            fmt_num(st),
            fmt_num(verified),
            fmt_num(rss)
        ),
    );
    let reload = med(&format!("reload, {n} tenants: rename → new socket accepts"));
    verdict(
        &mut out,
        "regression guard: reload at 10,000 tenants ≤ 0.5 s",
        reload.map(|ms| ms <= 500.0),
        &format!("{} ms", fmt_num(reload)),
    );
    out
}

/// A ratio in a verdict line, to three places: with two, a row just below
/// its target (0.947) read "NOT met (0.95x)".
fn ratio_text(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.3}x"))
}
