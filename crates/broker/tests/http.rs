//! The metrics and health HTTP server in-process: `http::serve` on a Unix
//! socket in a tempdir or on a loopback port, with a tenant registry the test
//! fills and changes by hand, asked as a scraper would ask it.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use sockbroker::config::{AccessPolicy, MetricsListen};
use sockbroker::handover::Inherited;
use sockbroker::http::{self, HttpServer};
use sockbroker::metrics::Metrics;
use sockbroker::supervisor::Registry;
use sockbroker::tenant::{TenantShared, TenantState};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

/// A server on `dir/metrics.sock` with an empty registry.
async fn serve_unix(dir: &Path) -> (HttpServer, Metrics, Registry) {
    let m = Metrics::new();
    let registry = Registry::default();
    let listen = MetricsListen::Unix(dir.join("metrics.sock"));
    let server = http::serve(
        listen,
        m.clone(),
        registry.clone(),
        &mut Inherited::default(),
    )
    .await
    .unwrap();
    (server, m, registry)
}

/// Add tenant `name` (down, "not set up yet", as the supervisor creates it).
fn add(registry: &Registry, m: &Metrics, dir: &Path, name: &str) -> Arc<TenantShared> {
    let s = spec(name, dir, &dir.join("engine.sock"), AccessPolicy::Full);
    let t = TenantShared::new(Arc::new(s), m.tenant(name));
    registry.insert(name.into(), t.clone());
    t
}

/// `GET path` on a fresh connection to the server at `dir/metrics.sock`.
async fn get_unix(dir: &Path, path: &str) -> Resp {
    let mut c = Client::connect(&dir.join("metrics.sock")).await;
    c.call(&format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"))
        .await
}

/// One request over TCP with `Connection: close`; the whole answer as text.
async fn call_tcp(addr: &str, req: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut out))
        .await
        .expect("no answer within the deadline")
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn metrics_are_rendered_with_the_exposition_content_type() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, m, registry) = serve_unix(dir.path()).await;
    let t = add(&registry, &m, dir.path(), "ci");
    t.set_state(TenantState::Up);
    let r = get_unix(dir.path(), "/metrics").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = r.text();
    assert!(
        text.contains("sockbroker_tenant_up{tenant=\"ci\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE sockbroker_connections_total counter"),
        "{text}"
    );
    // HEAD: the same head, no body.
    let mut c = Client::connect(&dir.path().join("metrics.sock")).await;
    let r = c.call("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn healthz_answers_ok_whatever_the_tenants_state() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, m, registry) = serve_unix(dir.path()).await;
    add(&registry, &m, dir.path(), "down");
    let r = get_unix(dir.path(), "/healthz").await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
}

#[tokio::test]
async fn readyz_is_503_with_reasons_until_every_tenant_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, m, registry) = serve_unix(dir.path()).await;
    // No tenants: nothing to wait for.
    let r = get_unix(dir.path(), "/readyz").await;
    assert_eq!((r.status, r.text().as_str()), (200, "ready\n"));

    let a = add(&registry, &m, dir.path(), "a");
    let b = add(&registry, &m, dir.path(), "b");
    let r = get_unix(dir.path(), "/readyz").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(
        r.text(),
        "tenant a down: not set up yet\ntenant b down: not set up yet\n"
    );

    a.set_state(TenantState::Up);
    b.set_state(TenantState::Degraded("chown failed: EPERM".into()));
    let r = get_unix(dir.path(), "/readyz").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.text(), "tenant b degraded: chown failed: EPERM\n");

    b.set_state(TenantState::Up);
    let r = get_unix(dir.path(), "/readyz").await;
    assert_eq!((r.status, r.text().as_str()), (200, "ready\n"));
}

#[tokio::test]
async fn tenants_lists_every_tenant_as_json_sorted_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, m, registry) = serve_unix(dir.path()).await;
    let z = add(&registry, &m, dir.path(), "zeta");
    add(&registry, &m, dir.path(), "alpha");
    z.set_state(TenantState::Up);
    z.metrics().set_upstream(true);
    let r = get_unix(dir.path(), "/tenants").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let list = v.as_array().unwrap();
    let names: Vec<_> = list.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alpha", "zeta"]);

    let (uid, gid) = (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    let alpha = &list[0];
    assert_eq!(alpha["state"], "down");
    assert_eq!(alpha["reason"], "not set up yet");
    assert_eq!(alpha["upstream_state"], "unknown");
    let zeta = &list[1];
    let listen = dir.path().join("zeta.sock");
    let upstream = dir.path().join("engine.sock");
    assert_eq!(zeta["listen"], listen.to_str().unwrap());
    assert_eq!(zeta["upstream"], upstream.to_str().unwrap());
    assert_eq!(zeta["uid"], uid);
    assert_eq!(zeta["gid"], gid);
    assert_eq!(zeta["owner"], format!("{uid}:{gid}"));
    assert_eq!(zeta["mode"], "0600");
    assert_eq!(zeta["state"], "up");
    assert!(zeta.get("reason").is_none(), "no reason when up: {zeta}");
    assert_eq!(zeta["active_connections"], 0);
    assert_eq!(zeta["upstream_state"], "up");
}

#[tokio::test]
async fn unknown_paths_and_methods_get_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, _m, _registry) = serve_unix(dir.path()).await;
    let r = get_unix(dir.path(), "/metricz").await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.text(),
        "not found: try /metrics, /healthz, /readyz or /tenants\n"
    );
    let mut c = Client::connect(&dir.path().join("metrics.sock")).await;
    let r = c
        .call("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    // The connection stays usable after an error answer.
    let r = c.call("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(r.status, 200);
}

/// Clients that connect and send nothing, more of them than the server serves
/// at once, and one that stops in the middle of its headers: a scrape is still
/// answered, while every one of them is still connected (so not by waiting for
/// the server to time them out).
#[tokio::test]
async fn idle_and_slow_clients_do_not_stall_a_scrape() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, _m, _registry) = serve_unix(dir.path()).await;
    let sock = dir.path().join("metrics.sock");
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(UnixStream::connect(&sock).await.unwrap());
    }
    let mut slow = UnixStream::connect(&sock).await.unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHo")
        .await
        .unwrap();

    let r = get_unix(dir.path(), "/healthz").await;
    assert_eq!(r.status, 200);
    let r = get_unix(dir.path(), "/metrics").await;
    assert_eq!(r.status, 200);

    for (i, c) in idle.iter().chain([&slow]).enumerate() {
        let mut b = [0u8; 1];
        match c.try_read(&mut b) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("client {i} was answered or closed already: {other:?}"),
        }
    }
    // The slow one is still served once it finishes.
    let mut slow = Client::new(slow);
    let r = slow.call("st: x\r\n\r\n").await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn a_unix_socket_is_created_for_the_broker_and_removed_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("metrics.sock");
    let (server, _m, _registry) = serve_unix(dir.path()).await;
    assert_eq!(server.local_addr, format!("unix:{}", sock.display()));
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660);
    drop(server);
    assert!(!sock.exists(), "the socket file is left behind");
    assert!(UnixStream::connect(&sock).await.is_err());

    // Kept for the next process: the file stays, this server stops accepting.
    let (server, _m, _registry) = serve_unix(dir.path()).await;
    server.stop_keeping_socket();
    assert!(sock.exists());
}

#[tokio::test]
async fn tcp_port_0_reports_the_bound_address_and_stops_on_drop() {
    let m = Metrics::new();
    let listen = MetricsListen::Tcp("127.0.0.1:0".parse().unwrap());
    let server = http::serve(listen, m, Registry::default(), &mut Inherited::default())
        .await
        .unwrap();
    let addr = server.local_addr.clone();
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );
    let answer = call_tcp(
        &addr,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nok\n"), "{answer}");
    drop(server);
    wait_until("the port to close", || {
        std::net::TcpStream::connect(&addr).is_err()
    })
    .await;
}

#[tokio::test]
async fn a_handed_over_listener_on_the_same_address_is_taken_over() {
    let ours = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = ours.local_addr().unwrap();
    let mut handed = Inherited::default();
    handed
        .sockets
        .insert("metrics".into(), vec![other.into(), ours.into()]);
    let server = http::serve(
        MetricsListen::Tcp(addr),
        Metrics::new(),
        Registry::default(),
        &mut handed,
    )
    .await
    .expect("the handed-over listener is used, not bound again");
    assert_eq!(server.local_addr, addr.to_string());
    let answer = call_tcp(
        &server.local_addr,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    // The one on another address stays for whoever else is called `metrics`.
    assert_eq!(handed.sockets.get("metrics").map(Vec::len), Some(1));
}

#[tokio::test]
async fn an_address_in_use_is_an_error_that_says_what_to_do() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = http::serve(
        MetricsListen::Tcp(addr),
        Metrics::new(),
        Registry::default(),
        &mut Inherited::default(),
    )
    .await
    .err()
    .expect("the port is taken");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("metrics.listen {addr}: ")),
        "{msg}"
    );
    assert!(msg.contains("pick a free address"), "{msg}");
}
