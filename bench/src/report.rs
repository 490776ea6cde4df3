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

pub(crate) fn targets_summary(rows: &[Row]) -> String {
    let find = |name: &str| rows.iter().find(|r| r.name == name);
    let mut out = String::new();
    let mut check = |label: &str, ok: Option<bool>, detail: String| {
        let verdict = match ok {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "not measured",
        };
        let _ = writeln!(out, "- {label}: {verdict} ({detail})");
    };
    let vs_direct = |name: &str, want: f64| -> (Option<bool>, String) {
        match find(name).and_then(|r| Some((r.med(Kind::Broker)?, r.med(Kind::Direct)?))) {
            Some((b, d)) => (Some(b / d >= want), format!("{:.2}x direct", b / d)),
            None => (None, "-".into()),
        }
    };
    let (ok_up, d_up) = vs_direct("throughput up (into sink), 8 conns", 0.5);
    let (ok_down, d_down) = vs_direct("throughput down (out of source), 8 conns", 0.5);
    check(
        "throughput, 8 connections ≥ 0.5x direct",
        ok_up.zip(ok_down).map(|(a, b)| a && b),
        format!("up {d_up}, down {d_down}"),
    );
    let (ok, d) = vs_direct("round trips, 16 conns", 0.6);
    check("round-trip rate, 16 connections ≥ 0.6x direct", ok, d);
    let (ok, d) = vs_direct("connection rate, 16 workers", 0.5);
    check("connection rate, 16 workers ≥ 0.5x direct", ok, d);
    let idle = find("relay memory per idle connection").and_then(|r| r.med(Kind::Broker));
    check(
        "≤ 4 KiB relay memory per idle connection",
        idle.map(|v| v <= 4.0),
        format!("{} KiB", fmt_num(idle)),
    );
    let n = 10_000;
    // A socket is renamed into place only after listen(2): present = accepting.
    let st = find(&format!(
        "startup, {n} tenants: all sockets present (= accepting)"
    ))
    .and_then(|r| r.med(Kind::Broker));
    let verified = find(&format!("startup, {n} tenants: then a connection to each"))
        .and_then(|r| r.med(Kind::Broker));
    let rss = find(&format!("RSS with {n} tenants")).and_then(|r| r.med(Kind::Broker));
    check(
        "10,000 tenants up in ≤ 2 s",
        st.map(|s| s <= 2.0),
        format!(
            "all present {} s; a connection to each of them made by {} s",
            fmt_num(st),
            fmt_num(verified)
        ),
    );
    check(
        "10,000 tenants with RSS ≤ 64 MiB",
        rss.map(|m| m <= 64.0),
        format!("{} MiB", fmt_num(rss)),
    );
    out
}
