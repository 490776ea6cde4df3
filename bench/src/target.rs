//! Targets: what the clients connect to (direct, socat, the floor relay, the
//! broker) and the relay CPU each uses.

use crate::opts::Opts;
use crate::procs::{children_of, Proc};
use crate::IO_TIMEOUT;
use std::fmt::Write as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Name of the second column: "socat", or "B" with --compare.
pub(crate) static COL2: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Direct,
    Socat,
    Broker,
    /// Policy group: a broker tenant with `access: read-only`.
    ReadOnly,
    /// Policy group: a broker tenant with `access: userns-safe`.
    UsernsSafe,
    /// The floor relay (bench/src/bin/floor-relay.rs): rr and connrate only.
    Floor,
    /// Policy group: HAProxy configured like docker-socket-proxy (bench/haproxy.cfg).
    Haproxy,
}

/// How many kinds a row can hold samples for.
pub(crate) const KINDS: usize = 7;

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Socat => COL2.get().copied().unwrap_or("socat"),
            Kind::Broker => "sockbroker",
            Kind::ReadOnly => "read-only",
            Kind::UsernsSafe => "userns-safe",
            Kind::Floor => "floor",
            Kind::Haproxy => "haproxy",
        }
    }
}

/// A relay (or none) in front of the upstream, and the path clients connect to.
pub(crate) struct Target {
    pub(crate) kind: Kind,
    /// The relay is socat (memory and CPU are summed over its forked children).
    pub(crate) socat: bool,
    pub(crate) path: PathBuf,
    /// The relay process (shared by the policy group's three tenants).
    pub(crate) proc: Option<Rc<Proc>>,
}

/// Clock ticks per second for /proc/PID/stat times (USER_HZ; 100 on Linux).
pub(crate) const USER_HZ: u64 = 100;

/// (utime + stime, cutime + cstime) of `pid` in clock ticks.
pub(crate) fn proc_ticks(pid: i32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return (0, 0);
    };
    // After "pid (comm) ": state is field 3; utime..cstime are fields 14..17.
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    if f.len() < 15 {
        return (0, 0);
    }
    (f[11] + f[12], f[13] + f[14])
}

/// Nanoseconds on CPU of all threads of `pid` (/proc/PID/task/*/schedstat).
pub(crate) fn threads_cpu_ns(pid: i32) -> u64 {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    rd.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("schedstat")).ok())
        .filter_map(|s| {
            s.split_whitespace()
                .next()
                .and_then(|x| x.parse::<u64>().ok())
        })
        .sum()
}

/// CPU time of this process so far (all threads, including finished ones), in ns.
pub(crate) fn self_cpu_ns() -> u64 {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_SELF)
        .map(|u| {
            let t = |tv: nix::sys::time::TimeVal| {
                tv.tv_sec() as u64 * 1_000_000_000 + tv.tv_usec() as u64 * 1000
            };
            t(u.user_time()) + t(u.system_time())
        })
        .unwrap_or(0)
}

impl Target {
    /// socat: wait (up to 2 s) until the children that served the last run
    /// have exited and been reaped, so their CPU time is in the parent's
    /// `cutime`/`cstime` (socat lingers up to 0.5 s after a half-close).
    pub(crate) fn settle(&self) {
        let Some(p) = self.proc.as_ref().filter(|_| self.socat) else {
            return;
        };
        let end = Instant::now() + Duration::from_secs(2);
        while !children_of(p.pid()).is_empty() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// CPU time the relay has used so far, in ns (None for the direct connection).
    /// sockbroker: every thread's run time. socat: the parent including reaped
    /// children, plus the children still alive (10 ms resolution).
    pub(crate) fn cpu_ns(&self) -> Option<u64> {
        let pid = self.proc.as_ref()?.pid();
        Some(match self.socat {
            true => {
                let (own, reaped) = proc_ticks(pid);
                let live: u64 = children_of(pid).iter().map(|&c| proc_ticks(c).0).sum();
                (own + reaped + live) * (1_000_000_000 / USER_HZ)
            }
            false => threads_cpu_ns(pid),
        })
    }
}

pub(crate) fn connect(path: &Path) -> UnixStream {
    let s = UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

pub(crate) fn wait_accepting(path: &Path, what: &str, deadline: Duration) {
    let end = Instant::now() + deadline;
    loop {
        if UnixStream::connect(path).is_ok() {
            return;
        }
        if Instant::now() > end {
            panic!(
                "{what} did not accept on {} within {deadline:?}",
                path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// socat, or with --compare the second sockbroker build.
pub(crate) fn second_target(opts: &Opts, dir: &Path, upstream: &Path, label: &str) -> Target {
    match &opts.compare {
        Some(bin) => start_broker_bin(opts, bin, Kind::Socat, dir, upstream, &format!("{label}-b")),
        None => start_socat(opts, dir, upstream, label),
    }
}

pub(crate) fn start_socat(opts: &Opts, dir: &Path, upstream: &Path, label: &str) -> Target {
    let path = dir.join(format!("{label}.sock"));
    let proc = Proc::spawn(
        "socat",
        Command::new(&opts.socat)
            .arg(format!("UNIX-LISTEN:{},fork", path.display()))
            .arg(format!("UNIX-CLIENT:{}", upstream.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_accepting(&path, "socat", Duration::from_secs(10));
    Target {
        kind: Kind::Socat,
        socat: true,
        path,
        proc: Some(Rc::new(proc)),
    }
}

/// A generated broker config: `n` tenants (one directory each) relaying to `upstream`.
pub(crate) fn broker_config(dir: &Path, upstream: &Path, names: &[String]) -> String {
    let mut y = String::with_capacity(names.len() * 96 + 256);
    let _ = write!(
        y,
        "defaults:\n  upstream: {}\n  mode: \"0660\"\n  max_connections: 100000\n  drain_timeout: 2s\ntenants:\n",
        upstream.display()
    );
    for n in names {
        let _ = writeln!(
            y,
            "  {n}:\n    listen: {}\n    uid: 0\n    gid: 0",
            tenant_path(dir, n).display()
        );
    }
    y
}

pub(crate) fn tenant_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name).join("s.sock")
}

pub(crate) fn tenant_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("t{i:05}")).collect()
}

/// The broker's log file for config directory `tdir`: outside that directory,
/// because the broker watches its config's directory and every log line
/// written there would wake its watcher.
pub(crate) fn log_path(tdir: &Path) -> PathBuf {
    let name = tdir.file_name().unwrap_or_default().to_string_lossy();
    let logs = tdir.with_file_name("logs");
    let _ = std::fs::create_dir_all(&logs);
    logs.join(format!("{name}.log"))
}

/// Start the real broker on `config` (no metrics section: the data path only).
pub(crate) fn spawn_broker(opts: &Opts, config: &Path, log: &Path) -> Proc {
    spawn_broker_bin(opts, &opts.broker, config, log)
}

pub(crate) fn spawn_broker_bin(opts: &Opts, bin: &Path, config: &Path, log: &Path) -> Proc {
    let log = std::fs::File::create(log).expect("broker log file");
    Proc::spawn(
        "sockbroker",
        Command::new(bin)
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", &opts.rust_log)
            .stdout(Stdio::null())
            .stderr(log),
    )
}

/// The floor relay, started like the broker (it reads the same generated config).
pub(crate) fn start_floor(
    opts: &Opts,
    bin: &Path,
    dir: &Path,
    upstream: &Path,
    label: &str,
) -> Target {
    start_broker_bin(opts, bin, Kind::Floor, dir, upstream, label)
}

pub(crate) fn start_broker(opts: &Opts, dir: &Path, upstream: &Path, label: &str) -> Target {
    start_broker_bin(opts, &opts.broker, Kind::Broker, dir, upstream, label)
}

pub(crate) fn start_broker_bin(
    opts: &Opts,
    bin: &Path,
    kind: Kind,
    dir: &Path,
    upstream: &Path,
    label: &str,
) -> Target {
    let tdir = dir.join(label);
    std::fs::create_dir_all(&tdir).unwrap();
    let names = vec!["bench".to_owned()];
    let config = tdir.join("sockbroker.yaml");
    std::fs::write(&config, broker_config(&tdir, upstream, &names)).unwrap();
    let proc = spawn_broker_bin(opts, bin, &config, &log_path(&tdir));
    let path = tenant_path(&tdir, "bench");
    wait_accepting(&path, "sockbroker", Duration::from_secs(20));
    Target {
        kind,
        socat: false,
        path,
        proc: Some(Rc::new(proc)),
    }
}
