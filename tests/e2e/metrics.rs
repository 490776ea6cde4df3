//! End-to-end tests of the metrics and health endpoints (docs/metrics.md),
//! `sockbroker status`, the alert rules in deploy/prometheus/, and a real
//! Prometheus scraping the real binary.

use std::io::Read;
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sockbroker_e2e::*;

/// A plain tenant the test (root) may connect to.
/// The usual tenant owner: this test's own uid and gid (no root needed).
fn t() -> &'static str {
    own_owner()
}

/// The alert rules shipped for operators.
fn rules_file() -> PathBuf {
    workspace().join("deploy/prometheus/sockbroker-rules.yml")
}

/// A broker with its metrics server on a free loopback port, in a [`Scene`].
struct Fixture {
    /// Dropped first: the broker is killed before the scene's directory goes.
    b: Broker,
    /// host:port of /metrics, /healthz, /readyz, /tenants.
    addr: String,
    s: Scene,
}

impl Fixture {
    /// Start a broker on `tenants` with the metrics section set, and wait until
    /// it answers /healthz (tenants are applied before the server starts).
    fn start(s: Scene, tenants: &[(&str, &str)]) -> Fixture {
        for _ in 0..5 {
            let addr = format!("127.0.0.1:{}", free_port());
            write_config(&s.config(), &Self::yaml_for(&s, &addr, tenants));
            let mut b = Broker::start(&s.config(), &["--retry-interval", "200ms"], &[]);
            let mut exited = false;
            wait_until("the broker to answer /healthz (or exit)", DEADLINE, || {
                exited = b.child.try_wait().unwrap().is_some();
                exited || matches!(http_get(&addr, "/healthz"), Ok((200, _)))
            });
            if !exited {
                return Fixture { b, addr, s };
            }
            // The port was taken between free_port() and the broker's bind: try another.
            assert!(
                b.logs().contains("metrics.listen"),
                "broker exited at startup:\n{}",
                b.logs()
            );
        }
        panic!("could not start the broker on a free port");
    }

    fn yaml_for(s: &Scene, addr: &str, tenants: &[(&str, &str)]) -> String {
        format!("metrics:\n  listen: {addr}\n{}", s.yaml(tenants))
    }

    /// Rewrite the config (same metrics address) with `tenants`.
    fn write(&self, tenants: &[(&str, &str)]) {
        write_config(
            &self.s.config(),
            &Self::yaml_for(&self.s, &self.addr, tenants),
        );
    }

    fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    fn scrape(&self) -> String {
        let (code, body) = self.get("/metrics");
        assert_eq!(code, 200, "GET /metrics: {body}");
        body
    }

    /// Poll /metrics until every `(series, value)` holds exactly; returns that scrape.
    fn wait_metrics(&self, what: &str, expect: &[(&str, f64)]) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            let body = self.scrape();
            let wrong: Vec<String> = expect
                .iter()
                .filter_map(|(series, want)| {
                    let got = metric_value(&body, series);
                    (got != Some(*want)).then(|| format!("  {series}: want {want}, got {got:?}"))
                })
                .collect();
            if wrong.is_empty() {
                return body;
            }
            if Instant::now() > end {
                panic!(
                    "timed out waiting for {what}:\n{}\n---- last scrape ----\n{body}",
                    wrong.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Poll /metrics until `cond` holds on a scrape; returns that scrape.
    fn wait_scrape(&self, what: &str, mut cond: impl FnMut(&str) -> bool) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            let body = self.scrape();
            if cond(&body) {
                return body;
            }
            if Instant::now() > end {
                panic!("timed out waiting for {what}\n---- last scrape ----\n{body}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn bytes(tenant: &str, dir: &str) -> String {
    format!("sockbroker_bytes_total{{direction=\"{dir}\",tenant=\"{tenant}\"}}")
}

fn series(name: &str, tenant: &str) -> String {
    format!("{name}{{tenant=\"{tenant}\"}}")
}

fn rejected(tenant: &str, reason: &str) -> String {
    format!("sockbroker_connections_rejected_total{{reason=\"{reason}\",tenant=\"{tenant}\"}}")
}

/// One echo round trip of `n` bytes on a fresh connection, then a clean close.
fn echo_once(sock: &Path, n: usize, seed: u64) {
    let c = echo_conn(sock, &payload(n, seed));
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    let mut c = c;
    c.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "echo upstream sent extra bytes");
}

/// Connect and expect the broker to close the connection without relaying.
fn expect_refused(sock: &Path) {
    let mut c = UnixStream::connect(sock).unwrap();
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf);
    assert!(buf.is_empty(), "a refused connection got data: {buf:?}");
}

/// The JSON object of tenant `name` in a pretty-printed /tenants answer.
fn tenant_json<'a>(body: &'a str, name: &str) -> &'a str {
    let key = format!("\"name\": \"{name}\"");
    body.split('}')
        .find(|obj| obj.contains(&key))
        .unwrap_or_else(|| panic!("tenant {name} missing from /tenants:\n{body}"))
}

/// Run promtool with `args`, feeding `stdin`; returns (success, stdout+stderr).
fn promtool(args: &[&str], stdin: &[u8]) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    let mut w = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = std::io::Write::write_all(&mut w, &input);
    });
    let out = wait_output(child, DEADLINE);
    let _ = feeder.join();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn exposition_passes_promtool_check_metrics() {
    if !have("promtool", "--version", "apt-get install prometheus") {
        return;
    }
    let f = Fixture::start(Scene::new(), &[("a", t()), ("b", t())]);
    // Traffic, so that histograms and counters have non-trivial series.
    echo_once(&f.s.sock("a"), 1000, 1);
    echo_once(&f.s.sock("b"), 10, 2);
    let text = f.wait_metrics(
        "both connections to be counted",
        &[
            (
                &series("sockbroker_connection_duration_seconds_count", "a"),
                1.0,
            ),
            (
                &series("sockbroker_connection_duration_seconds_count", "b"),
                1.0,
            ),
        ],
    );
    for name in [
        "sockbroker_build_info",
        "sockbroker_config_last_reload_successful",
        "sockbroker_config_last_reload_success_timestamp_seconds",
        "sockbroker_config_reloads_total",
        "sockbroker_tenants",
        "sockbroker_tenant_up",
        "sockbroker_connections_active",
        "sockbroker_connections_total",
        "sockbroker_connections_rejected_total",
        "sockbroker_bytes_total",
        "sockbroker_connection_duration_seconds",
        "sockbroker_upstream_connect_duration_seconds",
        "process_cpu_seconds_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing from /metrics:\n{text}"
        );
    }
    assert_eq!(metric_value(&text, "sockbroker_tenants"), Some(2.0));
    let (ok, out) = promtool(&["check", "metrics"], text.as_bytes());
    assert!(
        ok,
        "promtool check metrics failed:\n{out}\n---- exposition ----\n{text}"
    );
}

#[test]
fn exact_counters_for_tenants_and_rejections() {
    let s = Scene::new();
    let missing = s.dir.path().join("missing-upstream.sock");
    let only_231072 = format!("{}\nallow:\n  uids: [\"231072\"]", t());
    let no_upstream = format!("{}\nupstream: {}", t(), missing.display());
    let f = Fixture::start(
        s,
        &[
            ("a", t()),
            ("b", t()),
            ("c", &only_231072),
            ("d", &no_upstream),
        ],
    );
    // a: 3 connections of 1000 bytes each way; b: 2 of 777.
    for i in 0..3 {
        echo_once(&f.s.sock("a"), 1000, i);
    }
    for i in 0..2 {
        echo_once(&f.s.sock("b"), 777, 10 + i);
    }
    // c: this test's uid is not in the allow list; d: the upstream does not exist.
    expect_refused(&f.s.sock("c"));
    expect_refused(&f.s.sock("d"));
    expect_refused(&f.s.sock("d"));
    let text = f.wait_metrics(
        "exact per-tenant counters",
        &[
            (&bytes("a", "upstream"), 3000.0),
            (&bytes("a", "downstream"), 3000.0),
            (&bytes("b", "upstream"), 1554.0),
            (&bytes("b", "downstream"), 1554.0),
            (&series("sockbroker_connections_total", "a"), 3.0),
            (&series("sockbroker_connections_total", "b"), 2.0),
            (&series("sockbroker_connections_total", "c"), 1.0),
            (&series("sockbroker_connections_total", "d"), 2.0),
            (&series("sockbroker_connections_active", "a"), 0.0),
            (&series("sockbroker_connections_active", "d"), 0.0),
            (
                &series("sockbroker_connection_duration_seconds_count", "a"),
                3.0,
            ),
            (
                &series("sockbroker_upstream_connect_duration_seconds_count", "a"),
                3.0,
            ),
            (&rejected("c", "peer_not_allowed"), 1.0),
            (&rejected("d", "upstream_unavailable"), 2.0),
            (&series("sockbroker_tenant_up", "a"), 1.0),
            (&series("sockbroker_tenant_up", "d"), 1.0),
        ],
    );
    // Nothing counted where nothing happened.
    for (s, v) in [
        (bytes("c", "upstream"), 0.0),
        (bytes("d", "downstream"), 0.0),
        (rejected("a", "peer_not_allowed"), 0.0),
        (rejected("a", "upstream_unavailable"), 0.0),
        (rejected("a", "limit"), 0.0),
        (rejected("c", "upstream_unavailable"), 0.0),
        (rejected("d", "peer_not_allowed"), 0.0),
    ] {
        assert_eq!(metric_value(&text, &s), Some(v), "{s}\n{text}");
    }
    f.b.wait_log("peer_not_allowed");
    f.b.wait_log("upstream_unavailable");
}

#[test]
fn byte_counters_advance_while_connection_is_open() {
    let f = Fixture::start(Scene::new(), &[("a", t())]);
    let mut c = echo_conn(&f.s.sock("a"), &payload(12345, 7));
    f.wait_metrics(
        "bytes of the open connection",
        &[
            (&bytes("a", "upstream"), 12345.0),
            (&bytes("a", "downstream"), 12345.0),
            (&series("sockbroker_connections_active", "a"), 1.0),
            (
                &series("sockbroker_connection_duration_seconds_count", "a"),
                0.0,
            ),
        ],
    );
    // Still the same open connection: more bytes, counted again while open.
    echo_again(&mut c, &payload(655, 8));
    f.wait_metrics(
        "more bytes of the still-open connection",
        &[
            (&bytes("a", "upstream"), 13000.0),
            (&bytes("a", "downstream"), 13000.0),
            (&series("sockbroker_connections_active", "a"), 1.0),
        ],
    );
    assert!(!is_closed(&mut c), "the connection should still be open");
    drop(c);
    f.wait_metrics(
        "the closed connection to leave the active gauge",
        &[
            (&series("sockbroker_connections_active", "a"), 0.0),
            (
                &series("sockbroker_connection_duration_seconds_count", "a"),
                1.0,
            ),
        ],
    );
}

#[test]
fn readyz_names_down_tenant_until_its_path_is_free() {
    let s = Scene::new();
    std::fs::create_dir(s.dir.path().join("a")).unwrap();
    std::fs::write(s.sock("a"), "not a socket").unwrap();
    let f = Fixture::start(s, &[("a", t()), ("b", t())]);

    let (code, body) = f.get("/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("tenant a down"), "{body}");
    assert!(
        body.contains("regular file"),
        "the reason should say what is in the way: {body}"
    );
    assert!(!body.contains("tenant b"), "b is up: {body}");
    let (code, tenants) = f.get("/tenants");
    assert_eq!(code, 200);
    assert!(
        tenant_json(&tenants, "a").contains("\"state\": \"down\""),
        "{tenants}"
    );
    assert!(
        tenant_json(&tenants, "a").contains("regular file"),
        "{tenants}"
    );
    assert!(
        tenant_json(&tenants, "b").contains("\"state\": \"up\""),
        "{tenants}"
    );
    f.wait_metrics(
        "a down, b up",
        &[
            (&series("sockbroker_tenant_up", "a"), 0.0),
            (&series("sockbroker_tenant_up", "b"), 1.0),
        ],
    );

    // Free the path: the retry (every 200ms) brings a up, and /readyz follows.
    std::fs::remove_file(f.s.sock("a")).unwrap();
    wait_until("/readyz to become 200", DEADLINE, || {
        matches!(f.get("/readyz"), (200, _))
    });
    wait_socket(&f.s.sock("a"));
    f.wait_metrics("a up", &[(&series("sockbroker_tenant_up", "a"), 1.0)]);
    let (_, tenants) = f.get("/tenants");
    assert!(
        tenant_json(&tenants, "a").contains("\"state\": \"up\""),
        "{tenants}"
    );
    assert!(
        !tenant_json(&tenants, "a").contains("\"reason\""),
        "{tenants}"
    );
}

#[test]
fn health_endpoints_status_codes_and_tenants_json() {
    let s = Scene::new();
    std::fs::create_dir(s.dir.path().join("down")).unwrap();
    std::fs::create_dir(s.sock("down")).unwrap(); // a directory where the socket should be
    let f = Fixture::start(s, &[("up1", t()), ("down", t())]);

    let (code, body) = f.get("/healthz");
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let (code, body) = f.get("/no/such/path");
    assert_eq!(code, 404, "{body}");
    let t = Duration::from_secs(5);
    let (code, body) = http_request(&f.addr, "POST", "/metrics", t).unwrap();
    assert_eq!(code, 405, "{body}");
    let (code, _) = http_request(&f.addr, "DELETE", "/tenants", t).unwrap();
    assert_eq!(code, 405);
    let (code, body) = http_request(&f.addr, "HEAD", "/healthz", t).unwrap();
    assert_eq!((code, body.as_str()), (200, ""));

    let _open = echo_conn(&f.s.sock("up1"), b"hold this open");
    let (code, body) = f.get("/tenants");
    assert_eq!(code, 200);
    assert!(
        body.trim_start().starts_with('['),
        "not a JSON array: {body}"
    );
    let up = tenant_json(&body, "up1");
    assert!(up.contains("\"state\": \"up\""), "{body}");
    assert!(
        up.contains(&format!("\"listen\": \"{}\"", f.s.sock("up1").display())),
        "{body}"
    );
    assert!(up.contains("\"mode\": \"0600\""), "{body}");
    assert!(
        up.contains(&format!(
            "\"upstream\": \"{}\"",
            f.s.upstream.path.display()
        )),
        "{body}"
    );
    assert!(up.contains("\"active_connections\": 1"), "{body}");
    let down = tenant_json(&body, "down");
    assert!(down.contains("\"state\": \"down\""), "{body}");
    assert!(
        down.contains("\"reason\": ") && down.contains("a directory"),
        "{body}"
    );
}

#[test]
fn removed_tenant_series_go_after_drain_and_reload_gauges() {
    let f = Fixture::start(Scene::new(), &[("a", t()), ("b", t())]);
    echo_once(&f.s.sock("a"), 100, 1);
    let mut b_conn = echo_conn(&f.s.sock("b"), &payload(50, 2));
    f.wait_metrics(
        "both tenants' bytes",
        &[
            (&bytes("a", "upstream"), 100.0),
            (&bytes("b", "upstream"), 50.0),
            ("sockbroker_config_last_reload_successful", 1.0),
            ("sockbroker_tenants", 2.0),
        ],
    );
    let success0 = metric_value(
        &f.scrape(),
        "sockbroker_config_reloads_total{result=\"success\"}",
    )
    .expect("the startup load counts as a success");

    // Remove b while its connection is open: the socket goes at once, the
    // series stay for the drain (2s), then disappear; a's stay.
    f.write(&[("a", t())]);
    wait_gone(&f.s.sock("b"));
    let during = f.scrape();
    let b_still_open = {
        let msg = payload(10, 3);
        std::io::Write::write_all(&mut b_conn, &msg).is_ok() && {
            let mut back = vec![0u8; msg.len()];
            b_conn.read_exact(&mut back).is_ok() && back == msg
        }
    };
    if b_still_open {
        // The connection outlived that scrape, so the drain had not ended: b's
        // series must have been there.
        assert_eq!(
            metric_value(&during, &bytes("b", "upstream")),
            Some(50.0),
            "{during}"
        );
    }
    assert_eq!(
        metric_value(&during, "sockbroker_tenants"),
        Some(1.0),
        "{during}"
    );
    f.wait_scrape("b's series to be dropped after its drain", |t| {
        !t.is_empty() && !t.contains("tenant=\"b\"")
    });
    assert!(
        is_closed(&mut b_conn),
        "the drain should have closed b's connection"
    );
    let text = f.wait_metrics(
        "a's series to survive",
        &[
            (&bytes("a", "upstream"), 100.0),
            (&bytes("a", "downstream"), 100.0),
            (&series("sockbroker_connections_total", "a"), 1.0),
            (&series("sockbroker_tenant_up", "a"), 1.0),
            ("sockbroker_config_last_reload_successful", 1.0),
        ],
    );
    let failures0 =
        metric_value(&text, "sockbroker_config_reloads_total{result=\"failure\"}").unwrap_or(0.0);

    // An invalid edit (a typo'd key): rejected as a whole, a keeps running.
    let bad = Fixture::yaml_for(&f.s, &f.addr, &[("a", "uid: 0\nguid: 0\nmode: \"0600\"")]);
    write_config(&f.s.config(), &bad);
    let text = f.wait_scrape("the failed reload to show", |t| {
        metric_value(t, "sockbroker_config_last_reload_successful") == Some(0.0)
            && metric_value(t, "sockbroker_config_reloads_total{result=\"failure\"}")
                .is_some_and(|v| v > failures0)
    });
    assert_eq!(
        metric_value(&text, &series("sockbroker_tenant_up", "a")),
        Some(1.0)
    );
    echo_once(&f.s.sock("a"), 10, 4);

    // A valid edit: back to 1, and the success counter moves on.
    f.write(&[("a", t()), ("c", t())]);
    wait_socket(&f.s.sock("c"));
    let text = f.wait_scrape("the successful reload to show", |t| {
        metric_value(t, "sockbroker_config_last_reload_successful") == Some(1.0)
    });
    assert!(
        metric_value(&text, "sockbroker_config_reloads_total{result=\"success\"}").unwrap()
            > success0,
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "sockbroker_tenants"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        metric_value(&text, &series("sockbroker_tenant_up", "c")),
        Some(1.0)
    );
    let ts = metric_value(
        &text,
        "sockbroker_config_last_reload_success_timestamp_seconds",
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - ts).abs() < 60.0,
        "last success timestamp {ts} is not recent (now {now})"
    );

    // A failed edit undone (the running content written back, byte for byte):
    // the file and the running configuration agree again, so the gauge is 1
    // again although nothing needs applying.
    write_config(&f.s.config(), &bad);
    f.wait_scrape("the second failed reload to show", |t| {
        metric_value(t, "sockbroker_config_last_reload_successful") == Some(0.0)
    });
    f.write(&[("a", t()), ("c", t())]);
    f.wait_scrape("the undone edit to count as a success", |t| {
        metric_value(t, "sockbroker_config_last_reload_successful") == Some(1.0)
    });
}

/// The metrics address is taken: the broker exits 1 saying so, and takes the
/// tenant sockets it had already created with it instead of leaving them.
#[test]
fn metrics_address_in_use_exits_without_leaving_sockets() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let s = Scene::new();
    write_config(&s.config(), &Fixture::yaml_for(&s, &addr, &[("a", t())]));
    let mut b = Broker::start(&s.config(), &[], &[]);
    let status = b.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(1), "{}", b.logs());
    assert!(
        b.logs().contains("cannot start the metrics/health server"),
        "{}",
        b.logs()
    );
    assert!(
        !s.sock("a").exists(),
        "tenant socket left behind:\n{}",
        b.logs()
    );
}

#[test]
fn status_command_prints_table() {
    let s = Scene::new();
    std::fs::create_dir(s.dir.path().join("web")).unwrap();
    std::fs::write(s.sock("web"), "occupied").unwrap();
    let f = Fixture::start(s, &[("ci-runner", t()), ("web", t())]);
    let out = Command::new(broker_bin())
        .args(["status", "--url", &format!("http://{}", f.addr)])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "status failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = |name: &str| -> Vec<String> {
        stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{stdout}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert!(
        stdout.lines().next().unwrap().starts_with("TENANT"),
        "{stdout}"
    );
    assert_eq!(row("ci-runner")[1], "up", "{stdout}");
    assert_eq!(row("web")[1], "down", "{stdout}");
    assert!(row("web").join(" ").contains("regular file"), "{stdout}");
    assert!(stdout.contains("2 tenant(s), 1 down"), "{stdout}");

    // Nothing listening there: a clear error and a non-zero exit.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let out = Command::new(broker_bin())
        .args(["status", "--url", &dead])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach the broker"), "{err}");
}

#[test]
fn idle_clients_do_not_stall_metrics() {
    let f = Fixture::start(Scene::new(), &[("a", t())]);
    // 100 clients that connect and never send a byte.
    let mut idle: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(&f.addr).expect("connect an idle client"))
        .collect();
    // Well under the server's header timeout: idle clients must not hold the
    // slots real scrapers need.
    let budget = Duration::from_secs(2);
    for i in 0..3 {
        let t0 = Instant::now();
        let r = http_request(&f.addr, "GET", "/metrics", budget);
        let took = t0.elapsed();
        match r {
            Ok((200, body)) => assert!(body.contains("sockbroker_build_info"), "{body}"),
            other => panic!("scrape {i} with 100 idle clients open: {other:?} after {took:?}"),
        }
        assert!(
            took < budget,
            "scrape {i} took {took:?} with 100 idle clients open"
        );
    }
    // And the idle clients do not live forever: the server closes them.
    let c = &mut idle[0];
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut b = [0u8; 1];
    let t0 = Instant::now();
    match c.read(&mut b) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!(
            "idle client not closed by the server: {other:?} after {:?}",
            t0.elapsed()
        ),
    }
}

#[test]
fn alert_rules_pass_promtool_check_rules() {
    if !have("promtool", "--version", "apt-get install prometheus") {
        return;
    }
    let path = rules_file();
    let (ok, out) = promtool(&["check", "rules", path.to_str().unwrap()], b"");
    assert!(ok, "promtool check rules {} failed:\n{out}", path.display());
    assert!(out.contains("SUCCESS"), "{out}");
}

/// Every `sockbroker_*` name the rules file uses.
fn names_in_rules() -> Vec<String> {
    let text = std::fs::read_to_string(rules_file()).unwrap();
    let mut names = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("sockbroker_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // Only whole identifiers (not e.g. the tail of `my_sockbroker_x`).
        let before = rest[..i].chars().last();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            names.push(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names.sort();
    names.dedup();
    names
}

#[test]
fn alert_rules_only_use_exported_metric_names() {
    let used = names_in_rules();
    assert!(
        used.len() >= 3,
        "the rules should use sockbroker metrics: {used:?}"
    );
    let f = Fixture::start(Scene::new(), &[("a", t())]);
    echo_once(&f.s.sock("a"), 10, 1);
    let text = f.wait_metrics(
        "a connection to be counted",
        &[(
            &series("sockbroker_connection_duration_seconds_count", "a"),
            1.0,
        )],
    );
    // Series names present in the exposition (histograms as _bucket/_sum/_count).
    let exported: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let missing: Vec<&String> = used
        .iter()
        .filter(|n| !exported.contains(&n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} uses metric names the broker does not export: {missing:?}\n---- /metrics ----\n{text}",
        rules_file().display()
    );
}

/// A Prometheus server run as a child process; killed (by its pid) on drop.
struct Prometheus {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: sockbroker\n    static_configs:\n      - targets: ['{target}']\n",
                rules_file().display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn prometheus");
        Prometheus { child, addr, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `GET path` against Prometheus, or the error as text.
    fn get(&self, path: &str) -> String {
        match http_get(&self.addr, path) {
            Ok((_, body)) => body,
            Err(e) => e.to_string(),
        }
    }

    /// Poll an instant query until its (single) sample's value is `want`.
    fn wait_value(&mut self, query_encoded: &str, want: &str) {
        let path = format!("/api/v1/query?query={query_encoded}");
        let needle = format!(",\"{want}\"]");
        let mut last = String::new();
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            if let Some(status) = self.child_exited() {
                panic!("prometheus exited ({status}):\n{}", self.log());
            }
            last = self.get(&path);
            if last.contains("\"status\":\"success\"") && last.contains(&needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "prometheus query {path} never returned {want}; last answer: {last}\n---- prometheus log ----\n{}",
            self.log()
        );
    }

    fn child_exited(&mut self) -> Option<String> {
        self.child
            .try_wait()
            .ok()
            .flatten()
            .map(|st| st.to_string())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- prometheus log ----\n{}", self.log());
        }
    }
}

#[test]
fn real_prometheus_scrapes_the_broker() {
    if !have("prometheus", "--version", "apt-get install prometheus") {
        return;
    }
    let f = Fixture::start(Scene::new(), &[("a", t())]);
    let mut p = Prometheus::start(&f.addr);
    // up{job="sockbroker"} == 1: Prometheus scraped and parsed /metrics.
    p.wait_value("up%7Bjob%3D%22sockbroker%22%7D", "1");
    echo_once(&f.s.sock("a"), 4321, 1);
    // sockbroker_bytes_total{job="sockbroker",tenant="a",direction="upstream"}
    p.wait_value(
        "sockbroker_bytes_total%7Bjob%3D%22sockbroker%22%2Ctenant%3D%22a%22%2Cdirection%3D%22upstream%22%7D",
        "4321",
    );
    // The shipped alert rules load and evaluate against the real series.
    let mut last = String::new();
    wait_until(
        "the alert rules to be evaluated without errors",
        DEADLINE,
        || {
            last = p.get("/api/v1/rules");
            last.contains("\"health\":\"ok\"")
                && !last.contains("\"health\":\"unknown\"")
                && !last.contains("\"health\":\"err\"")
        },
    );
    assert!(last.contains("SockbrokerTenantDown"), "{last}");
    // No alert fires for this healthy broker.
    let alerts = p.get("/api/v1/alerts");
    assert!(alerts.contains("\"alerts\":[]"), "{alerts}");
}
