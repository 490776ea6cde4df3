//! The HTTP/1.1-aware relay for tenants with an `access` policy.
//!
//! One task per client connection, like the byte relay. Requests are read one
//! at a time (keep-alive and pipelining work: later requests wait in the
//! buffer until the response before them is complete):
//!
//! 1. [`connection`] reads the request head (`httparse`, [`http1`]);
//!    [`request`] normalizes its target and asks the tenant's **current**
//!    [`Policy`](crate::policy::Policy) (read per request, so a reload
//!    applies to the next request of an open connection);
//! 2. a refused request gets a [`Synthetic`] answer: one value from which the
//!    status, the Docker-style JSON message, whether the connection closes,
//!    the audit line and the `sockbroker_requests_total{verdict,reason}`
//!    series all come (a denied request's small body is read and dropped so
//!    the connection stays usable);
//! 3. an allowed request goes through the rewrite step ([`rewrite`]): the
//!    seam where a feature may change the target or body, answer itself, ask
//!    the engine first ([`rewrite::side_request`]) or filter the response.
//!    Without one it is forwarded as it came — head bytes untouched, body
//!    streamed (or, for the bodies `userns-safe` inspects, read up to
//!    [`INSPECT_LIMIT`] first: larger is a `413`);
//! 4. [`exchange`] relays the response as it is, delimited by its framing
//!    (Content-Length, chunked, none for HEAD/1xx/204/304), while the client
//!    is watched for EOF (propagated to the upstream as with the byte relay);
//! 5. a `101 Switching Protocols` (attach, exec start, `/session`) or a
//!    response delimited only by the connection's end (the engine's
//!    pre-upgrade attach) turns the connection into a raw byte relay
//!    ([`sockbroker_relay::relay`]), after handing over what is buffered.
//!
//! The upstream is connected when the first request is allowed (one upstream
//! connection per client connection, through [`crate::upstream::connect`]);
//! if it cannot be reached the client gets a `502` with
//! `sockbroker: upstream PATH unavailable: …`. Every request is counted once
//! and logged in one audit line (tenant, peer, method, path, verdict, status,
//! reason).

pub use sockbroker_policy::http1;

mod connection;
mod exchange;
pub mod lookup;
mod request;
pub mod rewrite;
mod scope;
mod synthetic;

use std::io;
use std::time::Instant;

use sockbroker_relay::ReadRegistered;
use sockbroker_relay::{relay, RelayOptions};
use tokio_util::sync::CancellationToken;

pub use crate::tenant::Peer;
use crate::tenant::TenantShared;
pub use connection::Body;
use connection::{Connection, Incoming, Stats};
use request::Session;
pub use synthetic::{Audit, Synthetic};

/// Largest body read for inspection (container create, exec create, …);
/// larger bodies are refused with 413.
pub const INSPECT_LIMIT: usize = 1024 * 1024;
/// Largest body of a denied request that is read and dropped to keep the
/// connection; with a larger one the connection is closed after the 403.
const DISCARD_LIMIT: u64 = 1024 * 1024;

/// How a policy-mode connection ended (the closing log line's `end`).
#[derive(Debug)]
enum End {
    /// The client closed between requests (the usual end).
    ClientClosed,
    /// The upstream closed (after a `Connection: close` response, or mid-way).
    UpstreamClosed,
    /// The client asked for `Connection: close` and got its response.
    Done,
    /// The broker answered and closed (the answer's metric `reason`).
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

/// What follows a request.
enum Step {
    /// Ready for the next request.
    KeepAlive,
    /// Switch to the raw byte relay.
    Raw,
    /// The connection is over.
    End(End),
}

/// Serve one client connection of a tenant whose `access` is a policy.
/// `started` is when the connection was accepted; the connection's closing
/// log line and duration are recorded here.
pub async fn serve(
    tenant: &TenantShared,
    client: ReadRegistered,
    peer: Peer,
    kill: CancellationToken,
    started: Instant,
) {
    let spec = tenant.spec();
    let stats = Stats::new(tenant.metrics().clone());
    let audit = Audit {
        tenant: tenant.name(),
        peer,
    };
    let mut session = Session::new(
        tenant,
        spec.clone(),
        audit,
        &stats,
        Connection::new(client, &stats),
    );
    let idle = async {
        match spec.idle_timeout {
            Some(d) => stats.idle(d).await,
            None => std::future::pending().await,
        }
    };
    let step = tokio::select! {
        biased;
        _ = kill.cancelled() => Step::End(End::Cancelled),
        _ = idle => Step::End(End::Idle),
        s = session.run() => s,
    };
    let requests = session.requests;
    let end = match step {
        Step::KeepAlive => End::Done.detail(),
        Step::End(e) => e.detail(),
        Step::Raw => {
            let Session {
                client,
                mut upstream,
                ..
            } = session;
            match upstream.hand_over(client, &stats).await {
                Err(e) => e.detail(),
                Ok((client, upstream)) => {
                    let opts = RelayOptions {
                        idle_timeout: spec.idle_timeout,
                        cancel: kill,
                        ..RelayOptions::default()
                    };
                    let outcome = relay(client, upstream, &opts, &**tenant.metrics()).await;
                    request::count_raw(&stats, outcome.bytes_upstream, outcome.bytes_downstream);
                    format!("raw relay: {}", outcome.end)
                }
            }
        }
    };
    let lived = started.elapsed();
    tenant.metrics().connection_ended(lived);
    let (up, down) = stats.bytes();
    tracing::info!(
        tenant = %tenant.name(), pid = peer.pid, uid = peer.uid, gid = peer.gid,
        access = %spec.access,
        requests,
        bytes_upstream = up,
        bytes_downstream = down,
        duration_s = lived.as_secs_f64(),
        end = %end,
        "connection closed: {end}"
    );
}

/// Over `max_connections`: read the client's first request head (waiting at
/// most `request_timeout` from the accept) and answer `429` with the Docker
/// JSON message, then close. The connection does not count as open
/// meanwhile; it is counted in `requests_total{reason="limit"}` (the listener
/// counts the rejected connection).
pub async fn refuse_over_limit(
    tenant: &TenantShared,
    client: ReadRegistered,
    peer: Peer,
    kill: CancellationToken,
) {
    let spec = tenant.spec();
    let stats = Stats::new(tenant.metrics().clone());
    let audit = Audit {
        tenant: tenant.name(),
        peer,
    };
    let mut conn = Connection::new(client, &stats);
    conn.set_request_timeout(Some(spec.request_timeout));
    let head = tokio::select! {
        _ = kill.cancelled() => return,
        h = tokio::time::timeout(spec.request_timeout, conn.read_head()) => h,
    };
    let (method, path, answer) = match &head {
        Ok(Ok(Incoming::Request(h))) => (
            h.method.to_string(),
            crate::policy::normalize(h.target(conn.buffered()))
                .map_or_else(|_| "-".to_string(), |t| t.path.into_owned()),
            true,
        ),
        // Nothing came, or not a request we can read: answer all the same.
        Err(_) | Ok(Err(_)) => ("-".to_string(), "-".to_string(), true),
        // The client left, or speaks HTTP/2 (which would not read it).
        Ok(Ok(Incoming::Closed | Incoming::Http2)) => ("-".to_string(), "-".to_string(), false),
    };
    let syn = Synthetic::limit(tenant.name(), spec.max_connections);
    tenant.metrics().request(syn.outcome());
    let status = if answer { syn.status() } else { 0 };
    audit.log(
        &method,
        &path,
        syn.outcome().verdict(),
        status,
        syn.detail(),
    );
    if answer {
        let _ = conn
            .write(&syn.render(method.eq_ignore_ascii_case("HEAD")))
            .await;
    }
    conn.shutdown().await;
}
