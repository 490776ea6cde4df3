//! The policy relay in-process: `policy_relay::serve` on one end of a
//! `UnixStream::pair()`, a fake engine on a tempdir socket, the test's own
//! uid. (tests/e2e/policy.rs covers the same ground through the binary.)

mod support;

use std::sync::Arc;
use std::time::Instant;

use sockbroker::config::AccessPolicy;
use sockbroker::policy::{Policy, Preset};
use sockbroker::policy_relay::{self, Peer};
use sockbroker::tenant::TenantShared;
use support::*;
use tokio::net::UnixStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

fn me() -> Peer {
    Peer {
        pid: std::process::id() as i32,
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
    }
}

/// Serve one connection of `tenant`; returns the client end.
fn connect(tenant: &Arc<TenantShared>) -> (Client, JoinHandle<()>) {
    let (client, server) = UnixStream::pair().unwrap();
    let t = tenant.clone();
    let task = tokio::spawn(async move {
        policy_relay::serve(
            &t,
            read_registered(server),
            me(),
            CancellationToken::new(),
            Instant::now(),
        )
        .await;
    });
    (Client::new(client), task)
}

struct Scene {
    _dir: tempfile::TempDir,
    engine: FakeEngine,
    tenant: Arc<TenantShared>,
    metrics: sockbroker::metrics::Metrics,
}

fn scene(access: AccessPolicy) -> Scene {
    let dir = tempfile::tempdir().unwrap();
    let engine = FakeEngine::start(&dir.path().join("engine.sock"));
    let (tenant, metrics) = tenant(spec("t", dir.path(), &engine.path, access));
    Scene {
        _dir: dir,
        engine,
        tenant,
        metrics,
    }
}

#[tokio::test]
async fn read_only_forwards_reads_and_answers_writes_itself_on_one_connection() {
    let s = scene(preset(Preset::ReadOnly));
    let (mut c, _task) = connect(&s.tenant);
    let r = c.call(&get("/v1.41/containers/json?all=1")).await;
    assert_eq!((r.status, r.text().as_str()), (200, "[]"));
    let r = c.call(&post("/v1.41/containers/create", "{}")).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.message(),
        "sockbroker: tenant t may not POST /containers/create (read-only)"
    );
    assert_eq!(
        r.header("connection"),
        None,
        "a denial keeps the connection"
    );
    let r = c.call(&get("/_ping")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        s.engine.targets(),
        ["GET /v1.41/containers/json?all=1", "GET /_ping"]
    );
    assert_eq!(metric(&s.metrics, &requests("t", "allowed", "")), Some(2.0));
    assert_eq!(
        metric(&s.metrics, &requests("t", "denied", "policy")),
        Some(1.0)
    );
}

#[tokio::test]
async fn userns_safe_inspects_create_bodies() {
    let s = scene(preset(Preset::UsernsSafe));
    let (mut c, _task) = connect(&s.tenant);
    let r = c
        .call(&post(
            "/containers/create",
            r#"{"Image":"x","HostConfig":{"Privileged":true}}"#,
        ))
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    let r = c
        .call(&post("/containers/create", r#"{"Image":"x"}"#))
        .await;
    assert_eq!(r.status, 201);
    let seen = s.engine.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, br#"{"Image":"x"}"#);
    // Forwarded byte for byte.
    assert_eq!(
        seen[0].raw,
        post("/containers/create", r#"{"Image":"x"}"#).into_bytes()
    );
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let s = scene(preset(Preset::ReadOnly));
    let (mut c, _task) = connect(&s.tenant);
    let all = format!(
        "{}{}{}",
        get("/_ping"),
        post("/containers/create", "{}"),
        get("/containers/json")
    );
    c.send(all.as_bytes()).await;
    assert_eq!(c.response(false).await.status, 200);
    assert_eq!(c.response(false).await.status, 403);
    assert_eq!(c.response(false).await.text(), "[]");
}

#[tokio::test]
async fn unreachable_upstream_is_502_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (tenant, m) = tenant(spec(
        "t",
        dir.path(),
        &dir.path().join("nothing.sock"),
        preset(Preset::ReadOnly),
    ));
    let (mut c, task) = connect(&tenant);
    let r = c.call(&get("/_ping")).await;
    assert_eq!(r.status, 502);
    assert!(
        r.message().contains("nothing.sock unavailable"),
        "{}",
        r.message()
    );
    assert_eq!(r.header("connection"), Some("close"));
    c.until_closed().await;
    task.await.unwrap();
    assert_eq!(
        metric(&m, &requests("t", "allowed", "upstream_unavailable")),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "sockbroker_connections_rejected_total{reason=\"upstream_unavailable\",tenant=\"t\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_malformed_head_is_400_and_closes() {
    let s = scene(preset(Preset::ReadOnly));
    let (mut c, task) = connect(&s.tenant);
    c.send(b"GET /_ping HTTP/1.1\r\nBad Header\r\n\r\n").await;
    let r = c.response(false).await;
    assert_eq!(r.status, 400);
    assert!(r.message().contains("cannot check"), "{}", r.message());
    c.until_closed().await;
    task.await.unwrap();
    assert!(s.engine.seen().is_empty());
    assert_eq!(
        metric(&s.metrics, &requests("t", "denied", "bad_request")),
        Some(1.0)
    );
}

#[tokio::test]
async fn an_upgrade_turns_into_a_raw_relay() {
    let s = scene(AccessPolicy::Policy(Policy::preset(Preset::Full)));
    let (mut c, _task) = connect(&s.tenant);
    c.send(b"POST /containers/x/attach?stream=1 HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
        .await;
    assert_eq!(c.response(false).await.status, 101);
    c.send(b"raw bytes").await;
    assert_eq!(c.read_at_least(9).await, b"raw bytes");
}

/// A reload that tightens the policy reaches the next request of a
/// connection that is already open (docs/configuration.md "access").
#[tokio::test]
async fn a_changed_policy_applies_to_the_next_request_of_an_open_connection() {
    let s = scene(preset(Preset::Full));
    let (mut c, _task) = connect(&s.tenant);
    assert_eq!(c.call(&post("/containers/create", "{}")).await.status, 201);
    let mut tighter = (*s.tenant.spec()).clone();
    tighter.access = preset(Preset::ReadOnly);
    s.tenant.update(Arc::new(tighter));
    let r = c.call(&post("/containers/create", "{}")).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(c.call(&get("/_ping")).await.status, 200);
    // And loosened again.
    let mut looser = (*s.tenant.spec()).clone();
    looser.access = preset(Preset::Full);
    s.tenant.update(Arc::new(looser));
    assert_eq!(c.call(&post("/containers/create", "{}")).await.status, 201);
}

/// The rewrite step's own requests to the engine (to resolve names, read
/// labels) get the engine's answer, or an error for a `502` — never hang.
#[tokio::test]
async fn side_requests_reach_the_engine_or_fail_in_time() {
    use sockbroker::policy_relay::rewrite::side_request;
    use std::time::Duration;
    let s = scene(preset(Preset::ReadOnly));
    let second = Duration::from_secs(1);
    let (status, body) = side_request(
        &s.engine.path,
        second,
        DEADLINE,
        "GET",
        "/containers/json",
        None,
        1024,
    )
    .await
    .unwrap();
    assert_eq!((status, &body[..]), (200, &b"[]"[..]));
    let (status, body) = side_request(
        &s.engine.path,
        second,
        DEADLINE,
        "POST",
        "/echo",
        Some(b"{\"a\":1}".to_vec()),
        1024,
    )
    .await
    .unwrap();
    assert_eq!((status, &body[..]), (200, &b"{\"a\":1}"[..]));
    assert_eq!(s.engine.seen()[1].body, b"{\"a\":1}");
    // Over the size limit, a missing engine, an engine that never answers.
    assert!(side_request(
        &s.engine.path,
        second,
        DEADLINE,
        "POST",
        "/echo",
        Some(vec![b'x'; 100]),
        10
    )
    .await
    .is_err());
    let dir = tempfile::tempdir().unwrap();
    let err = side_request(
        &dir.path().join("none.sock"),
        second,
        DEADLINE,
        "GET",
        "/_ping",
        None,
        10,
    )
    .await
    .unwrap_err();
    assert!(err.contains("No such file"), "{err}");
    let mute = dir.path().join("mute.sock");
    let _l = tokio::net::UnixListener::bind(&mute).unwrap();
    let err = side_request(
        &mute,
        second,
        Duration::from_millis(100),
        "GET",
        "/_ping",
        None,
        10,
    )
    .await
    .unwrap_err();
    assert!(err.contains("no answer within"), "{err}");
}

fn with_request_timeout(s: &Scene, t: std::time::Duration) {
    let mut spec = (*s.tenant.spec()).clone();
    spec.request_timeout = t;
    s.tenant.update(Arc::new(spec));
}

/// A head that trickles in is answered `408` once `request_timeout` has
/// passed since its first byte, and the connection closes.
#[tokio::test]
async fn a_slow_request_head_is_408_and_closes() {
    let s = scene(preset(Preset::ReadOnly));
    with_request_timeout(&s, std::time::Duration::from_millis(200));
    let (mut c, task) = connect(&s.tenant);
    // Idle before the first byte is not limited by it.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let started = Instant::now();
    c.send(b"GET /_ping HTTP/1.1\r\nHost: dock").await;
    let r = c.response(false).await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(200));
    assert_eq!(r.status, 408);
    assert_eq!(
        r.message(),
        "sockbroker: tenant t: the request did not arrive within request_timeout (200ms)"
    );
    assert_eq!(r.header("connection"), Some("close"));
    c.until_closed().await;
    task.await.unwrap();
    assert!(s.engine.seen().is_empty());
    assert_eq!(
        metric(&s.metrics, &requests("t", "denied", "timeout")),
        Some(1.0)
    );
}

/// The same for a body the broker must read (inspected, or a refused
/// request's), while a long response stream is not cut by it.
#[tokio::test]
async fn a_slow_inspected_body_is_408_but_a_long_stream_is_not() {
    let s = scene(preset(Preset::UsernsSafe));
    with_request_timeout(&s, std::time::Duration::from_millis(200));
    let (mut c, _task) = connect(&s.tenant);
    c.send(b"POST /containers/create HTTP/1.1\r\nContent-Length: 20\r\n\r\n{\"Ima")
        .await;
    let r = c.response(false).await;
    assert_eq!(r.status, 408);
    c.until_closed().await;
    assert!(s.engine.seen().is_empty());

    let (mut c, _task) = connect(&s.tenant);
    let r = c.call(&get("/events")).await;
    assert_eq!(r.status, 200);
    let started = Instant::now();
    let mut ticks = 0;
    while started.elapsed() < std::time::Duration::from_millis(600) {
        ticks += c.read_at_least(1).await.len();
    }
    assert!(ticks > 0);
    // Still open and usable after the stream: nothing closed it.
    drop(c);
}

/// The server end as the listener hands it to the policy relay: registered
/// with the runtime for reading only.
fn read_registered(s: UnixStream) -> sockbroker_relay::ReadRegistered {
    sockbroker_relay::ReadRegistered::new(s.into_std().unwrap()).unwrap()
}
