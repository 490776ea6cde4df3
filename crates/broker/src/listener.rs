//! Listeners: one accept loop per tenant socket, and what happens to each
//! accepted connection (peer credentials → `allow` → `max_connections` →
//! upstream connect → relay → one log line).

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sockbroker_relay::{relay, RelayOptions};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::TenantSpec;
use crate::metrics::{Reject, TenantMetrics};
use crate::socket::SocketFile;

/// Whether a tenant's socket is listening, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantState {
    /// Listening on its socket.
    Up,
    /// Not listening; the reason says what to fix. Retried periodically.
    Down(String),
    /// Listening, but not as configured (an owner/mode change failed); the
    /// reason says what. Retried periodically.
    Degraded(String),
}

/// What a tenant's listeners and connections share. Lives as long as the tenant
/// is configured (across moves and setting changes) plus its final drain.
pub struct TenantShared {
    /// The tenant's name (metric label, log field).
    pub name: String,
    /// Current spec; each new connection reads it once, so a reload's new
    /// upstream/allow/limits apply to new connections while open ones keep theirs.
    pub settings: watch::Sender<Arc<TenantSpec>>,
    /// Connections open right now, across all of this tenant's listeners; the
    /// `max_connections` check compares against it.
    pub active: AtomicUsize,
    /// Metric handles, resolved once.
    pub metrics: TenantMetrics,
    /// Up or down with a reason, for `/readyz` and `/tenants`.
    pub state: Mutex<TenantState>,
}

impl TenantShared {
    /// A tenant with `spec` as its settings, initially down ("not set up yet").
    pub fn new(spec: Arc<TenantSpec>, metrics: TenantMetrics) -> Arc<Self> {
        metrics.set_up(false);
        if spec.access.policy().is_some() {
            metrics.policy_mode();
        }
        Arc::new(TenantShared {
            name: spec.name.clone(),
            settings: watch::Sender::new(spec),
            active: AtomicUsize::new(0),
            metrics,
            state: Mutex::new(TenantState::Down("not set up yet".into())),
        })
    }

    /// New settings: connections accepted from now on use them.
    pub fn update(&self, spec: Arc<TenantSpec>) {
        if spec.access.policy().is_some() {
            self.metrics.policy_mode();
        }
        self.settings.send_replace(spec);
    }

    /// The settings new connections get.
    pub fn spec(&self) -> Arc<TenantSpec> {
        self.settings.borrow().clone()
    }

    /// Record up/down (state, gauge and, when down, a log line).
    pub fn set_state(&self, state: TenantState) {
        self.metrics.set_up(!matches!(state, TenantState::Down(_)));
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }

    /// Current up/down state.
    pub fn state(&self) -> TenantState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// One bound socket with its accept loop and the connections it accepted.
/// Retiring it (removal, move, shutdown) stops accepting, unlinks the socket
/// and drains exactly the connections that came in through it.
pub struct ListenerHandle {
    /// The socket file we created, to unlink on retirement (only if still ours).
    pub socket: SocketFile,
    /// Cancelled to stop the accept loop.
    stop_accept: CancellationToken,
    /// Cancelled at the drain deadline: every relay of this listener ends.
    kill: CancellationToken,
    /// The connections of this listener, to wait for during a drain.
    conns: TaskTracker,
}

impl ListenerHandle {
    /// Start accepting on `listener` for `tenant`.
    pub fn start(
        tenant: Arc<TenantShared>,
        listener: std::os::unix::net::UnixListener,
        socket: SocketFile,
    ) -> io::Result<Self> {
        let listener = UnixListener::from_std(listener)?;
        let h = ListenerHandle {
            socket,
            stop_accept: CancellationToken::new(),
            kill: CancellationToken::new(),
            conns: TaskTracker::new(),
        };
        tokio::spawn(accept_loop(
            tenant,
            listener,
            h.stop_accept.clone(),
            h.kill.clone(),
            h.conns.clone(),
        ));
        Ok(h)
    }

    /// Stop accepting and unlink the socket now; return a future that lets open
    /// connections finish for up to `drain_timeout`, then closes them.
    pub fn retire(self, drain_timeout: Duration) -> impl std::future::Future<Output = ()> {
        self.retire_with(drain_timeout, true)
    }

    /// [`ListenerHandle::retire`], but with `unlink: false` the socket file
    /// stays: another process (after an upgrade) or the service manager's
    /// descriptor store (across a restart) keeps serving that inode.
    pub fn retire_with(
        self,
        drain_timeout: Duration,
        unlink: bool,
    ) -> impl std::future::Future<Output = ()> {
        self.stop_accept.cancel();
        if unlink {
            self.socket.remove();
        }
        self.conns.close();
        async move {
            if tokio::time::timeout(drain_timeout, self.conns.wait())
                .await
                .is_err()
            {
                tracing::info!(
                    path = %self.socket.path.display(),
                    open = self.conns.len(),
                    "drain timeout reached; closing remaining connections"
                );
                self.kill.cancel();
                self.conns.wait().await;
            }
        }
    }

    /// Connections of this listener still open.
    pub fn open_connections(&self) -> usize {
        self.conns.len()
    }
}

/// Errors that mean "out of a resource": back off instead of spinning.
fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

async fn accept_loop(
    tenant: Arc<TenantShared>,
    listener: UnixListener,
    stop: CancellationToken,
    kill: CancellationToken,
    conns: TaskTracker,
) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, _)) => {
                backoff = Duration::from_millis(10);
                conns.spawn(serve(tenant.clone(), stream, kill.clone()));
            }
            Err(e) if is_resource_exhaustion(&e) => {
                tracing::warn!(tenant = %tenant.name, error = %e, backoff_ms = backoff.as_millis() as u64,
                    "accept failed: out of resources; backing off");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            Err(e) => {
                // ECONNABORTED and friends concern one connection, not the listener.
                tracing::debug!(tenant = %tenant.name, error = %e, "accept failed");
            }
        }
    }
}

/// Decrements the tenant's active count however the connection ends.
struct ActiveGuard<'a>(&'a TenantShared);
impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
        self.0.metrics.closed();
    }
}

/// Connect to the upstream socket, waiting up to `timeout` while its backlog
/// is full.
///
/// A Unix-socket `connect(2)` on a non-blocking socket completes or fails at
/// once — there is no "in progress" to wait for as with TCP (tokio's
/// `UnixStream::connect` would only add an event-loop turn and a
/// `getsockopt(SO_ERROR)`, docs/performance.md). When the upstream's backlog
/// is full it fails with `EAGAIN`; then we try again with a short backoff
/// until `timeout` (the tenant's `connect_timeout`), so a burst on the engine
/// waits like socat's `connect-timeout` instead of failing. Returns
/// `ErrorKind::TimedOut` when the time is up.
pub(crate) async fn connect_upstream(
    path: &std::path::Path,
    timeout: Duration,
) -> io::Result<UnixStream> {
    let attempt = || -> io::Result<UnixStream> {
        let fd = crate::socket::connect_nonblocking(path)?;
        UnixStream::from_std(std::os::unix::net::UnixStream::from(fd))
    };
    let deadline = Instant::now() + timeout;
    let mut backoff = Duration::from_millis(1);
    loop {
        match attempt() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the upstream's backlog stayed full for {timeout:?}"),
                    ));
                }
                tokio::time::sleep(backoff.min(deadline - now)).await;
                backoff = (backoff * 2).min(Duration::from_millis(50));
            }
            r => return r,
        }
    }
}

async fn serve(tenant: Arc<TenantShared>, client: UnixStream, kill: CancellationToken) {
    let started = Instant::now();
    let spec = tenant.spec();
    let m = &tenant.metrics;
    m.accepted();
    let (pid, uid, gid) = match client.peer_cred() {
        Ok(c) => (c.pid().unwrap_or(0), c.uid(), c.gid()),
        Err(e) => {
            tracing::warn!(tenant = %tenant.name, error = %e, "cannot read peer credentials; closing");
            m.rejected(Reject::PeerNotAllowed);
            return;
        }
    };
    if let Some(allow) = &spec.allow {
        if !allow.permits(uid, gid) {
            m.rejected(Reject::PeerNotAllowed);
            tracing::warn!(tenant = %tenant.name, pid, uid, gid, reason = "peer_not_allowed",
                "connection refused: peer uid/gid not in the tenant's allow list");
            return;
        }
    }
    let n = tenant.active.fetch_add(1, Ordering::Relaxed) + 1;
    m.opened();
    let _guard = ActiveGuard(&tenant);
    if n > spec.max_connections {
        m.rejected(Reject::Limit);
        tracing::warn!(tenant = %tenant.name, pid, uid, gid, reason = "limit", max_connections = spec.max_connections,
            "connection refused: max_connections reached");
        return;
    }
    if let Some(policy) = spec.access.policy() {
        let peer = crate::policy_relay::Peer { pid, uid, gid };
        crate::policy_relay::serve(&tenant, &spec, policy, client, peer, kill, started).await;
        return;
    }
    let connect_started = Instant::now();
    let upstream = tokio::select! {
        _ = kill.cancelled() => return,
        r = connect_upstream(&spec.upstream, spec.connect_timeout) => r,
    };
    let upstream = match upstream {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            m.rejected(Reject::UpstreamUnavailable);
            tracing::warn!(tenant = %tenant.name, pid, uid, gid, reason = "upstream_unavailable",
                upstream = %spec.upstream.display(), timeout = ?spec.connect_timeout,
                "connection closed: upstream connect timed out");
            return;
        }
        Err(e) => {
            m.rejected(Reject::UpstreamUnavailable);
            tracing::warn!(tenant = %tenant.name, pid, uid, gid, reason = "upstream_unavailable",
                upstream = %spec.upstream.display(), error = %e,
                "connection closed: upstream unavailable");
            return;
        }
    };
    m.upstream_connected(connect_started.elapsed());
    let opts = RelayOptions {
        idle_timeout: spec.idle_timeout,
        cancel: kill,
        ..RelayOptions::default()
    };
    let outcome = relay(client, upstream, &opts, &**m).await;
    let lived = started.elapsed();
    m.connection_ended(lived);
    let secs = lived.as_secs_f64();
    tracing::info!(
        tenant = %tenant.name, pid, uid, gid,
        bytes_upstream = outcome.bytes_upstream,
        bytes_downstream = outcome.bytes_downstream,
        duration_s = secs,
        end = outcome.end.as_str(),
        "connection closed: {}", outcome.end
    );
}
