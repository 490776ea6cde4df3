//! `scope: own` in-process: `policy_relay::serve` on one end of a
//! `UnixStream::pair()`, and a fake engine that knows two tenants'
//! containers and volumes and answers inspects the way Docker does (name,
//! full ID, unique ID prefix; "Multiple IDs" for an ambiguous prefix). The
//! real engine, the docker CLI and docker-compose: tests/e2e/scope.rs.

mod support;

use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sockbroker::config::AccessPolicy;
use sockbroker::policy::{Policy, Preset};
use sockbroker::policy_relay::{self, Peer};
use sockbroker::tenant::TenantShared;
use support::{get, metric, post, requests, spec, tenant, Client};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

const ID_A: &str = "aa11000000000000000000000000000000000000000000000000000000000001";
const ID_B: &str = "aa22000000000000000000000000000000000000000000000000000000000002";
const LABEL: &str = "io.sockbroker.tenant";

/// (full ID, name, owner label) of the engine's containers.
const CONTAINERS: [(&str, &str, &str); 2] = [(ID_A, "web-a", "a"), (ID_B, "web-b", "b")];

const NET_A: &str = "ee11000000000000000000000000000000000000000000000000000000000001";
const NET_B: &str = "ee22000000000000000000000000000000000000000000000000000000000002";
/// (full ID, name, owner label) of the engine's user-defined networks.
const NETWORKS: [(&str, &str, &str); 2] = [(NET_A, "net-a", "a"), (NET_B, "net-b", "b")];

/// A request the fake engine got: (method, target, body).
type Request3 = (String, String, Vec<u8>);

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Request3>>>);

impl Seen {
    /// What the client's requests became (they carry the `/v1.41` prefix;
    /// the broker's own lookups do not).
    fn forwarded(&self) -> Vec<Request3> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, t, _)| t.starts_with("/v1.41/"))
            .cloned()
            .collect()
    }
}

fn json(status: u16, v: serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())))
        .unwrap()
}

async fn answer(req: Request<hyper::body::Incoming>, seen: Seen) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let target = req.uri().to_string();
    let body = req.into_body().collect().await.unwrap().to_bytes().to_vec();
    seen.0
        .lock()
        .unwrap()
        .push((method.clone(), target.clone(), body.clone()));
    let path = target.split('?').next().unwrap().to_string();
    let path = path.strip_prefix("/v1.41").unwrap_or(&path);
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["containers", "hang", "json"]) => std::future::pending().await,
        ("GET", ["containers", r, "json"]) if *r != "json" => {
            let r = percent(r);
            let hits: Vec<_> = CONTAINERS
                .iter()
                .filter(|(id, name, _)| *id == r || *name == r)
                .chain(CONTAINERS.iter().filter(|(id, _, _)| id.starts_with(&r)))
                .collect();
            match hits.first() {
                None => json(
                    404,
                    serde_json::json!({"message": format!("No such container: {r}")}),
                ),
                Some(_)
                    if hits.len() > 1
                        && !CONTAINERS.iter().any(|(id, n, _)| *id == r || *n == r) =>
                {
                    json(
                        500,
                        serde_json::json!({"message": format!("Multiple IDs found with provided prefix: {r}")}),
                    )
                }
                Some((id, name, owner)) => json(
                    200,
                    serde_json::json!({"Id": id, "Name": format!("/{name}"), "Config": {"Labels": {LABEL: owner}}}),
                ),
            }
        }
        ("GET", ["volumes", r]) => match percent(r).as_str() {
            "vol-b" => json(
                200,
                serde_json::json!({"Name": "vol-b", "Labels": {LABEL: "b"}}),
            ),
            r => json(
                404,
                serde_json::json!({"message": format!("get {r}: no such volume")}),
            ),
        },
        ("GET", ["networks", r]) => match NETWORKS
            .iter()
            .find(|(id, name, _)| *id == percent(r) || *name == percent(r))
        {
            Some((id, name, owner)) => json(
                200,
                serde_json::json!({"Id": id, "Name": name, "Labels": {LABEL: owner}}),
            ),
            None => json(
                404,
                serde_json::json!({"message": format!("network {} not found", percent(r))}),
            ),
        },
        // A create of a name another tenant took in between: the engine
        // answers with the existing volume (its create is idempotent).
        ("POST", ["volumes", "create"]) if body.windows(6).any(|w| w == b"racy-b") => json(
            201,
            serde_json::json!({"Name": "racy-b", "Labels": {LABEL: "b"}, "Mountpoint": "/secret/racy-b"}),
        ),
        ("POST", ["volumes", "create"]) => json(
            201,
            serde_json::json!({"Name": "x", "Labels": {LABEL: "a"}}),
        ),
        _ => json(200, serde_json::json!({})),
    }
}

fn percent(s: &str) -> String {
    String::from_utf8(sockbroker::policy::path::percent_decode(s.as_bytes()).unwrap()).unwrap()
}

fn fake_engine(path: &Path) -> Seen {
    fake_engine_with(path, true)
}

/// The fake engine; without `keep_alive` it closes every connection after
/// one answer (as an engine restart or an idle timeout would).
fn fake_engine_with(path: &Path, keep_alive: bool) -> Seen {
    let l = UnixListener::bind(path).unwrap();
    let seen = Seen::default();
    let s2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let seen = s2.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let seen = seen.clone();
                    async move { Ok::<_, Infallible>(answer(req, seen).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(keep_alive)
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    seen
}

struct Scene {
    _dir: tempfile::TempDir,
    seen: Seen,
    tenant: Arc<TenantShared>,
    metrics: sockbroker::metrics::Metrics,
}

fn scene() -> Scene {
    let dir = tempfile::tempdir().unwrap();
    let engine = dir.path().join("engine.sock");
    let seen = fake_engine(&engine);
    let mut s = spec(
        "a",
        dir.path(),
        &engine,
        AccessPolicy::Scoped(Policy::preset(Preset::UsernsSafe)),
    );
    s.connect_timeout = Duration::from_millis(200);
    let (tenant, metrics) = tenant(s);
    Scene {
        _dir: dir,
        seen,
        tenant,
        metrics,
    }
}

fn connect(tenant: &Arc<TenantShared>) -> Client {
    let (client, server) = UnixStream::pair().unwrap();
    serve_on(tenant, server);
    Client::new(client)
}

/// The tenant's policy relay serving `server`, as a task.
fn serve_on(tenant: &Arc<TenantShared>, server: UnixStream) {
    let t = tenant.clone();
    tokio::spawn(async move {
        let me = Peer {
            pid: std::process::id() as i32,
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
        };
        policy_relay::serve(
            &t,
            read_registered(server),
            me,
            CancellationToken::new(),
            Instant::now(),
        )
        .await;
    });
}

#[tokio::test]
async fn others_objects_are_answered_like_missing_ones() {
    let s = scene();
    let mut c = connect(&s.tenant);
    let prefix_b = &ID_B[..6];
    for r in ["web-b", ID_B, prefix_b, "aa", "nothere"] {
        let resp = c.call(&get(&format!("/v1.41/containers/{r}/json"))).await;
        assert_eq!(resp.status, 404, "{r}");
        assert_eq!(
            resp.text(),
            format!("{{\"message\":\"No such container: {r}\"}}"),
            "{r}"
        );
        assert_eq!(resp.header("connection"), None, "{r}: the connection stays");
    }
    for r in ["web-b", ID_B] {
        for req in [
            post(&format!("/v1.41/containers/{r}/stop"), ""),
            post(&format!("/v1.41/containers/{r}/exec"), r#"{"Cmd":["sh"]}"#),
            format!("DELETE /v1.41/containers/{r}?force=1 HTTP/1.1\r\nHost: d\r\n\r\n"),
        ] {
            let resp = c.call(&req).await;
            assert_eq!(
                (resp.status, resp.message()),
                (404, format!("No such container: {r}"))
            );
        }
    }
    let resp = c.call(&get("/v1.41/volumes/vol-b")).await;
    assert_eq!(
        (resp.status, resp.message()),
        (404, "get vol-b: no such volume".to_string())
    );
    assert!(s.seen.forwarded().is_empty(), "{:?}", s.seen.forwarded());
    assert_eq!(
        metric(&s.metrics, &requests("a", "denied", "not_owned")),
        Some(12.0)
    );
}

#[tokio::test]
async fn own_objects_are_forwarded_by_full_id() {
    let s = scene();
    let mut c = connect(&s.tenant);
    for r in ["web-a", ID_A, &ID_A[..5]] {
        let resp = c
            .call(&get(&format!("/v1.41/containers/{r}/logs?stdout=1")))
            .await;
        assert_eq!(resp.status, 200, "{r}");
    }
    // An old-API start with a HostConfig body could name others' objects.
    let resp = c
        .call(&post(
            "/v1.23/containers/web-a/start",
            r#"{"VolumesFrom":["web-b"]}"#,
        ))
        .await;
    assert_eq!(resp.status, 403, "{}", resp.text());
    let targets: Vec<String> = s.seen.forwarded().into_iter().map(|(_, t, _)| t).collect();
    assert_eq!(
        targets,
        vec![format!("/v1.41/containers/{ID_A}/logs?stdout=1"); 3]
    );
    let resp = c.call(&post("/v1.41/containers/web-a/start", "")).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        s.seen.forwarded().pop().unwrap().1,
        format!("/v1.41/containers/{ID_A}/start")
    );
    // The ID's owner is cached: a second request by full ID asks the engine nothing.
    let before = s.seen.0.lock().unwrap().len();
    c.call(&get(&format!("/v1.41/containers/{ID_A}/json")))
        .await;
    assert_eq!(s.seen.0.lock().unwrap().len(), before + 1);
}

#[tokio::test]
async fn lists_prunes_and_events_carry_the_tenants_label() {
    let s = scene();
    let mut c = connect(&s.tenant);
    for (req, path) in [
        (
            get("/v1.41/containers/json?all=1&filters=%7B%22label%22%3A%5B%22x%3D1%22%5D%7D"),
            "/containers/json",
        ),
        (
            get("/v1.41/events?filters=%7B%7D&filters=%7B%7D"),
            "/events",
        ),
        (post("/v1.41/volumes/prune", ""), "/volumes/prune"),
    ] {
        let resp = c.call(&req).await;
        assert_eq!(resp.status, 200, "{path}");
        let (_, target, _) = s.seen.forwarded().pop().unwrap();
        let (p, q) = target.split_once('?').unwrap();
        assert_eq!(p, format!("/v1.41{path}"));
        let filters = sockbroker::policy::scope::query::first(Some(q), "filters").unwrap();
        let v: serde_json::Value = serde_json::from_str(&filters).unwrap();
        assert_eq!(v["label"]["io.sockbroker.tenant=a"], true, "{target}");
        assert_eq!(q.matches("filters=").count(), 1, "{target}");
    }
    let n = s.seen.forwarded().len();
    let resp = c.call(&get("/v1.41/containers/json?filters=%7Bnope")).await;
    assert_eq!(resp.status, 400);
    assert!(
        resp.message().starts_with("invalid filter"),
        "{}",
        resp.message()
    );
    assert_eq!(
        c.call(&get("/_ping")).await.status,
        200,
        "the connection is still usable"
    );
    // A form body would override the query: the strict framing refuses it
    // (400) before scope looks at the filters.
    let form = "POST /v1.41/containers/prune HTTP/1.1\r\nHost: d\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10\r\n\r\nfilters={}";
    let resp = c.call(form).await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert!(
        resp.message().contains("form-encoded"),
        "{}",
        resp.message()
    );
    assert_eq!(s.seen.forwarded().len(), n, "nothing forwarded");
}

#[tokio::test]
async fn creates_are_stamped_and_their_references_checked() {
    let s = scene();
    let mut c = connect(&s.tenant);
    let resp = c
        .call(&post(
            "/v1.41/containers/create?name=mine",
            r#"{"Image":"x","Labels":{"io.sockbroker.tenant":"b","k":"v"},"HostConfig":{"VolumesFrom":["web-a"],"Binds":["new-vol:/d"]}}"#,
        ))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let (_, target, body) = s.seen.forwarded().pop().unwrap();
    assert_eq!(target, "/v1.41/containers/create?name=mine");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["Labels"][LABEL], "a");
    assert_eq!(v["Labels"]["k"], "v");
    // new-vol did not exist: the broker created it with the tenant's label.
    let created = s
        .seen
        .0
        .lock()
        .unwrap()
        .iter()
        .find(|(m, t, _)| m == "POST" && t == "/volumes/create")
        .cloned()
        .expect("a volume create");
    let v: serde_json::Value = serde_json::from_slice(&created.2).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"Name": "new-vol", "Labels": {LABEL: "a"}})
    );

    let n = s.seen.forwarded().len();
    for (body, status, msg) in [
        (
            r#"{"HostConfig":{"VolumesFrom":["web-b:ro"]}}"#,
            404,
            "No such container: web-b",
        ),
        (
            r#"{"HostConfig":{"NetworkMode":"container:web-b"}}"#,
            404,
            "No such container: web-b",
        ),
        (
            r#"{"HostConfig":{"Binds":["vol-b:/d"]}}"#,
            404,
            "get vol-b: no such volume",
        ),
        (
            r#"{"Labels":{},"labels":{"io.sockbroker.tenant":"b"}}"#,
            400,
            "more than one Labels key",
        ),
        (r#"{"Labels":"b"}"#, 400, "Labels must be an object"),
        (r#"{"Image":"x","Image":"y"}"#, 400, "repeats the key"),
    ] {
        let resp = c.call(&post("/v1.41/containers/create", body)).await;
        assert_eq!(resp.status, status, "{body}: {}", resp.text());
        assert!(resp.message().contains(msg), "{body}: {}", resp.message());
    }
    // A name that only looks like another tenant's ID prefix is free.
    let resp = c
        .call(&post("/v1.41/containers/create?name=aa22", "{}"))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let n = n + 1;
    let resp = c
        .call(&post("/v1.41/containers/create?name=web-b", "{}"))
        .await;
    assert_eq!(resp.status, 409);
    assert!(!resp.text().contains(ID_B), "the holder's ID does not leak");
    assert_eq!(s.seen.forwarded().len(), n, "nothing forwarded");
}

#[tokio::test]
async fn a_lookup_that_hangs_or_fails_never_lets_a_request_through() {
    let s = scene();
    let mut c = connect(&s.tenant);
    let started = Instant::now();
    let resp = c.call(&post("/v1.41/containers/hang/stop", "")).await;
    assert_eq!(resp.status, 502, "{}", resp.text());
    assert!(
        resp.message().contains("did not answer a lookup"),
        "{}",
        resp.message()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(s.seen.forwarded().is_empty());

    // The engine gone: a 502 too.
    let dir = tempfile::tempdir().unwrap();
    let mut sp = spec(
        "a",
        dir.path(),
        &dir.path().join("nothing.sock"),
        AccessPolicy::Scoped(Policy::preset(Preset::Full)),
    );
    sp.connect_timeout = Duration::from_millis(100);
    let (t, _m) = tenant(sp);
    let mut c = connect(&t);
    let resp = c.call(&get("/v1.41/containers/web-a/json")).await;
    assert_eq!(resp.status, 502, "{}", resp.text());
}

#[tokio::test]
async fn unscoped_and_refused_routes() {
    let s = scene();
    let mut c = connect(&s.tenant);
    for req in [
        get("/v1.41/swarm"),
        get("/v1.41/plugins"),
        post("/grpc", ""),
        get("/v1.41/nope"),
    ] {
        let resp = c.call(&req).await;
        assert_eq!(resp.status, 403, "{req}: {}", resp.text());
        // A route the engine does not have is refused by the preset first.
        let why = if req.contains("/nope") {
            "not a Docker API route"
        } else {
            "scope own"
        };
        assert!(resp.message().contains(why), "{}", resp.message());
    }
    // Images are shared: read as they are.
    let resp = c.call(&get("/v1.41/images/json")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(s.seen.forwarded().pop().unwrap().1, "/v1.41/images/json");
}

#[tokio::test]
async fn encoded_names_big_bodies_and_a_rescope_on_an_open_connection() {
    let s = scene();
    let mut c = connect(&s.tenant);
    // Names are decoded once, as the engine decodes them.
    for target in [
        "/v1.41/containers/web%2Db/json",
        "/v1.41//containers/./web-b/json",
    ] {
        let resp = c.call(&get(target)).await;
        assert_eq!(
            (resp.status, resp.message()),
            (404, "No such container: web-b".to_string()),
            "{target}"
        );
    }
    // A create body too large to stamp is refused, not forwarded unstamped.
    let big = format!(r#"{{"Image":"x","Env":["{}"]}}"#, "x".repeat(1100 * 1024));
    let (client, server) = UnixStream::pair().unwrap();
    serve_on(&s.tenant, server);
    let (mut r, mut w) = client.into_split();
    let req = post("/v1.41/containers/create", &big);
    // The broker answers before the body is all sent, then lingers (reading
    // and dropping the rest): the client's writes do not fail with a broken
    // pipe, and it reads the answer afterwards, not a reset.
    tokio::io::AsyncWriteExt::write_all(&mut w, req.as_bytes())
        .await
        .expect("the broker reads the rest of the body after its answer");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = tokio::io::AsyncReadExt::read(&mut r, &mut buf).await {
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    assert!(s.seen.forwarded().is_empty());

    // Re-scoped to engine while the connection is open: the next request is unscoped.
    let mut c = connect(&s.tenant);
    assert_eq!(
        c.call(&get("/v1.41/containers/web-b/json")).await.status,
        404
    );
    let mut unscoped = (*s.tenant.spec()).clone();
    unscoped.access = AccessPolicy::Policy(Policy::preset(Preset::UsernsSafe));
    s.tenant.update(Arc::new(unscoped));
    assert_eq!(
        c.call(&get("/v1.41/containers/web-b/json")).await.status,
        200
    );
    assert_eq!(
        s.seen.forwarded().pop().unwrap().1,
        "/v1.41/containers/web-b/json"
    );
    // And back: scoped again on the same connection.
    let mut scoped = (*s.tenant.spec()).clone();
    scoped.access = AccessPolicy::Scoped(Policy::preset(Preset::UsernsSafe));
    s.tenant.update(Arc::new(scoped));
    assert_eq!(
        c.call(&get("/v1.41/containers/web-b/json")).await.status,
        404
    );
}

#[tokio::test]
async fn kept_lookup_connections_the_engine_closed_are_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let engine = dir.path().join("engine.sock");
    let seen = fake_engine_with(&engine, false);
    let (t, _m) = tenant(spec(
        "a",
        dir.path(),
        &engine,
        AccessPolicy::Scoped(Policy::preset(Preset::UsernsSafe)),
    ));
    for _ in 0..20 {
        // A new client connection each time: the engine closes after one answer.
        let mut c = connect(&t);
        let resp = c.call(&get("/v1.41/containers/web-a/top")).await;
        assert_eq!(resp.status, 200, "{}", resp.text());
        let resp = connect(&t).call(&get("/v1.41/containers/web-b/top")).await;
        assert_eq!(resp.status, 404, "{}", resp.text());
    }
    assert_eq!(seen.forwarded().len(), 20);
}

/// Red-team: the engine decodes a volume create body with Go's
/// `encoding/json`, which matches `Name` ignoring case; a check that read
/// only the exact `Name` key let `{"name":"vol-b"}` through, and the engine
/// answered with the other tenant's existing volume (its labels, mount
/// point): an oracle and a leak.
#[tokio::test]
async fn a_volume_create_names_its_volume_in_any_key_casing() {
    let s = scene();
    let mut c = connect(&s.tenant);
    let n = s.seen.forwarded().len();
    for body in [
        r#"{"Name":"vol-b"}"#,
        r#"{"name":"vol-b"}"#,
        r#"{"NAME":"vol-b","Driver":"local"}"#,
    ] {
        let resp = c.call(&post("/v1.41/volumes/create", body)).await;
        assert_eq!(resp.status, 409, "{body}: {}", resp.text());
        assert!(!resp.text().contains("\"b\""), "{}", resp.text());
    }
    // Two keys Go would both decode into Name: refused, not guessed.
    let resp = c
        .call(&post(
            "/v1.41/volumes/create",
            r#"{"Name":"mine","name":"vol-b"}"#,
        ))
        .await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(s.seen.forwarded().len(), n, "nothing forwarded");
}

/// Red-team: without `CheckDuplicate` the engine (API < 1.44) creates a
/// second network with a name another tenant uses, after which that
/// tenant's references by name are "ambiguous" (its `docker run --network
/// NAME` fails). The broker makes every scoped network create check names.
#[tokio::test]
async fn a_network_create_always_checks_for_duplicate_names() {
    let s = scene();
    let mut c = connect(&s.tenant);
    for body in [
        r#"{"Name":"net"}"#,
        r#"{"Name":"net","CheckDuplicate":false}"#,
        r#"{"Name":"net","checkduplicate":false}"#,
    ] {
        let resp = c.call(&post("/v1.41/networks/create", body)).await;
        assert_eq!(resp.status, 200, "{body}: {}", resp.text());
        let (_, target, sent) = s.seen.forwarded().pop().unwrap();
        assert_eq!(target, "/v1.41/networks/create");
        let v: serde_json::Value = serde_json::from_slice(&sent).unwrap();
        let obj = v.as_object().unwrap();
        let keys: Vec<&String> = obj
            .keys()
            .filter(|k| k.eq_ignore_ascii_case("checkduplicate"))
            .collect();
        assert_eq!(keys, ["CheckDuplicate"], "{body}: {v}");
        assert_eq!(v["CheckDuplicate"], true, "{body}: {v}");
        assert_eq!(v["Labels"][LABEL], "a");
    }
}

/// Red-team: the engine picks the network of an endpoint by the endpoint's
/// `NetworkID` when one is given for a user-defined network (moby's
/// `getNetworkID`), not by the name the broker checked: a tenant named its
/// own network and gave another tenant's network ID, in a container create
/// (`NetworkingConfig.EndpointsConfig`) or a network connect
/// (`EndpointConfig`), and its container joined the other tenant's network.
#[tokio::test]
async fn an_endpoints_network_id_is_checked_like_its_name() {
    let s = scene();
    let mut c = connect(&s.tenant);
    let n = s.seen.forwarded().len();
    for id in [NET_B, "net-b", &NET_B[..6], "nothere"] {
        let body = format!(
            r#"{{"Image":"x","HostConfig":{{"NetworkMode":"net-a"}},"NetworkingConfig":{{"EndpointsConfig":{{"net-a":{{"NetworkID":"{id}"}}}}}}}}"#
        );
        let resp = c.call(&post("/v1.41/containers/create", &body)).await;
        assert_eq!(resp.status, 404, "{id}: {}", resp.text());
        assert_eq!(resp.message(), format!("network {id} not found"));
        let body = format!(r#"{{"Container":"web-a","EndpointConfig":{{"networkid":"{id}"}}}}"#);
        let resp = c.call(&post("/v1.41/networks/net-a/connect", &body)).await;
        assert_eq!(resp.status, 404, "{id}: {}", resp.text());
        assert_eq!(resp.message(), format!("network {id} not found"));
    }
    assert_eq!(s.seen.forwarded().len(), n, "nothing forwarded");
    // The tenant's own network by ID is fine.
    let body = format!(
        r#"{{"Image":"x","NetworkingConfig":{{"EndpointsConfig":{{"net-a":{{"NetworkID":"{NET_A}"}}}}}}}}"#
    );
    let resp = c.call(&post("/v1.41/containers/create", &body)).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let body = format!(r#"{{"Container":"web-a","EndpointConfig":{{"NetworkID":"{NET_A}"}}}}"#);
    let resp = c.call(&post("/v1.41/networks/net-a/connect", &body)).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(s.seen.forwarded().len(), n + 2);
}

/// Red-team: a volume name free when the broker looked could be taken by
/// another tenant before the engine's create, which then answers `201` with
/// that tenant's existing volume (labels, mount point) instead of creating
/// one. The answer is checked: someone else's volume is a `409`.
#[tokio::test]
async fn a_volume_create_that_returns_someone_elses_volume_is_a_conflict() {
    let s = scene();
    let mut c = connect(&s.tenant);
    let resp = c
        .call(&post("/v1.41/volumes/create", r#"{"Name":"racy-b"}"#))
        .await;
    assert_eq!(resp.status, 409, "{}", resp.text());
    assert!(!resp.text().contains("/secret"), "{}", resp.text());
    let resp = c
        .call(&post("/v1.41/volumes/create", r#"{"Name":"mine"}"#))
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
}

/// Red-team: a container create named its references by the name the client
/// gave; the engine resolves a name (then an ID prefix) when it reads the
/// body, so a tenant that renamed its own container away in between made the
/// name resolve, as a prefix, to another tenant's container (`VolumesFrom`,
/// `container:` modes, links). They are forwarded by the ID checked.
#[tokio::test]
async fn create_references_are_forwarded_by_the_id_checked() {
    let s = scene();
    let mut c = connect(&s.tenant);
    let resp = c
        .call(&post(
            "/v1.41/containers/create",
            r#"{"Image":"x","HostConfig":{"VolumesFrom":["web-a:ro"],"NetworkMode":"container:web-a","Links":["/web-a:/me/al"]}}"#,
        ))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let (_, _, body) = s.seen.forwarded().pop().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v["HostConfig"]["VolumesFrom"],
        serde_json::json!([format!("{ID_A}:ro")])
    );
    assert_eq!(v["HostConfig"]["NetworkMode"], format!("container:{ID_A}"));
    assert_eq!(
        v["HostConfig"]["Links"],
        serde_json::json!([format!("{ID_A}:al")])
    );
    let resp = c
        .call(&post(
            "/v1.41/networks/net-a/connect",
            r#"{"Container":"web-a","EndpointConfig":{"Links":["web-a:x"]}}"#,
        ))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let (_, _, body) = s.seen.forwarded().pop().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["Container"], ID_A);
    assert_eq!(
        v["EndpointConfig"]["Links"],
        serde_json::json!([format!("{ID_A}:x")])
    );
}

/// `docker network connect NET <ID or prefix>`: the engine resolves the
/// container like any reference; a check by name only answered 404 for the
/// tenant's own container named by ID.
#[tokio::test]
async fn a_network_connect_names_its_container_by_name_id_or_prefix() {
    let s = scene();
    let mut c = connect(&s.tenant);
    for r in ["web-a", ID_A, &ID_A[..6]] {
        let body = format!(r#"{{"Container":"{r}"}}"#);
        let resp = c.call(&post("/v1.41/networks/net-a/connect", &body)).await;
        assert_eq!(resp.status, 200, "{r}: {}", resp.text());
        let (_, target, sent) = s.seen.forwarded().pop().unwrap();
        assert_eq!(target, format!("/v1.41/networks/{NET_A}/connect"));
        let v: serde_json::Value = serde_json::from_slice(&sent).unwrap();
        assert_eq!(v["Container"], ID_A, "{r}");
    }
    for r in ["web-b", ID_B, &ID_B[..6]] {
        let body = format!(r#"{{"Container":"{r}"}}"#);
        let resp = c
            .call(&post("/v1.41/networks/net-a/disconnect", &body))
            .await;
        assert_eq!(resp.status, 404, "{r}: {}", resp.text());
        assert_eq!(resp.message(), format!("No such container: {r}"));
    }
}

/// Spellings a hostile tenant would try to reach another tenant's container
/// through a scoped socket: dot segments that end on it, a pipelined request
/// behind an allowed one, a target in absolute form, a lower-case method, a
/// trailing `?`. Each is answered like a missing object or refused, and the
/// engine sees only the tenant's own request, by its full ID.
#[tokio::test]
async fn hostile_spellings_of_someone_elses_container() {
    let s = scene();
    let mut c = connect(&s.tenant);
    for target in [
        "/v1.41/containers/web-a/../web-b/json",
        "/v1.41/containers/web-b/json?",
        "/containers/web-b/json",
        "/v1.41/v1.41/containers/web-b/json",
    ] {
        let resp = c.call(&get(target)).await;
        assert_eq!(
            (resp.status, resp.message()),
            (404, "No such container: web-b".to_string()),
            "{target}"
        );
    }
    // Not what the engine routes: refused, never forwarded.
    for raw in [
        "GET http://d/v1.41/containers/web-b/json HTTP/1.1\r\nHost: d\r\n\r\n",
        "get /v1.41/containers/web-b/json HTTP/1.1\r\nHost: d\r\n\r\n",
    ] {
        let mut c = connect(&s.tenant);
        let resp = c.call(raw).await;
        assert!(
            resp.status == 400 || resp.status == 403 || resp.status == 404,
            "{raw:?}: {} {}",
            resp.status,
            resp.text()
        );
    }
    assert!(s.seen.forwarded().is_empty(), "{:?}", s.seen.forwarded());
    // Pipelined: the tenant's own inspect, then the other's, in one write.
    let mut c = connect(&s.tenant);
    let both = format!(
        "{}{}",
        get("/v1.41/containers/web-a/json"),
        get("/v1.41/containers/web-b/json")
    );
    c.send(both.as_bytes()).await;
    assert_eq!(c.response(false).await.status, 200);
    let second = c.response(false).await;
    assert_eq!(
        (second.status, second.message()),
        (404, "No such container: web-b".to_string())
    );
    let forwarded = s.seen.forwarded();
    assert_eq!(forwarded.len(), 1, "{forwarded:?}");
    assert!(forwarded[0].1.contains(ID_A), "{forwarded:?}");
}

/// The server end as the listener hands it to the policy relay: registered
/// with the runtime for reading only.
fn read_registered(s: UnixStream) -> sockbroker_relay::ReadRegistered {
    sockbroker_relay::ReadRegistered::new(s.into_std().unwrap()).unwrap()
}
