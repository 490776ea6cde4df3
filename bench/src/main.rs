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
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Size of the chunks streamed in the throughput scenarios.
const CHUNK: usize = 64 * 1024;
/// Size of one request/response message.
const MSG: usize = 64;
/// No single socket operation of a client may block longer than this.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// Options

#[derive(Clone, Debug)]
struct Opts {
    quick: bool,
    rounds: usize,
    duration: Duration,
    broker: PathBuf,
    socat: String,
    only: Option<Vec<String>>,
    idle_conns: usize,
    tenant_counts: Vec<usize>,
    startup_rounds: usize,
    reload_counts: Vec<usize>,
    reload_rounds: usize,
    rust_log: String,
    keep: bool,
    /// A second sockbroker binary measured in socat's place (A/B of builds).
    compare: Option<PathBuf>,
    /// Also report the CPU used by this process (clients and upstream server).
    cpu_detail: bool,
    /// Where sockets, configs and logs go.
    scratch: PathBuf,
}

const USAGE: &str = "\
usage: sockbroker-bench [--quick] [--rounds N] [--duration-ms MS] [--broker PATH]
                        [--socat PATH] [--only GROUPS] [--idle N] [--tenants N,N]
                        [--reload-tenants N,N] [--rust-log FILTER] [--keep]
                        [--compare PATH] [--cpu-detail] [--scratch DIR]

GROUPS is a comma list of: throughput, rr, connrate, idle, tenants, reload, policy.
  policy: HTTP requests to a Docker-like upstream: direct vs the byte relay
  (access: full) vs the policy relay (access: read-only, access: userns-safe).
--quick: 2 rounds of 250 ms, 200 idle connections, 100/1000 tenants (smoke run).
--broker defaults to target/release/sockbroker next to this binary.
--rust-log is the broker's RUST_LOG (default info, as shipped: one line per connection).
--keep leaves the scratch directory (configs, broker logs) in place.
--compare PATH measures a second sockbroker build in socat's column (A/B of two builds;
  throughput, rr, connrate and idle only).
--cpu-detail adds rows with the CPU this process (clients + upstream server) used per unit.
--scratch DIR: where sockets, configs and logs go; default /dev/shm (tmpfs, like /run
  on a real host) when it exists, else /tmp.";

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

fn parse_list(s: &str) -> Vec<usize> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(|x| {
            x.trim()
                .parse()
                .unwrap_or_else(|_| die(&format!("not a number: {x}")))
        })
        .collect()
}

fn die(msg: &str) -> ! {
    eprintln!("sockbroker-bench: {msg}\n{USAGE}");
    std::process::exit(2)
}

impl Opts {
    fn parse() -> Opts {
        let exe = std::env::current_exe().unwrap_or_default();
        let mut o = Opts {
            quick: false,
            rounds: 5,
            duration: Duration::from_millis(1000),
            broker: exe.with_file_name("sockbroker"),
            socat: "socat".into(),
            only: None,
            idle_conns: 2000,
            tenant_counts: vec![1000, 10_000],
            startup_rounds: 3,
            reload_counts: vec![10, 1000, 10_000],
            reload_rounds: 5,
            rust_log: "info".into(),
            keep: false,
            compare: None,
            cpu_detail: false,
            scratch: default_scratch(),
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        // --quick first, so explicit values given with it win.
        if args.iter().any(|a| a == "--quick") {
            o.quick = true;
            o.rounds = 2;
            o.duration = Duration::from_millis(250);
            o.idle_conns = 200;
            o.tenant_counts = vec![100, 1000];
            o.startup_rounds = 1;
            o.reload_counts = vec![10, 1000];
            o.reload_rounds = 2;
        }
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            let mut val = || {
                it.next()
                    .unwrap_or_else(|| die(&format!("{a} needs a value")))
            };
            match a.as_str() {
                "--quick" => {}
                "--rounds" => o.rounds = parse_list(&val())[0].max(1),
                "--duration-ms" => o.duration = Duration::from_millis(parse_list(&val())[0] as u64),
                "--broker" => o.broker = val().into(),
                "--socat" => o.socat = val(),
                "--only" => o.only = Some(val().split(',').map(str::to_owned).collect()),
                "--idle" => o.idle_conns = parse_list(&val())[0],
                "--tenants" => o.tenant_counts = parse_list(&val()),
                "--reload-tenants" => o.reload_counts = parse_list(&val()),
                "--rust-log" => o.rust_log = val(),
                "--keep" => o.keep = true,
                "--compare" => o.compare = Some(val().into()),
                "--cpu-detail" => o.cpu_detail = true,
                "--scratch" => o.scratch = val().into(),
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0)
                }
                other => die(&format!("unknown argument {other}")),
            }
        }
        if !o.broker.exists() {
            die(&format!(
                "{} not found: build it with `cargo build --release --workspace --bins` or pass --broker",
                o.broker.display()
            ));
        }
        o
    }

    fn wants(&self, group: &str) -> bool {
        match &self.only {
            None => true,
            Some(g) => g.iter().any(|x| x == group),
        }
    }
}

// ---------------------------------------------------------------------------
// Processes: every child is registered by pid and ended by pid.

static PIDS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Direct children of `pid` (scans /proc; socat's forked per-connection children).
fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
            // pid (comm) state ppid ...; comm may contain spaces and parentheses.
            if let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) {
                let mut f = rest.split_whitespace();
                f.next();
                if f.next().and_then(|x| x.parse::<i32>().ok()) == Some(pid) {
                    out.push(p);
                }
            }
        }
    }
    out
}

fn kill_pid(pid: i32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
}

/// End every registered process (and socat's children) by pid. Used by the
/// watchdog and the signal handler; normal teardown goes through `Proc::drop`.
fn kill_all_registered() {
    let pids = PIDS.lock().map(|p| p.clone()).unwrap_or_default();
    for pid in pids {
        for c in children_of(pid) {
            kill_pid(c, nix::sys::signal::Signal::SIGKILL);
        }
        kill_pid(pid, nix::sys::signal::Signal::SIGKILL);
    }
}

/// A child process the bench started; dropping it ends it (SIGTERM, then SIGKILL).
struct Proc {
    child: Child,
    name: &'static str,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command) -> Proc {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        PIDS.lock().unwrap().push(child.id() as i32);
        Proc { child, name }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Also ends forked children (socat).
    fn stop(&mut self, grace: Duration) {
        let pid = self.pid();
        if self.child.try_wait().ok().flatten().is_none() {
            let kids = children_of(pid);
            kill_pid(pid, nix::sys::signal::Signal::SIGTERM);
            let end = Instant::now() + grace;
            while Instant::now() < end && self.child.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(5));
            }
            if self.child.try_wait().ok().flatten().is_none() {
                eprintln!(
                    "  ({} pid {pid} did not stop in {grace:?}: SIGKILL)",
                    self.name
                );
                kill_pid(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = self.child.wait();
            }
            for k in kids {
                kill_pid(k, nix::sys::signal::Signal::SIGKILL);
            }
        }
        PIDS.lock().unwrap().retain(|p| *p != pid);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

fn raise_nofile() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((1024, 1024));
    // Root may raise the hard limit too; children (socat, the broker) inherit it.
    for want in [1 << 20, 262_144, 65_536, hard] {
        let want = want.max(hard);
        if setrlimit(Resource::RLIMIT_NOFILE, want, want).is_ok() {
            return want;
        }
    }
    hard
}

// ---------------------------------------------------------------------------
// /proc memory readings

fn status_kib(pid: i32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    kib_field(&s, field)
}

fn kib_field(text: &str, field: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn pss_kib(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    kib_field(&s, "Pss")
}

/// (RSS, PSS) in KiB of `pid` plus all its direct children.
fn tree_mem_kib(pid: i32) -> (u64, u64) {
    let mut pids = vec![pid];
    pids.extend(children_of(pid));
    pids.iter().fold((0, 0), |(r, p), &x| {
        (r + status_kib(x, "VmRSS"), p + pss_kib(x))
    })
}

// ---------------------------------------------------------------------------
// The upstream server (in this process, on its own tokio runtime).
//
// The first byte of a connection picks what it does: `S` sink (read and
// discard until EOF), `O` source (write until the peer goes away), `E` echo.

struct Upstream {
    path: PathBuf,
    accepted: Arc<AtomicUsize>,
}

async fn upstream_conn(mut s: tokio::net::UnixStream) {
    let mut mode = [0u8; 1];
    if s.read_exact(&mut mode).await.is_err() {
        return;
    }
    match mode[0] {
        b'S' => {
            let mut buf = vec![0u8; CHUNK];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        }
        b'O' => {
            let buf = vec![0x5au8; CHUNK];
            while s.write_all(&buf).await.is_ok() {}
        }
        b'E' => {
            let mut buf = [0u8; 1024];
            loop {
                let n = match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if s.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
        _ => {}
    }
}

/// A tokio listener on `path`, registered with `rt`.
fn bind_listener(rt: &tokio::runtime::Runtime, path: &Path) -> tokio::net::UnixListener {
    let _g = rt.enter();
    let std_l = std::os::unix::net::UnixListener::bind(path)
        .unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
    std_l.set_nonblocking(true).unwrap();
    tokio::net::UnixListener::from_std(std_l).unwrap()
}

fn start_upstream(rt: &tokio::runtime::Runtime, path: &Path) -> Upstream {
    let accepted = Arc::new(AtomicUsize::new(0));
    let listener = bind_listener(rt, path);
    let acc = accepted.clone();
    rt.spawn(async move {
        loop {
            match listener.accept().await {
                Ok((s, _)) => {
                    acc.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(upstream_conn(s));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    });
    Upstream {
        path: path.to_owned(),
        accepted,
    }
}

// ---------------------------------------------------------------------------
// The Docker-like HTTP upstream (policy group), on its own socket: hyper's
// HTTP/1.1 server (keep-alive) answering the two requests the policy scenarios
// send the way the Docker engine does: same status codes, similar headers.

/// Headers the Docker engine sends with every answer.
const ENGINE_HEADERS: [(&str, &str); 4] = [
    ("Api-Version", "1.41"),
    ("Docker-Experimental", "false"),
    ("Ostype", "linux"),
    ("Server", "Docker/20.10.24 (linux)"),
];

/// The engine's answer to a container create.
const CREATED: &str = "{\"Id\":\"4f1d5e0c3b2a19f8e7d6c5b4a3928170f6e5d4c3b2a1908f7e6d5c4b3a291807\",\"Warnings\":[]}\n";

/// One request to the Docker-like upstream: `GET|HEAD /v1.41/_ping` → `200 OK`,
/// `POST /v1.41/containers/create` with a JSON body → `201`, anything else `404`.
async fn engine(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path();
    let ping = path == "/v1.41/_ping" && matches!(*req.method(), Method::GET | Method::HEAD);
    let create = path == "/v1.41/containers/create" && req.method() == Method::POST;
    let json = "application/json";
    let (status, ctype, body) = if ping {
        (200, "text/plain; charset=utf-8", Bytes::from_static(b"OK"))
    } else if create {
        let body = req.into_body().collect().await.map(|b| b.to_bytes());
        match body {
            Ok(b) if b.first() == Some(&b'{') => {
                (201, json, Bytes::from_static(CREATED.as_bytes()))
            }
            _ => (
                400,
                json,
                Bytes::from_static(b"{\"message\":\"bench upstream: no JSON body\"}\n"),
            ),
        }
    } else {
        (
            404,
            json,
            Bytes::from_static(b"{\"message\":\"page not found\"}\n"),
        )
    };
    let mut b = Response::builder()
        .status(status)
        .header("Content-Type", ctype);
    if ping {
        b = b
            .header("Cache-Control", "no-cache, no-store, must-revalidate")
            .header("Pragma", "no-cache");
    }
    for (k, v) in ENGINE_HEADERS {
        b = b.header(k, v);
    }
    // hyper adds Content-Length (the body's size is known) and Date.
    Ok(b.body(Full::new(body)).expect("static response"))
}

fn start_http_upstream(rt: &tokio::runtime::Runtime, path: &Path) -> PathBuf {
    let listener = bind_listener(rt, path);
    rt.spawn(async move {
        loop {
            match listener.accept().await {
                Ok((s, _)) => {
                    tokio::spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(
                                hyper_util::rt::TokioIo::new(s),
                                hyper::service::service_fn(engine),
                            )
                            .await;
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    });
    path.to_owned()
}

// ---------------------------------------------------------------------------
// Targets

/// Name of the second column: "socat", or "B" with --compare.
static COL2: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Direct,
    Socat,
    Broker,
    /// Policy group: a broker tenant with `access: read-only`.
    ReadOnly,
    /// Policy group: a broker tenant with `access: userns-safe`.
    UsernsSafe,
}

/// How many kinds a row can hold samples for.
const KINDS: usize = 5;

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Socat => COL2.get().copied().unwrap_or("socat"),
            Kind::Broker => "sockbroker",
            Kind::ReadOnly => "read-only",
            Kind::UsernsSafe => "userns-safe",
        }
    }
}

/// A relay (or none) in front of the upstream, and the path clients connect to.
struct Target {
    kind: Kind,
    /// The relay is socat (memory and CPU are summed over its forked children).
    socat: bool,
    path: PathBuf,
    /// The relay process (shared by the policy group's three tenants).
    proc: Option<Rc<Proc>>,
}

/// Clock ticks per second for /proc/PID/stat times (USER_HZ; 100 on Linux).
const USER_HZ: u64 = 100;

/// (utime + stime, cutime + cstime) of `pid` in clock ticks.
fn proc_ticks(pid: i32) -> (u64, u64) {
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
fn threads_cpu_ns(pid: i32) -> u64 {
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
fn self_cpu_ns() -> u64 {
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
    fn settle(&self) {
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
    fn cpu_ns(&self) -> Option<u64> {
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

fn connect(path: &Path) -> UnixStream {
    let s = UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

fn wait_accepting(path: &Path, what: &str, deadline: Duration) {
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
fn second_target(opts: &Opts, dir: &Path, upstream: &Path, label: &str) -> Target {
    match &opts.compare {
        Some(bin) => start_broker_bin(opts, bin, Kind::Socat, dir, upstream, &format!("{label}-b")),
        None => start_socat(opts, dir, upstream, label),
    }
}

fn start_socat(opts: &Opts, dir: &Path, upstream: &Path, label: &str) -> Target {
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
fn broker_config(dir: &Path, upstream: &Path, names: &[String]) -> String {
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

fn tenant_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name).join("s.sock")
}

fn tenant_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("t{i:05}")).collect()
}

/// Start the real broker on `config` (no metrics section: the data path only).
/// The broker's log file for config directory `tdir`: outside that directory,
/// because the broker watches its config's directory and every log line
/// written there would wake its watcher.
fn log_path(tdir: &Path) -> PathBuf {
    let name = tdir.file_name().unwrap_or_default().to_string_lossy();
    let logs = tdir.with_file_name("logs");
    let _ = std::fs::create_dir_all(&logs);
    logs.join(format!("{name}.log"))
}

fn spawn_broker(opts: &Opts, config: &Path, log: &Path) -> Proc {
    spawn_broker_bin(opts, &opts.broker, config, log)
}

fn spawn_broker_bin(opts: &Opts, bin: &Path, config: &Path, log: &Path) -> Proc {
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

fn start_broker(opts: &Opts, dir: &Path, upstream: &Path, label: &str) -> Target {
    start_broker_bin(opts, &opts.broker, Kind::Broker, dir, upstream, label)
}

fn start_broker_bin(
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

// ---------------------------------------------------------------------------
// Statistics

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Percentile `p` (0..=100) of sorted nanosecond samples, in microseconds.
fn pct_us(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

/// One row of the report: a metric measured for some of the three kinds.
struct Row {
    name: String,
    unit: &'static str,
    /// Higher is better (rates), else lower is better (latency, memory, time).
    higher_better: bool,
    samples: [Vec<f64>; KINDS],
}

impl Row {
    fn new(name: impl Into<String>, unit: &'static str, hb: bool) -> Row {
        Row {
            name: name.into(),
            unit,
            higher_better: hb,
            samples: Default::default(),
        }
    }
    fn push(&mut self, k: Kind, v: f64) {
        self.samples[k as usize].push(v);
    }
    fn med(&self, k: Kind) -> Option<f64> {
        let s = &self.samples[k as usize];
        (!s.is_empty()).then(|| median(s))
    }
}

fn fmt_num(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v.is_nan() => "-".into(),
        Some(v) if v >= 10_000.0 => format!("{v:.0}"),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 && !a.is_nan() && !b.is_nan() => format!("{:.2}x", a / b),
        _ => "-".into(),
    }
}

fn print_table(rows: &[Row]) -> String {
    let mut out = String::new();
    let c2 = Kind::Socat.name();
    let _ = writeln!(
        out,
        "| scenario | unit | direct | {c2} | sockbroker | {c2}/direct | sockbroker/direct | sockbroker/{c2} |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let (d, s, b) = (r.med(Kind::Direct), r.med(Kind::Socat), r.med(Kind::Broker));
        let _ = writeln!(
            out,
            "| {} | {}{} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.unit,
            if r.higher_better { " ↑" } else { " ↓" },
            fmt_num(d),
            fmt_num(s),
            fmt_num(b),
            ratio(s, d),
            ratio(b, d),
            ratio(b, s)
        );
    }
    out
}

/// The policy group's table: direct, the byte relay and the two policies, with
/// ratios to direct and to the byte relay.
fn print_policy_table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| scenario | unit | direct | byte relay (full) | read-only | userns-safe | full/direct | read-only/direct | userns-safe/direct | read-only/full | userns-safe/full |"
    );
    let _ = writeln!(
        out,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        let (d, f, ro, ns) = (
            r.med(Kind::Direct),
            r.med(Kind::Broker),
            r.med(Kind::ReadOnly),
            r.med(Kind::UsernsSafe),
        );
        let _ = writeln!(
            out,
            "| {} | {}{} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.unit,
            if r.higher_better { " ↑" } else { " ↓" },
            fmt_num(d),
            fmt_num(f),
            fmt_num(ro),
            fmt_num(ns),
            ratio(f, d),
            ratio(ro, d),
            ratio(ns, d),
            ratio(ro, f),
            ratio(ns, f)
        );
    }
    out
}

/// µs each policy adds per request over the byte relay: p50 and relay CPU.
fn policy_summary(rows: &[Row]) -> String {
    let mut out = String::new();
    for r in rows {
        if !(r.name.ends_with(" p50") || r.name.ends_with("relay CPU per request")) {
            continue;
        }
        let Some(full) = r.med(Kind::Broker) else {
            continue;
        };
        let mut parts = Vec::new();
        for k in [Kind::ReadOnly, Kind::UsernsSafe] {
            if let Some(v) = r.med(k) {
                parts.push(format!("{} {:+.1} µs", k.name(), v - full));
            }
        }
        let _ = writeln!(out, "- {}: {}", r.name, parts.join(", "));
    }
    out
}

// ---------------------------------------------------------------------------
// Client-side measurements (blocking threads; one per connection or worker)

struct RunResult {
    /// Units done (bytes, round trips, connections) in the measured interval.
    units: u64,
    /// Units done per second.
    rate: f64,
    /// Latency samples in ns, sorted (round trips, connection cycles).
    lat: Vec<u64>,
}

/// Run `n` client threads for `dur`. Each thread gets its index, a start
/// barrier and the stop flag, and returns (units done, latency samples).
fn run_clients<F>(n: usize, dur: Duration, f: F) -> RunResult
where
    F: Fn(usize, &Barrier, &AtomicBool) -> (u64, Vec<u64>) + Send + Sync + 'static,
{
    let f = Arc::new(f);
    let barrier = Arc::new(Barrier::new(n + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let mut hs = Vec::with_capacity(n);
    for i in 0..n {
        let (f, b, s) = (f.clone(), barrier.clone(), stop.clone());
        hs.push(
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let r = f(i, &b, &s);
                    (r, Instant::now())
                })
                .unwrap(),
        );
    }
    barrier.wait();
    let start = Instant::now();
    std::thread::sleep(dur);
    stop.store(true, Ordering::Relaxed);
    let mut units = 0;
    let mut lat = Vec::new();
    let mut last = start;
    for h in hs {
        let ((u, l), end) = h.join().expect("client thread failed");
        units += u;
        lat.extend(l);
        last = last.max(end);
    }
    lat.sort_unstable();
    RunResult {
        units,
        rate: units as f64 / (last - start).as_secs_f64(),
        lat,
    }
}

fn throughput_up(path: &Path, conns: usize, dur: Duration) -> RunResult {
    let path = path.to_owned();
    run_clients(conns, dur, move |_, b, stop| {
        let mut s = connect(&path);
        s.write_all(b"S").unwrap();
        let buf = vec![0xa5u8; CHUNK];
        b.wait();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            s.write_all(&buf).expect("write to sink");
            n += CHUNK as u64;
        }
        (n, Vec::new())
    })
}

fn throughput_down(path: &Path, conns: usize, dur: Duration) -> RunResult {
    let path = path.to_owned();
    run_clients(conns, dur, move |_, b, stop| {
        let mut s = connect(&path);
        s.write_all(b"O").unwrap();
        let mut buf = vec![0u8; CHUNK];
        // The stream is flowing before the clock starts.
        s.read_exact(&mut buf[..1]).unwrap();
        b.wait();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let r = s.read(&mut buf).expect("read from source");
            assert!(r > 0, "source ended early");
            n += r as u64;
        }
        (n, Vec::new())
    })
}

fn round_trip(s: &mut UnixStream, out: &[u8; MSG], back: &mut [u8; MSG]) {
    s.write_all(out).expect("write request");
    s.read_exact(back).expect("read response");
}

fn request_response(path: &Path, conns: usize, dur: Duration) -> RunResult {
    let path = path.to_owned();
    run_clients(conns, dur, move |_, b, stop| {
        let mut s = connect(&path);
        s.write_all(b"E").unwrap();
        let out = [7u8; MSG];
        let mut back = [0u8; MSG];
        round_trip(&mut s, &out, &mut back);
        let mut lat = Vec::with_capacity(1 << 16);
        b.wait();
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            round_trip(&mut s, &out, &mut back);
            lat.push(t.elapsed().as_nanos() as u64);
        }
        (lat.len() as u64, lat)
    })
}

fn connection_rate(path: &Path, workers: usize, dur: Duration) -> RunResult {
    let path = path.to_owned();
    run_clients(workers, dur, move |_, b, stop| {
        let mut req = [7u8; MSG + 1];
        req[0] = b'E';
        let mut back = [0u8; MSG];
        let mut lat = Vec::with_capacity(1 << 14);
        b.wait();
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            let mut s = connect(&path);
            s.write_all(&req).expect("write request");
            s.read_exact(&mut back).expect("read response");
            drop(s);
            lat.push(t.elapsed().as_nanos() as u64);
        }
        (lat.len() as u64, lat)
    })
}

// ---------------------------------------------------------------------------
// HTTP client (policy group): blocking, keep-alive, fixed request bytes; the
// end of each response is found with httparse and its Content-Length.

const PING_REQUEST: &[u8] = b"GET /v1.41/_ping HTTP/1.1\r\nHost: api.moby.localhost\r\nUser-Agent: Docker-Client/20.10.24 (linux)\r\n\r\n";

/// The body `docker run -d --name web -p 8080:80 -v webdata:/usr/share/nginx/html
/// -e TZ=UTC --memory 512m --restart unless-stopped --label app=web nginx:1.25`
/// sends (docker CLI 20.10, API 1.41): a full HostConfig, a named volume, no
/// field `userns-safe` refuses.
const CREATE_BODY: &str = concat!(
    r#"{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"#,
    r#""AttachStderr":false,"ExposedPorts":{"80/tcp":{}},"Tty":false,"OpenStdin":false,"#,
    r#""StdinOnce":false,"Env":["TZ=UTC"],"Cmd":null,"Image":"nginx:1.25","Volumes":{},"#,
    r#""WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":{"app":"web"},"#,
    r#""HostConfig":{"Binds":["webdata:/usr/share/nginx/html"],"ContainerIDFile":"","#,
    r#""LogConfig":{"Type":"","Config":{}},"NetworkMode":"default","#,
    r#""PortBindings":{"80/tcp":[{"HostIp":"","HostPort":"8080"}]},"#,
    r#""RestartPolicy":{"Name":"unless-stopped","MaximumRetryCount":0},"AutoRemove":false,"#,
    r#""VolumeDriver":"","VolumesFrom":null,"ConsoleSize":[0,0],"CapAdd":null,"CapDrop":null,"#,
    r#""CgroupnsMode":"","Dns":[],"DnsOptions":[],"DnsSearch":[],"ExtraHosts":null,"#,
    r#""GroupAdd":null,"IpcMode":"","Cgroup":"","Links":null,"OomScoreAdj":0,"PidMode":"","#,
    r#""Privileged":false,"PublishAllPorts":false,"ReadonlyRootfs":false,"SecurityOpt":null,"#,
    r#""UTSMode":"","UsernsMode":"","ShmSize":0,"Isolation":"","CpuShares":0,"#,
    r#""Memory":536870912,"NanoCpus":0,"CgroupParent":"","BlkioWeight":0,"#,
    r#""BlkioWeightDevice":[],"BlkioDeviceReadBps":null,"BlkioDeviceWriteBps":null,"#,
    r#""BlkioDeviceReadIOps":null,"BlkioDeviceWriteIOps":null,"CpuPeriod":0,"CpuQuota":0,"#,
    r#""CpuRealtimePeriod":0,"CpuRealtimeRuntime":0,"CpusetCpus":"","CpusetMems":"","#,
    r#""Devices":[],"DeviceCgroupRules":null,"DeviceRequests":null,"KernelMemory":0,"#,
    r#""KernelMemoryTCP":0,"MemoryReservation":0,"MemorySwap":0,"MemorySwappiness":-1,"#,
    r#""OomKillDisable":false,"PidsLimit":null,"Ulimits":null,"CpuCount":0,"CpuPercent":0,"#,
    r#""IOMaximumIOps":0,"IOMaximumBandwidth":0,"MaskedPaths":null,"ReadonlyPaths":null},"#,
    r#""NetworkingConfig":{"EndpointsConfig":{}}}"#,
);

/// The full `POST /v1.41/containers/create?name=web` request with `body`.
fn create_request(body: &str) -> Arc<[u8]> {
    format!(
        "POST /v1.41/containers/create?name=web HTTP/1.1\r\nHost: api.moby.localhost\r\nUser-Agent: Docker-Client/20.10.24 (linux)\r\nContent-Length: {}\r\nContent-Type: application/json\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
    .into()
}

/// One keep-alive client connection.
struct HttpClient {
    s: UnixStream,
    buf: Vec<u8>,
    /// Bytes of `buf` received and not yet consumed.
    len: usize,
}

/// (status, length of the whole response) once `data` holds a complete head.
fn response_end(data: &[u8]) -> Option<(u16, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(data).expect("malformed response head") {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return None,
    };
    let len = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        })
        .expect("response without a Content-Length");
    Some((resp.code.expect("status code"), head + len))
}

impl HttpClient {
    fn connect(path: &Path) -> HttpClient {
        HttpClient {
            s: connect(path),
            buf: vec![0; 16 * 1024],
            len: 0,
        }
    }

    fn fill(&mut self) {
        if self.len == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = self
            .s
            .read(&mut self.buf[self.len..])
            .expect("read response");
        assert!(n > 0, "connection closed before the response ended");
        self.len += n;
    }

    /// Send `req`, read its response; panic unless the status is `want`.
    fn exchange(&mut self, req: &[u8], want: u16) {
        self.s.write_all(req).expect("write request");
        let (status, end) = loop {
            if let Some(x) = response_end(&self.buf[..self.len]) {
                break x;
            }
            self.fill();
        };
        while self.len < end {
            self.fill();
        }
        assert_eq!(
            status,
            want,
            "unexpected response:\n{}",
            String::from_utf8_lossy(&self.buf[..end])
        );
        self.buf.copy_within(end..self.len, 0);
        self.len -= end;
    }
}

/// `conns` keep-alive connections sending `req` back to back, each answered with `want`.
fn http_requests(path: &Path, conns: usize, dur: Duration, req: Arc<[u8]>, want: u16) -> RunResult {
    let path = path.to_owned();
    run_clients(conns, dur, move |_, b, stop| {
        let mut c = HttpClient::connect(&path);
        // The connection (and the policy relay's upstream connection) is up before the clock.
        c.exchange(&req, want);
        let mut lat = Vec::with_capacity(1 << 16);
        b.wait();
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            c.exchange(&req, want);
            lat.push(t.elapsed().as_nanos() as u64);
        }
        (lat.len() as u64, lat)
    })
}

// ---------------------------------------------------------------------------
// Scenario groups

type Scenario<'a> = (
    &'static str,
    String,
    &'static str,
    bool,
    Box<dyn Fn(&Path) -> RunResult + 'a>,
);

/// Run each scenario for every target in alternating order, `rounds` times.
fn run_alternating(opts: &Opts, targets: &[&Target], scenarios: Vec<Scenario<'_>>) -> Vec<Row> {
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
fn idle_group(opts: &Opts, t: &Target, up: &Upstream, rows: &mut [Row; 3]) {
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
    std::thread::sleep(Duration::from_millis(500));
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
fn wait_all_sockets(paths: &[PathBuf], deadline: Duration) -> (Instant, Instant) {
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

fn tenants_group(opts: &Opts, dir: &Path, up: &Upstream, rows: &mut Vec<Row>) {
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

fn reload_group(opts: &Opts, dir: &Path, up: &Upstream, rows: &mut Vec<Row>) {
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

/// The policy group's broker config: one tenant per access mode, all relaying
/// to the Docker-like upstream; otherwise as `broker_config` (no metrics section).
fn policy_config(dir: &Path, upstream: &Path) -> String {
    let mut y = format!(
        "defaults:\n  upstream: {}\n  mode: \"0660\"\n  max_connections: 100000\n  drain_timeout: 2s\ntenants:\n",
        upstream.display()
    );
    for access in ["full", "read-only", "userns-safe"] {
        let _ = writeln!(
            y,
            "  {access}:\n    listen: {}\n    uid: 0\n    gid: 0\n    access: {access}",
            tenant_path(dir, access).display()
        );
    }
    y
}

/// Keep-alive HTTP requests: direct, byte relay (`access: full`), `read-only`
/// and `userns-safe` tenants of one broker process, in alternating rounds.
fn policy_group(opts: &Opts, dir: &Path, upstream: &Path) -> Vec<Row> {
    let tdir = dir.join("broker-policy");
    std::fs::create_dir_all(&tdir).unwrap();
    let config = tdir.join("sockbroker.yaml");
    std::fs::write(&config, policy_config(&tdir, upstream)).unwrap();
    let proc = Rc::new(spawn_broker(opts, &config, &log_path(&tdir)));
    let tenant = |kind: Kind, name: &str| {
        let path = tenant_path(&tdir, name);
        wait_accepting(&path, "sockbroker", Duration::from_secs(20));
        Target {
            kind,
            socat: false,
            path,
            proc: Some(proc.clone()),
        }
    };
    let direct = Target {
        kind: Kind::Direct,
        socat: false,
        path: upstream.to_owned(),
        proc: None,
    };
    let full = tenant(Kind::Broker, "full");
    let read_only = tenant(Kind::ReadOnly, "read-only");
    let userns_safe = tenant(Kind::UsernsSafe, "userns-safe");

    let ping: Arc<[u8]> = PING_REQUEST.into();
    let create = create_request(CREATE_BODY);
    // The policies are in force: read-only refuses any create, userns-safe a privileged one.
    let privileged = create_request(r#"{"Image":"x","HostConfig":{"Privileged":true}}"#);
    HttpClient::connect(&read_only.path).exchange(&create, 403);
    HttpClient::connect(&userns_safe.path).exchange(&privileged, 403);
    HttpClient::connect(&userns_safe.path).exchange(&create, 201);
    eprintln!("  read-only refuses container create, userns-safe a privileged one (403); userns-safe admits the bench's create");

    let dur = opts.duration;
    let mut sc: Vec<Scenario<'_>> = Vec::new();
    for c in [1usize, 8] {
        let s = if c == 1 { "conn" } else { "conns" };
        let req = ping.clone();
        sc.push((
            "lat",
            format!("GET /_ping, {c} keep-alive {s}"),
            "req/s",
            true,
            Box::new(move |p| http_requests(p, c, dur, req.clone(), 200)),
        ));
    }
    let mut rows = run_alternating(opts, &[&direct, &full, &read_only, &userns_safe], sc);
    // read-only refuses container create (403): it has no column here.
    let mut create_sc: Vec<Scenario<'_>> = Vec::new();
    create_sc.push((
        "lat",
        format!(
            "POST /containers/create ({} B JSON body), 1 keep-alive conn",
            CREATE_BODY.len()
        ),
        "req/s",
        true,
        Box::new(move |p| http_requests(p, 1, dur, create.clone(), 201)),
    ));
    rows.extend(run_alternating(
        opts,
        &[&direct, &full, &userns_safe],
        create_sc,
    ));
    rows
}

// ---------------------------------------------------------------------------

fn machine() -> String {
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

fn fs_label(dir: &Path) -> String {
    let tmpfs = nix::sys::statfs::statfs(dir)
        .map(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
        .unwrap_or(false);
    format!(
        "{} ({})",
        dir.display(),
        if tmpfs { "tmpfs" } else { "not tmpfs" }
    )
}

fn socat_version(opts: &Opts) -> String {
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

fn targets_summary(rows: &[Row]) -> String {
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

fn main() {
    let opts = Opts::parse();
    if opts.compare.is_some() {
        let _ = COL2.set("B");
    }
    let nofile = raise_nofile();
    let budget = if opts.quick {
        Duration::from_secs(300)
    } else {
        Duration::from_secs(900)
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
    let dur = opts.duration;
    let needs_relays = ["throughput", "rr", "connrate"]
        .iter()
        .any(|g| opts.wants(g));
    if needs_relays {
        let direct = Target {
            kind: Kind::Direct,
            socat: false,
            path: up.path.clone(),
            proc: None,
        };
        let socat = second_target(&opts, &dir, &up.path, "socat-main");
        let broker = start_broker(&opts, &dir, &up.path, "broker-main");
        let targets = [&direct, &socat, &broker];
        if opts.wants("throughput") {
            eprintln!("throughput");
            let mut sc: Vec<Scenario<'_>> = Vec::new();
            for c in [1usize, 8] {
                let s = if c == 1 { "conn" } else { "conns" };
                sc.push((
                    "rate",
                    format!("throughput up (into sink), {c} {s}"),
                    "MB/s",
                    true,
                    Box::new(move |p| throughput_up(p, c, dur)),
                ));
                sc.push((
                    "rate",
                    format!("throughput down (out of source), {c} {s}"),
                    "MB/s",
                    true,
                    Box::new(move |p| throughput_down(p, c, dur)),
                ));
            }
            rows.extend(run_alternating(&opts, &targets, sc));
        }
        if opts.wants("rr") {
            eprintln!("request/response");
            let mut sc: Vec<Scenario<'_>> = Vec::new();
            for c in [1usize, 16] {
                let s = if c == 1 { "conn" } else { "conns" };
                sc.push((
                    "lat",
                    format!("round trips, {c} {s}"),
                    "1/s",
                    true,
                    Box::new(move |p| request_response(p, c, dur)),
                ));
            }
            rows.extend(run_alternating(&opts, &targets, sc));
        }
        if opts.wants("connrate") {
            eprintln!("connection rate");
            let mut sc: Vec<Scenario<'_>> = Vec::new();
            for c in [1usize, 16] {
                let s = if c == 1 { "worker" } else { "workers" };
                sc.push((
                    "p99",
                    format!("connection rate, {c} {s}"),
                    "1/s",
                    true,
                    Box::new(move |p| connection_rate(p, c, dur)),
                ));
            }
            rows.extend(run_alternating(&opts, &targets, sc));
        }
    }
    if opts.wants("idle") {
        let n = opts.idle_conns;
        eprintln!("idle: {n} connections");
        let mut idle_rows = [
            Row::new("relay memory per idle connection", "KiB", false),
            Row::new(
                "relay memory per connection after one round trip",
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
    let _ = writeln!(report, "socat: {}", socat_version(&opts));
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
        let _ = writeln!(report, "\ntargets:");
        report.push_str(&targets_summary(&rows));
    }
    if !policy_rows.is_empty() {
        let _ = writeln!(
            report,
            "\npolicy mode (HTTP/1.1 to a Docker-like upstream; one broker, a tenant per access mode; read-only refuses container create, so it has no value there):\n"
        );
        report.push_str(&print_policy_table(&policy_rows));
        let _ = writeln!(report, "\nadded per request over the byte relay:");
        report.push_str(&policy_summary(&policy_rows));
    }
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
