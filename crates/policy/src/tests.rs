//! Decisions end to end: raw request target → normalize → decide (→ body).

use super::*;

fn rules(list: &[&str]) -> Vec<Rule> {
    list.iter().map(|r| Rule::parse(r).unwrap()).collect()
}

/// Decide `METHOD raw-target` (no upgrade).
fn decide(p: &Policy, method: &str, raw: &str) -> Decision {
    p.decide(method, &normalize(raw).unwrap(), false)
}

fn allowed(p: &Policy, method: &str, raw: &str) -> bool {
    matches!(
        decide(p, method, raw),
        Decision::Allow | Decision::Inspect(_)
    )
}

/// Every spelling of `POST /containers/create` a client might try.
const CREATE_SPELLINGS: &[&str] = &[
    "/containers/create",
    "/v1.41/containers/create",
    "/v1.24/containers/create",
    "/v%31.41/containers/create",
    "/v1.41/v1.41/containers/create",
    "/containers/create/",
    "//containers//create",
    "/./containers/./create",
    "/containers/x/../create",
    "/../containers/create",
    "/containers%2Fcreate",
    "/containers%2fcreate",
    "/%63ontainers/create",
    "/Containers/Create",
    "/CONTAINERS/CREATE",
    "/containers/create?name=x",
    "/containers/create?/../../_ping",
    "/v1.41/%2e%2e/containers/create",
    "/containers/create/.",
];

#[test]
fn read_only() {
    let p = Policy::preset(Preset::ReadOnly);
    for (m, t) in [
        ("GET", "/_ping"),
        ("HEAD", "/_ping"),
        ("GET", "/v1.41/containers/json?all=1"),
        ("GET", "/containers/abc/json"),
        ("GET", "/events?since=1"),
        ("GET", "/containers/abc/logs?follow=1"),
        ("GET", "/images/library/busybox/json"),
    ] {
        assert_eq!(decide(&p, m, t), Decision::Allow, "{m} {t}");
    }
    for t in CREATE_SPELLINGS {
        assert_eq!(
            decide(&p, "POST", t),
            Decision::Deny("read-only".into()),
            "{t}"
        );
    }
    for (m, t) in [
        ("post", "/containers/create"),
        ("DELETE", "/containers/abc"),
        ("PUT", "/containers/abc/archive"),
        ("POST", "/containers/abc/exec"),
        ("POST", "/exec/abc/start"),
        ("POST", "/session"),
        ("POST", "/containers/abc/attach?stream=1"),
        ("OPTIONS", "/"),
        ("CONNECT", "/"),
    ] {
        assert!(
            matches!(decide(&p, m, t), Decision::Deny(_)),
            "{m} {t} allowed"
        );
    }
    // The websocket attach is a GET, but not a read.
    for t in [
        "/containers/abc/attach/ws",
        "/v1.41/containers/abc/attach/ws?stream=1",
        "/containers/abc/attach/ws/",
        "/containers/abc/ATTACH/WS",
        "/containers/abc/x/../attach/ws",
    ] {
        assert_eq!(
            decide(&p, "GET", t),
            Decision::Deny("read-only: attach".into()),
            "{t}"
        );
    }
    // Any upgrade.
    assert_eq!(
        p.decide("GET", &normalize("/containers/json").unwrap(), true),
        Decision::Deny("read-only: protocol upgrade".into())
    );
    assert!(!p.allows_everything());
}

#[test]
fn rule_lists_allow_and_deny() {
    let p = Policy {
        preset: None,
        bind_allow: vec![],
        allow: rules(&["GET,HEAD /**", "POST /containers/*/restart"]),
        deny: rules(&["GET /secrets/**", "* /containers/*/export"]),
    };
    assert!(allowed(&p, "GET", "/v1.41/containers/json"));
    assert!(allowed(&p, "POST", "/v1.41/containers/abc/restart?t=5"));
    assert!(!allowed(&p, "POST", "/containers/abc/stop"));
    assert_eq!(
        decide(&p, "POST", "/containers/abc/stop"),
        Decision::Deny("no allow rule matches".into())
    );
    // Deny beats allow, in every spelling.
    for t in [
        "/secrets",
        "/secrets/abc",
        "/v1.41/secrets/abc",
        "/Secrets/abc",
        "/SECRETS",
        "/v%31.41/%73ecrets/x",
        "//secrets//x/",
        "/x/../secrets",
        "/secrets%2Fabc",
    ] {
        assert_eq!(
            decide(&p, "GET", t),
            Decision::Deny("deny rule \"GET /secrets/**\"".into()),
            "{t}"
        );
    }
    assert!(matches!(
        decide(&p, "GET", "/containers/abc/EXPORT"),
        Decision::Deny(_)
    ));
    // Allow rules are exact about case: a spelling they do not show is not admitted.
    let p = Policy {
        preset: None,
        bind_allow: vec![],
        allow: rules(&["POST /containers/*/restart"]),
        deny: vec![],
    };
    assert!(!allowed(&p, "POST", "/containers/abc/RESTART"));
    assert!(allowed(&p, "post", "/containers/abc/restart"));
}

#[test]
fn presets_with_rules() {
    // read-only plus one write.
    let p = Policy {
        preset: Some(Preset::ReadOnly),
        bind_allow: vec![],
        allow: rules(&["POST /containers/*/restart"]),
        deny: vec![],
    };
    assert!(allowed(&p, "GET", "/containers/json"));
    assert!(allowed(&p, "POST", "/containers/x/restart"));
    assert!(!allowed(&p, "POST", "/containers/x/kill"));
    // full minus something: audit everything, refuse one thing.
    let p = Policy {
        preset: Some(Preset::Full),
        bind_allow: vec![],
        allow: vec![],
        deny: rules(&["POST /containers/*/exec"]),
    };
    assert!(allowed(&p, "POST", "/containers/create"));
    assert!(!allowed(&p, "POST", "/v1.41/containers/x/exec"));
    assert!(!p.allows_everything());
    assert!(Policy::preset(Preset::Full).allows_everything());
    assert_eq!(
        decide(&Policy::preset(Preset::Full), "POST", "/containers/create"),
        Decision::Allow
    );
}

#[test]
fn userns_safe_routes() {
    let p = Policy::preset(Preset::UsernsSafe);
    for t in CREATE_SPELLINGS {
        assert_eq!(
            decide(&p, "POST", t),
            Decision::Inspect(BodyKind::ContainerCreate),
            "{t}"
        );
    }
    assert_eq!(
        decide(&p, "POST", "/v1.41/containers/abc/update"),
        Decision::Inspect(BodyKind::ContainerUpdate)
    );
    assert_eq!(
        decide(&p, "POST", "/v1.23/containers/abc/start"),
        Decision::Inspect(BodyKind::ContainerStart)
    );
    assert_eq!(
        decide(&p, "POST", "/containers/abc/exec"),
        Decision::Inspect(BodyKind::ExecCreate)
    );
    assert_eq!(
        decide(&p, "POST", "/volumes/create"),
        Decision::Inspect(BodyKind::VolumeCreate)
    );
    for (m, t) in [
        ("GET", "/containers/json"),
        ("POST", "/containers/abc/stop"),
        ("POST", "/containers/abc/attach?stream=1&stdin=1"),
        ("POST", "/exec/abc/start"),
        ("POST", "/session"),
        ("POST", "/build?t=x"),
        ("POST", "/build?t=x&cgroupparent=&networkmode=default"),
        ("DELETE", "/containers/abc?force=1"),
        ("GET", "/plugins"),
        ("GET", "/services"),
    ] {
        assert_eq!(decide(&p, m, t), Decision::Allow, "{m} {t}");
    }
    for (m, t) in [
        ("POST", "/plugins/pull?remote=x"),
        ("POST", "/Plugins/x/enable"),
        ("POST", "/swarm/init"),
        ("POST", "/swarm/join"),
        ("POST", "/services/create"),
        ("POST", "/v1.41/services/abc/update"),
        ("POST", "/build?networkmode=host"),
        ("POST", "/build?t=x&NetworkMode=%68ost"),
        ("POST", "/build?t=x;networkmode=host"),
        ("POST", "/build?cgroupparent=/"),
        ("POST", "/v1.41/build?t=x&CgroupParent=system.slice"),
    ] {
        assert!(
            matches!(decide(&p, m, t), Decision::Deny(_)),
            "{m} {t} allowed"
        );
    }
    // An allow rule opens a refused route, but never skips the body checks.
    let p = Policy {
        preset: Some(Preset::UsernsSafe),
        bind_allow: vec![PathBuf::from("/srv/data")],
        allow: rules(&["POST /services/**", "* /containers/**"]),
        deny: vec![],
    };
    assert_eq!(decide(&p, "POST", "/services/create"), Decision::Allow);
    assert_eq!(
        decide(&p, "POST", "/containers/create"),
        Decision::Inspect(BodyKind::ContainerCreate)
    );
    let body = br#"{"HostConfig":{"Binds":["/srv/data/x:/x"]}}"#;
    assert_eq!(
        p.check_body(BodyKind::ContainerCreate, body, &Lexical),
        Ok(())
    );
    let body = br#"{"HostConfig":{"Privileged":true}}"#;
    assert_eq!(
        p.check_body(BodyKind::ContainerCreate, body, &Lexical),
        Err("Privileged".into())
    );
}

#[test]
fn summaries() {
    assert_eq!(Policy::preset(Preset::ReadOnly).to_string(), "read-only");
    let p = Policy {
        preset: Some(Preset::UsernsSafe),
        bind_allow: vec![PathBuf::from("/srv/data"), PathBuf::from("/srv/x")],
        allow: vec![],
        deny: rules(&["GET /x"]),
    };
    assert_eq!(
        p.to_string(),
        "userns-safe (bind_allow /srv/data,/srv/x) + rules (1 deny)"
    );
    let p = Policy {
        preset: None,
        bind_allow: vec![],
        allow: rules(&["GET /x", "GET /y"]),
        deny: vec![],
    };
    assert_eq!(p.to_string(), "rules (2 allow)");
}
