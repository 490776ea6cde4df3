//! sockbroker-bench: one run that compares a direct connection to an upstream
//! server, the classic `socat UNIX-LISTEN:…,fork UNIX-CLIENT:…` relay and the
//! real `sockbroker` binary (release build, separate process, generated
//! config), in alternating rounds, and prints medians and ratios.
//!
//! The `policy` group compares, for HTTP requests to a Docker-like upstream,
//! the direct connection, the byte relay (`access: full`) and the broker's
//! policy relay (`access: read-only`, `access: userns-safe`).
//!
//! Run it with `bench/run.sh` (builds release first); `--quick` is a smoke run.
//! Everything runs on this machine over Unix sockets; every phase is bounded in
//! time, a watchdog ends the run if something hangs, and every process the
//! bench starts is ended by its pid.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

mod clients;
mod groups;
mod opts;
mod policy;
mod procs;
mod report;
mod table;
mod target;
mod upstream;

use crate::groups::{idle_group, relay_groups, reload_group, tenants_group};
use crate::opts::Opts;
use crate::policy::{haproxy_version, policy_group};
use crate::procs::{kill_all_registered, raise_nofile};
use crate::report::{fs_label, loadavg, machine, socat_version, targets_summary};
use crate::table::{policy_summary, print_policy_table, print_table, Row};
use crate::target::{second_target, start_broker, COL2};
use crate::upstream::{start_http_upstream, start_upstream};

/// Size of the chunks streamed in the throughput scenarios.
pub(crate) const CHUNK: usize = 64 * 1024;
/// Size of one request/response message.
pub(crate) const MSG: usize = 64;
/// No single socket operation of a client may block longer than this.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(20);

fn main() {
    let opts = Opts::parse();
    if opts.compare.is_some() {
        let _ = COL2.set("B");
    }
    let nofile = raise_nofile();
    let budget = if opts.quick {
        Duration::from_secs(300)
    } else {
        Duration::from_secs(1200)
    };
    // Watchdog: the run stops by itself whatever happens.
    std::thread::spawn(move || {
        std::thread::sleep(budget);
        eprintln!("sockbroker-bench: time budget {budget:?} exceeded; ending all processes");
        kill_all_registered();
        std::process::exit(3);
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.spawn(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).unwrap();
        let mut int = signal(SignalKind::interrupt()).unwrap();
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        eprintln!("sockbroker-bench: interrupted; ending all processes");
        kill_all_registered();
        std::process::exit(130);
    });

    let scratch = tempfile::Builder::new()
        .prefix("sbbench")
        .tempdir_in(&opts.scratch)
        .expect("scratch dir");
    let dir = scratch.path().to_owned();
    let up = start_upstream(&rt, &dir.join("upstream.sock"));
    let t_start = Instant::now();
    let load_start = loadavg();
    let cmdline: Vec<String> = std::env::args().collect();
    eprintln!("sockbroker-bench: {}", machine());
    eprintln!(
        "  {} rounds x {:?}, RUST_LOG={} for the broker, RLIMIT_NOFILE {nofile}, scratch {}",
        opts.rounds,
        opts.duration,
        opts.rust_log,
        dir.display()
    );

    let mut rows: Vec<Row> = Vec::new();
    if ["throughput", "rr", "connrate"]
        .iter()
        .any(|g| opts.wants(g))
    {
        relay_groups(&opts, &dir, &up, &mut rows);
    }
    if opts.wants("idle") {
        let n = opts.idle_conns;
        eprintln!("idle: {n} connections");
        let mut idle_rows = [
            Row::new("relay memory per idle connection", "KiB", false),
            Row::new(
                "relay memory per connection after one round trip (1.5 s later)",
                "KiB",
                false,
            ),
            Row::new(
                "socat: RSS sum per connection (shared pages counted per child)",
                "KiB",
                false,
            ),
        ];
        // Fresh relay processes, so memory freed by earlier phases is not reused.
        let socat = second_target(&opts, &dir, &up.path, "socat-idle");
        idle_group(&opts, &socat, &up, &mut idle_rows);
        drop(socat);
        let broker = start_broker(&opts, &dir, &up.path, "broker-idle");
        idle_group(&opts, &broker, &up, &mut idle_rows);
        drop(broker);
        rows.extend(idle_rows);
    }
    if opts.wants("tenants") {
        eprintln!("tenants");
        tenants_group(&opts, &dir, &up, &mut rows);
    }
    if opts.wants("reload") {
        eprintln!("reload latency");
        reload_group(&opts, &dir, &up, &mut rows);
    }
    let mut policy_rows: Vec<Row> = Vec::new();
    if opts.wants("policy") {
        eprintln!("policy (HTTP requests; access: full / read-only / userns-safe)");
        let http_up = start_http_upstream(&rt, &dir.join("upstream-http.sock"));
        policy_rows = policy_group(&opts, &dir, &http_up);
    }

    let mut report = String::new();
    let _ = writeln!(
        report,
        "\nsockbroker-bench results ({})",
        if opts.quick {
            "QUICK smoke run"
        } else {
            "full run"
        }
    );
    let _ = writeln!(report, "command: {}", cmdline.join(" "));
    let _ = writeln!(report, "machine: {}", machine());
    let _ = writeln!(
        report,
        "load average (1/5/15 min): {load_start} at the start, {} at the end",
        loadavg()
    );
    let _ = writeln!(report, "socat: {}", socat_version(&opts));
    if let Some(v) = opts
        .haproxy
        .as_deref()
        .filter(|_| opts.wants("policy"))
        .and_then(haproxy_version)
    {
        let _ = writeln!(report, "haproxy: {v} (bench/haproxy.cfg)");
    }
    let _ = writeln!(
        report,
        "scratch (sockets, configs, logs): {}",
        fs_label(&dir)
    );
    let _ = writeln!(
        report,
        "each value is the median of {} alternating rounds of {:?} (tenants: {} rounds, reload: {} edits); ↑ higher is better, ↓ lower is better\n",
        opts.rounds, opts.duration, opts.startup_rounds, opts.reload_rounds
    );
    if !rows.is_empty() {
        report.push_str(&print_table(&rows));
    }
    if !policy_rows.is_empty() {
        let _ = writeln!(
            report,
            "\npolicy mode (HTTP/1.1 to a Docker-like upstream; one broker, a tenant per access mode; HAProxy as docker-socket-proxy sets it up; read-only refuses container create, so it has no value there):\n"
        );
        report.push_str(&print_policy_table(&policy_rows));
        let _ = writeln!(report, "\nadded per request over the byte relay:");
        report.push_str(&policy_summary(&policy_rows));
    }
    let _ = writeln!(report, "\ntargets (docs/performance.md \"Targets\"):");
    report.push_str(&targets_summary(&rows, &policy_rows));
    let _ = writeln!(
        report,
        "\ntotal bench time {:.0}s",
        t_start.elapsed().as_secs_f64()
    );
    println!("{report}");
    if opts.keep {
        let kept = scratch.keep();
        eprintln!("scratch kept at {}", kept.display());
    }
}
