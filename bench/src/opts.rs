//! Command line (clap) and the options the groups read.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

/// The scenario groups `--only` can pick, in the order they run.
pub(crate) const GROUPS: [&str; 7] = [
    "throughput",
    "rr",
    "connrate",
    "idle",
    "tenants",
    "reload",
    "policy",
];

/// sockbroker-bench: a direct connection vs `socat UNIX-LISTEN:…,fork` vs the
/// floor relay vs the real sockbroker binary, in alternating rounds; medians and
/// ratios. Run it with `bench/run.sh` (builds release first).
#[derive(Parser, Debug)]
#[command(name = "sockbroker-bench", about, long_about = None)]
struct Cli {
    /// Smoke run: 2 rounds of 250 ms, 200 idle connections, 100/1000 tenants.
    /// Explicit values given with it win.
    #[arg(long)]
    quick: bool,
    /// Alternating rounds per scenario (default 5; 2 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: Option<u64>,
    /// Length of one round in ms (default 1000; 250 with --quick).
    #[arg(long = "duration-ms")]
    duration_ms: Option<u64>,
    /// The sockbroker binary; default target/release/sockbroker next to this one.
    #[arg(long)]
    broker: Option<PathBuf>,
    /// The socat binary.
    #[arg(long, default_value = "socat")]
    socat: String,
    /// The floor relay (rr and connrate only); default
    /// sockbroker-floor-relay next to this binary; `none` leaves it out.
    #[arg(long)]
    floor: Option<PathBuf>,
    /// HAProxy for the policy group's peer column; `none` leaves it out.
    #[arg(long, default_value = "haproxy")]
    haproxy: String,
    /// Comma list of groups to run: throughput, rr, connrate, idle, tenants,
    /// reload, policy (default: all). `policy`: HTTP requests to a Docker-like
    /// upstream: direct vs the byte relay (access: full) vs the policy relay
    /// (access: read-only, access: userns-safe) vs HAProxy.
    #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(GROUPS))]
    only: Option<Vec<String>>,
    /// Idle connections held open in the idle group (default 2000; 200 with --quick).
    #[arg(long)]
    idle: Option<usize>,
    /// Tenant counts for the startup group (default 1000,10000; 100,1000 with --quick).
    #[arg(long, value_delimiter = ',')]
    tenants: Option<Vec<usize>>,
    /// Tenant counts for the reload group (default 10,1000,10000; 10,1000 with --quick).
    #[arg(long = "reload-tenants", value_delimiter = ',')]
    reload_tenants: Option<Vec<usize>>,
    /// The broker's RUST_LOG (default info, as shipped: one line per connection).
    #[arg(long = "rust-log", default_value = "info")]
    rust_log: String,
    /// Leave the scratch directory (configs, broker logs) in place.
    #[arg(long)]
    keep: bool,
    /// Measure a second sockbroker build in socat's column (A/B of two builds;
    /// throughput, rr, connrate and idle only).
    #[arg(long)]
    compare: Option<PathBuf>,
    /// Add rows with the CPU this process (clients + upstream server) used per unit.
    #[arg(long = "cpu-detail")]
    cpu_detail: bool,
    /// How the upstream serves in the throughput, rr and connrate groups:
    /// `tokio` (tasks), `threads` (a blocking thread per connection) or `both`
    /// (rows for the threaded server are marked [threads]).
    #[arg(long, default_value = "both", value_parser = ["tokio", "threads", "both"])]
    server: String,
    /// Connection (rr) and worker (connrate) counts to measure (default 1,16);
    /// one count alone lets a profiler attached to the relay see one scenario.
    #[arg(long, value_delimiter = ',')]
    clients: Option<Vec<usize>>,
    /// Where sockets, configs and logs go; default /dev/shm (tmpfs, like /run on
    /// a real host) when it exists, else /tmp.
    #[arg(long)]
    scratch: Option<PathBuf>,
}

/// What the groups read, with every default resolved.
#[derive(Clone, Debug)]
pub(crate) struct Opts {
    pub(crate) quick: bool,
    pub(crate) rounds: usize,
    pub(crate) duration: Duration,
    pub(crate) broker: PathBuf,
    pub(crate) socat: String,
    /// The floor relay, measured in the rr and connrate groups.
    pub(crate) floor: Option<PathBuf>,
    /// Upstream server models to measure the relay groups behind: `false`
    /// tokio tasks, `true` a blocking thread per connection.
    pub(crate) servers: Vec<bool>,
    /// Connections (rr) and workers (connrate).
    pub(crate) clients: Vec<usize>,
    /// HAProxy, the policy group's peer.
    pub(crate) haproxy: Option<String>,
    pub(crate) only: Option<Vec<String>>,
    pub(crate) idle_conns: usize,
    pub(crate) tenant_counts: Vec<usize>,
    pub(crate) startup_rounds: usize,
    pub(crate) reload_counts: Vec<usize>,
    pub(crate) reload_rounds: usize,
    pub(crate) rust_log: String,
    pub(crate) keep: bool,
    /// A second sockbroker binary measured in socat's place (A/B of builds).
    pub(crate) compare: Option<PathBuf>,
    /// Also report the CPU used by this process (clients and upstream server).
    pub(crate) cpu_detail: bool,
    /// Where sockets, configs and logs go.
    pub(crate) scratch: PathBuf,
}

/// tmpfs like the /run of a real host (sockets are usually under /run/sockbroker);
/// /tmp where there is no /dev/shm.
fn default_scratch() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

/// `none` turns an optional peer off.
fn unless_none(v: PathBuf) -> Option<PathBuf> {
    (v.as_os_str() != "none").then_some(v)
}

impl Opts {
    pub(crate) fn parse() -> Opts {
        let cli = Cli::parse();
        let exe = std::env::current_exe().unwrap_or_default();
        let q = cli.quick;
        let o = Opts {
            quick: q,
            rounds: cli.rounds.unwrap_or(if q { 2 } else { 5 }) as usize,
            duration: Duration::from_millis(cli.duration_ms.unwrap_or(if q { 250 } else { 1000 })),
            broker: cli
                .broker
                .unwrap_or_else(|| exe.with_file_name("sockbroker")),
            socat: cli.socat,
            floor: unless_none(
                cli.floor
                    .unwrap_or_else(|| exe.with_file_name("sockbroker-floor-relay")),
            ),
            servers: match cli.server.as_str() {
                "tokio" => vec![false],
                "threads" => vec![true],
                _ => vec![false, true],
            },
            clients: cli.clients.unwrap_or_else(|| vec![1, 16]),
            haproxy: (cli.haproxy != "none").then_some(cli.haproxy),
            only: cli.only,
            idle_conns: cli.idle.unwrap_or(if q { 200 } else { 2000 }),
            tenant_counts: cli.tenants.unwrap_or_else(|| {
                if q {
                    vec![100, 1000]
                } else {
                    vec![1000, 10_000]
                }
            }),
            startup_rounds: if q { 1 } else { 3 },
            reload_counts: cli.reload_tenants.unwrap_or_else(|| {
                if q {
                    vec![10, 1000]
                } else {
                    vec![10, 1000, 10_000]
                }
            }),
            reload_rounds: if q { 2 } else { 5 },
            rust_log: cli.rust_log,
            keep: cli.keep,
            compare: cli.compare,
            cpu_detail: cli.cpu_detail,
            scratch: cli.scratch.unwrap_or_else(default_scratch),
        };
        for (what, bin) in [
            ("sockbroker", Some(&o.broker)),
            ("the floor relay", o.floor.as_ref()),
        ] {
            if let Some(bin) = bin.filter(|b| !b.exists()) {
                eprintln!(
                    "sockbroker-bench: {what} ({}) not found: build it with `cargo build --release --workspace --bins`, or pass its path",
                    bin.display()
                );
                std::process::exit(2);
            }
        }
        o
    }

    pub(crate) fn wants(&self, group: &str) -> bool {
        match &self.only {
            None => true,
            Some(g) => g.iter().any(|x| x == group),
        }
    }
}
