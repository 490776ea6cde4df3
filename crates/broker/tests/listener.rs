//! The listener in-process: a real tenant socket in a tempdir (bound with
//! `socket::bind`, owned by the test's own uid), the accept loop, the peer
//! check, `max_connections` and the upstream connect, as a client sees them.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sockbroker::config::{AccessPolicy, AllowList, IdRange, TenantSpec};
use sockbroker::listener::ListenerHandle;
use sockbroker::metrics::Metrics;
use sockbroker::tenant::TenantShared;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// An upstream that echoes every connection.
fn echo_upstream(path: &Path) {
    let l = UnixListener::bind(path).unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
}

/// A listening tenant; the handle keeps it listening.
fn listen(spec: TenantSpec) -> (Arc<TenantShared>, Metrics, ListenerHandle) {
    let (tenant, m) = tenant(spec.clone());
    let (l, file) = sockbroker::socket::bind(&spec.listen, spec.uid, spec.gid, spec.mode).unwrap();
    let h = ListenerHandle::start(tenant.clone(), l, file).unwrap();
    (tenant, m, h)
}

/// Send `msg` and read it back through the broker.
async fn echo(c: &mut UnixStream, msg: &[u8]) {
    c.write_all(msg).await.unwrap();
    let mut got = vec![0u8; msg.len()];
    tokio::time::timeout(DEADLINE, c.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, msg);
}

/// The broker closes `c` without a byte.
async fn closed_at_once(c: &mut UnixStream) {
    let mut b = [0u8; 64];
    let n = tokio::time::timeout(DEADLINE, c.read(&mut b))
        .await
        .unwrap();
    assert!(matches!(n, Ok(0) | Err(_)), "got {n:?}");
}

fn rejected(reason: &str, tenant: &str) -> String {
    format!("sockbroker_connections_rejected_total{{reason=\"{reason}\",tenant=\"{tenant}\"}}")
}

#[tokio::test]
async fn bytes_are_relayed_and_max_connections_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up.sock");
    echo_upstream(&up);
    let mut s = spec("t", dir.path(), &up, AccessPolicy::Full);
    s.max_connections = 1;
    let (tenant, m, _h) = listen(s.clone());
    let mut first = UnixStream::connect(&s.listen).await.unwrap();
    echo(&mut first, b"hello").await;
    assert_eq!(tenant.active_connections(), 1);
    let mut second = UnixStream::connect(&s.listen).await.unwrap();
    closed_at_once(&mut second).await;
    assert_eq!(metric(&m, &rejected("limit", "t")), Some(1.0));
    // The refused one never counted as open.
    assert_eq!(tenant.active_connections(), 1);
    drop(first);
    wait_until("the first connection to end", || {
        tenant.active_connections() == 0
    })
    .await;
    let mut third = UnixStream::connect(&s.listen).await.unwrap();
    echo(&mut third, b"again").await;
}

#[tokio::test]
async fn a_peer_outside_the_allow_list_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up.sock");
    echo_upstream(&up);
    let me = nix::unistd::getuid().as_raw();
    let other = me.wrapping_add(1);
    let mut s = spec("t", dir.path(), &up, AccessPolicy::Full);
    s.allow = Some(AllowList {
        uids: vec![IdRange {
            start: other,
            end: other,
        }],
        gids: vec![],
    });
    let (_tenant, m, _h) = listen(s.clone());
    let mut c = UnixStream::connect(&s.listen).await.unwrap();
    closed_at_once(&mut c).await;
    assert_eq!(metric(&m, &rejected("peer_not_allowed", "t")), Some(1.0));
    assert_eq!(metric(&m, &rejected("limit", "t")), Some(0.0));
}

#[tokio::test]
async fn a_missing_upstream_closes_the_connection_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(
        "t",
        dir.path(),
        &dir.path().join("none.sock"),
        AccessPolicy::Full,
    );
    let (tenant, m, _h) = listen(s.clone());
    let mut c = UnixStream::connect(&s.listen).await.unwrap();
    closed_at_once(&mut c).await;
    assert_eq!(
        metric(&m, &rejected("upstream_unavailable", "t")),
        Some(1.0)
    );
    wait_until("the connection to end", || tenant.active_connections() == 0).await;
}

#[tokio::test]
async fn retiring_a_listener_unlinks_its_socket_and_drains() {
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up.sock");
    echo_upstream(&up);
    let s = spec("t", dir.path(), &up, AccessPolicy::Full);
    let (_tenant, _m, h) = listen(s.clone());
    let mut c = UnixStream::connect(&s.listen).await.unwrap();
    echo(&mut c, b"x").await;
    let drained = tokio::spawn(h.retire(Duration::from_millis(200)));
    wait_until("the socket to be unlinked", || !s.listen.exists()).await;
    // The open connection is closed at the drain deadline.
    closed_at_once(&mut c).await;
    tokio::time::timeout(DEADLINE, drained)
        .await
        .unwrap()
        .unwrap();
}

/// Over `max_connections` a policy tenant's client is told why: `429` with
/// the Docker JSON message (the byte relay closes at once, above).
#[tokio::test]
async fn a_policy_tenant_over_its_limit_answers_429() {
    let dir = tempfile::tempdir().unwrap();
    let engine = FakeEngine::start(&dir.path().join("engine.sock"));
    let mut s = spec(
        "t",
        dir.path(),
        &engine.path,
        preset(sockbroker::policy::Preset::ReadOnly),
    );
    s.max_connections = 1;
    let (tenant, m, _h) = listen(s.clone());
    let mut first = Client::connect(&s.listen).await;
    assert_eq!(first.call(&get("/_ping")).await.status, 200);
    let mut second = Client::connect(&s.listen).await;
    let r = second.call(&get("/_ping")).await;
    assert_eq!(r.status, 429);
    assert_eq!(
        r.message(),
        "sockbroker: tenant t has 1 connections open (max_connections); close one or try again later"
    );
    second.until_closed().await;
    assert_eq!(metric(&m, &rejected("limit", "t")), Some(1.0));
    assert_eq!(metric(&m, &requests("t", "denied", "limit")), Some(1.0));
    assert_eq!(tenant.active_connections(), 1);
    assert_eq!(engine.targets(), ["GET /_ping"]);
    // The first one is unaffected.
    assert_eq!(first.call(&get("/_ping")).await.status, 200);
}

/// A tenant moved from `full` to a policy closes its byte-relay connections,
/// so clients reconnect under the policy; other changes leave them open.
#[tokio::test]
async fn byte_relay_connections_close_when_a_policy_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up.sock");
    echo_upstream(&up);
    let s = spec("t", dir.path(), &up, AccessPolicy::Full);
    let (tenant, _m, _h) = listen(s.clone());
    let mut c = UnixStream::connect(&s.listen).await.unwrap();
    echo(&mut c, b"one").await;
    let mut other = s.clone();
    other.max_connections = 50;
    tenant.update(Arc::new(other.clone()));
    echo(&mut c, b"two").await;
    other.access = preset(sockbroker::policy::Preset::ReadOnly);
    tenant.update(Arc::new(other));
    closed_at_once(&mut c).await;
    wait_until("the connection to end", || tenant.active_connections() == 0).await;
}

/// Connections accepted under different versions of the tenant's settings
/// all close at the drain deadline, not only those of the latest version.
#[tokio::test]
async fn connections_of_every_settings_version_close_at_the_drain_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up.sock");
    echo_upstream(&up);
    let s = spec("t", dir.path(), &up, AccessPolicy::Full);
    let (tenant, _m, h) = listen(s.clone());
    let mut old = UnixStream::connect(&s.listen).await.unwrap();
    echo(&mut old, b"old").await;
    let mut other = s.clone();
    other.max_connections = 50;
    tenant.update(Arc::new(other));
    let mut new = UnixStream::connect(&s.listen).await.unwrap();
    echo(&mut new, b"new").await;
    let drained = tokio::spawn(h.retire(Duration::from_millis(200)));
    closed_at_once(&mut old).await;
    closed_at_once(&mut new).await;
    tokio::time::timeout(DEADLINE, drained)
        .await
        .unwrap()
        .unwrap();
}

/// Back to `full` after a policy, new byte-relay connections stay open
/// (until the next policy closes them too).
#[tokio::test]
async fn byte_relay_connections_live_again_after_the_policy_goes() {
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up.sock");
    echo_upstream(&up);
    let s = spec("t", dir.path(), &up, AccessPolicy::Full);
    let (tenant, _m, _h) = listen(s.clone());
    let mut policy = s.clone();
    policy.access = preset(sockbroker::policy::Preset::ReadOnly);
    let mut first = UnixStream::connect(&s.listen).await.unwrap();
    echo(&mut first, b"one").await;
    tenant.update(Arc::new(policy.clone()));
    closed_at_once(&mut first).await;
    tenant.update(Arc::new(s.clone()));
    let mut second = UnixStream::connect(&s.listen).await.unwrap();
    echo(&mut second, b"two").await;
    let mut other = s.clone();
    other.max_connections = 50;
    tenant.update(Arc::new(other));
    echo(&mut second, b"three").await;
    tenant.update(Arc::new(policy));
    closed_at_once(&mut second).await;
    wait_until("the connections to end", || {
        tenant.active_connections() == 0
    })
    .await;
}
