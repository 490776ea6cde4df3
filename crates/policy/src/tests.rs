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

/// Container names of any number of segments (link aliases like `web/al`,
/// `%2F`-encoded too) reach the same engine routes as one-segment names.
const NAME_SPELLINGS: &[&str] = &["web", "web/al", "web%2Fal", "a/b/c", "x/exec", "json/json"];

#[test]
fn multi_segment_names_meet_the_same_checks() {
    let userns = Policy::preset(Preset::UsernsSafe);
    let deny_exec = Policy {
        preset: Some(Preset::Full),
        bind_allow: vec![],
        allow: vec![],
        deny: rules(&["POST /containers/*/exec", "* /containers/*/update"]),
    };
    let rules_only = Policy {
        preset: None,
        bind_allow: vec![],
        allow: rules(&["POST /containers/*/start", "GET /containers/*/json"]),
        deny: vec![],
    };
    for name in NAME_SPELLINGS {
        for prefix in ["", "/v1.41", "/v1.23"] {
            let t = |action: &str| format!("{prefix}/containers/{name}/{action}");
            assert_eq!(
                decide(&userns, "POST", &t("exec")),
                Decision::Inspect(BodyKind::ExecCreate),
                "{name}"
            );
            assert_eq!(
                decide(&userns, "POST", &t("start")),
                Decision::Inspect(BodyKind::ContainerStart),
                "{name}"
            );
            assert_eq!(
                decide(&userns, "POST", &t("update")),
                Decision::Inspect(BodyKind::ContainerUpdate),
                "{name}"
            );
            assert!(
                matches!(decide(&deny_exec, "POST", &t("exec")), Decision::Deny(_)),
                "{name}"
            );
            assert!(
                matches!(decide(&deny_exec, "post", &t("UPDATE")), Decision::Deny(_)),
                "{name}"
            );
            assert!(allowed(&deny_exec, "POST", &t("start")), "{name}");
            // An allow rule with `*` admits any name, the start body is checked.
            assert_eq!(
                decide(&rules_only, "POST", &t("start")),
                Decision::Inspect(BodyKind::ContainerStart),
                "{name}"
            );
            assert_eq!(decide(&rules_only, "GET", &t("json")), Decision::Allow);
            assert!(!allowed(&rules_only, "POST", &t("exec")), "{name}");
        }
    }
    // A literal allow rule names one container, not what lies below it.
    let p = Policy {
        preset: None,
        bind_allow: vec![],
        allow: rules(&["POST /containers/web/**"]),
        deny: vec![],
    };
    assert!(allowed(&p, "POST", "/containers/web/restart"));
    assert!(!allowed(&p, "POST", "/containers/web/al/exec"));
    assert!(!allowed(&p, "POST", "/containers/web%2Fal/restart"));
    // A read-only tenant cannot reach archive/export through a longer name.
    let ro = Policy::preset(Preset::ReadOnly);
    for name in NAME_SPELLINGS {
        for action in ["archive", "export", "attach/ws"] {
            let t = format!("/containers/{name}/{action}");
            assert!(matches!(decide(&ro, "GET", &t), Decision::Deny(_)), "{t}");
        }
        assert!(matches!(
            decide(&ro, "GET", &format!("/images/{name}/get")),
            Decision::Deny(_)
        ));
        assert_eq!(
            decide(&ro, "GET", &format!("/containers/{name}/json")),
            Decision::Allow
        );
    }
}

#[test]
fn read_only_is_monitoring() {
    let p = Policy::preset(Preset::ReadOnly);
    for (m, t) in [
        ("GET", "/containers/abc/archive?path=/etc/shadow"),
        ("HEAD", "/containers/abc/archive?path=/"),
        ("GET", "/v1.41/containers/abc/export"),
        ("GET", "/images/get?names=busybox"),
        ("GET", "/images/busybox/get"),
        ("GET", "/images/library/busybox:latest/get"),
        ("GET", "/swarm/unlockkey"),
        ("GET", "/swarm"),
        ("GET", "/debug/pprof/heap"),
        ("GET", "/libpod/containers/json"),
        ("GET", "/v4.0.0/libpod/containers/abc/archive"),
        ("GET", "/libpod/secrets/s/json?showsecret=true"),
        ("GET", "/containers/json/extra"),
        // The engine contacts the registry named in the term or the name,
        // from the host's network (a registry on 127.0.0.1 is spoken to in
        // plain HTTP): not monitoring.
        ("GET", "/images/search?term=127.0.0.1:2375/x"),
        ("GET", "/v1.41/distribution/127.0.0.1:5000/x:latest/json"),
        ("GET", "/plugins/privileges?remote=127.0.0.1:5000/x"),
    ] {
        assert!(
            matches!(decide(&p, m, t), Decision::Deny(_)),
            "{m} {t} allowed"
        );
    }
    // What monitoring needs: ps, inspect, logs, events, stats, top, info, df.
    for (m, t) in [
        ("GET", "/_ping"),
        ("HEAD", "/_ping"),
        ("GET", "/v1.41/containers/json?all=1"),
        ("GET", "/containers/abc/json"),
        ("GET", "/containers/abc/logs?stdout=1"),
        ("GET", "/containers/abc/stats?stream=0"),
        ("GET", "/containers/abc/top"),
        ("GET", "/events"),
        ("GET", "/info"),
        ("GET", "/version"),
        ("GET", "/system/df"),
        ("GET", "/images/json"),
        ("GET", "/images/busybox/json"),
        ("GET", "/volumes"),
        ("GET", "/networks/none"),
    ] {
        assert_eq!(decide(&p, m, t), Decision::Allow, "{m} {t}");
    }
    // The operator's opt-in: an allow rule.
    let p = Policy {
        preset: Some(Preset::ReadOnly),
        bind_allow: vec![],
        allow: rules(&["GET,HEAD /containers/*/archive"]),
        deny: vec![],
    };
    assert!(allowed(&p, "GET", "/containers/a/b/archive"));
    assert!(allowed(&p, "HEAD", "/containers/abc/archive"));
    assert!(!allowed(&p, "GET", "/containers/abc/export"));
}

#[test]
fn podman_and_unknown_routes() {
    let userns = Policy::preset(Preset::UsernsSafe);
    for (m, t) in [
        ("POST", "/libpod/containers/create"),
        ("POST", "/v4.0.0/libpod/containers/create"),
        ("POST", "/v5.2.1/libpod/pods/create"),
        ("POST", "/libpod/play/kube"),
        ("POST", "/v4.0.0/libpod/kube/play"),
        ("POST", "/libpod/containers/abc/exec"),
        ("GET", "/libpod/containers/json"),
        ("POST", "/Libpod/containers/create"),
        ("POST", "/v4.0.0-dev/libpod/containers/create"),
        ("POST", "/debug/pprof/profile"),
        ("POST", "/containers/abc/nosuchaction"),
        ("PATCH", "/containers/abc/update"),
    ] {
        assert!(
            matches!(decide(&userns, m, t), Decision::Deny(_)),
            "{m} {t} allowed"
        );
    }
    // Even an allow rule does not open libpod under userns-safe (its bodies
    // are never inspected); it does open an unknown Docker route.
    let p = Policy {
        preset: Some(Preset::UsernsSafe),
        bind_allow: vec![],
        allow: rules(&["* /**"]),
        deny: vec![],
    };
    assert!(!allowed(&p, "POST", "/libpod/containers/create"));
    assert!(allowed(&p, "POST", "/some/new/route"));
    // Deny rules also match the libpod twin of a Docker route.
    let p = Policy {
        preset: Some(Preset::Full),
        bind_allow: vec![],
        allow: vec![],
        deny: rules(&["POST /containers/*/exec"]),
    };
    assert!(!allowed(&p, "POST", "/v4.0.0/libpod/containers/abc/exec"));
    // Podman also routes its Docker API under a wider version prefix.
    assert!(!allowed(&p, "POST", "/v4.0.0-dev/containers/abc/exec"));
    assert!(!allowed(
        &p,
        "POST",
        "/v5.1.0-rc1/libpod/containers/a/b/exec"
    ));
    assert!(allowed(&p, "POST", "/v4.0.0/libpod/containers/abc/start"));
    // OPTIONS is answered by the engine on any path.
    assert_eq!(decide(&userns, "OPTIONS", "/anything"), Decision::Allow);
}

#[test]
fn checkpoints_under_userns_safe() {
    let p = Policy::preset(Preset::UsernsSafe);
    assert_eq!(
        decide(&p, "POST", "/containers/a/b/checkpoints"),
        Decision::Inspect(BodyKind::CheckpointCreate)
    );
    for t in [
        "/containers/abc/start?checkpoint=c1&checkpoint-dir=/etc",
        "/v1.41/containers/a/b/start?checkpoint-dir=%2Froot",
        "/containers/abc/start?Checkpoint-Dir=/x",
    ] {
        assert!(matches!(decide(&p, "POST", t), Decision::Deny(_)), "{t}");
    }
    assert_eq!(
        decide(&p, "POST", "/containers/abc/start?checkpoint=c1"),
        Decision::Inspect(BodyKind::ContainerStart)
    );
}
