//! End-to-end tests of the access policies (docs/configuration.md "Access
//! policies"): the real broker between raw HTTP/1.1 clients and a fake engine.
//!
//! The fake engine is a small threaded HTTP/1.1 server on a Unix socket
//! (heads parsed with httparse) that answers like the engine does where it
//! matters: Content-Length and chunked bodies, a slow chunked stream,
//! `Connection: close`, `100 Continue`, a `101 UPGRADED` followed by a raw
//! echo (attach), a close-delimited raw stream (pre-upgrade attach), and a raw
//! echo for an HTTP/2 preface. It records every request it receives, so the
//! tests can check what was forwarded byte for byte — and what never arrived.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sockbroker_e2e::*;

/// The tenants' owner: this test's own uid and gid (no root needed).
fn owner() -> &'static str {
    own_owner()
}

// ------------------------------------------------------------------ fake engine

/// One request as the fake engine received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    /// The head and body bytes exactly as received.
    raw: Vec<u8>,
    /// The decoded body.
    body: Vec<u8>,
}

struct FakeEngine {
    path: PathBuf,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeEngine {
    fn start(path: &Path) -> FakeEngine {
        let _ = std::fs::remove_file(path);
        let l = UnixListener::bind(path).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                let seen = s2.clone();
                std::thread::spawn(move || {
                    let _ = engine_conn(s, seen);
                });
            }
        });
        FakeEngine {
            path: path.to_owned(),
            seen,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn targets(&self) -> Vec<String> {
        self.seen()
            .iter()
            .map(|s| format!("{} {}", s.method, s.target))
            .collect()
    }
}

/// Read more bytes into `buf`; false on EOF.
fn fill(s: &mut UnixStream, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut b = [0u8; 16 * 1024];
    let n = s.read(&mut b)?;
    buf.extend_from_slice(&b[..n]);
    Ok(n > 0)
}

/// Echo everything until EOF, then shut down the write side.
fn raw_echo(s: &mut UnixStream, pending: &[u8]) -> std::io::Result<()> {
    s.write_all(pending)?;
    let mut b = [0u8; 16 * 1024];
    loop {
        let n = s.read(&mut b)?;
        if n == 0 {
            break;
        }
        s.write_all(&b[..n])?;
    }
    s.shutdown(Shutdown::Write)
}

fn engine_conn(mut s: UnixStream, seen: Arc<Mutex<Vec<Seen>>>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        // The head.
        let (method, target, head_len, length, chunked, upgrade, expect) = loop {
            if buf.starts_with(b"PRI * HTTP/2.0") {
                seen.lock().unwrap().push(Seen {
                    method: "PRI".into(),
                    target: "*".into(),
                    raw: buf.clone(),
                    body: vec![],
                });
                return raw_echo(&mut s, &std::mem::take(&mut buf));
            }
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            if let httparse::Status::Complete(n) =
                req.parse(&buf).expect("fake engine: bad request")
            {
                let h = |name: &str| {
                    req.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
                };
                let length: usize = h("content-length").map_or(0, |v| v.parse().unwrap());
                let chunked =
                    h("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
                break (
                    req.method.unwrap().to_string(),
                    req.path.unwrap().to_string(),
                    n,
                    length,
                    chunked,
                    h("upgrade").is_some(),
                    h("expect").is_some(),
                );
            }
            if !fill(&mut s, &mut buf)? {
                return Ok(());
            }
        };
        if expect {
            s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        // The body.
        let mut body = Vec::new();
        let mut pos = head_len;
        if chunked {
            loop {
                match httparse::parse_chunk_size(&buf[pos..]) {
                    Ok(httparse::Status::Complete((n, size))) => {
                        let size = size as usize;
                        while buf.len() < pos + n + size + 2 {
                            if !fill(&mut s, &mut buf)? {
                                return Ok(());
                            }
                        }
                        body.extend_from_slice(&buf[pos + n..pos + n + size]);
                        pos += n + size + 2;
                        if size == 0 {
                            break;
                        }
                    }
                    Ok(httparse::Status::Partial) => {
                        if !fill(&mut s, &mut buf)? {
                            return Ok(());
                        }
                    }
                    Err(_) => panic!("fake engine: bad chunk"),
                }
            }
        } else {
            while buf.len() < pos + length {
                if !fill(&mut s, &mut buf)? {
                    return Ok(());
                }
            }
            body.extend_from_slice(&buf[pos..pos + length]);
            pos += length;
        }
        let raw: Vec<u8> = buf.drain(..pos).collect();
        seen.lock().unwrap().push(Seen {
            method: method.clone(),
            target: target.clone(),
            raw,
            body: body.clone(),
        });
        // Route on the path without version prefix and query.
        let path = target.split('?').next().unwrap_or_default();
        let path = match path.strip_prefix("/v1.41") {
            Some(p) => p,
            None => path,
        };
        let ok = |ctype: &str, body: &[u8]| {
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            r.extend_from_slice(body);
            r
        };
        if method == "HEAD" {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n")?;
            continue;
        }
        match path {
            "/_ping" => s.write_all(&ok("text/plain", b"OK"))?,
            "/containers/json" => s.write_all(&ok("application/json", b"[]"))?,
            "/containers/create" => {
                s.write_all(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"Id\":\"fake\"}")?
            }
            "/echo" => s.write_all(&ok("application/octet-stream", &body))?,
            "/containers/chunked/logs" => s.write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4;x=y\r\ndefg\r\n0\r\n\r\n",
            )?,
            "/events" => {
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")?;
                for i in 0..5 {
                    let line = format!("{{\"n\":{i}}}\n");
                    s.write_all(format!("{:x}\r\n{line}\r\n", line.len()).as_bytes())?;
                    std::thread::sleep(Duration::from_millis(50));
                }
                s.write_all(b"0\r\n\r\n")?;
            }
            "/containers/follow/logs" => {
                // Streams until the client side closes (like `docker events`):
                // a reader notices the EOF, the writer then ends the stream.
                s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")?;
                let eof = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let (mut r, e2) = (s.try_clone()?, eof.clone());
                std::thread::spawn(move || {
                    let mut b = [0u8; 64];
                    while matches!(r.read(&mut b), Ok(n) if n > 0) {}
                    e2.store(true, std::sync::atomic::Ordering::SeqCst);
                });
                let mut i = 0;
                while !eof.load(std::sync::atomic::Ordering::SeqCst) && i < 400 {
                    s.write_all(b"5\r\ntick\n\r\n")?;
                    std::thread::sleep(Duration::from_millis(50));
                    i += 1;
                }
                seen.lock().unwrap().push(Seen {
                    method: "EOF".into(),
                    target: format!("/containers/follow/logs after {i} ticks"),
                    raw: vec![],
                    body: vec![],
                });
                s.write_all(b"0\r\n\r\n")?;
                return Ok(());
            }
            "/containers/bye/json" => {
                // Closes after the response without saying so (an idle
                // keep-alive connection closed by the server).
                s.write_all(&ok("text/plain", b"bye"))?;
                return Ok(());
            }
            "/containers/close/json" => {
                s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")?;
                return Ok(());
            }
            "/containers/x/attach" if upgrade => {
                s.write_all(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")?;
                let rest = std::mem::take(&mut buf);
                return raw_echo(&mut s, &rest);
            }
            "/containers/x/attach" => {
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n")?;
                let rest = std::mem::take(&mut buf);
                return raw_echo(&mut s, &rest);
            }
            _ => s.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 24\r\n\r\n{\"message\":\"not found\"}\n",
            )?,
        }
    }
}

// ------------------------------------------------------------------ client side

/// A response as the client read it.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The `message` of a Docker-style JSON error body.
    fn message(&self) -> String {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        let v: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()));
        v["message"].as_str().unwrap().to_string()
    }
}

/// A client connection with its read buffer (responses may arrive together).
struct Client {
    s: UnixStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(path: &Path) -> Client {
        let s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.set_write_timeout(Some(DEADLINE)).unwrap();
        Client { s, buf: Vec::new() }
    }
    fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }
    fn more(&mut self) -> bool {
        fill(&mut self.s, &mut self.buf).unwrap()
    }
    /// Read one response (after any 1xx other than 101, which are returned too).
    fn response(&mut self, head_request: bool) -> Resp {
        let (status, headers, n) = loop {
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut hs);
            if let httparse::Status::Complete(n) = r.parse(&self.buf).unwrap() {
                let headers: Vec<(String, String)> = r
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                break (r.code.unwrap(), headers, n);
            }
            assert!(self.more(), "EOF before a response head: {:?}", self.buf);
        };
        self.buf.drain(..n);
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        if head_request || (100..200).contains(&status) || status == 204 {
            return resp;
        }
        if resp
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                match httparse::parse_chunk_size(&self.buf).unwrap() {
                    httparse::Status::Complete((n, size)) => {
                        let size = size as usize;
                        while self.buf.len() < n + size + 2 {
                            assert!(self.more(), "EOF in a chunk");
                        }
                        resp.body.extend_from_slice(&self.buf[n..n + size]);
                        self.buf.drain(..n + size + 2);
                        if size == 0 {
                            return resp;
                        }
                    }
                    httparse::Status::Partial => assert!(self.more(), "EOF in a chunk size"),
                }
            }
        }
        let len: usize = resp
            .header("content-length")
            .map(|v| v.parse().unwrap())
            .expect("a response with Content-Length");
        while self.buf.len() < len {
            assert!(self.more(), "EOF in a body");
        }
        resp.body = self.buf.drain(..len).collect();
        resp
    }
    /// One request, one response.
    fn call(&mut self, req: &str) -> Resp {
        self.send(req.as_bytes());
        self.response(req.starts_with("HEAD "))
    }
    /// True once the broker closed the connection (EOF).
    fn closed(&mut self) -> bool {
        self.buf.clear();
        matches!(self.s.read(&mut [0u8; 64]), Ok(0) | Err(_))
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: docker\r\n\r\n")
}

fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

// ------------------------------------------------------------------ the scene

/// The `sockbroker_requests_total` series of `tenant` with `verdict` and `reason`.
fn requests(tenant: &str, verdict: &str, reason: &str) -> String {
    format!("sockbroker_requests_total{{reason=\"{reason}\",tenant=\"{tenant}\",verdict=\"{verdict}\"}}")
}

struct Fixture {
    b: Broker,
    addr: String,
    dir: tempfile::TempDir,
    engine: FakeEngine,
}

impl Fixture {
    /// A broker with `tenants` (name, extra YAML) in front of a fake engine.
    fn start(tenants: &[(&str, &str)]) -> Fixture {
        Fixture::start_logging(tenants, "json")
    }

    /// [`Fixture::start`] with `--log-format format`.
    fn start_logging(tenants: &[(&str, &str)], format: &str) -> Fixture {
        let dir = scratch();
        let engine = FakeEngine::start(&dir.path().join("engine.sock"));
        let config = dir.path().join("sockbroker.yaml");
        let tenants: Vec<(&str, String)> = tenants
            .iter()
            .map(|(n, extra)| (*n, format!("{}\n{extra}", owner())))
            .collect();
        let refs: Vec<(&str, &str)> = tenants.iter().map(|(n, e)| (*n, e.as_str())).collect();
        let (b, addr) = start_with_metrics(
            &config,
            |addr| {
                format!(
                    "metrics:\n  listen: {addr}\n{}",
                    config_yaml(dir.path(), &engine.path, &refs)
                )
            },
            &["--log-format", format],
            &[],
        );
        for (n, _) in &refs {
            wait_socket(&dir.path().join(n).join("docker.sock"));
        }
        Fixture {
            b,
            addr,
            dir,
            engine,
        }
    }
    /// Rewrite the config with `tenants` and wait until the broker applied it.
    fn reload(&self, tenants: &[(&str, &str)]) {
        let series = "sockbroker_config_reloads_total{result=\"success\"}";
        let before = self.metric(series).unwrap_or(0.0);
        let tenants: Vec<(&str, String)> = tenants
            .iter()
            .map(|(n, extra)| (*n, format!("{}\n{extra}", owner())))
            .collect();
        let refs: Vec<(&str, &str)> = tenants.iter().map(|(n, e)| (*n, e.as_str())).collect();
        write_config(
            &self.dir.path().join("sockbroker.yaml"),
            &format!(
                "metrics:\n  listen: {}\n{}",
                self.addr,
                config_yaml(self.dir.path(), &self.engine.path, &refs)
            ),
        );
        wait_until("the reload", DEADLINE, || {
            self.metric(series).unwrap_or(0.0) > before
        });
    }
    fn sock(&self, tenant: &str) -> PathBuf {
        self.dir.path().join(tenant).join("docker.sock")
    }
    fn client(&self, tenant: &str) -> Client {
        Client::connect(&self.sock(tenant))
    }
    fn metric(&self, series: &str) -> Option<f64> {
        let (code, body) = http_get(&self.addr, "/metrics").unwrap();
        assert_eq!(code, 200);
        metric_value(&body, series)
    }
    fn wait_metric(&self, series: &str, want: f64) {
        wait_until(&format!("{series} = {want}"), DEADLINE, || {
            self.metric(series) == Some(want)
        });
    }
}

// ------------------------------------------------------------------ tests

#[test]
fn read_only_allows_reads_denies_writes_on_one_keep_alive_connection() {
    let f = Fixture::start(&[("ro", "access: read-only"), ("plain", "")]);
    // A policy tenant's request counters exist from 0 before any request; a
    // tenant without a policy has none.
    for (verdict, reason) in [("allowed", ""), ("denied", "policy"), ("denied", "timeout")] {
        let series = requests("ro", verdict, reason);
        assert_eq!(f.metric(&series), Some(0.0), "{series}");
        let series = requests("plain", verdict, reason);
        assert_eq!(f.metric(&series), None, "{series}");
    }
    let mut c = f.client("ro");
    let r = c.call(&get("/_ping"));
    assert_eq!((r.status, r.text().as_str()), (200, "OK"));
    let r = c.call(&post("/v1.41/containers/create", "{\"Image\":\"x\"}"));
    assert_eq!(r.status, 403);
    assert_eq!(
        r.body,
        br#"{"message":"sockbroker: tenant ro may not POST /containers/create (read-only)"}"#
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    // The same connection goes on (the denied body was read and dropped).
    let r = c.call(&get("/v1.41/containers/json?all=1"));
    assert_eq!((r.status, r.text().as_str()), (200, "[]"));
    let r = c.call("HEAD /_ping HTTP/1.1\r\nHost: docker\r\n\r\n");
    assert_eq!((r.status, r.header("content-length")), (200, Some("42")));
    assert!(r.body.is_empty());
    let r = c.call(&get("/containers/chunked/logs"));
    assert_eq!((r.status, r.text().as_str()), (200, "abcdefg"));
    let r = c.call("DELETE /containers/abc?force=1 HTTP/1.1\r\nHost: docker\r\n\r\n");
    assert_eq!(r.status, 403);
    let r = c.call(&get("/containers/abc/attach/ws?stream=1"));
    assert_eq!(
        r.message(),
        "sockbroker: tenant ro may not GET /containers/abc/attach/ws (read-only: attach)"
    );
    let r = c.call(&get("/_ping"));
    assert_eq!(r.status, 200);
    // Only the allowed requests reached the engine, on one upstream connection.
    assert_eq!(
        f.engine.targets(),
        [
            "GET /_ping",
            "GET /v1.41/containers/json?all=1",
            "HEAD /_ping",
            "GET /containers/chunked/logs",
            "GET /_ping"
        ]
    );
    f.wait_metric(&requests("ro", "allowed", ""), 5.0);
    f.wait_metric(&requests("ro", "denied", "policy"), 3.0);
    // One audit line per request, with the peer and the verdict.
    f.b.wait_log_n("\"verdict\":\"denied\"", 3);
    let logs = f.b.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("\"verdict\":\"denied\"") && l.contains("/containers/create"))
        .unwrap_or_else(|| panic!("no audit line for the denied create:\n{logs}"));
    let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    for field in [
        "\"tenant\":\"ro\"",
        &format!("\"uid\":{uid},"),
        &format!("\"gid\":{gid},"),
        "\"pid\":",
        "\"method\":\"POST\"",
        "\"path\":\"/containers/create\"",
        "\"status\":403",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
    assert!(logs.contains("\"verdict\":\"allowed\""), "{logs}");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let f = Fixture::start(&[(
        "rules",
        "access:\n  allow: [\"GET,HEAD /**\", \"POST /echo\"]\n  deny: [\"GET /secrets/**\"]",
    )]);
    let mut c = f.client("rules");
    let mut all = String::new();
    all.push_str(&get("/_ping"));
    all.push_str(&get("/v%31.41//Secrets/./abc")); // denied, in a bypass spelling
    all.push_str(&post("/echo", "hello"));
    all.push_str(&get("/containers/chunked/logs"));
    all.push_str(&post("/containers/create", "{}")); // no allow rule
    all.push_str(&get("/containers/json"));
    c.send(all.as_bytes());
    let r = c.response(false);
    assert_eq!(r.text(), "OK");
    let r = c.response(false);
    assert_eq!(
        r.message(),
        "sockbroker: tenant rules may not GET /Secrets/abc (deny rule \"GET /secrets/**\")"
    );
    let r = c.response(false);
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    let r = c.response(false);
    assert_eq!(r.text(), "abcdefg");
    let r = c.response(false);
    assert_eq!(
        r.message(),
        "sockbroker: tenant rules may not POST /containers/create (no allow rule matches)"
    );
    let r = c.response(false);
    assert_eq!(r.text(), "[]");
    assert_eq!(
        f.engine.targets(),
        [
            "GET /_ping",
            "POST /echo",
            "GET /containers/chunked/logs",
            "GET /containers/json"
        ]
    );
    // Forwarded as sent, byte for byte.
    assert_eq!(f.engine.seen()[1].raw, post("/echo", "hello").as_bytes());
    // Pipelined, then the client closes its side: every response still comes.
    let mut c = f.client("rules");
    c.send(
        format!(
            "{}{}{}",
            get("/containers/chunked/logs"),
            get("/_ping"),
            get("/containers/json")
        )
        .as_bytes(),
    );
    c.s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(c.response(false).text(), "abcdefg");
    assert_eq!(c.response(false).text(), "OK");
    assert_eq!(c.response(false).text(), "[]");
    assert!(c.closed());
}

#[test]
fn userns_safe_inspects_bodies() {
    let f = Fixture::start(&[(
        "ci",
        "access: {preset: userns-safe, bind_allow: [/srv/data]}",
    )]);
    let mut c = f.client("ci");
    let plain =
        r#"{"Image":"busybox","HostConfig":{"NetworkMode":"none","Binds":["/srv/data/x:/x"]}}"#;
    let r = c.call(&post("/v1.41/containers/create?name=a", plain));
    assert_eq!((r.status, r.text().as_str()), (201, "{\"Id\":\"fake\"}"));
    for (body, why) in [
        (
            r#"{"Image":"x","HostConfig":{"Privileged":true}}"#,
            "Privileged",
        ),
        (
            r#"{"Image":"x","HostConfig":{"UsernsMode":"host"}}"#,
            "UsernsMode host",
        ),
        (
            r#"{"Image":"x","hostconfig":{"pidmode":"host"}}"#,
            "PidMode host",
        ),
        (
            r#"{"Image":"x","HostConfig":{"Binds":["/:/host"]}}"#,
            "bind mount of / outside bind_allow",
        ),
        (
            r#"{"Image":"x","HostConfig":{"CapAdd":["SYS_ADMIN"]}}"#,
            "CapAdd SYS_ADMIN",
        ),
    ] {
        let r = c.call(&post("/v1.41/containers/create", body));
        assert_eq!(
            r.message(),
            format!("sockbroker: tenant ci may not POST /containers/create ({why})"),
            "{body}"
        );
    }
    // A chunked create body, with Expect: 100-continue: the broker says
    // Continue itself, reads and checks the body, forwards it as it came, and
    // drops the engine's own 100.
    let chunked = "POST /v1.41/containers/create HTTP/1.1\r\nHost: docker\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n";
    c.send(chunked.as_bytes());
    let r = c.response(false);
    assert_eq!(r.status, 100);
    let body = "7\r\n{\"Image\r\n8\r\n\":\"x\"}  \r\n0\r\n\r\n";
    c.send(body.as_bytes());
    let r = c.response(false);
    assert_eq!(r.status, 201);
    let last = f.engine.seen().pop().unwrap();
    assert_eq!(last.raw, format!("{chunked}{body}").as_bytes());
    assert_eq!(last.body, b"{\"Image\":\"x\"}  ");
    // The same, privileged, in chunks: denied; the connection still works.
    let body = "c\r\n{\"Privileged\r\n6\r\n\":true\r\n1\r\n}\r\n0\r\n\r\n";
    c.send(
        format!("POST /containers/create HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{body}")
            .as_bytes(),
    );
    assert_eq!(c.response(false).status, 403);
    // Privileged exec.
    let r = c.call(&post(
        "/containers/abc/exec",
        r#"{"Cmd":["sh"],"Privileged":true}"#,
    ));
    assert_eq!(
        r.message(),
        "sockbroker: tenant ci may not POST /containers/abc/exec (Privileged exec)"
    );
    let r = c.call(&get("/_ping"));
    assert_eq!(r.status, 200);
    assert_eq!(
        f.engine.targets(),
        [
            "POST /v1.41/containers/create?name=a",
            "POST /v1.41/containers/create",
            "GET /_ping"
        ]
    );
}

#[test]
fn oversized_inspected_body_is_413() {
    let f = Fixture::start(&[("ci", "access: userns-safe")]);
    let mut c = f.client("ci");
    let big = 2 * 1024 * 1024;
    c.send(
        format!("POST /containers/create HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {big}\r\n\r\n")
            .as_bytes(),
    );
    let r = c.response(false);
    assert_eq!(r.status, 413);
    assert!(
        r.message().contains("request body over 1024 KiB"),
        "{}",
        r.message()
    );
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed());
    // A big chunked body too.
    let mut c = f.client("ci");
    c.send(b"POST /containers/create HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "x".repeat(64 * 1024));
    let writer = {
        let mut s = c.s.try_clone().unwrap();
        std::thread::spawn(move || {
            for _ in 0..40 {
                if s.write_all(chunk.as_bytes()).is_err() {
                    break;
                }
            }
        })
    };
    assert_eq!(c.response(false).status, 413);
    writer.join().unwrap();
    assert!(f.engine.seen().is_empty(), "{:?}", f.engine.targets());
    f.wait_metric(&requests("ci", "denied", "too_large"), 2.0);
}

#[test]
fn large_bodies_stream_through() {
    let f = Fixture::start(&[("audit", "access: {preset: full}")]);
    let mut c = f.client("audit");
    let data = payload(5 * 1024 * 1024, 7);
    c.send(
        format!(
            "POST /echo HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            data.len()
        )
        .as_bytes(),
    );
    let writer = {
        let mut s = c.s.try_clone().unwrap();
        let data = data.clone();
        std::thread::spawn(move || s.write_all(&data).unwrap())
    };
    let r = c.response(false);
    writer.join().unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body == data, "echoed body differs");
    // Chunked request body, streamed.
    c.send(b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    let mut want = Vec::new();
    for i in 0..50 {
        let piece = payload(10_000 + i, i as u64);
        c.send(format!("{:x}\r\n", piece.len()).as_bytes());
        c.send(&piece);
        c.send(b"\r\n");
        want.extend_from_slice(&piece);
    }
    c.send(b"0\r\n\r\n");
    let r = c.response(false);
    assert!(r.body == want, "chunked echo differs");
    // A streamed chunked response, read as it comes.
    let r = c.call(&get("/v1.41/events"));
    assert_eq!(r.text().lines().count(), 5);
    assert_eq!(c.call(&get("/_ping")).status, 200);
}

#[test]
fn client_eof_ends_an_endless_stream() {
    let f = Fixture::start(&[("ro", "access: read-only")]);
    let mut c = f.client("ro");
    c.send(
        get("/events?follow=1")
            .replace("/events?follow=1", "/containers/follow/logs")
            .as_bytes(),
    );
    while String::from_utf8_lossy(&c.buf).matches("tick").count() < 2 {
        assert!(c.more(), "stream ended early");
    }
    // `docker events` is interrupted: its side closes. The engine must see
    // the EOF (the stream ends), and the broker closes the connection.
    c.s.shutdown(Shutdown::Write).unwrap();
    wait_until("the engine to see the client's EOF", DEADLINE, || {
        f.engine
            .targets()
            .iter()
            .any(|t| t.starts_with("EOF /containers/follow/logs"))
    });
    let mut rest = Vec::new();
    c.s.read_to_end(&mut rest).unwrap();
    let ticks = f.engine.targets().last().unwrap().clone();
    assert!(
        !ticks.ends_with("after 400 ticks"),
        "{ticks}: the EOF did not reach it"
    );
}

#[test]
fn upgrade_switches_to_raw_relay() {
    let f = Fixture::start(&[("ci", "access: userns-safe")]);
    let mut c = f.client("ci");
    c.send(b"POST /v1.41/containers/x/attach?stream=1&stdin=1&stdout=1 HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n");
    let r = c.response(false);
    assert_eq!(r.status, 101);
    assert_eq!(r.header("upgrade"), Some("tcp"));
    // Raw bytes both ways now, including things that look like HTTP.
    let data = payload(300_000, 3);
    let mut raw = b"POST /containers/create HTTP/1.1\r\n\r\n".to_vec();
    raw.extend_from_slice(&data);
    let writer = {
        let mut s = c.s.try_clone().unwrap();
        let raw = raw.clone();
        std::thread::spawn(move || {
            s.write_all(&raw).unwrap();
            // stdin closes: half-close must reach the engine, output still flows.
            s.shutdown(Shutdown::Write).unwrap();
        })
    };
    let mut got = std::mem::take(&mut c.buf);
    c.s.read_to_end(&mut got).unwrap();
    writer.join().unwrap();
    assert!(
        got == raw,
        "raw echo differs ({} vs {} bytes)",
        got.len(),
        raw.len()
    );
    // The pre-upgrade attach: a 200 without framing is a raw stream too.
    let mut c = f.client("ci");
    c.send(b"POST /containers/x/attach?stream=1 HTTP/1.1\r\nHost: docker\r\n\r\n");
    let r = c.response(true); // no body framing: read the head only
    assert_eq!(r.status, 200);
    c.send(b"ping");
    c.s.shutdown(Shutdown::Write).unwrap();
    let mut got = std::mem::take(&mut c.buf);
    c.s.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"ping");
}

#[test]
fn connection_close_is_honoured() {
    let f = Fixture::start(&[("ro", "access: read-only")]);
    let mut c = f.client("ro");
    let r = c.call(&get("/containers/close/json"));
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    assert!(c.closed());
    let mut c = f.client("ro");
    let r = c.call("GET /_ping HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(c.closed());
    let mut c = f.client("ro");
    let r = c.call("GET /_ping HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(c.closed());
    // The engine closes an idle keep-alive connection: the next request gets
    // a new upstream connection, not a 502.
    let mut c = f.client("ro");
    assert_eq!(c.call(&get("/containers/bye/json")).text(), "bye");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(c.call(&get("/_ping")).text(), "OK");
    // A denied HEAD gets a 403 without a body; the connection goes on.
    let f = Fixture::start(&[("rules", "access:\n  allow: [\"GET /**\"]")]);
    let mut c = f.client("rules");
    let r = c.call("HEAD /_ping HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 403);
    assert!(r.body.is_empty());
    assert_eq!(c.call(&get("/_ping")).text(), "OK");
}

#[test]
fn unreachable_upstream_is_502() {
    let f = Fixture::start(&[(
        "down",
        "access: read-only\nupstream: /nonexistent/docker.sock",
    )]);
    let mut c = f.client("down");
    let r = c.call(&get("/_ping"));
    assert_eq!(r.status, 502);
    let m = r.message();
    assert!(
        m.starts_with("sockbroker: upstream /nonexistent/docker.sock unavailable: "),
        "{m}"
    );
    assert!(c.closed());
    // A denied request needs no upstream: still a clean 403.
    let mut c = f.client("down");
    assert_eq!(c.call(&post("/containers/create", "{}")).status, 403);
    f.wait_metric(
        "sockbroker_connections_rejected_total{reason=\"upstream_unavailable\",tenant=\"down\"}",
        1.0,
    );
}

#[test]
fn malformed_requests_are_refused() {
    let f = Fixture::start(&[("audit", "access: {preset: full}")]);
    for bad in [
        "POST /echo HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET http://docker/_ping HTTP/1.1\r\n\r\n",
        "GET /a%zz HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
        "POST /echo HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
    ] {
        let mut c = f.client("audit");
        let r = c.call(bad);
        assert!(
            r.status == 400 || r.status == 501,
            "{bad:?}: {} {}",
            r.status,
            r.text()
        );
        assert!(
            r.message().starts_with("sockbroker: tenant audit sent a"),
            "{}",
            r.message()
        );
        assert!(c.closed(), "{bad:?}");
    }
    assert!(f.engine.seen().is_empty(), "{:?}", f.engine.targets());
}

#[test]
fn http2_preface_passes_only_when_everything_is_allowed() {
    let f = Fixture::start(&[
        ("audit", "access: {preset: full}"),
        ("ro", "access: read-only"),
    ]);
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut c = f.client("audit");
    c.send(PREFACE);
    c.send(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00");
    c.s.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    c.s.read_to_end(&mut got).unwrap();
    assert_eq!(&got[..PREFACE.len()], PREFACE, "passed through raw");

    let mut c = f.client("ro");
    c.send(PREFACE);
    let mut got = Vec::new();
    c.s.read_to_end(&mut got).unwrap();
    // An empty SETTINGS frame, then GOAWAY with HTTP_1_1_REQUIRED (0xd).
    assert_eq!(&got[..9], &[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    assert_eq!(got[12], 7, "GOAWAY");
    assert_eq!(&got[22..26], &[0, 0, 0, 0x0d]);
    assert!(String::from_utf8_lossy(&got[26..]).contains("use HTTP/1.1"));
    assert_eq!(f.engine.targets(), ["PRI *"]);
}

/// Requests whose body cannot be read to its end still get their audit line
/// and count: a denied request with broken chunking (answered 400), an
/// inspected one likewise.
#[test]
fn requests_with_unreadable_bodies_are_audited_and_counted() {
    let f = Fixture::start(&[("ro", "access: read-only"), ("safe", "access: userns-safe")]);
    let broken = "Host: docker\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
    let r = f
        .client("ro")
        .call(&format!("POST /containers/create HTTP/1.1\r\n{broken}"));
    assert_eq!(r.status, 400);
    let r = f.client("safe").call(&format!(
        "POST /v1.41/containers/create HTTP/1.1\r\n{broken}"
    ));
    assert_eq!(r.status, 400);
    for tenant in ["ro", "safe"] {
        f.wait_metric(&requests(tenant, "denied", "bad_request"), 1.0);
    }
    f.b.wait_log_n("request body not read to its end", 2);
    assert!(f.engine.targets().is_empty(), "{:?}", f.engine.targets());
}

/// `request_timeout` from the config: a head that does not arrive in time is
/// answered 408 and the connection closes; over `max_connections` a policy
/// client gets 429 with the reason.
#[test]
fn request_timeout_is_408_and_over_the_limit_is_429() {
    let f = Fixture::start(&[(
        "ro",
        "access: read-only\nrequest_timeout: 300ms\nmax_connections: 1",
    )]);
    // The harness's probe of the socket has ended (not merely "none active":
    // the broker may not have accepted it yet, and would then refuse it, or
    // the next client, over max_connections).
    f.wait_metric(
        "sockbroker_connection_duration_seconds_count{tenant=\"ro\"}",
        1.0,
    );
    let mut c = f.client("ro");
    let started = std::time::Instant::now();
    c.send(b"GET /_ping HTTP/1.1\r\n");
    let r = c.response(false);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(r.status, 408);
    assert!(
        r.message().contains("request_timeout (300ms)"),
        "{}",
        r.message()
    );
    assert!(c.closed());
    f.wait_metric(&requests("ro", "denied", "timeout"), 1.0);

    f.wait_metric("sockbroker_connections_active{tenant=\"ro\"}", 0.0);
    let mut first = f.client("ro");
    assert_eq!(first.call(&get("/_ping")).status, 200);
    let mut second = f.client("ro");
    let r = second.call(&get("/_ping"));
    assert_eq!(r.status, 429);
    assert!(r.message().contains("max_connections"), "{}", r.message());
    assert!(second.closed());
    assert_eq!(first.call(&get("/_ping")).status, 200);
    f.wait_metric(&requests("ro", "denied", "limit"), 1.0);
    assert_eq!(f.engine.targets(), ["GET /_ping", "GET /_ping"]);
}

/// A reload reaches open connections: a keep-alive policy connection checks
/// its next request against the new policy; a byte-relay connection of a
/// tenant that moved from `full` to a policy is closed.
#[test]
fn a_reload_reaches_open_connections() {
    let f = Fixture::start(&[("ro", "access: read-only"), ("was-full", "access: full")]);
    let mut ro = f.client("ro");
    assert_eq!(ro.call(&get("/containers/json")).status, 200);
    let mut full = f.client("was-full");
    assert_eq!(full.call(&post("/containers/create", "{}")).status, 201);
    f.reload(&[
        (
            "ro",
            "access: {preset: read-only, deny: [\"GET /containers/json\"]}",
        ),
        ("was-full", "access: read-only"),
    ]);
    let r = ro.call(&get("/containers/json"));
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.message().contains("deny rule"), "{}", r.message());
    assert_eq!(ro.call(&get("/_ping")).status, 200);
    assert!(full.closed(), "the byte-relay connection stays open");
    f.b.wait_log("the tenant now has an access policy");
    let mut again = f.client("was-full");
    assert_eq!(again.call(&post("/containers/create", "{}")).status, 403);
}

// ------------------------------------------------------- hostile tenants (#14)

/// One tenant per kind of policy, for the hostile-tenant tests: a preset, rules
/// only, a deny rule on top of `full`, and `userns-safe`.
const HOSTILE_TENANTS: [(&str, &str); 4] = [
    ("ro", "access: read-only"),
    (
        "rules",
        "access: {allow: [\"GET,HEAD /**\", \"POST /containers/*/start\"]}",
    ),
    (
        "deny",
        "access: {preset: full, deny: [\"POST /containers/*/exec\"]}",
    ),
    ("safe", "access: userns-safe"),
];

/// Bytes crafted the way an attacker would, against every kind of policy:
/// what reaches the engine is exactly what the policy checked, or nothing.
#[test]
fn hostile_framing_never_reaches_the_engine() {
    let f = Fixture::start(&HOSTILE_TENANTS);
    const TE: &str = "Host: docker\r\nTransfer-Encoding: chunked\r\n\r\n";
    // A bare LF inside a chunk extension: httparse reads the rest of the
    // line as extension, Go's net/http < 1.23.8 ends the line there (and
    // reads what follows as data, then as the next request).
    let smuggle = "2;x\nPOST /containers/evil/exec HTTP/1.1\r\n{}\r\n0\r\n\r\n";
    for (tenant, head) in [
        ("ro", "GET /containers/json HTTP/1.1"),
        ("rules", "POST /containers/x/start HTTP/1.1"),
        ("deny", "POST /containers/x/start HTTP/1.1"),
        ("safe", "POST /containers/create HTTP/1.1"),
    ] {
        // An inspected body is read whole first: 400. A streamed one (the
        // head already forwarded) ends the connection at the bad line; the
        // engine sees a truncated body, never what follows the LF.
        let mut c = f.client(tenant);
        c.send(format!("{head}\r\n{TE}{smuggle}").as_bytes());
        let mut answer = Vec::new();
        c.s.read_to_end(&mut answer).unwrap();
        let answer = String::from_utf8_lossy(&answer);
        let inspected = tenant == "safe" || tenant == "rules";
        assert!(
            if inspected {
                answer.starts_with("HTTP/1.1 400 ") && answer.contains("invalid chunked body")
            } else {
                answer.is_empty() || answer.starts_with("HTTP/1.1 400 ")
            },
            "{tenant}: {answer}"
        );
    }
    // Transfer-Encoding on HTTP/1.0 (Go ignores it: the "body" would be the
    // next request), TE with Content-Length, a duplicated Content-Length,
    // bare LF heads, obs-fold, a form body the engine reads parameters from.
    for (tenant, raw) in [
        ("rules", "POST /containers/x/start HTTP/1.0\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n0\r\n\r\nPOST /containers/x/exec HTTP/1.0\r\n\r\n"),
        ("deny", "POST /containers/x/start HTTP/1.1\r\nHost: d\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("deny", "POST /containers/x/start HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n"),
        ("ro", "GET /containers/json HTTP/1.1\nHost: d\n\n"),
        ("ro", "GET /containers/json HTTP/1.1\r\nX: a\r\n Transfer-Encoding: chunked\r\n\r\n"),
        ("safe", "POST /build?t=x HTTP/1.1\r\nHost: d\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 16\r\n\r\nnetworkmode=host"),
    ] {
        let mut c = f.client(tenant);
        let r = c.call(raw);
        assert!(
            r.status == 400 || r.status == 501,
            "{tenant} {raw:?}: {} {}",
            r.status,
            r.text()
        );
        assert!(c.closed(), "{raw:?}");
    }
    let seen = f.engine.seen();
    assert!(
        seen.is_empty(),
        "reached the engine: {:?}",
        f.engine.targets()
    );
}

/// Container names of more than one segment (`web/al`, `%2F`) meet the same
/// rules and body checks; read-only hands out no file contents; Podman's
/// own API is refused by userns-safe; an old-API start body is checked.
#[test]
fn every_route_spelling_meets_the_policy() {
    let f = Fixture::start(&HOSTILE_TENANTS);
    let exec = r#"{"Cmd":["sh"],"Privileged":true}"#;
    for name in ["web/al", "web%2Fal", "a/b/c", "x/exec"] {
        for tenant in ["deny", "safe"] {
            let r = f
                .client(tenant)
                .call(&post(&format!("/v1.41/containers/{name}/exec"), exec));
            assert_eq!(r.status, 403, "{tenant} {name}: {}", r.text());
        }
        let r = f.client("ro").call(&get(&format!(
            "/containers/{name}/archive?path=/etc/shadow"
        )));
        assert_eq!(r.status, 403, "{name}");
    }
    for path in [
        "/containers/abc/archive?path=/",
        "/containers/abc/export",
        "/images/get?names=busybox",
        "/v1.41/images/library/busybox/get",
        "/swarm/unlockkey",
        "/v4.0.0/libpod/containers/json",
    ] {
        let r = f.client("ro").call(&get(path));
        assert_eq!(r.status, 403, "{path}: {}", r.text());
    }
    for (path, body) in [
        (
            "/v4.0.0/libpod/containers/create",
            r#"{"image":"x","privileged":true,"mounts":[{"source":"/","destination":"/h","type":"bind"}]}"#,
        ),
        (
            "/v4.0.0/libpod/pods/create",
            r#"{"name":"p","netns":{"nsmode":"host"},"pidns":{"nsmode":"host"}}"#,
        ),
        ("/libpod/play/kube", "apiVersion: v1"),
    ] {
        let r = f.client("safe").call(&post(path, body));
        assert_eq!(r.status, 403, "{path}: {}", r.text());
    }
    // An API < 1.24 start body is a HostConfig, also for a rules-only tenant.
    for body in [
        r#"{"Privileged":true}"#,
        r#"{"HostConfig":{"Binds":["/:/host"]}}"#,
    ] {
        for tenant in ["rules", "safe"] {
            let r = f
                .client(tenant)
                .call(&post("/v1.23/containers/web/al/start", body));
            assert_eq!(r.status, 403, "{tenant} {body}: {}", r.text());
        }
    }
    assert!(f.engine.seen().is_empty(), "{:?}", f.engine.targets());
    // What these tenants may do still reaches the engine, as sent.
    let mut c = f.client("rules");
    let r = c.call(&post("/v1.23/containers/web/al/start", ""));
    assert_eq!(r.status, 404, "the fake engine's answer");
    let r = f.client("ro").call(&get("/containers/web%2Fal/json"));
    assert_eq!(r.status, 404, "the fake engine's answer");
    assert_eq!(
        f.engine.targets(),
        [
            "POST /v1.23/containers/web/al/start",
            "GET /containers/web%2Fal/json"
        ]
    );
}

// ------------------------------------------------ a real Go engine (#14)

/// A child process killed when dropped (also when a test panics).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Build crates/policy/tests/go/echo.go: a Go net/http server answering each
/// request with the method, target and body (hex) it read.
fn go_echo_server(dir: &Path) -> (KillOnDrop, PathBuf) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/policy/tests/go/echo.go");
    let bin = dir.join("go-echo");
    let out = std::process::Command::new("go")
        .arg("build")
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .env("GOCACHE", dir.join("gocache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GO111MODULE", "off")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `go` ({e}): this test runs a Go net/http server as the engine; \
                 install Go (Debian: apt-get install golang-go)"
            )
        });
    assert!(
        out.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sock = dir.join("go-engine.sock");
    let mut child = KillOnDrop(
        std::process::Command::new(&bin)
            .arg(&sock)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.0.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "ready\n");
    (child, sock)
}

/// One request as read: method, target, decoded body.
type Echoed = (String, String, Vec<u8>);

/// The requests of `input` the broker's framing accepts, in order, up to
/// the first it refuses (method, target, decoded body).
fn accepted(input: &[u8]) -> Vec<Echoed> {
    use sockbroker_policy::http1::{self, Chunked, Framing};
    let (mut out, mut pos) = (Vec::new(), 0);
    while pos < input.len() {
        let rest = &input[pos..];
        let Ok(Some(h)) = http1::parse_request(rest) else {
            break;
        };
        let b = &rest[h.len..];
        let (used, body) = match h.body {
            Framing::Empty | Framing::UntilClose => (0, vec![]),
            Framing::Length(n) if b.len() as u64 >= n => (n as usize, b[..n as usize].to_vec()),
            Framing::Length(_) => break,
            Framing::Chunked => {
                let (mut c, mut d) = (Chunked::default(), Vec::new());
                match c.advance(b, |x| d.extend_from_slice(x)) {
                    Ok(n) if c.is_done() => (n, d),
                    _ => break,
                }
            }
        };
        out.push((h.method.to_string(), h.target(rest).to_string(), body));
        pos += h.len + used;
        if h.close {
            break;
        }
    }
    out
}

/// What came back to the client: the Go engine's echoes (or its body-read
/// errors), then whatever ended the exchange.
fn echoes(answer: &[u8]) -> (Vec<Echoed>, Vec<String>) {
    use sockbroker_policy::http1::{self, Chunked, Framing};
    let (mut seen, mut other, mut pos) = (Vec::new(), Vec::new(), 0);
    while pos < answer.len() {
        let Ok(Some(h)) = http1::parse_response(&answer[pos..], false) else {
            other.push("unparsable".to_string());
            break;
        };
        pos += h.len;
        let body = match h.body {
            Framing::Length(n) => {
                let b = answer[pos..(pos + n as usize).min(answer.len())].to_vec();
                pos += n as usize;
                b
            }
            Framing::Chunked => {
                let (mut c, mut b) = (Chunked::default(), Vec::new());
                pos += c
                    .advance(&answer[pos..], |d| b.extend_from_slice(d))
                    .unwrap_or(answer.len());
                b
            }
            Framing::Empty => vec![],
            Framing::UntilClose => {
                let b = answer[pos..].to_vec();
                pos = answer.len();
                b
            }
        };
        let text = String::from_utf8_lossy(&body).to_string();
        if h.status != 200 {
            other.push(format!("{} {text}", h.status));
            break;
        }
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        if let Some(e) = v.get("err") {
            other.push(format!("body read error {e}"));
            continue;
        }
        let f = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        let hex = f("body");
        let body = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        seen.push((f("method"), f("uri"), body));
    }
    (seen, other)
}

/// The broker in front of a real Go net/http server (the engine's HTTP
/// stack; Go 1.19 here, unpatched for CVE-2025-22871): for legal requests,
/// smuggling shapes and mutations of both, the engine reads exactly the
/// requests the broker's framing accepted — a prefix of them when the engine
/// refuses one, and never a complete request the broker did not accept.
#[test]
fn a_go_engine_reads_what_the_broker_accepted() {
    let godir = scratch();
    let (_go, go_sock) = go_echo_server(godir.path());
    let f = Fixture::start(&[(
        "audit",
        &format!("upstream: {}\naccess: {{preset: full}}", go_sock.display()),
    )]);
    const H: &str = "Host: docker\r\n";
    let seeds: Vec<Vec<u8>> = [
        format!("POST /containers/create HTTP/1.1\r\n{H}Content-Length: 5\r\n\r\nhello"),
        format!("POST /x HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n5;a=\"b c\"\r\nhello\r\n0\r\nX-T: y\r\n\r\nGET /next HTTP/1.1\r\n{H}\r\n"),
        format!("POST /a HTTP/1.1\r\n{H}Content-Length: 2\r\n\r\nabGET /b HTTP/1.1\r\n{H}\r\n"),
        "POST /x HTTP/1.0\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nabcGET /y HTTP/1.0\r\n\r\n".to_string(),
        format!("POST /containers/x/start HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n4;x\nab\r\n\r\n00\r\n0;x:y\r\n\r\nGET /after HTTP/1.1\r\n{H}\r\n"),
        "POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.0\r\n\r\n".to_string(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect();
    const ALPHABET: &[u8] = b"\r\n;: \t0159aAfF\x0b,=\"\\";
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rand = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut inputs = seeds.clone();
    for _ in 0..300 {
        let mut input = seeds[rand(seeds.len())].clone();
        let at = rand(input.len());
        match rand(3) {
            0 => input.insert(at, ALPHABET[rand(ALPHABET.len())]),
            1 => {
                input.remove(at);
            }
            _ => input[at] = ALPHABET[rand(ALPHABET.len())],
        }
        inputs.push(input);
    }
    let mut forwarded = 0;
    for input in &inputs {
        let mine = accepted(input);
        let mut c = f.client("audit");
        c.send(input);
        let _ = c.s.shutdown(Shutdown::Write);
        let mut answer = Vec::new();
        let _ = c.s.read_to_end(&mut answer);
        let (theirs, other) = echoes(&answer);
        let n = theirs.len().min(mine.len());
        let ok = theirs[..n] == mine[..n]
            && theirs.len() <= mine.len()
            && (theirs.len() == mine.len() || !other.is_empty() || answer.is_empty());
        assert!(
            ok,
            "the Go engine read something else than the broker accepted\ninput: {:?}\nbroker: {mine:?}\nGo: {theirs:?} {other:?}",
            String::from_utf8_lossy(input)
        );
        forwarded += theirs.len();
    }
    assert!(
        forwarded > 100,
        "only {forwarded} requests reached the Go engine"
    );
}

/// A request's audit line, as the real binary writes it in both formats:
/// every field, in order, with its exact text (docs/operations.md; the
/// message is written without `format_args!`, docs/decisions.md "Logging":
/// this pins the result).
#[test]
fn audit_line_of_a_request_in_text_and_json() {
    let (pid, uid, gid) = (
        std::process::id(),
        nix::unistd::geteuid(),
        nix::unistd::getegid(),
    );
    for format in ["text", "json"] {
        let f = Fixture::start_logging(&[("ro", "access: read-only")], format);
        let mut c = f.client("ro");
        assert_eq!(c.call(&get("/v1.41/_ping")).status, 200);
        let r = c.call(&post("/v1.41/containers/create", "{}"));
        assert_eq!(r.status, 403);
        f.b.wait_log("containers/create");
        let logs = f.b.logs();
        let lines: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains("request allowed: ") || l.contains("request denied: "))
            .collect();
        assert_eq!(lines.len(), 2, "{logs}");
        for (line, (verdict, method, path, status, reason)) in lines.into_iter().zip([
            ("allowed", "GET", "/_ping", 200, ""),
            ("denied", "POST", "/containers/create", 403, "read-only"),
        ]) {
            let message = format!("request {verdict}: {method} {path} -> {status}");
            let expected = if format == "json" {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                let time = v["timestamp"].as_str().unwrap();
                format!(
                    "{{\"timestamp\":\"{time}\",\"level\":\"INFO\",\
                     \"message\":\"{message}\",\"tenant\":\"ro\",\
                     \"pid\":{pid},\"uid\":{uid},\"gid\":{gid},\"method\":\"{method}\",\
                     \"path\":\"{path}\",\"verdict\":\"{verdict}\",\"status\":{status},\
                     \"reason\":\"{reason}\",\"target\":\"sockbroker::policy_relay::synthetic\"}}"
                )
            } else {
                format!(
                    "{}  INFO sockbroker::policy_relay::synthetic: {message} tenant=ro \
                     pid={pid} uid={uid} gid={gid} method={method} path={path} \
                     verdict=\"{verdict}\" status={status} reason=\"{reason}\"",
                    &line[..27]
                )
            };
            assert_eq!(line, expected);
        }
    }
}
