//! The HTTP/1.1-aware relay for tenants with an `access` policy.
//!
//! One task per client connection, like the byte relay. Requests are read one
//! at a time (keep-alive and pipelining work: later requests wait in the
//! buffer until the response before them is complete):
//!
//! 1. the request head is parsed (`httparse`, [`http1`]), its target
//!    normalized and the [`Policy`] decides;
//! 2. a denied request gets a Docker-style `403` JSON answer from the broker
//!    (its body, if small, is read and dropped so the connection stays usable);
//! 3. an allowed request is forwarded as it is — head bytes untouched, body
//!    streamed (or, for the bodies `userns-safe` inspects, read up to
//!    [`INSPECT_LIMIT`] first: larger is a `413`);
//! 4. the response is relayed as it is, delimited by its framing
//!    (Content-Length, chunked, none for HEAD/1xx/204/304), while the client is
//!    watched for EOF (propagated to the upstream as with the byte relay);
//! 5. a `101 Switching Protocols` (attach, exec start, `/session`) or a
//!    response delimited only by the connection's end (the engine's
//!    pre-upgrade attach) turns the connection into a raw byte relay
//!    ([`sockbroker_relay::relay`]), after handing over what is buffered.
//!
//! The upstream is connected when the first request is allowed (one upstream
//! connection per client connection); if it cannot be reached the client gets
//! a `502` with `sockbroker: upstream PATH unavailable: …`. Every request is
//! counted in `sockbroker_requests_total{verdict}` and logged in one audit
//! line (tenant, peer, method, path, verdict, status).

pub use sockbroker_policy::http1;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use sockbroker_relay::{relay, ByteSink, Direction, RelayOptions};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;

use crate::config::TenantSpec;
use crate::listener::{connect_upstream, TenantShared};
use crate::metrics::{Reject, TenantMetrics};
use crate::policy::{self, Decision, Policy, RealFs};
use http1::{Chunked, Framing, RequestHead};

/// Largest body read for inspection (container create, exec create, …);
/// larger bodies are refused with 413.
pub const INSPECT_LIMIT: usize = 1024 * 1024;
/// Largest body of a denied request that is read and dropped to keep the
/// connection; with a larger one the connection is closed after the 403.
const DISCARD_LIMIT: u64 = 1024 * 1024;
/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;

/// The peer's credentials, for the audit lines.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// Process id (0 if unknown).
    pub pid: i32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// How a policy-mode connection ended.
#[derive(Debug)]
enum End {
    /// The client closed between requests (the usual end).
    ClientClosed,
    /// The upstream closed (after a `Connection: close` response, or mid-way).
    UpstreamClosed,
    /// The client asked for `Connection: close` and got its response.
    Done,
    /// The broker answered with an error and closed (bad request, denied
    /// request with a large body, 413, 502, HTTP/2 refused).
    Refused(&'static str),
    /// No byte moved for `idle_timeout`.
    Idle,
    /// Drain deadline or shutdown.
    Cancelled,
    /// A read or write on the client failed.
    ClientError(io::Error),
    /// A read or write on the upstream failed.
    UpstreamError(io::Error),
}

impl End {
    fn as_str(&self) -> &'static str {
        match self {
            End::ClientClosed => "client_closed",
            End::UpstreamClosed => "upstream_closed",
            End::Done => "done",
            End::Refused(_) => "refused",
            End::Idle => "idle",
            End::Cancelled => "cancelled",
            End::ClientError(_) => "client_error",
            End::UpstreamError(_) => "upstream_error",
        }
    }

    fn detail(&self) -> String {
        match self {
            End::ClientError(e) | End::UpstreamError(e) => format!("{}: {e}", self.as_str()),
            End::Refused(why) => format!("refused: {why}"),
            other => other.as_str().to_string(),
        }
    }
}

/// What the request loop hands back.
enum Flow {
    /// The connection is over.
    End(End),
    /// Switch to the raw byte relay (buffers already handed over).
    Raw,
}

/// Bytes moved and last activity, shared by the two directions of an exchange.
struct Stats<'a> {
    metrics: &'a TenantMetrics,
    up: AtomicU64,
    down: AtomicU64,
    start: Instant,
    /// Milliseconds since `start` of the last read or write.
    last: AtomicU64,
}

impl Stats<'_> {
    fn touch(&self) {
        self.last
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn add(&self, dir: Direction, n: usize) {
        let n = n as u64;
        match dir {
            Direction::Upstream => self.up.fetch_add(n, Ordering::Relaxed),
            Direction::Downstream => self.down.fetch_add(n, Ordering::Relaxed),
        };
        self.metrics.add(dir, n);
        self.touch();
    }
    /// Resolves once nothing moved for `idle`.
    async fn idle(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

/// Who is asking, for audit lines and messages.
struct Audit<'a> {
    tenant: &'a str,
    peer: Peer,
    /// The tenant's counters (`requests_total` by verdict).
    metrics: &'a TenantMetrics,
}

impl Audit<'_> {
    fn log(&self, method: &str, path: &str, verdict: &str, status: u16, reason: &str) {
        tracing::info!(
            tenant = %self.tenant,
            pid = self.peer.pid,
            uid = self.peer.uid,
            gid = self.peer.gid,
            method = %method,
            path = %path,
            verdict,
            status,
            reason,
            "request {verdict}: {method} {path} -> {status}"
        );
    }
}

/// Serve one client connection of a tenant whose `access` is a policy.
/// `started` is when the connection was accepted; the connection's closing
/// log line and duration are recorded here.
pub async fn serve(
    tenant: &TenantShared,
    spec: &TenantSpec,
    policy: &Policy,
    client: UnixStream,
    peer: Peer,
    kill: CancellationToken,
    started: Instant,
) {
    let m = &tenant.metrics;
    let audit = Audit {
        tenant: &tenant.name,
        peer,
        metrics: m,
    };
    let stats = Stats {
        metrics: m,
        up: AtomicU64::new(0),
        down: AtomicU64::new(0),
        start: Instant::now(),
        last: AtomicU64::new(0),
    };
    let mut conn = Conn {
        spec,
        policy,
        audit: &audit,
        stats: &stats,
        client,
        cbuf: BytesMut::with_capacity(READ_CHUNK),
        upstream: None,
        ubuf: BytesMut::new(),
        requests: 0,
        first: true,
        head_request: false,
    };
    let idle = async {
        match spec.idle_timeout {
            Some(d) => stats.idle(d).await,
            None => std::future::pending().await,
        }
    };
    let flow = tokio::select! {
        biased;
        _ = kill.cancelled() => Flow::End(End::Cancelled),
        _ = idle => Flow::End(End::Idle),
        f = conn.run() => f,
    };
    let end = match flow {
        Flow::End(e) => e.detail(),
        Flow::Raw => {
            let upstream = conn.upstream.take().expect("raw switch has an upstream");
            let opts = RelayOptions {
                idle_timeout: spec.idle_timeout,
                cancel: kill,
                ..RelayOptions::default()
            };
            let outcome = relay(conn.client, upstream, &opts, &**m).await;
            stats
                .up
                .fetch_add(outcome.bytes_upstream, Ordering::Relaxed);
            stats
                .down
                .fetch_add(outcome.bytes_downstream, Ordering::Relaxed);
            format!("raw relay: {}", outcome.end)
        }
    };
    let lived = started.elapsed();
    m.connection_ended(lived);
    let secs = lived.as_secs_f64();
    tracing::info!(
        tenant = %tenant.name, pid = peer.pid, uid = peer.uid, gid = peer.gid,
        access = %spec.access,
        requests = conn.requests,
        bytes_upstream = stats.up.load(Ordering::Relaxed),
        bytes_downstream = stats.down.load(Ordering::Relaxed),
        duration_s = secs,
        end = %end,
        "connection closed: {end}"
    );
}

/// How a request's exchange ended.
enum Next {
    /// Ready for the next request.
    KeepAlive,
    /// Switch to the raw relay.
    Raw,
    /// End the connection.
    End(End),
}

struct Conn<'a> {
    spec: &'a TenantSpec,
    policy: &'a Policy,
    audit: &'a Audit<'a>,
    stats: &'a Stats<'a>,
    client: UnixStream,
    /// Bytes read from the client and not yet handled.
    cbuf: BytesMut,
    upstream: Option<UnixStream>,
    /// Bytes read from the upstream and not yet handled.
    ubuf: BytesMut,
    requests: u64,
    /// No request seen yet (the HTTP/2 preface is only valid first).
    first: bool,
    /// The request being handled is a HEAD (broker answers carry no body).
    head_request: bool,
}

impl Conn<'_> {
    async fn run(&mut self) -> Flow {
        loop {
            let head = match self.read_head().await {
                Ok(Some(h)) => h,
                Ok(None) => return Flow::End(End::ClientClosed),
                Err(Some(flow)) => return flow,
                Err(None) => return Flow::End(End::ClientClosed),
            };
            self.requests += 1;
            match self.handle(head).await {
                Next::KeepAlive => {}
                Next::Raw => return Flow::Raw,
                Next::End(e) => return Flow::End(e),
            }
        }
    }

    /// Read until a request head is complete. `Ok(None)`: the client closed
    /// cleanly between requests. `Err(Some(flow))`: the connection is decided
    /// (HTTP/2 preface, malformed head answered). `Err(None)`: the client
    /// closed mid-head.
    async fn read_head(&mut self) -> Result<Option<RequestHead>, Option<Flow>> {
        let mut scanned: usize = 0;
        self.head_request = false;
        loop {
            if self.first && !self.cbuf.is_empty() {
                match http1::h2_preface(&self.cbuf) {
                    Some(true) => return Err(Some(self.h2().await)),
                    Some(false) => {
                        self.first = false;
                        scanned = 0;
                    }
                    None => {}
                }
            }
            if !self.first && http1::may_hold_head(&self.cbuf[scanned.saturating_sub(3)..]) {
                match http1::parse_request(&self.cbuf) {
                    Ok(Some(h)) => return Ok(Some(h)),
                    Ok(None) => {}
                    Err(e) => {
                        let status = e.status();
                        let msg = format!(
                            "sockbroker: tenant {} sent a request sockbroker cannot check: {e}",
                            self.audit.tenant
                        );
                        self.requests += 1;
                        self.audit.metrics.request(false);
                        self.audit.log("-", "-", "denied", status, &e.to_string());
                        return Err(Some(Flow::End(
                            self.answer(status, &msg, true, "malformed request").await,
                        )));
                    }
                }
            } else if self.cbuf.len() > http1::MAX_HEAD {
                let msg = format!(
                    "sockbroker: tenant {}: {}",
                    self.audit.tenant,
                    http1::HeadError::TooLarge
                );
                self.requests += 1;
                self.audit.metrics.request(false);
                self.audit.log("-", "-", "denied", 431, "head too large");
                return Err(Some(Flow::End(
                    self.answer(431, &msg, true, "head too large").await,
                )));
            }
            scanned = self.cbuf.len();
            match read_more(&mut self.client, &mut self.cbuf, self.stats).await {
                Ok(0) if self.cbuf.is_empty() => return Ok(None),
                Ok(0) => return Err(None),
                Ok(_) => {}
                Err(e) => return Err(Some(Flow::End(End::ClientError(e)))),
            }
        }
    }

    /// Write a broker-made error response; with `close`, end the connection.
    async fn answer(&mut self, status: u16, message: &str, close: bool, why: &'static str) -> End {
        let mut bytes = http1::error_response(status, message, close);
        if self.head_request {
            // A response to HEAD has no body (its Content-Length still tells
            // the body's size).
            let end = bytes
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(bytes.len(), |i| i + 4);
            bytes.truncate(end);
        }
        if let Err(e) = self.client.write_all(&bytes).await {
            return End::ClientError(e);
        }
        self.stats.add(Direction::Downstream, bytes.len());
        if close {
            let _ = self.client.shutdown().await;
        }
        End::Refused(why)
    }

    /// The connection opened with the HTTP/2 preface.
    async fn h2(&mut self) -> Flow {
        self.requests += 1;
        if self.policy.allows_everything() {
            if let Err(e) = self.connect().await {
                self.audit.metrics.request(true);
                self.audit.log(
                    "PRI",
                    "*",
                    "allowed",
                    502,
                    &format!("upstream unavailable: {e}"),
                );
                return Flow::End(End::Refused("upstream unavailable"));
            }
            self.audit.metrics.request(true);
            self.audit
                .log("PRI", "*", "allowed", 0, "HTTP/2 passed through");
            return self.hand_over().await;
        }
        self.audit.metrics.request(false);
        self.audit
            .log("PRI", "*", "denied", 0, "HTTP/2 cannot be checked");
        let msg = format!(
            "sockbroker: tenant {} has an access policy; HTTP/2 cannot be checked, use HTTP/1.1",
            self.audit.tenant
        );
        let bytes = http1::h2_refusal(&msg);
        match self.client.write_all(&bytes).await {
            Ok(()) => {
                self.stats.add(Direction::Downstream, bytes.len());
                let _ = self.client.shutdown().await;
                Flow::End(End::Refused("HTTP/2"))
            }
            Err(e) => Flow::End(End::ClientError(e)),
        }
    }

    /// Write what is buffered on each side to the other, for the raw relay.
    async fn hand_over(&mut self) -> Flow {
        let upstream = self.upstream.as_mut().expect("connected");
        if !self.cbuf.is_empty() {
            if let Err(e) = upstream.write_all(&self.cbuf).await {
                return Flow::End(End::UpstreamError(e));
            }
            self.stats.add(Direction::Upstream, self.cbuf.len());
            self.cbuf.clear();
        }
        if !self.ubuf.is_empty() {
            if let Err(e) = self.client.write_all(&self.ubuf).await {
                return Flow::End(End::ClientError(e));
            }
            self.stats.add(Direction::Downstream, self.ubuf.len());
            self.ubuf.clear();
        }
        Flow::Raw
    }

    /// Connect to the upstream if not yet connected (metrics and log as the
    /// byte relay does).
    async fn connect(&mut self) -> Result<(), String> {
        if let Some(up) = &self.upstream {
            // The engine may have closed the idle keep-alive connection since
            // the last response: then connect anew rather than answer 502.
            let mut probe = [0u8; 512];
            match up.try_read(&mut probe) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Ok(n) if n > 0 => {
                    // Bytes nobody asked for: keep them; the next response
                    // head will not parse and the client gets a 502.
                    self.ubuf.extend_from_slice(&probe[..n]);
                    return Ok(());
                }
                _ => {
                    tracing::debug!(tenant = %self.audit.tenant, "upstream closed the idle connection; reconnecting");
                    self.upstream = None;
                    self.ubuf.clear();
                }
            }
        }
        let spec = self.spec;
        let m = self.stats.metrics;
        let t = Instant::now();
        let err = match connect_upstream(&spec.upstream, spec.connect_timeout).await {
            Ok(s) => {
                m.upstream_connected(t.elapsed());
                self.upstream = Some(s);
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                format!("connect timed out after {:?}", spec.connect_timeout)
            }
            Err(e) => e.to_string(),
        };
        m.rejected(Reject::UpstreamUnavailable);
        tracing::warn!(tenant = %self.audit.tenant, pid = self.audit.peer.pid, uid = self.audit.peer.uid,
            gid = self.audit.peer.gid, reason = "upstream_unavailable",
            upstream = %spec.upstream.display(), error = %err,
            "upstream unavailable; answering 502");
        Err(err)
    }

    async fn handle(&mut self, head: RequestHead) -> Next {
        let method = head.method.clone();
        self.head_request = method.eq_ignore_ascii_case("HEAD");
        let target = match policy::normalize(&head.target) {
            Ok(t) => t,
            Err(e) => {
                self.audit.metrics.request(false);
                let shown: String = head.target.chars().take(200).collect();
                self.audit
                    .log(&method, &shown, "denied", 400, &e.to_string());
                let msg = format!(
                    "sockbroker: tenant {} sent a request target sockbroker cannot check: {e}",
                    self.audit.tenant
                );
                return Next::End(self.answer(400, &msg, true, "bad target").await);
            }
        };
        let path = target.path.clone();
        let decision = self.policy.decide(&method, &target, head.upgrade);
        let kind = match decision {
            Decision::Deny(reason) => return self.deny(&head, &path, &reason).await,
            Decision::Allow => None,
            Decision::Inspect(kind) => Some(kind),
        };
        let mut swallow_continue = false;
        let mut framing = head.body;
        let forward: Vec<u8> = match kind {
            None => self.cbuf.split_to(head.len).to_vec(),
            Some(kind) => {
                if head.expect_continue && head.body != Framing::Empty {
                    if let Err(e) = self.client.write_all(http1::CONTINUE).await {
                        return Next::End(End::ClientError(e));
                    }
                    self.stats.add(Direction::Downstream, http1::CONTINUE.len());
                    swallow_continue = true;
                }
                let mut forward = self.cbuf.split_to(head.len).to_vec();
                let body = match self.read_body(head.body, INSPECT_LIMIT as u64).await {
                    Ok(Some(b)) => b,
                    Ok(None) => {
                        self.audit.metrics.request(false);
                        self.audit
                            .log(&method, &path, "denied", 413, "body too large to inspect");
                        let msg = format!(
                            "sockbroker: tenant {} may not {method} {path} (request body over {} KiB, too large to inspect)",
                            self.audit.tenant,
                            INSPECT_LIMIT / 1024
                        );
                        return Next::End(self.answer(413, &msg, true, "body too large").await);
                    }
                    Err(e) => {
                        self.body_failed(&method, &path, &e);
                        return Next::End(e);
                    }
                };
                if let Err(reason) = self.policy.check_body(kind, &body.decoded, &RealFs) {
                    return self.refuse(&method, &path, &reason, head.close).await;
                }
                forward.extend_from_slice(&body.raw);
                framing = Framing::Empty;
                forward
            }
        };
        self.audit.metrics.request(true);
        if let Err(e) = self.connect().await {
            self.audit
                .log(&method, &path, "allowed", 502, "upstream unavailable");
            let msg = format!(
                "sockbroker: upstream {} unavailable: {e}",
                self.spec.upstream.display()
            );
            return Next::End(self.answer(502, &msg, true, "upstream unavailable").await);
        }
        // Forward the head (and an inspected body) as they came.
        let upstream = self.upstream.as_mut().expect("connected");
        if let Err(e) = upstream.write_all(&forward).await {
            return self.upstream_failed(&method, &path, e).await;
        }
        self.stats.add(Direction::Upstream, forward.len());
        let req = ReqInfo {
            method: &method,
            path: &path,
            is_head: method.eq_ignore_ascii_case("HEAD"),
            swallow_continue,
        };
        self.exchange(&req, framing, head.close).await
    }

    /// The upstream failed before any byte of the response was relayed:
    /// answer 502 (the request was allowed, the engine did not answer).
    async fn upstream_failed(&mut self, method: &str, path: &str, e: io::Error) -> Next {
        self.audit
            .log(method, path, "allowed", 502, "upstream failed");
        let msg = format!(
            "sockbroker: upstream {} unavailable: {e}",
            self.spec.upstream.display()
        );
        Next::End(self.answer(502, &msg, true, "upstream failed").await)
    }

    /// Refuse a request whose body is still unread.
    async fn deny(&mut self, head: &RequestHead, path: &str, reason: &str) -> Next {
        self.cbuf.advance(head.len);
        let mut close = head.close;
        if head.body != Framing::Empty {
            if head.expect_continue {
                close = true;
            } else {
                match self.read_body(head.body, DISCARD_LIMIT).await {
                    Ok(Some(_)) => {}
                    Ok(None) => close = true,
                    Err(e) => {
                        self.body_failed(&head.method, path, &e);
                        return Next::End(e);
                    }
                }
            }
        }
        self.refuse(&head.method, path, reason, close).await
    }

    /// A request whose body could not be read to its end (bad chunking, the
    /// client gone): never forwarded, so it counts as denied, with its audit
    /// line (status 400 when the broker answered, else 0: no response).
    fn body_failed(&self, method: &str, path: &str, end: &End) {
        self.audit.metrics.request(false);
        let status = if matches!(end, End::Refused(_)) {
            400
        } else {
            0
        };
        self.audit.log(
            method,
            path,
            "denied",
            status,
            &format!("request body not read to its end: {}", end.as_str()),
        );
    }

    async fn refuse(&mut self, method: &str, path: &str, reason: &str, close: bool) -> Next {
        self.audit.metrics.request(false);
        self.audit.log(method, path, "denied", 403, reason);
        let msg = format!(
            "sockbroker: tenant {} may not {method} {path} ({reason})",
            self.audit.tenant
        );
        match self.answer(403, &msg, close, "denied").await {
            End::Refused(_) if close => Next::End(End::Done),
            End::Refused(_) => Next::KeepAlive,
            other => Next::End(other),
        }
    }

    /// Read a whole body (head already consumed from `cbuf`) of at most
    /// `limit` raw bytes. `Ok(None)`: over the limit (the rest is unread).
    async fn read_body(&mut self, framing: Framing, limit: u64) -> Result<Option<Body>, End> {
        let mut body = Body::default();
        match framing {
            Framing::Empty | Framing::UntilClose => {}
            Framing::Length(n) => {
                if n > limit {
                    return Ok(None);
                }
                let n = n as usize;
                while self.cbuf.len() < n {
                    self.cbuf.reserve(READ_CHUNK.min(n - self.cbuf.len()));
                    match read_more(&mut self.client, &mut self.cbuf, self.stats).await {
                        Ok(0) => return Err(End::ClientClosed),
                        Ok(_) => {}
                        Err(e) => return Err(End::ClientError(e)),
                    }
                }
                body.raw = self.cbuf.split_to(n).to_vec();
                body.decoded = body.raw.clone();
            }
            Framing::Chunked => {
                let mut c = Chunked::default();
                loop {
                    let decoded = &mut body.decoded;
                    let used = match c.advance(&self.cbuf, |d| decoded.extend_from_slice(d)) {
                        Ok(n) => n,
                        Err(e) => {
                            let msg = format!("sockbroker: tenant {}: {e}", self.audit.tenant);
                            return Err(self.answer(400, &msg, true, "bad chunked body").await);
                        }
                    };
                    body.raw.extend_from_slice(&self.cbuf[..used]);
                    self.cbuf.advance(used);
                    if body.raw.len() as u64 > limit {
                        return Ok(None);
                    }
                    if c.is_done() {
                        break;
                    }
                    match read_more(&mut self.client, &mut self.cbuf, self.stats).await {
                        Ok(0) => return Err(End::ClientClosed),
                        Ok(_) => {}
                        Err(e) => return Err(End::ClientError(e)),
                    }
                }
            }
        }
        Ok(Some(body))
    }

    /// Relay the response to a forwarded request while streaming the rest of
    /// its body (`framing`) to the upstream.
    async fn exchange(&mut self, req: &ReqInfo<'_>, framing: Framing, client_close: bool) -> Next {
        let stats = self.stats;
        let audit = self.audit;
        let upstream = self.upstream.as_mut().expect("connected");
        let (mut cr, mut cw) = self.client.split();
        let (mut ur, mut uw) = upstream.split();
        let cbuf = &mut self.cbuf;
        let ubuf = &mut self.ubuf;

        let mut response = Box::pin(relay_response(&mut ur, &mut cw, ubuf, req, stats, audit));
        let mut result: Option<Result<Resp, RespError>> = None;
        if framing != Framing::Empty {
            // Stream the request body while the response may already come
            // (the engine can answer early, e.g. with an error).
            let mut body = Box::pin(send_body(&mut cr, &mut uw, &mut *cbuf, framing, stats));
            loop {
                tokio::select! {
                    r = &mut body => match r {
                        Ok(()) => break,
                        Err(e) => return Next::End(e),
                    },
                    r = &mut response, if result.is_none() => {
                        // A switch or a failure ends the exchange with the body
                        // unfinished; a complete response waits for the body.
                        let stop = !matches!(r, Ok(Resp::Done { .. }));
                        result = Some(r);
                        if stop {
                            break;
                        }
                    }
                }
            }
        }
        let mut client_eof = false;
        if result.is_none() {
            // Body sent, response still coming (e.g. `docker events`): watch the
            // client for EOF meanwhile, like the byte relay does.
            let mut watch = Box::pin(watch_client(&mut cr, &mut uw, &mut *cbuf, stats));
            let mut watching = true;
            loop {
                tokio::select! {
                    r = &mut watch, if watching => {
                        watching = false;
                        match r {
                            Ok(eof) => client_eof = eof,
                            Err(e) => return Next::End(e),
                        }
                    }
                    r = &mut response => {
                        result = Some(r);
                        break;
                    }
                }
            }
        }
        drop(response);
        match result.expect("response finished") {
            Ok(Resp::Switch) => self.hand_over_next().await,
            Ok(Resp::Done { close }) => {
                if close {
                    let _ = self.client.shutdown().await;
                    Next::End(End::UpstreamClosed)
                } else if client_close {
                    let _ = self.client.shutdown().await;
                    Next::End(End::Done)
                } else if client_eof {
                    Next::End(End::ClientClosed)
                } else {
                    Next::KeepAlive
                }
            }
            Err(RespError::Nothing(e)) => {
                let e = e.unwrap_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed the connection without a response",
                    )
                });
                self.upstream_failed(req.method, req.path, e).await
            }
            Err(RespError::Invalid(what)) => {
                self.audit.log(req.method, req.path, "allowed", 502, &what);
                let msg = format!(
                    "sockbroker: upstream {} sent an invalid response: {what}",
                    self.spec.upstream.display()
                );
                Next::End(
                    self.answer(502, &msg, true, "invalid upstream response")
                        .await,
                )
            }
            Err(RespError::End(e)) => Next::End(e),
        }
    }

    async fn hand_over_next(&mut self) -> Next {
        match self.hand_over().await {
            Flow::Raw => Next::Raw,
            Flow::End(e) => Next::End(e),
        }
    }
}

/// A request body read whole: as sent (chunk framing included) and decoded.
#[derive(Default)]
struct Body {
    raw: Vec<u8>,
    decoded: Vec<u8>,
}

/// The request an exchange is for.
struct ReqInfo<'a> {
    method: &'a str,
    path: &'a str,
    is_head: bool,
    /// The broker already sent `100 Continue` (to read a body for inspection):
    /// drop the upstream's.
    swallow_continue: bool,
}

/// How a response ended.
enum Resp {
    /// Complete; `close`: the upstream closes the connection after it.
    Done { close: bool },
    /// `101`, or a body delimited by the connection's end: raw relay from here.
    Switch,
}

enum RespError {
    /// Nothing of a response was relayed: the upstream closed or failed first.
    Nothing(Option<io::Error>),
    /// The upstream's response head could not be parsed (nothing relayed).
    Invalid(String),
    /// The connection is over (after part of a response was relayed).
    End(End),
}

/// Read more bytes from `r` into `buf` (growing it by [`READ_CHUNK`]).
async fn read_more<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    stats: &Stats<'_>,
) -> io::Result<usize> {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
    let n = r.read_buf(buf).await?;
    stats.touch();
    Ok(n)
}

/// Write `buf[..n]` to `w` and consume it from `buf`, one `write` at a time so
/// that a cancelled call never loses track of what was written.
async fn write_out<W: AsyncWrite + Unpin>(
    w: &mut W,
    buf: &mut BytesMut,
    n: usize,
    dir: Direction,
    stats: &Stats<'_>,
) -> io::Result<()> {
    let mut left = n;
    while left > 0 {
        let k = w.write(&buf[..left]).await?;
        if k == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf.advance(k);
        left -= k;
        stats.add(dir, k);
    }
    Ok(())
}

/// Stream the rest of a request body from the client to the upstream.
async fn send_body<R, W>(
    cr: &mut R,
    uw: &mut W,
    cbuf: &mut BytesMut,
    framing: Framing,
    stats: &Stats<'_>,
) -> Result<(), End>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    match framing {
        Framing::Empty | Framing::UntilClose => Ok(()),
        Framing::Length(mut left) => {
            while left > 0 {
                if cbuf.is_empty() {
                    match read_more(cr, cbuf, stats).await {
                        Ok(0) => return Err(End::ClientClosed),
                        Ok(_) => {}
                        Err(e) => return Err(End::ClientError(e)),
                    }
                }
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(cbuf.len());
                let before = cbuf.len();
                let r = write_out(uw, cbuf, n, Direction::Upstream, stats).await;
                left -= (before - cbuf.len()) as u64;
                r.map_err(End::UpstreamError)?;
            }
            Ok(())
        }
        Framing::Chunked => {
            let mut c = Chunked::default();
            loop {
                let n = c
                    .advance(cbuf, |_| {})
                    .map_err(|_| End::Refused("bad chunked request body"))?;
                if n > 0 {
                    write_out(uw, cbuf, n, Direction::Upstream, stats)
                        .await
                        .map_err(End::UpstreamError)?;
                }
                if c.is_done() {
                    return Ok(());
                }
                match read_more(cr, cbuf, stats).await {
                    Ok(0) => return Err(End::ClientClosed),
                    Ok(_) => {}
                    Err(e) => return Err(End::ClientError(e)),
                }
            }
        }
    }
}

/// While a response streams, read what the client sends (pipelined requests,
/// kept in `cbuf` up to a bound). On EOF with nothing pending, shut down the
/// upstream's write side, as the byte relay does (the engine then ends a
/// stream such as `docker events`), and return `Ok(true)`. `Ok(false)`: stop
/// watching — the buffer is full, or the client closed after pipelining
/// requests that are still to be answered (the next read sees the EOF again).
async fn watch_client<R, W>(
    cr: &mut R,
    uw: &mut W,
    cbuf: &mut BytesMut,
    stats: &Stats<'_>,
) -> Result<bool, End>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    while cbuf.len() <= http1::MAX_HEAD {
        match read_more(cr, cbuf, stats).await {
            Ok(0) if cbuf.is_empty() => {
                let _ = uw.shutdown().await;
                return Ok(true);
            }
            Ok(0) => return Ok(false),
            Ok(_) => {}
            Err(e) => return Err(End::ClientError(e)),
        }
    }
    Ok(false)
}

/// Relay the response(s) to one request: interim 1xx responses, then the
/// final one with its body.
async fn relay_response<R, W>(
    ur: &mut R,
    cw: &mut W,
    ubuf: &mut BytesMut,
    req: &ReqInfo<'_>,
    stats: &Stats<'_>,
    audit: &Audit<'_>,
) -> Result<Resp, RespError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut relayed = false;
    let mut swallow = req.swallow_continue;
    loop {
        // The head.
        let head = loop {
            if http1::may_hold_head(ubuf) || ubuf.len() > http1::MAX_HEAD {
                match http1::parse_response(ubuf, req.is_head) {
                    Ok(Some(h)) => break h,
                    Ok(None) => {}
                    Err(_) if relayed => {
                        return Err(RespError::End(End::Refused(
                            "invalid response from upstream",
                        )))
                    }
                    Err(e) => return Err(RespError::Invalid(e.to_string())),
                }
            }
            match read_more(ur, ubuf, stats).await {
                Ok(0) if !relayed && ubuf.is_empty() => return Err(RespError::Nothing(None)),
                Ok(0) => return Err(RespError::End(End::UpstreamClosed)),
                Ok(_) => {}
                Err(e) if !relayed && ubuf.is_empty() => return Err(RespError::Nothing(Some(e))),
                Err(e) => return Err(RespError::End(End::UpstreamError(e))),
            }
        };
        if head.status == 100 && swallow {
            swallow = false;
            ubuf.advance(head.len);
            continue;
        }
        if let Err(e) = write_out(cw, ubuf, head.len, Direction::Downstream, stats).await {
            // The request went to the engine: it gets its audit line even
            // though the client left before the answer.
            audit.log(
                req.method,
                req.path,
                "allowed",
                head.status,
                "client gone before the response",
            );
            return Err(RespError::End(End::ClientError(e)));
        }
        relayed = true;
        if head.status == 101 {
            audit.log(req.method, req.path, "allowed", 101, "switching protocols");
            return Ok(Resp::Switch);
        }
        if (100..200).contains(&head.status) {
            continue;
        }
        audit.log(req.method, req.path, "allowed", head.status, "");
        return match head.body {
            Framing::Empty => Ok(Resp::Done { close: head.close }),
            Framing::UntilClose => Ok(Resp::Switch),
            Framing::Length(mut left) => {
                while left > 0 {
                    if ubuf.is_empty() {
                        match read_more(ur, ubuf, stats).await {
                            Ok(0) => return Err(RespError::End(End::UpstreamClosed)),
                            Ok(_) => {}
                            Err(e) => return Err(RespError::End(End::UpstreamError(e))),
                        }
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(ubuf.len());
                    write_out(cw, ubuf, n, Direction::Downstream, stats)
                        .await
                        .map_err(|e| RespError::End(End::ClientError(e)))?;
                    left -= n as u64;
                }
                Ok(Resp::Done { close: head.close })
            }
            Framing::Chunked => {
                let mut c = Chunked::default();
                loop {
                    let n = c
                        .advance(ubuf, |_| {})
                        .map_err(|_| RespError::End(End::Refused("bad chunked response body")))?;
                    if n > 0 {
                        write_out(cw, ubuf, n, Direction::Downstream, stats)
                            .await
                            .map_err(|e| RespError::End(End::ClientError(e)))?;
                    }
                    if c.is_done() {
                        break Ok(Resp::Done { close: head.close });
                    }
                    match read_more(ur, ubuf, stats).await {
                        Ok(0) => return Err(RespError::End(End::UpstreamClosed)),
                        Ok(_) => {}
                        Err(e) => return Err(RespError::End(End::UpstreamError(e))),
                    }
                }
            }
        };
    }
}
