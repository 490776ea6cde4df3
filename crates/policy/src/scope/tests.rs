use super::*;

fn obj(kind: Kind, reference: &str, suffix: &str) -> Route {
    Route::Object(ObjectRoute {
        kind,
        reference: reference.into(),
        prefix: match kind {
            Kind::Container => "/containers/",
            Kind::Volume => "/volumes/",
            Kind::Network => "/networks/",
            Kind::Exec => "/exec/",
            Kind::Image => "/images/",
        },
        suffix: suffix.into(),
        action: Action::Plain,
    })
}

fn with_action(r: Route, action: Action) -> Route {
    match r {
        Route::Object(mut o) => {
            o.action = action;
            Route::Object(o)
        }
        r => r,
    }
}

#[test]
fn routes() {
    use Kind::*;
    let c = |r: &str, s: &str| obj(Container, r, s);
    for (method, path, want) in [
        ("GET", "/_ping", Route::Pass),
        ("HEAD", "/_ping", Route::Pass),
        ("GET", "/version", Route::Pass),
        ("GET", "/info", Route::Info),
        ("OPTIONS", "/containers/x/json", Route::Pass),
        ("GET", "/events", Route::Filter),
        ("GET", "/system/df", Route::SystemDf),
        ("GET", "/containers/json", Route::Filter),
        ("POST", "/containers/prune", Route::Filter),
        (
            "POST",
            "/containers/create",
            Route::Create(CreateKind::Container),
        ),
        ("GET", "/containers/web/json", c("web", "/json")),
        ("GET", "/containers/json/json", c("json", "/json")),
        ("GET", "/containers/web/al/json", c("web/al", "/json")),
        ("GET", "/containers/0123abc/logs", c("0123abc", "/logs")),
        ("GET", "/containers/x/attach/ws", c("x", "/attach/ws")),
        ("GET", "/containers/a/b/attach/ws", c("a/b", "/attach/ws")),
        ("HEAD", "/containers/x/archive", c("x", "/archive")),
        ("PUT", "/containers/x/archive", c("x", "/archive")),
        ("POST", "/containers/create/start", c("create", "/start")),
        ("POST", "/containers/x/exec", c("x", "/exec")),
        ("POST", "/containers/x/rename", c("x", "/rename")),
        ("POST", "/containers/x/attach", c("x", "/attach")),
        ("POST", "/containers/x/wait", c("x", "/wait")),
        ("DELETE", "/containers/x", c("x", "")),
        ("DELETE", "/containers/x/json", c("x/json", "")),
        ("GET", "/exec/e1/json", obj(Exec, "e1", "/json")),
        ("POST", "/exec/e1/start", obj(Exec, "e1", "/start")),
        ("POST", "/exec/e1/resize", obj(Exec, "e1", "/resize")),
        ("POST", "/commit", Route::Create(CreateKind::Commit)),
        ("GET", "/images/json", Route::Pass),
        ("GET", "/images/busybox/json", Route::Pass),
        ("GET", "/images/library/busybox/history", Route::Pass),
        ("POST", "/images/create", Route::Pass),
        ("POST", "/images/x/tag", Route::Pass),
        ("POST", "/images/prune", Route::Filter),
        (
            "DELETE",
            "/images/library/busybox:1",
            with_action(obj(Image, "library/busybox:1", ""), Action::RemoveImage),
        ),
        ("GET", "/volumes", Route::Filter),
        ("POST", "/volumes/create", Route::Create(CreateKind::Volume)),
        ("POST", "/volumes/prune", Route::Filter),
        ("GET", "/volumes/data", obj(Volume, "data", "")),
        ("DELETE", "/volumes/data", obj(Volume, "data", "")),
        ("GET", "/networks", Route::Filter),
        (
            "POST",
            "/networks/create",
            Route::Create(CreateKind::Network),
        ),
        ("POST", "/networks/prune", Route::Filter),
        (
            "GET",
            "/networks/n1",
            with_action(obj(Network, "n1", ""), Action::InspectNetwork),
        ),
        ("DELETE", "/networks/n1", obj(Network, "n1", "")),
        (
            "POST",
            "/networks/n1/connect",
            with_action(obj(Network, "n1", "/connect"), Action::NetworkAttach),
        ),
        (
            "POST",
            "/networks/n1/disconnect",
            with_action(obj(Network, "n1", "/disconnect"), Action::NetworkAttach),
        ),
        ("POST", "/build", Route::Build),
        ("POST", "/build/cancel", Route::Pass),
        ("POST", "/session", Route::Pass),
        ("GET", "/distribution/busybox/json", Route::Pass),
    ] {
        assert_eq!(classify(method, path), want, "{method} {path}");
    }
}

#[test]
fn refused_routes() {
    for (method, path) in [
        ("GET", "/"),
        ("POST", "/build/prune"),
        ("POST", "/grpc"),
        ("GET", "/swarm"),
        ("POST", "/swarm/init"),
        ("GET", "/services"),
        ("GET", "/nodes"),
        ("GET", "/tasks"),
        ("GET", "/secrets"),
        ("GET", "/configs"),
        ("GET", "/plugins"),
        ("POST", "/plugins/pull"),
        ("GET", "/Containers/json"),
        ("get", "/containers/json"),
        ("GET", "/containers/x/JSON"),
        ("GET", "/containers/x/unknown"),
        ("GET", "/containers/json/x"),
        ("HEAD", "/containers/x/json"),
        ("POST", "/containers/x/json"),
        ("GET", "/containers/x/checkpoints"),
        ("DELETE", "/containers/x/checkpoints/c"),
        ("GET", "/containers/attach/ws"),
        ("DELETE", "/containers"),
        ("GET", "/exec/e1"),
        ("POST", "/exec/e1/json"),
        ("GET", "/images/x/unknown"),
        ("POST", "/networks/connect"),
        ("GET", "/nonsense"),
    ] {
        assert!(
            matches!(classify(method, path), Route::Refuse(_)),
            "{method} {path}: {:?}",
            classify(method, path)
        );
    }
}

#[test]
fn forwarded_paths_use_the_id() {
    let Route::Object(o) = classify("GET", "/containers/web/al/json") else {
        panic!()
    };
    assert_eq!(o.path_for("0123abcd"), "/containers/0123abcd/json");
    // A name that would be re-split by the engine is encoded whole.
    assert_eq!(o.path_for("a/b c"), "/containers/a%2Fb%20c/json");
    assert_eq!(encode_segment("web/al"), "web%2Fal");
    assert_eq!(encode_segment("é"), "%C3%A9");
}

#[test]
fn engine_messages() {
    assert_eq!(Kind::Container.not_found("web"), "No such container: web");
    assert_eq!(Kind::Volume.not_found("v"), "get v: no such volume");
    assert_eq!(Kind::Network.not_found("n"), "network n not found");
    assert_eq!(Kind::Exec.not_found("e"), "No such exec instance: e");
    assert_eq!(Kind::Image.not_found("i"), "No such image: i");
}

#[test]
fn form_bodies() {
    let form: &[u8] = b"application/x-www-form-urlencoded";
    assert!(form_body("POST", &[form]));
    assert!(form_body(
        "PUT",
        &[
            b"text/plain",
            b"Application/X-WWW-Form-Urlencoded; charset=x"
        ]
    ));
    assert!(!form_body("GET", &[form]));
    assert!(!form_body("POST", &[b"application/json"]));
    assert!(!form_body("POST", &[]));
}

#[test]
fn scope_names() {
    assert_eq!(Scope::from_name("own"), Some(Scope::Own));
    assert_eq!(Scope::from_name("engine"), Some(Scope::Engine));
    assert_eq!(Scope::from_name("Own"), None);
    assert_eq!(Scope::default(), Scope::Engine);
    assert_eq!(Scope::Own.name(), "own");
}
