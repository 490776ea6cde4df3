//! Scenario groups: alternating rounds; the relay groups (throughput, round
//! trips, connection rate), idle memory, tenants, reload.

use crate::clients::{
    connection_rate, request_response, round_trip, throughput_down, throughput_up, RunResult,
};
use crate::opts::Opts;
use crate::procs::{pss_kib, status_kib, tree_mem_kib};
use crate::table::{pct_us, Row};
use crate::target::{
    broker_config, connect, log_path, second_target, self_cpu_ns, spawn_broker, start_broker,
    start_floor, tenant_names, tenant_path, Kind, Target,
};
use crate::upstream::Upstream;
use crate::MSG;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub(crate) type Scenario<'a> = (
    &'static str,
    String,
    &'static str,
    bool,
    Box<dyn Fn(&Path) -> RunResult + 'a>,
);

/// Run each scenario for every target in alternating order, `rounds` times.
pub(crate) fn run_alternating(
    opts: &Opts,
    targets: &[&Target],
    scenarios: Vec<Scenario<'_>>,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for (metric, name, unit, hb, f) in scenarios {
        eprintln!("  {name}");
        // Warm-up, discarded.
        for t in targets {
            let _ = f(&t.path);
        }
        let mut rate = Row::new(name.clone(), unit, hb);
        let mut p50 = Row::new(format!("{name} p50"), "µs", false);
        let mut p99 = Row::new(format!("{name} p99"), "µs", false);
        let (per, scale) = if unit == "MB/s" {
            ("MB", 1e6)
        } else if unit == "req/s" {
            ("request", 1.0)
        } else if name.starts_with("connection") {
            ("connection", 1.0)
        } else {
            ("round trip", 1.0)
        };
        let mut cpu = Row::new(format!("{name}: relay CPU per {per}"), "µs", false);
        let mut gen = Row::new(format!("{name}: load generator CPU per {per}"), "µs", false);
        for r in 0..opts.rounds {
            for i in 0..targets.len() {
                let t = targets[(i + r) % targets.len()];
                let c0 = t.cpu_ns();
                let g0 = self_cpu_ns();
                let res = f(&t.path);
                let g1 = self_cpu_ns();
                t.settle();
                gen.push(
                    t.kind,
                    g1.saturating_sub(g0) as f64 / 1000.0 / (res.units as f64 / scale),
                );
                if let (Some(c0), Some(c1)) = (c0, t.cpu_ns()) {
                    let units = res.units as f64 / scale;
                    cpu.push(t.kind, (c1.saturating_sub(c0)) as f64 / 1000.0 / units);
                }
                rate.push(t.kind, res.rate / scale);
                if !res.lat.is_empty() {
                    p50.push(t.kind, pct_us(&res.lat, 50.0));
                    p99.push(t.kind, pct_us(&res.lat, 99.0));
                }
            }
        }
        rows.push(rate);
        if metric == "lat" {
            rows.push(p50);
            rows.push(p99);
        } else if metric == "p99" {
            rows.push(p99);
        }
        rows.push(cpu);
        if opts.cpu_detail {
            rows.push(gen);
        }
    }
    rows
}

/// Open `n` idle connections through `t`, measure the relay's memory, then
/// check every connection still works.
pub(crate) fn idle_group(opts: &Opts, t: &Target, up: &Upstream, rows: &mut [Row; 3]) {
    let n = opts.idle_conns;
    let pid = t.proc.as_ref().map(|p| p.pid());
    let mem = |pid: i32| -> (u64, u64) {
        if t.socat {
            tree_mem_kib(pid)
        } else {
            (status_kib(pid, "VmRSS"), pss_kib(pid))
        }
    };
    // One warm-up connection so the relay's first-connection allocations are not counted.
    {
        let mut s = connect(&t.path);
        s.write_all(b"E").unwrap();
        round_trip(&mut s, &[1u8; MSG], &mut [0u8; MSG]);
    }
    std::thread::sleep(Duration::from_millis(300));
    let before = pid.map(mem);
    let base_acc = up.accepted.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(connect(&t.path));
    }
    // Every relay has reached the upstream once the upstream has accepted n more.
    let end = Instant::now() + Duration::from_secs(60);
    while up.accepted.load(Ordering::Relaxed) < base_acc + n {
        assert!(
            Instant::now() < end,
            "{}: not all {n} connections reached the upstream",
            t.kind.name()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let open_s = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    let opened = pid.map(mem);
    // Every connection still works: one round trip each.
    let mut out = [3u8; MSG + 1];
    out[0] = b'E';
    let mut back = [0u8; MSG];
    for s in &mut conns {
        s.write_all(&out).expect("idle connection: write");
        s.read_exact(&mut back).expect("idle connection: read");
        assert_eq!(back, [3u8; MSG]);
    }
    // sockbroker gives a buffer back after 0.5–1 s without data (the relay's
    // `buffer_release`): measure after that, as an idle `docker events`
    // connection would be seen an hour later.
    std::thread::sleep(Duration::from_millis(1500));
    let used = pid.map(mem);
    eprintln!(
        "    {}: {n} connections open in {open_s:.2}s, all answered; memory KiB (rss, pss) before {before:?} idle {opened:?} after use {used:?}",
        t.kind.name()
    );
    if let (Some(b), Some(o), Some(u)) = (before, opened, used) {
        // sockbroker: RSS of its one process. socat: PSS of the parent and its
        // forked children (RSS would count shared libc pages once per child).
        let pick = |m: (u64, u64)| if t.socat { m.1 } else { m.0 };
        let per = |x: (u64, u64)| (pick(x) as f64 - pick(b) as f64) / n as f64;
        rows[0].push(t.kind, per(o));
        rows[1].push(t.kind, per(u));
        if t.socat {
            rows[2].push(t.kind, (o.0 as f64 - b.0 as f64) / n as f64);
        }
    }
    drop(conns);
}

/// Wait until `paths` all exist and then all accept a connection.
/// Returns (all present, all accepted) instants.
pub(crate) fn wait_all_sockets(paths: &[PathBuf], deadline: Duration) -> (Instant, Instant) {
    let end = Instant::now() + deadline;
    for p in paths {
        // The broker renames a socket into place only after listen(2): present = accepting.
        while !p.exists() {
            assert!(
                Instant::now() < end,
                "{} did not appear within {deadline:?}",
                p.display()
            );
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    let present = Instant::now();
    for p in paths {
        loop {
            if UnixStream::connect(p).is_ok() {
                break;
            }
            assert!(
                Instant::now() < end,
                "{} did not accept within {deadline:?}",
                p.display()
            );
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    (present, Instant::now())
}

pub(crate) fn tenants_group(opts: &Opts, dir: &Path, up: &Upstream, rows: &mut Vec<Row>) {
    for &n in &opts.tenant_counts {
        eprintln!("  startup with {n} tenants");
        let mut present = Row::new(
            format!("startup, {n} tenants: all sockets present (= accepting)"),
            "s",
            false,
        );
        let mut accepting = Row::new(
            format!("startup, {n} tenants: then a connection to each"),
            "s",
            false,
        );
        let mut rss = Row::new(format!("RSS with {n} tenants"), "MiB", false);
        for r in 0..opts.startup_rounds {
            let tdir = dir.join(format!("start-{n}-{r}"));
            std::fs::create_dir_all(&tdir).unwrap();
            let names = tenant_names(n);
            let config = tdir.join("sockbroker.yaml");
            std::fs::write(&config, broker_config(&tdir, &up.path, &names)).unwrap();
            let paths: Vec<PathBuf> = names.iter().map(|x| tenant_path(&tdir, x)).collect();
            let t0 = Instant::now();
            let mut p = spawn_broker(opts, &config, &log_path(&tdir));
            let (a, b) = wait_all_sockets(&paths, Duration::from_secs(120));
            present.push(Kind::Broker, (a - t0).as_secs_f64());
            accepting.push(Kind::Broker, (b - t0).as_secs_f64());
            std::thread::sleep(Duration::from_millis(300));
            let kib = status_kib(p.pid(), "VmRSS");
            rss.push(Kind::Broker, kib as f64 / 1024.0);
            eprintln!(
                "    round {r}: present {:.3}s, accepted {:.3}s, RSS {:.1} MiB",
                (a - t0).as_secs_f64(),
                (b - t0).as_secs_f64(),
                kib as f64 / 1024.0
            );
            p.stop(Duration::from_secs(30));
            let _ = std::fs::remove_dir_all(&tdir);
        }
        rows.extend([present, accepting, rss]);
    }
}

pub(crate) fn reload_group(opts: &Opts, dir: &Path, up: &Upstream, rows: &mut Vec<Row>) {
    for &n in &opts.reload_counts {
        eprintln!("  reload with {n} tenants");
        let tdir = dir.join(format!("reload-{n}"));
        std::fs::create_dir_all(&tdir).unwrap();
        let mut names = tenant_names(n);
        let config = tdir.join("sockbroker.yaml");
        std::fs::write(&config, broker_config(&tdir, &up.path, &names)).unwrap();
        let paths: Vec<PathBuf> = names.iter().map(|x| tenant_path(&tdir, x)).collect();
        let mut p = spawn_broker(opts, &config, &log_path(&tdir));
        wait_all_sockets(&paths, Duration::from_secs(120));
        // Let the watcher settle before the first edit.
        std::thread::sleep(Duration::from_millis(500));
        let mut row = Row::new(
            format!("reload, {n} tenants: rename → new socket accepts"),
            "ms",
            false,
        );
        for r in 0..opts.reload_rounds {
            let name = format!("zz-added-{r}");
            names.push(name.clone());
            let tmp = tdir.join(".sockbroker.yaml.tmp");
            std::fs::write(&tmp, broker_config(&tdir, &up.path, &names)).unwrap();
            let new_path = tenant_path(&tdir, &name);
            let t0 = Instant::now();
            std::fs::rename(&tmp, &config).unwrap();
            let end = t0 + Duration::from_secs(60);
            loop {
                if UnixStream::connect(&new_path).is_ok() {
                    break;
                }
                assert!(
                    Instant::now() < end,
                    "reload {r} with {n} tenants: {} never accepted",
                    new_path.display()
                );
                std::thread::sleep(Duration::from_micros(200));
            }
            let ms = t0.elapsed().as_secs_f64() * 1000.0;
            row.push(Kind::Broker, ms);
            eprintln!("    round {r}: {ms:.1} ms");
            // Let the reload finish logging before the next edit.
            std::thread::sleep(Duration::from_millis(300));
        }
        rows.push(row);
        p.stop(Duration::from_secs(30));
        let _ = std::fs::remove_dir_all(&tdir);
    }
}

/// The throughput, rr and connrate groups: direct, socat (or B), the floor
/// relay (rr and connrate) and sockbroker, behind each server model of the
/// upstream that `--server` asks for.
pub(crate) fn relay_groups(opts: &Opts, dir: &Path, up: &Upstream, rows: &mut Vec<Row>) {
    let dur = opts.duration;
    let direct = Target {
        kind: Kind::Direct,
        socat: false,
        path: up.path.clone(),
        proc: None,
    };
    let socat = second_target(opts, dir, &up.path, "socat-main");
    let broker = start_broker(opts, dir, &up.path, "broker-main");
    let floor = opts
        .floor
        .as_ref()
        .map(|bin| start_floor(opts, bin, dir, &up.path, "floor-main"));
    let targets = [&direct, &socat, &broker];
    let mut small: Vec<&Target> = targets.to_vec();
    small.extend(floor.as_ref());
    for &threads in &opts.servers {
        up.threads.store(threads, Ordering::Relaxed);
        let (tag, label) = if threads {
            (" [threads]", "upstream: a blocking thread per connection")
        } else {
            ("", "upstream: tokio tasks")
        };
        if opts.wants("throughput") {
            eprintln!("throughput ({label})");
            let mut sc: Vec<Scenario<'_>> = Vec::new();
            // Behind the threaded upstream only the 8-connection rows (the target's).
            let conns: &[usize] = if threads { &[8] } else { &[1, 8] };
            for &c in conns {
                let s = if c == 1 { "conn" } else { "conns" };
                sc.push((
                    "rate",
                    format!("throughput up (into sink), {c} {s}{tag}"),
                    "MB/s",
                    true,
                    Box::new(move |p| throughput_up(p, c, dur)),
                ));
                sc.push((
                    "rate",
                    format!("throughput down (out of source), {c} {s}{tag}"),
                    "MB/s",
                    true,
                    Box::new(move |p| throughput_down(p, c, dur)),
                ));
            }
            rows.extend(run_alternating(opts, &targets, sc));
        }
        if opts.wants("rr") {
            eprintln!("request/response ({label})");
            let mut sc: Vec<Scenario<'_>> = Vec::new();
            for &c in &opts.clients {
                let s = if c == 1 { "conn" } else { "conns" };
                sc.push((
                    "lat",
                    format!("round trips, {c} {s}{tag}"),
                    "1/s",
                    true,
                    Box::new(move |p| request_response(p, c, dur)),
                ));
            }
            rows.extend(run_alternating(opts, &small, sc));
        }
        if opts.wants("connrate") {
            eprintln!("connection rate ({label})");
            let mut sc: Vec<Scenario<'_>> = Vec::new();
            for &c in &opts.clients {
                let s = if c == 1 { "worker" } else { "workers" };
                sc.push((
                    "p99",
                    format!("connection rate, {c} {s}{tag}"),
                    "1/s",
                    true,
                    Box::new(move |p| connection_rate(p, c, dur)),
                ));
            }
            rows.extend(run_alternating(opts, &small, sc));
        }
    }
    up.threads.store(false, Ordering::Relaxed);
}
