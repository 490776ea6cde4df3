//! What the in-process tests of the broker's async core share: a fake engine
//! on a Unix socket in a tempdir, a raw HTTP/1.1 client, tenant specs and
//! metric lookups. Everything runs in the test process as the test's own uid
//! (no root, no broker binary), the way mini-redis's `tests/server.rs` runs
//! its server.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sockbroker::config::{AccessPolicy, OwnerSource, TenantSpec};
use sockbroker::metrics::Metrics;
use sockbroker::policy::{Policy, Preset};
use sockbroker::tenant::TenantShared;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// How long any wait in a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// One request as the fake engine received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    /// Head and body bytes exactly as received.
    pub raw: Vec<u8>,
    /// The decoded body.
    pub body: Vec<u8>,
}

/// A fake Docker engine: answers a few routes the way the engine does where
/// it matters, and records every request it gets.
pub struct FakeEngine {
    pub path: PathBuf,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeEngine {
    /// Listen on `path` (in a tempdir).
    pub fn start(path: &Path) -> FakeEngine {
        let l = UnixListener::bind(path).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(engine_conn(s, s2.clone()));
            }
        });
        FakeEngine {
            path: path.to_owned(),
            seen,
        }
    }

    /// Requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// `METHOD target` of each request received.
    pub fn targets(&self) -> Vec<String> {
        self.seen()
            .iter()
            .map(|s| format!("{} {}", s.method, s.target))
            .collect()
    }
}

async fn fill(s: &mut UnixStream, buf: &mut Vec<u8>) -> bool {
    let mut b = [0u8; 16 * 1024];
    match s.read(&mut b).await {
        Ok(n) if n > 0 => {
            buf.extend_from_slice(&b[..n]);
            true
        }
        _ => false,
    }
}

async fn engine_conn(mut s: UnixStream, seen: Arc<Mutex<Vec<Seen>>>) {
    let mut buf = Vec::new();
    loop {
        let (method, target, head_len, length, chunked, upgrade) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            if let Ok(httparse::Status::Complete(n)) = req.parse(&buf) {
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
                );
            }
            if !fill(&mut s, &mut buf).await {
                return;
            }
        };
        let mut body = Vec::new();
        let mut pos = head_len;
        if chunked {
            loop {
                match httparse::parse_chunk_size(&buf[pos..]) {
                    Ok(httparse::Status::Complete((n, size))) => {
                        let size = size as usize;
                        while buf.len() < pos + n + size + 2 {
                            if !fill(&mut s, &mut buf).await {
                                return;
                            }
                        }
                        body.extend_from_slice(&buf[pos + n..pos + n + size]);
                        pos += n + size + 2;
                        if size == 0 {
                            break;
                        }
                    }
                    Ok(httparse::Status::Partial) => {
                        if !fill(&mut s, &mut buf).await {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        } else {
            while buf.len() < pos + length {
                if !fill(&mut s, &mut buf).await {
                    return;
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
        let path = target.split('?').next().unwrap_or_default();
        let path = path.strip_prefix("/v1.41").unwrap_or(path);
        let ok = |body: &[u8]| {
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            r.extend_from_slice(body);
            r
        };
        let w = match path {
            "/_ping" => s.write_all(&ok(b"OK")).await,
            "/containers/json" => s.write_all(&ok(b"[]")).await,
            "/containers/create" => {
                s.write_all(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"Id\":\"fake\"}")
                    .await
            }
            "/echo" => s.write_all(&ok(&body)).await,
            "/events" => {
                // A stream that ends only when the client goes away.
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    .await;
                let mut b = [0u8; 64];
                loop {
                    if s.write_all(b"5\r\ntick\n\r\n").await.is_err() {
                        return;
                    }
                    tokio::select! {
                        n = s.read(&mut b) => if matches!(n, Ok(0) | Err(_)) { return },
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
            }
            "/containers/x/attach" if upgrade => {
                let _ = s
                    .write_all(b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
                    .await;
                // Echo until EOF.
                let rest = std::mem::take(&mut buf);
                let _ = s.write_all(&rest).await;
                let mut b = [0u8; 4096];
                loop {
                    match s.read(&mut b).await {
                        Ok(n) if n > 0 => {
                            if s.write_all(&b[..n]).await.is_err() {
                                return;
                            }
                        }
                        _ => break,
                    }
                }
                let _ = s.shutdown().await;
                return;
            }
            _ => {
                s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 24\r\n\r\n{\"message\":\"not found\"}\n")
                    .await
            }
        };
        if w.is_err() {
            return;
        }
    }
}

/// A response as the client read it.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The `message` of a Docker-style JSON error body.
    pub fn message(&self) -> String {
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

/// A raw HTTP/1.1 client connection with its read buffer.
pub struct Client {
    pub s: UnixStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn new(s: UnixStream) -> Client {
        Client { s, buf: Vec::new() }
    }
    pub async fn connect(path: &Path) -> Client {
        Client::new(UnixStream::connect(path).await.unwrap())
    }
    pub async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
    }
    async fn more(&mut self) -> bool {
        tokio::time::timeout(DEADLINE, fill(&mut self.s, &mut self.buf))
            .await
            .expect("no answer within the deadline")
    }
    /// Read one response.
    pub async fn response(&mut self, head_request: bool) -> Resp {
        let (status, headers, n) = loop {
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut hs);
            if let httparse::Status::Complete(n) = r.parse(&self.buf).unwrap() {
                let headers = r
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
            assert!(
                self.more().await,
                "EOF before a response head: {:?}",
                self.buf
            );
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
            // Only the chunks there are so far matter to these tests.
            return resp;
        }
        let len: usize = resp
            .header("content-length")
            .map(|v| v.parse().unwrap())
            .expect("a response with Content-Length");
        while self.buf.len() < len {
            assert!(self.more().await, "EOF in a body");
        }
        resp.body = self.buf.drain(..len).collect();
        resp
    }
    /// One request, one response.
    pub async fn call(&mut self, req: &str) -> Resp {
        self.send(req.as_bytes()).await;
        self.response(req.starts_with("HEAD ")).await
    }
    /// Read everything until the broker closes; returns it.
    pub async fn until_closed(&mut self) -> Vec<u8> {
        while self.more().await {}
        std::mem::take(&mut self.buf)
    }
    /// Raw bytes read so far plus at least `n` (waits for them).
    pub async fn read_at_least(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.more().await, "EOF after {:?}", self.buf);
        }
        std::mem::take(&mut self.buf)
    }
}

pub fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: docker\r\n\r\n")
}

pub fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A tenant spec for `name` listening in `dir`, relaying to `upstream`.
pub fn spec(name: &str, dir: &Path, upstream: &Path, access: AccessPolicy) -> TenantSpec {
    TenantSpec {
        name: name.into(),
        listen: dir.join(format!("{name}.sock")),
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        owner: OwnerSource::Ids,
        mode: 0o600,
        upstream: upstream.to_owned(),
        allow: None,
        access,
        max_connections: 100,
        idle_timeout: None,
        drain_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(10),
    }
}

/// `access: PRESET`.
pub fn preset(p: Preset) -> AccessPolicy {
    AccessPolicy::Policy(Policy::preset(p))
}

/// A tenant's shared state with its own metrics registry.
pub fn tenant(spec: TenantSpec) -> (Arc<TenantShared>, Metrics) {
    let m = Metrics::new();
    let t = TenantShared::new(Arc::new(spec.clone()), m.tenant(&spec.name));
    (t, m)
}

/// The value of one series in `m`'s exposition (`name{labels}`).
pub fn metric(m: &Metrics, series: &str) -> Option<f64> {
    m.render().lines().find_map(|l| {
        let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
        rest.parse().ok()
    })
}

/// The `sockbroker_requests_total` series of `tenant`.
pub fn requests(tenant: &str, verdict: &str, reason: &str) -> String {
    format!("sockbroker_requests_total{{reason=\"{reason}\",tenant=\"{tenant}\",verdict=\"{verdict}\"}}")
}

/// Wait until `f` holds, polling, or fail after [`DEADLINE`].
pub async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = tokio::time::Instant::now() + DEADLINE;
    while !f() {
        assert!(
            tokio::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
