//! Harness for end-to-end tests: the real `sockbroker` binary in its own
//! process, real Unix sockets, real uids and user namespaces.
//!
//! Everything waits on observable conditions with a deadline (`wait_until`);
//! nothing sleeps a fixed time and hopes.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The default deadline for a condition to become true.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The workspace root (tests/ is one level below it).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The broker binary under test: `$SOCKBROKER_BIN`, else target/debug/sockbroker
/// (the README's test command builds it first).
pub fn broker_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SOCKBROKER_BIN") {
        return p.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    let p = target.join("debug/sockbroker");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --bins` first (the README's test command does)",
        p.display()
    );
    p
}

/// The test client binary (stdin → socket → stdout).
pub fn client_bin() -> PathBuf {
    let p = broker_bin().with_file_name("sb-client");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --bins`",
        p.display()
    );
    p
}

/// Poll `cond` every few milliseconds until it holds; panic with `what` at the deadline.
pub fn wait_until(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    let mut pause = Duration::from_millis(2);
    loop {
        if cond() {
            return;
        }
        if Instant::now() > end {
            panic!("timed out after {deadline:?} waiting for: {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// True under CI (`CI=true` or `CI=1`, as CI services and `.ci/run` set it):
/// then a test never skips.
pub fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

/// A test cannot run here (`missing`: what is missing; `fix`: how to get it).
/// Outside CI it prints a SKIPPED line and the caller returns; under CI it
/// panics, so a broken install step fails the run instead of looking like a
/// pass.
pub fn cannot_run(missing: &str, fix: &str) {
    if in_ci() {
        panic!("{missing}; {fix}. CI=true: a test never skips (unset CI to skip instead)");
    }
    eprintln!("SKIPPED: {missing}; {fix}");
}

/// Unless running as root: [`cannot_run`] (SKIPPED, or a failure under CI)
/// and true; `needs` says why root is needed.
pub fn skip_unless_root(needs: &str) -> bool {
    if !is_root() {
        cannot_run(
            &format!("needs root ({needs})"),
            "run the tests as root (sudo -E cargo test --workspace)",
        );
        return true;
    }
    false
}

/// True when `prog ARG` (e.g. `--version`) runs; otherwise [`cannot_run`]
/// (SKIPPED, or a failure under CI) saying how to install it (`install`,
/// e.g. "apt-get install strace").
pub fn have(prog: &str, arg: &str, install: &str) -> bool {
    let ok = Command::new(prog)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        cannot_run(
            &format!("`{prog}` not found"),
            &format!("{install}; tests/setup.sh installs everything the tests need"),
        );
    }
    ok
}

/// `prog args…` as a [`Command`], to hand to [`run_cmd`] / [`run_ok`].
pub fn cmd(prog: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Command {
    let mut c = Command::new(prog);
    c.args(args);
    c
}

/// A command's stdout followed by its stderr, for failure messages.
pub fn output_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Run `cmd` with stdin from /dev/null and a deadline; return its output.
pub fn run_cmd(mut cmd: Command, deadline: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    wait_output(child, deadline)
}

/// Run `cmd`; panic with its output unless it succeeds; return stdout.
pub fn run_ok(cmd: Command, deadline: Duration) -> String {
    let what = format!("{cmd:?}");
    let o = run_cmd(cmd, deadline);
    assert!(
        o.status.success(),
        "{what} failed ({}):\n{}",
        o.status,
        output_text(&o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Tenant YAML lines giving its socket to this process's own uid and gid, mode
/// 0600: a test that needs no other owner runs without root.
pub fn own_owner() -> &'static str {
    static S: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    S.get_or_init(|| format!("{}\nmode: \"0600\"", own_ids()))
}

/// `uid: UID\ngid: GID` for this process (see [`own_owner`]).
pub fn own_ids() -> &'static str {
    static S: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        format!(
            "uid: {}\ngid: {}",
            nix::unistd::geteuid(),
            nix::unistd::getegid()
        )
    })
}

/// True when running as root (needed for other uids and user namespaces).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A scratch directory that tenants (other uids) can traverse.
pub fn scratch() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("sbe2e")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(
        d.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    d
}

/// A running broker process. Dropping it kills the process (by its pid).
pub struct Broker {
    /// The child process.
    pub child: Child,
    /// Everything it wrote to stderr so far.
    log: Arc<Mutex<String>>,
    /// Set once its stderr reached EOF (every line is in `log`).
    log_done: Arc<std::sync::atomic::AtomicBool>,
}

impl Broker {
    /// Start `sockbroker run --config CONFIG ARGS...` with `envs`.
    pub fn start(config: &Path, args: &[&str], envs: &[(&str, &str)]) -> Broker {
        Self::start_wrapped(&[], config, args, envs)
    }

    /// Like [`Broker::start`], with the broker run under a wrapper command
    /// (e.g. `["prlimit", "--nofile=256:4096", "--"]`); the wrapper must exec it.
    pub fn start_wrapped(
        wrapper: &[&str],
        config: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Broker {
        let mut cmd = match wrapper.split_first() {
            Some((w, rest)) => {
                let mut c = Command::new(w);
                c.args(rest).arg(broker_bin());
                c
            }
            None => Command::new(broker_bin()),
        };
        cmd.arg("run").arg("--config").arg(config).args(args);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Self::spawn(cmd)
    }

    /// Start an arbitrary command that execs `sockbroker run …` in the same
    /// process (e.g. `setpriv … sockbroker run …`), with its stderr captured
    /// like [`Broker::start`] does. `RUST_LOG` is set unless `cmd` sets it.
    pub fn spawn(mut cmd: Command) -> Broker {
        if !cmd.get_envs().any(|(k, _)| k == "RUST_LOG") {
            cmd.env(
                "RUST_LOG",
                std::env::var("SB_TEST_LOG").unwrap_or_else(|_| "debug".into()),
            );
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let log_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stderr = child.stderr.take().unwrap();
        let l2 = log.clone();
        let done2 = log_done.clone();
        std::thread::spawn(move || {
            let _eof = SetOnDrop(done2);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("SB_TEST_ECHO").is_some() {
                    eprintln!("[broker] {line}");
                }
                let mut l = l2.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        Broker {
            child,
            log,
            log_done,
        }
    }

    /// The broker's log so far.
    pub fn logs(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Wait until the log contains `needle` (count of occurrences ≥ `n`).
    pub fn wait_log_n(&self, needle: &str, n: usize) {
        wait_until(
            &format!("broker log to contain {needle:?} x{n}"),
            DEADLINE,
            || self.logs().matches(needle).count() >= n,
        );
    }

    /// Wait until the log contains `needle`.
    pub fn wait_log(&self, needle: &str) {
        self.wait_log_n(needle, 1)
    }

    /// Send a signal to the broker.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// Wait for the process to exit, with a deadline.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let end = Instant::now() + deadline;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                // Let the reader catch up with its last lines (unless a process
                // it started still holds the pipe, e.g. after an upgrade).
                let caught_up = Instant::now() + Duration::from_secs(2);
                while !self.log_done.load(std::sync::atomic::Ordering::Acquire)
                    && Instant::now() < caught_up
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                return st;
            }
            if Instant::now() > end {
                panic!(
                    "broker did not exit within {deadline:?}; log:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Sets its flag when dropped (however the thread holding it ends).
struct SetOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- broker log ----\n{}", self.logs());
        }
    }
}

/// Wait until `path` is a socket that accepts connections.
pub fn wait_socket(path: &Path) {
    wait_until(
        &format!("{} to accept connections", path.display()),
        DEADLINE,
        || UnixStream::connect(path).is_ok(),
    );
}

/// Wait until nothing exists at `path`.
pub fn wait_gone(path: &Path) {
    wait_until(
        &format!("{} to disappear", path.display()),
        DEADLINE,
        || std::fs::symlink_metadata(path).is_err(),
    );
}

/// (uid, gid, mode bits, inode) of a socket file.
pub fn socket_meta(path: &Path) -> (u32, u32, u32, u64) {
    let m = std::fs::symlink_metadata(path).unwrap();
    assert!(
        m.file_type().is_socket(),
        "{} is not a socket",
        path.display()
    );
    (m.uid(), m.gid(), m.mode() & 0o7777, m.ino())
}

/// An upstream server: on each connection it first writes `tag` (if any), then
/// echoes everything it reads, and after the client's EOF shuts down its write
/// side. Runs on threads until the process ends.
pub struct Upstream {
    /// The socket path.
    pub path: PathBuf,
}

impl Upstream {
    /// Start an echo upstream at `path` (0777 so any uid's relay may reach it).
    pub fn start(path: &Path, tag: Option<&str>) -> Upstream {
        let _ = std::fs::remove_file(path);
        let l = UnixListener::bind(path).unwrap();
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        let tag = tag.map(|t| t.as_bytes().to_vec());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let tag = tag.clone();
                std::thread::spawn(move || {
                    if let Some(t) = tag {
                        if s.write_all(&t).is_err() {
                            return;
                        }
                    }
                    let mut r = s.try_clone().unwrap();
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match r.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    let _ = s.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Upstream {
            path: path.to_owned(),
        }
    }
}

/// How to run the client process.
#[derive(Clone, Copy, Debug)]
pub enum As {
    /// As this (root) process.
    Me,
    /// As host uid:gid with no supplementary groups.
    Ids(u32, u32),
    /// Inside a new user namespace whose root maps to host `uid`/`gid` (65536 ids),
    /// running as the namespace's root: the container situation without Docker.
    UsernsRoot(u32, u32),
}

/// Run the client against `socket`, feeding `input`; returns its output.
pub fn run_client(socket: &Path, input: &[u8], who: As) -> Output {
    let client = client_bin();
    let mut cmd = match who {
        As::Me => Command::new(&client),
        As::Ids(uid, gid) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups")
                .arg(&client);
            c
        }
        As::UsernsRoot(..) => {
            let mut c = Command::new(&client);
            c.arg("--userns");
            c
        }
    };
    cmd.arg(socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn client");
    let mut stdin = child.stdin.take().unwrap();
    if let As::UsernsRoot(uid, gid) = who {
        let pid = child.id();
        let mine = std::fs::read_link("/proc/self/ns/user").unwrap();
        wait_until("client to enter its user namespace", DEADLINE, || {
            std::fs::read_link(format!("/proc/{pid}/ns/user"))
                .map(|l| l != mine)
                .unwrap_or(false)
        });
        std::fs::write(format!("/proc/{pid}/uid_map"), format!("0 {uid} 65536\n")).unwrap();
        std::fs::write(format!("/proc/{pid}/gid_map"), format!("0 {gid} 65536\n")).unwrap();
        stdin.write_all(b"go\n").unwrap();
    }
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = wait_output(child, DEADLINE);
    let _ = feeder.join();
    out
}

/// Wait for a child's output with a deadline (kill it past the deadline).
pub fn wait_output(mut child: Child, deadline: Duration) -> Output {
    let pid = child.id();
    let done = Arc::new(Mutex::new(false));
    let d2 = done.clone();
    std::thread::spawn(move || {
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            if *d2.lock().unwrap() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !*d2.lock().unwrap() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    });
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t = std::thread::spawn(move || {
        let _ = se.read_to_end(&mut err);
        err
    });
    let _ = so.read_to_end(&mut out);
    let err = t.join().unwrap();
    let status = child.wait().unwrap();
    *done.lock().unwrap() = true;
    Output {
        status,
        stdout: out,
        stderr: err,
    }
}

/// A deterministic payload of `n` bytes, distinct per `seed`.
pub fn payload(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Write a config file atomically (temp + rename), as most tools do.
pub fn write_config(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A config with `defaults.upstream = upstream`, a short drain, and one tenant per
/// (name, extra YAML lines) listening at `DIR/NAME/docker.sock`.
pub fn config_yaml(dir: &Path, upstream: &Path, tenants: &[(&str, &str)]) -> String {
    let mut s = format!(
        "defaults:\n  upstream: {}\n  drain_timeout: 2s\ntenants:\n",
        upstream.display()
    );
    if tenants.is_empty() {
        s = s.replace("tenants:\n", "tenants: {}\n");
    }
    for (name, extra) in tenants {
        s.push_str(&format!(
            "  {name}:\n    listen: {}/{name}/docker.sock\n",
            dir.display()
        ));
        for line in extra.lines() {
            s.push_str(&format!("    {line}\n"));
        }
    }
    s
}

/// A test scene: a scratch directory with an echo upstream and a config path.
pub struct Scene {
    /// The scratch directory (removed on drop).
    pub dir: tempfile::TempDir,
    /// The echo upstream all tenants use by default.
    pub upstream: Upstream,
}

impl Default for Scene {
    fn default() -> Self {
        Self::new()
    }
}

impl Scene {
    /// A new scene with an untagged echo upstream.
    pub fn new() -> Scene {
        let dir = scratch();
        let upstream = Upstream::start(&dir.path().join("upstream.sock"), None);
        Scene { dir, upstream }
    }
    /// The config file path.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("sockbroker.yaml")
    }
    /// Tenant `name`'s socket path.
    pub fn sock(&self, name: &str) -> PathBuf {
        self.dir.path().join(name).join("docker.sock")
    }
    /// The YAML for `tenants` in this scene.
    pub fn yaml(&self, tenants: &[(&str, &str)]) -> String {
        config_yaml(self.dir.path(), &self.upstream.path, tenants)
    }
    /// Write the config (temp + rename).
    pub fn write(&self, tenants: &[(&str, &str)]) {
        write_config(&self.config(), &self.yaml(tenants));
    }
    /// Write the config and start a broker on it with `args`.
    pub fn start(&self, tenants: &[(&str, &str)], args: &[&str]) -> Broker {
        self.write(tenants);
        let mut a = vec!["--retry-interval", "200ms"];
        a.extend_from_slice(args);
        Broker::start(&self.config(), &a, &[])
    }
}

/// Connect, send `msg`, and read back exactly as many bytes (echo); keeps the
/// connection open for further use.
pub fn echo_conn(path: &Path, msg: &[u8]) -> UnixStream {
    let mut c = UnixStream::connect(path).unwrap();
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    c.write_all(msg).unwrap();
    let mut buf = vec![0u8; msg.len()];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(buf, msg);
    c
}

/// Send `msg` on an open echo connection and expect it back.
pub fn echo_again(c: &mut UnixStream, msg: &[u8]) {
    c.write_all(msg).unwrap();
    let mut buf = vec![0u8; msg.len()];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(buf, msg);
}

/// True once the peer has closed `c` (read returns EOF or an error).
pub fn is_closed(c: &mut UnixStream) -> bool {
    c.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut b = [0u8; 1];
    let closed = match c.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    };
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    closed
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, read,
/// released). Another process may take it before the caller binds it: callers
/// that start a server on it should be ready to retry with a new port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.0 request over a plain TCP connection to `addr` (host:port), for
/// tests only (the product speaks HTTP through hyper). Returns the status code
/// and the body; `timeout` bounds the connect and each read/write.
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    use std::net::{TcpStream, ToSocketAddrs};
    let sa = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{addr}: no address")))?;
    let mut s = TcpStream::connect_timeout(&sa, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no end of headers in {raw:?}")))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    Ok((code, body.to_string()))
}

/// `GET path` from `addr` with a 5 s timeout (see [`http_request`]).
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    http_request(addr, "GET", path, Duration::from_secs(5))
}

/// The value of one series in a Prometheus text exposition, `series` written
/// exactly as the exposition renders it (labels sorted by name), e.g.
/// `sockbroker_bytes_total{direction="upstream",tenant="a"}`.
pub fn metric_value(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Start a broker with `metrics.listen` on a free loopback port: `yaml(addr)`
/// returns the whole config for that `host:port` (written to `config`). Waits
/// until `/healthz` answers; retries with another port if the one picked was
/// taken meanwhile. Returns the broker and the address.
pub fn start_with_metrics(
    config: &Path,
    yaml: impl Fn(&str) -> String,
    args: &[&str],
    envs: &[(&str, &str)],
) -> (Broker, String) {
    for _ in 0..5 {
        let addr = format!("127.0.0.1:{}", free_port());
        write_config(config, &yaml(&addr));
        let mut b = Broker::start(config, args, envs);
        let mut exited = false;
        wait_until("the broker to answer /healthz (or exit)", DEADLINE, || {
            exited = b.child.try_wait().unwrap().is_some();
            exited || matches!(http_get(&addr, "/healthz"), Ok((200, _)))
        });
        if !exited {
            return (b, addr);
        }
        assert!(
            b.logs().contains("metrics"),
            "broker exited at startup:\n{}",
            b.logs()
        );
    }
    panic!("could not start the broker on a free port");
}

/// Where tests/docker/setup.sh keeps its engines (`$SB_DOCKER_ROOT`).
pub fn docker_root() -> PathBuf {
    std::env::var_os("SB_DOCKER_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/lib/sockbroker-test".into())
}

/// Take the exclusive lock that serializes test runs using the Docker engines
/// (`$SB_DOCKER_ROOT/.lock`), waiting for another run if needed.
pub fn lock_docker_root() -> nix::fcntl::Flock<std::fs::File> {
    lock_file(&docker_root().join(".lock"))
}

/// An exclusive `flock` on `path` (created if missing), waiting for whoever
/// holds it: serializes test runs from several checkouts that share something
/// machine-wide (Docker engines, an installed package).
pub fn lock_file(path: &Path) -> nix::fcntl::Flock<std::fs::File> {
    use nix::fcntl::{Flock, FlockArg};
    let file = std::fs::File::create(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((file, _)) => {
            eprintln!("another run holds {}; waiting", path.display());
            Flock::lock(file, FlockArg::LockExclusive)
                .unwrap_or_else(|(_, e)| panic!("flock {}: {e}", path.display()))
        }
    }
}

/// One network-less Docker engine from tests/docker/setup.sh (`engine N USER`),
/// held under the lock file that serializes every run using the engines
/// (`$SB_DOCKER_ROOT/.lock`), stopped with `teardown.sh N` on drop (unless
/// `SB_DOCKER_KEEP` is set).
pub struct DockerEngine {
    /// Engine number (its directory is `$SB_DOCKER_ROOT/docker-N`).
    pub n: usize,
    /// Its API socket.
    pub sock: PathBuf,
    /// Shared by engines started together; released with the last of them.
    _lock: Arc<nix::fcntl::Flock<std::fs::File>>,
}

/// Engine `n`'s API socket under `$SB_DOCKER_ROOT` (root:docker 0660).
pub fn engine_sock(n: usize) -> PathBuf {
    docker_root().join(format!("docker-{n}/docker.sock"))
}

impl DockerEngine {
    /// Take the lock (waiting for other runs), then start engine `n` remapped to
    /// `remap_user` (dockremap or sbtenant2). Err with setup.sh's output on failure.
    pub fn start(n: usize, remap_user: &str) -> Result<DockerEngine, String> {
        Ok(Self::start_all(&[(n, remap_user)])?.remove(0))
    }

    /// [`DockerEngine::start`] for several engines under one hold of the lock.
    pub fn start_all(engines: &[(usize, &str)]) -> Result<Vec<DockerEngine>, String> {
        let root = docker_root();
        std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|e| format!("{}: {e}", root.display()))?;
        let lock = Arc::new(lock_docker_root());
        let mut started = Vec::new();
        for &(n, remap_user) in engines {
            let mut c = Command::new("bash");
            c.arg(workspace().join("tests/docker/setup.sh"))
                .args(["engine", &n.to_string(), remap_user])
                .env("SB_DOCKER_ROOT", &root)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let child = c.spawn().map_err(|e| format!("spawn setup.sh: {e}"))?;
            // Pushed first: a half-started engine is torn down too.
            started.push(DockerEngine {
                n,
                sock: engine_sock(n),
                _lock: lock.clone(),
            });
            // A bare machine first installs packages (apt-get update + install).
            let o = wait_output(child, Duration::from_secs(300));
            if !o.status.success() {
                return Err(format!(
                    "tests/docker/setup.sh engine {n} {remap_user} failed:\n{}",
                    output_text(&o)
                ));
            }
        }
        Ok(started)
    }

    /// The host's docker CLI against this engine.
    pub fn docker(&self) -> Command {
        let mut c = Command::new("docker");
        c.arg("-H").arg(format!("unix://{}", self.sock.display()));
        c
    }
}

impl Drop for DockerEngine {
    fn drop(&mut self) {
        if std::env::var_os("SB_DOCKER_KEEP").is_some() {
            eprintln!(
                "SB_DOCKER_KEEP: engine {} left running (tests/docker/teardown.sh {} stops it)",
                self.n, self.n
            );
            return;
        }
        let mut c = Command::new("bash");
        c.arg(workspace().join("tests/docker/teardown.sh"))
            .arg(self.n.to_string())
            .env("SB_DOCKER_ROOT", docker_root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Ok(child) = c.spawn() {
            let o = wait_output(child, Duration::from_secs(120));
            if !o.status.success() {
                eprintln!(
                    "tests/docker/teardown.sh {} failed:\n{}",
                    self.n,
                    String::from_utf8_lossy(&o.stderr)
                );
            }
        }
    }
}
