//! Listeners: one accept loop per tenant socket, and what happens to each
//! accepted connection (peer credentials → `allow` → `max_connections` →
//! upstream connect → relay → one log line).

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::os::unix::net::UnixStream as StdUnixStream;

use sockbroker_relay::{relay, EndReason, Listener, Outcome, ReadRegistered, RelayOptions};
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backoff::ACCEPT_BACKOFF;
use crate::metrics::Reject;
use crate::socket::SocketFile;
use crate::tenant::{Peer, TenantShared};

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
        // Registered for readability only, and its connections arrive
        // unregistered: the byte relay registers them for reading only
        // (`ReadRegistered`: no wake-up each time a peer drains what the
        // relay wrote, docs/performance.md); the policy relay hands them
        // to tokio as usual.
        let listener = Listener::new(listener)?;
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
    listener: Listener,
    stop: CancellationToken,
    kill: CancellationToken,
    conns: TaskTracker,
) {
    let mut backoff = ACCEPT_BACKOFF;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok(stream) => {
                backoff.reset();
                // Boxed: the connection's future (the relay's or the policy
                // relay's state, a few KiB) is otherwise copied whole each
                // time tokio moves it into its task and each time the task
                // changes stage (five copies per connection: a fifth of the
                // broker's instructions in the connection-rate bench,
                // docs/performance.md). A box is moved as a pointer.
                conns.spawn(Box::pin(serve(tenant.clone(), stream, kill.clone())));
            }
            Err(e) if is_resource_exhaustion(&e) => {
                let pause = backoff.next_pause();
                tracing::warn!(tenant = %tenant.name(), error = %e, backoff_ms = pause.as_millis() as u64,
                    "accept failed: out of resources; backing off");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
            Err(e) => {
                // ECONNABORTED and friends concern one connection, not the listener.
                tracing::debug!(tenant = %tenant.name(), error = %e, "accept failed");
            }
        }
    }
}

async fn serve(tenant: Arc<TenantShared>, client: StdUnixStream, kill: CancellationToken) {
    let started = Instant::now();
    let spec = tenant.spec();
    let m = tenant.metrics();
    m.accepted();
    let peer = match nix::sys::socket::getsockopt(
        &client,
        nix::sys::socket::sockopt::PeerCredentials,
    ) {
        Ok(c) => Peer {
            pid: c.pid(),
            uid: c.uid(),
            gid: c.gid(),
        },
        Err(e) => {
            tracing::warn!(tenant = %tenant.name(), error = %e, "cannot read peer credentials; closing");
            m.rejected(Reject::PeerNotAllowed);
            return;
        }
    };
    let Peer { pid, uid, gid } = peer;
    if let Some(allow) = &spec.allow {
        if !allow.permits(uid, gid) {
            m.rejected(Reject::PeerNotAllowed);
            tracing::warn!(tenant = %tenant.name(), pid, uid, gid, reason = "peer_not_allowed",
                "connection refused: peer uid/gid not in the tenant's allow list");
            return;
        }
    }
    let Some(_guard) = tenant.open(spec.max_connections) else {
        m.rejected(Reject::Limit);
        tracing::warn!(tenant = %tenant.name(), pid, uid, gid, reason = "limit", max_connections = spec.max_connections,
            "connection refused: max_connections reached");
        if spec.access.policy().is_some() {
            let Some(client) = to_tokio(&tenant, client) else {
                return;
            };
            // An HTTP client is told why (429); the byte relay just closes.
            Box::pin(crate::policy_relay::refuse_over_limit(
                &tenant, client, peer, kill,
            ))
            .await;
        }
        return;
    };
    if spec.access.policy().is_some() {
        let Some(client) = to_tokio(&tenant, client) else {
            return;
        };
        // Boxed: the policy relay's state is several times the byte relay's,
        // and inline it would size every byte-relay connection's task too.
        Box::pin(crate::policy_relay::serve(
            &tenant, client, peer, kill, started,
        ))
        .await;
        return;
    }
    let upstream = tokio::select! {
        // Connect first: it usually completes at once, and then the drain
        // token is never polled (registering a waiter on it and removing it
        // again costs two locks per connection).
        biased;
        r = crate::upstream::connect_std(&tenant, &spec, peer) => r,
        _ = kill.cancelled() => return,
    };
    let Ok(upstream) = upstream else { return };
    let (client, upstream) = match (ReadRegistered::new(client), ReadRegistered::new(upstream)) {
        (Ok(c), Ok(u)) => (c, u),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(tenant = %tenant.name(), pid, uid, gid, error = %e,
                "cannot register the connection with the runtime; closing");
            return;
        }
    };
    // A tenant moved from `full` to a policy: its byte-relay connections
    // close, so that clients reconnect under the policy (the byte relay
    // cannot start checking in the middle of a stream).
    let cancel = kill.child_token();
    let opts = RelayOptions {
        idle_timeout: spec.idle_timeout,
        cancel: cancel.clone(),
        ..RelayOptions::default()
    };
    let relayed = relay(client, upstream, &opts, &**m);
    tokio::pin!(relayed);
    let outcome = tokio::select! {
        o = &mut relayed => o,
        () = policy_arrives(&tenant) => {
            tracing::info!(tenant = %tenant.name(), pid, uid, gid,
                "closing a byte-relay connection: the tenant now has an access policy");
            cancel.cancel();
            relayed.await
        }
    };
    let lived = started.elapsed();
    m.connection_ended(lived);
    log_closed(&tenant, peer, lived, &outcome);
}

/// `client` registered with tokio as usual, for the policy relay; `None`
/// (logged) if the runtime refuses it.
fn to_tokio(tenant: &TenantShared, client: StdUnixStream) -> Option<UnixStream> {
    UnixStream::from_std(client)
        .inspect_err(|e| {
            tracing::warn!(tenant = %tenant.name(), error = %e,
                "cannot register the connection with the runtime; closing");
        })
        .ok()
}

/// Resolves once `tenant`'s settings gain an access policy.
async fn policy_arrives(tenant: &TenantShared) {
    let mut settings = tenant.subscribe();
    loop {
        if settings.borrow_and_update().access.policy().is_some() {
            return;
        }
        if settings.changed().await.is_err() {
            // The tenant is gone; its drain decides the connection's end.
            return std::future::pending().await;
        }
    }
}

/// The one log line of a byte-relay connection.
fn log_closed(tenant: &TenantShared, peer: Peer, lived: Duration, outcome: &Outcome) {
    // The message as a `&str`, fixed unless the relay failed: formatting
    // `outcome.end` into it cost ~250 of the line's instructions
    // (docs/performance.md). `message` first, where the macro puts a format
    // string's message: the line is the same.
    let failed;
    let message = match closed_message(&outcome.end) {
        Some(fixed) => fixed,
        None => {
            failed = format!("connection closed: {}", outcome.end);
            failed.as_str()
        }
    };
    tracing::info!(
        message,
        tenant = %tenant.name(), pid = peer.pid, uid = peer.uid, gid = peer.gid,
        bytes_upstream = outcome.bytes_upstream,
        bytes_downstream = outcome.bytes_downstream,
        duration_s = lived.as_secs_f64(),
        end = outcome.end.as_str(),
    );
}

/// `connection closed: {end}` where `end` has no error text to show.
fn closed_message(end: &EndReason) -> Option<&'static str> {
    Some(match end {
        EndReason::ClientClosed => "connection closed: client_closed",
        EndReason::UpstreamClosed => "connection closed: upstream_closed",
        EndReason::Idle => "connection closed: idle",
        EndReason::Cancelled => "connection closed: cancelled",
        EndReason::Error { .. } => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_messages_as_the_end_displays() {
        for end in [
            EndReason::ClientClosed,
            EndReason::UpstreamClosed,
            EndReason::Idle,
            EndReason::Cancelled,
        ] {
            assert_eq!(
                closed_message(&end),
                Some(&*format!("connection closed: {end}"))
            );
        }
        let error = EndReason::Error {
            side: sockbroker_relay::Side::Upstream,
            error: io::Error::from(io::ErrorKind::BrokenPipe),
        };
        assert_eq!(closed_message(&error), None);
    }
}
