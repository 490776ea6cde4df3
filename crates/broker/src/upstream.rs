//! Connecting to a tenant's upstream socket, for the byte relay and the policy
//! relay alike: one place that waits out a full backlog, records the connect
//! time and, when the upstream cannot be reached, counts
//! `connections_rejected_total{reason="upstream_unavailable"}` and writes the
//! one warning line.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use std::os::unix::net::UnixStream as StdUnixStream;

use tokio::net::UnixStream;

use crate::backoff::{is_resource_exhaustion, Backoff};
use crate::config::TenantSpec;
use crate::metrics::Reject;
use crate::tenant::{Peer, TenantShared};

/// Connect to `spec.upstream` for a client of `tenant`. On failure the metric
/// and the log line are done; the error says what went wrong, for the client
/// (the policy relay's `502`).
pub async fn connect(
    tenant: &TenantShared,
    spec: &TenantSpec,
    peer: Peer,
) -> io::Result<UnixStream> {
    UnixStream::from_std(connect_std(tenant, spec, peer).await?)
}

/// [`connect`], returning the socket unregistered (non-blocking), for the
/// byte relay, which registers it for reading only
/// (`sockbroker_relay::ReadRegistered`).
pub async fn connect_std(
    tenant: &TenantShared,
    spec: &TenantSpec,
    peer: Peer,
) -> io::Result<StdUnixStream> {
    let started = Instant::now();
    // Warned once per connection, when it starts waiting: the accept loop
    // stops accepting while descriptors stay short ("backing off"), so these
    // lines are as many as the connections already accepted, not a storm.
    let short = |e: &io::Error| {
        tracing::warn!(tenant = %tenant.name(), pid = peer.pid, uid = peer.uid, gid = peer.gid,
            upstream = %spec.upstream.display(), error = %e, timeout_ms = spec.connect_timeout.as_millis() as u64,
            "upstream connect: out of resources; waiting for descriptors to free up (raise LimitNOFILE if this repeats)");
    };
    match connect_upstream_std(&spec.upstream, spec.connect_timeout, short).await {
        Ok(s) => {
            tenant.metrics().upstream_connected(started.elapsed());
            Ok(s)
        }
        Err(e) => {
            tenant.metrics().rejected(Reject::UpstreamUnavailable);
            tracing::warn!(tenant = %tenant.name(), pid = peer.pid, uid = peer.uid, gid = peer.gid,
                reason = "upstream_unavailable", upstream = %spec.upstream.display(), error = %e,
                "upstream unavailable: {e}");
            Err(e)
        }
    }
}

/// Connect to the upstream socket, waiting up to `timeout` while its backlog
/// is full or the broker is out of descriptors.
///
/// A Unix-socket `connect(2)` on a non-blocking socket completes or fails at
/// once — there is no "in progress" to wait for as with TCP (tokio's
/// `UnixStream::connect` would only add an event-loop turn and a
/// `getsockopt(SO_ERROR)`, docs/performance.md). When the upstream's backlog
/// is full it fails with `EAGAIN`; then we try again with a short backoff
/// until `timeout` (the tenant's `connect_timeout`), so a burst on the engine
/// waits like socat's `connect-timeout` instead of failing.
///
/// Running out of descriptors (`EMFILE`, `ENFILE`) or kernel memory for the
/// socket is waited out the same way: the client was accepted, so the
/// shortage is momentary if other connections are closing, and the accept
/// loop backs off in the meantime. Refusing at once turned a brief shortage
/// into a refusal of every client already queued.
///
/// Returns `ErrorKind::TimedOut` ("upstream connect timed out …") when the
/// time is up.
pub async fn connect_upstream(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    let short = |e: &io::Error| {
        tracing::debug!(upstream = %path.display(), error = %e,
            "upstream connect: out of resources; waiting");
    };
    UnixStream::from_std(connect_upstream_std(path, timeout, short).await?)
}

/// [`connect_upstream`], returning the socket unregistered (non-blocking).
/// `short` is told, once, when the connect starts waiting for a resource.
async fn connect_upstream_std(
    path: &Path,
    timeout: Duration,
    short: impl FnOnce(&io::Error),
) -> io::Result<StdUnixStream> {
    let attempt = || -> io::Result<StdUnixStream> {
        Ok(StdUnixStream::from(crate::socket::connect_nonblocking(
            path,
        )?))
    };
    let deadline = Instant::now() + timeout;
    let mut backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(50));
    let mut short = Some(short);
    loop {
        let why = match attempt() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => "the upstream's backlog stayed full",
            Err(e) if is_resource_exhaustion(&e) => {
                if let Some(tell) = short.take() {
                    tell(&e);
                }
                "the broker stayed out of descriptors or socket memory"
            }
            r => return r,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("upstream connect timed out: {why} for {timeout:?}"),
            ));
        }
        tokio::time::sleep(backoff.next_pause().min(deadline - now)).await;
    }
}
