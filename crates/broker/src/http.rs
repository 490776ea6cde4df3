//! The metrics and health HTTP server (hyper 1): `/metrics`, `/healthz`,
//! `/readyz`, `/tenants`, on TCP or a Unix socket.
//!
//! It must never stall the broker: connections are capped by a semaphore, a
//! client gets a bounded time to send its headers and a bounded lifetime, and
//! every handler only reads atomics and a snapshot of the tenant registry.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::MetricsListen;
use crate::metrics::Metrics;
use crate::supervisor::Registry;
use crate::tenant::TenantState;
use crate::tenants_api::TenantStatus;

/// Concurrent HTTP connections served at most; more wait for a slot.
const MAX_CONNECTIONS: usize = 64;
/// Open HTTP connections at most, served or not. A connection that has not sent
/// a byte yet waits without a serving slot (idle clients must not stall
/// scrapes), for at most [`HEADER_TIMEOUT`]; beyond this many, new connections
/// wait in the listen backlog.
const MAX_OPEN: usize = 1024;
/// Time a client has to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest an HTTP connection may stay open (keep-alive included).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// The running server; dropping it stops accepting.
pub struct HttpServer {
    /// Cancelled on drop to stop the accept loop.
    stop: CancellationToken,
    /// Where it listens (the bound TCP address, e.g. when port 0 was asked for).
    pub local_addr: String,
    /// The Unix socket we created, unlinked on drop unless kept.
    socket: Option<crate::socket::SocketFile>,
    /// A copy of the listening descriptor, for the next process (upgrade) and
    /// the service manager's descriptor store.
    fd: std::os::fd::OwnedFd,
}

impl HttpServer {
    /// The listening socket (to hand over or store).
    pub fn listener_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.fd)
    }

    /// Stop accepting but leave a `unix:` socket file in place: the next
    /// process (upgrade) or the descriptor store serves that inode now.
    pub fn stop_keeping_socket(mut self) {
        self.socket = None;
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(s) = &self.socket {
            s.remove();
        }
    }
}

/// Whether `fd` is a listening TCP socket bound to `addr`.
fn is_tcp_listener_on(fd: &std::os::fd::OwnedFd, addr: std::net::SocketAddr) -> bool {
    use nix::sys::socket::{getsockopt, sockopt, SockType};
    let stream = matches!(getsockopt(fd, sockopt::SockType), Ok(SockType::Stream));
    let listening = getsockopt(fd, sockopt::AcceptConn).unwrap_or(false);
    // Ask through a copy: the std type reads the bound address for us.
    let bound = fd
        .try_clone()
        .ok()
        .and_then(|copy| std::net::TcpListener::from(copy).local_addr().ok());
    stream && listening && bound == Some(addr)
}

/// What the handlers read.
#[derive(Clone)]
struct State {
    /// Metric families to render.
    metrics: Metrics,
    /// Tenants and their up/down state.
    registry: Registry,
}

/// Snapshot of every tenant, sorted by name.
pub fn tenant_statuses(registry: &Registry) -> Vec<TenantStatus> {
    let tenants: Vec<_> = registry.iter().map(|e| e.value().clone()).collect();
    let mut out: Vec<TenantStatus> = tenants
        .iter()
        .map(|t| {
            let spec = t.spec();
            let (state, reason) = match t.state() {
                TenantState::Up => ("up".to_string(), None),
                TenantState::Down(r) => ("down".to_string(), Some(r)),
                TenantState::Degraded(r) => ("degraded".to_string(), Some(r)),
            };
            TenantStatus {
                name: t.name().to_string(),
                listen: spec.listen.display().to_string(),
                uid: spec.uid,
                gid: spec.gid,
                owner: spec.owner_string(),
                mode: spec.mode_string(),
                upstream: spec.upstream.display().to_string(),
                state,
                reason,
                active_connections: t.active_connections(),
                upstream_state: match t.metrics().upstream_up() {
                    Some(true) => "up",
                    Some(false) => "down",
                    None => "unknown",
                }
                .to_string(),
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(body.into()))
        .expect("static response parts are valid")
}

fn route(state: &State, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let known = matches!(path, "/metrics" | "/healthz" | "/readyz" | "/tenants");
    if !known {
        return text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz, /readyz or /tenants\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use GET\n",
        );
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path {
        "/metrics" => {
            let mut r = text(StatusCode::OK, state.metrics.render());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            let down: Vec<String> = tenant_statuses(&state.registry)
                .into_iter()
                .filter_map(|t| {
                    let state = &t.state;
                    t.reason
                        .map(|r| format!("tenant {} {state}: {r}\n", t.name))
                })
                .collect();
            if down.is_empty() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, down.concat())
            }
        }
        _ => {
            let body = serde_json::to_vec_pretty(&tenant_statuses(&state.registry))
                .expect("status serializes");
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body)))
                .expect("static response parts are valid")
        }
    }
}

/// Serve one accepted connection with the limits above.
async fn serve_conn<IO>(io: IO, state: State, stop: CancellationToken)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let r = route(&state, &req);
        async move { Ok::<_, Infallible>(r) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), svc);
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::timeout(CONNECTION_LIFETIME, conn) => {}
    }
}

/// Streams on which the first byte can be awaited without reading it (TCP and Unix).
trait FirstByte {
    /// Resolves once data (or EOF, or an error) is there to read.
    fn first_byte(&self) -> impl std::future::Future<Output = std::io::Result<()>> + Send;
}

/// Whether something is there to read, without consuming it.
fn peek_now(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    use nix::sys::socket::{recv, MsgFlags};
    recv(
        fd,
        &mut [0u8; 1],
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    )
    .map(|_| ())
    .map_err(std::io::Error::from)
}

macro_rules! first_byte_impl {
    ($t:ty) => {
        impl FirstByte for $t {
            // Tokio reports a fresh socket readable before anything arrived:
            // peek to tell data (or EOF) from that.
            async fn first_byte(&self) -> std::io::Result<()> {
                use std::os::fd::AsRawFd;
                loop {
                    self.readable().await?;
                    match self.try_io(tokio::io::Interest::READABLE, || peek_now(self.as_raw_fd()))
                    {
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                        r => return r,
                    }
                }
            }
        }
    };
}
first_byte_impl!(tokio::net::TcpStream);
first_byte_impl!(tokio::net::UnixStream);

/// The two listener kinds `metrics.listen` can name (TCP and Unix).
trait Accept: Send + 'static {
    /// The accepted stream.
    type Io: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + FirstByte
        + Unpin
        + Send
        + Sync
        + 'static;
    /// Accept one connection.
    fn accept_io(&self) -> impl std::future::Future<Output = std::io::Result<Self::Io>> + Send;
}

macro_rules! accept_impl {
    ($l:ty, $io:ty) => {
        impl Accept for $l {
            type Io = $io;
            async fn accept_io(&self) -> std::io::Result<$io> {
                self.accept().await.map(|(s, _)| s)
            }
        }
    };
}
accept_impl!(tokio::net::TcpListener, tokio::net::TcpStream);
accept_impl!(tokio::net::UnixListener, tokio::net::UnixStream);

/// Accept with at most [`MAX_CONNECTIONS`] served at once, until `stop`. A
/// connection takes a serving slot only once its first byte arrived, so clients
/// that connect and send nothing cannot keep the slots from real scrapers.
async fn accept_loop<L: Accept>(listener: L, state: State, stop: CancellationToken) {
    let serving = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let open = Arc::new(Semaphore::new(MAX_OPEN));
    let mut backoff = crate::backoff::ACCEPT_BACKOFF;
    loop {
        let open_permit = tokio::select! {
            _ = stop.cancelled() => return,
            p = open.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept_io() => r,
        };
        match accepted {
            Ok(io) => {
                backoff.reset();
                let (st, stop2, serving) = (state.clone(), stop.clone(), serving.clone());
                tokio::spawn(async move {
                    let _open = open_permit;
                    // Wait for the first byte without a serving slot; a client
                    // that sends nothing in time is closed.
                    let ready = async {
                        match tokio::time::timeout(HEADER_TIMEOUT, io.first_byte()).await {
                            Ok(Ok(())) => serving.acquire_owned().await.ok(),
                            _ => None,
                        }
                    };
                    let slot = tokio::select! {
                        _ = stop2.cancelled() => return,
                        slot = ready => slot,
                    };
                    if let Some(_serving) = slot {
                        serve_conn(io, st, stop2).await;
                    }
                });
            }
            // Out of descriptors or similar: back off rather than spin.
            Err(_) => tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff.next_pause()) => {}
            },
        }
    }
}

/// Bind `listen` and serve until the returned handle is dropped.
///
/// A listener handed over under the name `metrics` (`LISTEN_FDNAMES`) that
/// matches `listen` is taken over instead of binding; handed-over ones that
/// do not match stay in `handed` (a tenant may be called `metrics`).
pub async fn serve(
    listen: MetricsListen,
    metrics: Metrics,
    registry: Registry,
    handed: &mut crate::handover::Inherited,
) -> anyhow::Result<HttpServer> {
    use std::os::fd::AsFd;
    let stop = CancellationToken::new();
    let state = State { metrics, registry };
    let local_addr;
    let mut socket = None;
    let mut offered = handed.take_named("metrics");
    let fd;
    match listen {
        MetricsListen::Tcp(addr) => {
            let adopted = offered
                .iter()
                .position(|fd| is_tcp_listener_on(fd, addr))
                .map(|i| offered.remove(i));
            let l = match adopted {
                Some(fd) => {
                    let l = std::net::TcpListener::from(fd);
                    l.set_nonblocking(true)?;
                    tracing::info!(listen = %addr, "took over the handed-over metrics listener");
                    tokio::net::TcpListener::from_std(l)?
                }
                None => tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                    anyhow::anyhow!(
                        "metrics.listen {addr}: {e}; pick a free address or remove the metrics section"
                    )
                })?,
            };
            local_addr = l.local_addr()?.to_string();
            fd = l.as_fd().try_clone_to_owned()?;
            tokio::spawn(accept_loop(l, state, stop.clone()));
        }
        MetricsListen::Unix(path) => {
            let (uid, gid) = (
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            );
            let mut adopted = None;
            for candidate in std::mem::take(&mut offered) {
                match crate::socket::adopt(candidate, &path, uid, gid, 0o660) {
                    Ok(l) if adopted.is_none() => adopted = Some(l),
                    Ok((l, _)) => offered.push(l.into()),
                    Err((fd, _)) => offered.push(fd),
                }
            }
            let (l, file) = match adopted {
                Some(l) => l,
                None => crate::socket::bind(&path, uid, gid, 0o660)
                    .map_err(|e| anyhow::anyhow!("metrics.listen unix:{}: {e}", path.display()))?,
            };
            let l = tokio::net::UnixListener::from_std(l)?;
            local_addr = format!("unix:{}", path.display());
            socket = Some(file);
            fd = l.as_fd().try_clone_to_owned()?;
            tokio::spawn(accept_loop(l, state, stop.clone()));
        }
    }
    if !offered.is_empty() {
        handed.sockets.insert("metrics".into(), offered);
    }
    tracing::info!(listen = %local_addr, "serving /metrics, /healthz, /readyz, /tenants");
    Ok(HttpServer {
        stop,
        local_addr,
        socket,
        fd,
    })
}
