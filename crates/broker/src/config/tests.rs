//! Tests of [`parse`] as a whole: defaults, owners, error collection and positions.

use super::*;

struct Env {
    _dir: tempfile::TempDir,
    ids: SubIdFiles,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let subuid = dir.path().join("subuid");
    let subgid = dir.path().join("subgid");
    std::fs::write(
        &subuid,
        "dockremap:231072:65536\ntenant2:296608:65536\nsmall:500000:10\n",
    )
    .unwrap();
    std::fs::write(
        &subgid,
        "dockremap:231072:65536\ntenant2:296608:65536\nsmall:600000:10\n",
    )
    .unwrap();
    Env {
        _dir: dir,
        ids: SubIdFiles { subuid, subgid },
    }
}

fn ok(text: &str) -> Config {
    let e = env();
    match parse(text, Path::new("/etc/sockbroker/sockbroker.yaml"), &e.ids) {
        Ok(c) => c,
        Err(errs) => panic!("unexpected errors:\n{errs}"),
    }
}

fn errs(text: &str) -> Vec<ConfigError> {
    let e = env();
    match parse(text, Path::new("/etc/sockbroker/sockbroker.yaml"), &e.ids) {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(errs) => {
            assert!(!errs.is_empty());
            errs.0
        }
    }
}

fn one(text: &str) -> ConfigError {
    let mut e = errs(text);
    assert_eq!(e.len(), 1, "{e:#?}");
    e.remove(0)
}

#[test]
fn design_example_resolves() {
    let c = ok(r#"
metrics:
  listen: 127.0.0.1:9477
defaults:
  upstream: /var/run/docker.sock
  mode: "0660"
  max_connections: 256
  idle_timeout: null
  drain_timeout: 30s
tenants:
  ci-runner:
    listen: /run/sockbroker/ci-runner/docker.sock
    uid: 231072
    gid: 231072
    mode: "0660"
  portainer:
    listen: /run/sockbroker/portainer/docker.sock
    userns: dockremap
    allow:
      uids: ["231072-296607"]
"#);
    assert_eq!(
        c.metrics,
        Some(MetricsConfig {
            listen: MetricsListen::Tcp("127.0.0.1:9477".parse().unwrap())
        })
    );
    let ci = &c.tenants["ci-runner"];
    assert_eq!((ci.uid, ci.gid, ci.mode), (231072, 231072, 0o660));
    assert_eq!(ci.owner, OwnerSource::Ids);
    assert_eq!(ci.upstream, PathBuf::from("/var/run/docker.sock"));
    assert_eq!(ci.max_connections, 256);
    assert_eq!(ci.idle_timeout, None);
    assert_eq!(ci.drain_timeout, Duration::from_secs(30));
    assert_eq!(ci.connect_timeout, Duration::from_secs(5));
    assert_eq!(ci.request_timeout, Duration::from_secs(10));
    assert_eq!(ci.allow, None);
    let p = &c.tenants["portainer"];
    assert_eq!((p.uid, p.gid), (231072, 231072));
    assert_eq!(p.owner_string(), "231072:231072 (userns dockremap)");
    let allow = p.allow.as_ref().unwrap();
    assert!(allow.permits(231072, 5) && allow.permits(296607, 0));
    assert!(!allow.permits(231071, 0) && !allow.permits(296608, 0));
}

#[test]
fn defaults_are_inherited_and_overridden() {
    let c = ok(r#"
defaults:
  upstream: /run/podman/podman.sock
  mode: "0600"
  max_connections: 10
  idle_timeout: 15m
  drain_timeout: 1m
  connect_timeout: 2s
  request_timeout: 20s
tenants:
  a:
    listen: /run/sb/a/docker.sock
    uid: 1
    gid: 2
  b:
    listen: /run/sb/b/docker.sock
    uid: 1
    gid: 2
    mode: 0o640
    upstream: /var/run/docker.sock
    max_connections: 1
    idle_timeout: null
    drain_timeout: 0s
    connect_timeout: 500ms
    request_timeout: 1m
"#);
    let a = &c.tenants["a"];
    assert_eq!(a.upstream, PathBuf::from("/run/podman/podman.sock"));
    assert_eq!(a.mode, 0o600);
    assert_eq!(a.max_connections, 10);
    assert_eq!(a.idle_timeout, Some(Duration::from_secs(900)));
    assert_eq!(a.drain_timeout, Duration::from_secs(60));
    assert_eq!(a.connect_timeout, Duration::from_secs(2));
    assert_eq!(a.request_timeout, Duration::from_secs(20));
    let b = &c.tenants["b"];
    assert_eq!(b.upstream, PathBuf::from("/var/run/docker.sock"));
    assert_eq!(b.mode, 0o640);
    assert_eq!(b.max_connections, 1);
    assert_eq!(b.idle_timeout, None, "null overrides the default: never");
    assert_eq!(b.drain_timeout, Duration::ZERO);
    assert_eq!(b.connect_timeout, Duration::from_millis(500));
    assert_eq!(b.request_timeout, Duration::from_secs(60));
}

#[test]
fn no_tenants_is_valid() {
    for text in [
        "tenants: {}",
        "tenants:",
        "{}",
        "metrics:\n  listen: localhost:9477\n",
    ] {
        let c = ok(text);
        assert!(c.tenants.is_empty(), "{text}");
    }
}

#[test]
fn empty_files_are_refused() {
    for text in [
        "",
        "  \n\n",
        "# only a comment\n",
        "---\n",
        "~\n",
        "null",
        "\u{feff}",
    ] {
        let e = one(text);
        assert!(e.message.contains("file is empty"), "{text:?}: {e}");
        assert!(e.message.contains("tenants: {}"), "{e}");
    }
}

#[test]
fn userns_forms() {
    let c = ok(r#"
tenants:
  a:
    listen: /run/sb/a/docker.sock
    userns: tenant2
  b:
    listen: /run/sb/b/docker.sock
    userns: {user: dockremap, uid: 1000, gid: 1001}
  c:
    listen: /run/sb/c/docker.sock
    userns:
      user: dockremap
"#);
    assert_eq!((c.tenants["a"].uid, c.tenants["a"].gid), (296608, 296608));
    let b = &c.tenants["b"];
    assert_eq!((b.uid, b.gid), (232072, 232073));
    assert_eq!(
        b.owner,
        OwnerSource::Userns {
            user: "dockremap".into(),
            container_uid: 1000,
            container_gid: 1001
        }
    );
    assert_eq!((c.tenants["c"].uid, c.tenants["c"].gid), (231072, 231072));
}

#[test]
fn userns_errors() {
    // Both files are checked: one error per file.
    let e = errs("tenants:\n  a:\n    listen: /run/a.sock\n    userns: nobody-here\n");
    assert_eq!(e.len(), 2, "{e:?}");
    for (e, file) in e.iter().zip(["subuid", "subgid"]) {
        assert_eq!(e.field.as_deref(), Some("userns"));
        assert_eq!(e.line, Some(4));
        assert!(e.message.contains("has no range in"), "{e}");
        assert!(e.message.contains(file), "{e}");
        assert!(e.message.contains("nobody-here:START:COUNT"), "{e}");
    }

    let e = one("tenants:\n  a:\n    listen: /run/a.sock\n    userns: {user: small, uid: 10}\n");
    assert_eq!(e.field.as_deref(), Some("userns.uid"));
    assert!(e.message.contains("outside small's first range"), "{e}");

    let e = one(
        "tenants:\n  a:\n    listen: /run/a.sock\n    userns:\n      user: small\n      usr: x\n",
    );
    assert_eq!(e.field.as_deref(), Some("userns.usr"));
    assert_eq!(e.line, Some(6));
    assert!(e.message.contains("did you mean `user`"), "{e}");

    let e = one("tenants:\n  a:\n    listen: /run/a.sock\n    userns: {uid: 1}\n");
    assert!(e.message.contains("needs `user`"), "{e}");
    let e = one("tenants:\n  a:\n    listen: /run/a.sock\n    userns:\n");
    assert!(e.message.contains("is not a user namespace owner"), "{e}");

    // An unreadable subuid file names the file.
    let text = "tenants:\n  a:\n    listen: /run/a.sock\n    userns: dockremap\n";
    let ids = SubIdFiles {
        subuid: PathBuf::from("/nonexistent/subuid"),
        subgid: PathBuf::from("/nonexistent/subgid"),
    };
    let e = parse(text, Path::new("/x.yaml"), &ids).unwrap_err();
    assert_eq!(e.len(), 2);
    assert!(
        e.0[0].message.contains("cannot read /nonexistent/subuid"),
        "{e}"
    );
    assert!(
        e.0[1].message.contains("cannot read /nonexistent/subgid"),
        "{e}"
    );
}

#[test]
fn owner_combinations() {
    let base = "tenants:\n  a:\n    listen: /run/a.sock\n";
    let e = one(&format!(
        "{base}    uid: 1\n    gid: 1\n    userns: dockremap\n"
    ));
    assert_eq!(e.field.as_deref(), Some("userns"));
    assert!(e.message.contains("not both"), "{e}");
    let e = one(base);
    assert_eq!(e.tenant.as_deref(), Some("a"));
    assert_eq!(e.line, Some(2));
    assert!(e.message.contains("no owner"), "{e}");
    let e = one(&format!("{base}    uid: 1\n"));
    assert_eq!(e.field.as_deref(), Some("gid"));
    assert_eq!(e.line, Some(4));
    assert!(e.message.contains("uid is set without gid"), "{e}");
    let e = one(&format!("{base}    gid: 1\n"));
    assert_eq!(e.field.as_deref(), Some("uid"));
    let e = one(&format!("{base}    uid: 4294967295\n    gid: 0\n"));
    assert_eq!(e.field.as_deref(), Some("uid"));
    assert!(e.message.contains("(uid_t)-1"), "{e}");
}

#[test]
fn all_errors_are_collected_in_file_order() {
    let e = errs(
        r#"defaults:
  drain_timeout: 30
tenants:
  Bad_Name:
    listen: relative.sock
    uid: 1
    gid: 1
  b:
    listen: /run/b.sock
    uid: 1
    gid: 1
    mode: 660
    max_connections: 0
    allow: {uids: []}
    access: readonly
"#,
    );
    let summary: Vec<(Option<&str>, Option<&str>, Option<usize>)> = e
        .iter()
        .map(|e| (e.tenant.as_deref(), e.field.as_deref(), e.line))
        .collect();
    assert_eq!(
        summary,
        [
            (None, Some("defaults.drain_timeout"), Some(2)),
            (Some("Bad_Name"), None, Some(4)),
            (Some("Bad_Name"), Some("listen"), Some(5)),
            (Some("b"), Some("mode"), Some(12)),
            (Some("b"), Some("max_connections"), Some(13)),
            (Some("b"), Some("allow"), Some(14)),
            (Some("b"), Some("access"), Some(15)),
        ],
        "{}",
        ConfigErrors(e.clone())
    );
    let rendered = ConfigErrors(e).to_string();
    assert!(rendered.contains(
        "/etc/sockbroker/sockbroker.yaml:12:5: tenant \"b\", field \"mode\": 660 would be read as decimal; \
         write the mode quoted in octal, e.g. mode: \"0660\""
    ), "{rendered}");
}

#[test]
fn unknown_keys_come_from_serde_with_positions() {
    let e = one("tenants:\n  ci-runner:\n    listen: /run/a.sock\n    uid: 1\n    guid: 1\n");
    assert_eq!(e.tenant.as_deref(), Some("ci-runner"));
    assert_eq!(e.field.as_deref(), Some("guid"));
    assert_eq!((e.line, e.column), (Some(5), Some(5)));
    assert!(e.message.contains("unknown key `guid`"), "{e}");
    assert!(
        e.message
            .contains("Valid keys here: listen, uid, gid, userns"),
        "{e}"
    );

    let e = one("tenant:\n  a: {}\n");
    assert_eq!(e.field.as_deref(), Some("tenant"));
    assert!(
        e.message
            .contains("at the top level (did you mean `tenants`?)"),
        "{e}"
    );

    let e = one("defaults:\n  mod: \"0660\"\n");
    assert_eq!(e.field.as_deref(), Some("defaults.mod"));
    assert!(
        e.message.contains("in defaults (did you mean `mode`?)"),
        "{e}"
    );

    let e = one("tenants:\n  a.b:\n    allow:\n      uid: [1]\n");
    assert_eq!(e.tenant.as_deref(), Some("a.b"));
    assert_eq!(e.field.as_deref(), Some("allow.uid"));
    assert_eq!(e.line, Some(4));

    let e = one("tenants:\n  a:\n    access: {allow: [], deny: [], x: 1}\n    listen: /a\n    uid: 1\n    gid: 1\n");
    assert_eq!(e.field.as_deref(), Some("access.x"));
    assert_eq!(e.line, Some(3));
}

#[test]
fn access_rule_errors_point_at_the_rule() {
    let e = errs(
        r#"defaults:
  access:
    allow:
      - GET,HEAD /**
      - GOT /x
tenants:
  a:
    listen: /run/a.sock
    uid: 1
    gid: 1
    access:
      preset: userns-safe
      bind_allow:
      - /srv/data
      - srv/other
      deny:
        - GET /secrets/
"#,
    );
    type Where<'a> = (
        Option<&'a str>,
        Option<&'a str>,
        Option<usize>,
        Option<usize>,
    );
    let summary: Vec<Where<'_>> = e
        .iter()
        .map(|e| (e.tenant.as_deref(), e.field.as_deref(), e.line, e.column))
        .collect();
    assert_eq!(
        summary,
        [
            (None, Some("defaults.access.allow"), Some(5), Some(7)),
            (Some("a"), Some("access.bind_allow"), Some(15), Some(7)),
            (Some("a"), Some("access.deny"), Some(17), Some(9)),
        ],
        "{}",
        ConfigErrors(e.clone())
    );
    let rendered = ConfigErrors(e).to_string();
    assert!(
        rendered.contains(
            "sockbroker.yaml:5:7: field \"defaults.access.allow\": rule 2: unknown method \"GOT\""
        ),
        "{rendered}"
    );
    // Flow style: the error points at the list's key.
    let e = one("tenants:\n  a:\n    listen: /a\n    uid: 1\n    gid: 1\n    access: {allow: [GET /x, \"GET x\"]}\n");
    assert_eq!(e.field.as_deref(), Some("access.allow"));
    assert_eq!(e.line, Some(6));
    assert!(e.message.starts_with("rule 2: path \"x\""), "{e}");
}

#[test]
fn access_policies_resolve() {
    let c = ok(
        "defaults:\n  access: read-only\ntenants:\n  a:\n    listen: /a\n    uid: 1\n    gid: 1\n  b:\n    listen: /b\n    uid: 1\n    gid: 1\n    access: full\n  c:\n    listen: /c\n    uid: 1\n    gid: 1\n    access: {preset: userns-safe, bind_allow: [/srv/data]}\n",
    );
    assert_eq!(c.tenants["a"].access.name(), "read-only");
    assert_eq!(c.tenants["b"].access, AccessPolicy::Full);
    assert_eq!(
        c.tenants["c"].access.to_string(),
        "userns-safe (bind_allow /srv/data)"
    );
}

#[test]
fn schema_and_syntax_errors() {
    let e = one("tenants: [a, b]\n");
    assert!(
        e.message.contains("expected a mapping of tenant name"),
        "{e}"
    );
    assert_eq!(e.line, Some(1));
    let e = one("tenants:\n  a: 5\n");
    assert_eq!(e.tenant.as_deref(), Some("a"));
    assert!(e.message.contains("expected a tenant's settings"), "{e}");
    let e = one("- a\n- b\n");
    assert!(
        e.message.contains("expected the sockbroker configuration"),
        "{e}"
    );
    let e = one("tenants:\n  a:\n    mode: 1\n    mode: 2\n");
    assert!(e.message.contains("`mode` is given twice"), "{e}");
    let e = one("tenants:\n  a: {}\n  a: {}\n");
    assert!(e.message.contains("defined twice"), "{e}");
    let e = one("tenants:\n  a:\n    listen: [/x\n");
    assert!(e.message.starts_with("invalid YAML: "), "{e}");
    assert!(e.line.is_some());
    let e = one("tenants:\n\t a: {}\n");
    assert!(e.message.starts_with("invalid YAML: "), "{e}");
    let e = one("a: 1\n---\nb: 2\n");
    assert!(e.message.contains("more than one YAML document"), "{e}");
    // A schema error before a syntax error: the syntax error is what is reported.
    let e = one("tenants: [a, b]\nmetrics: {listen: [\n");
    assert!(e.message.starts_with("invalid YAML: "), "{e}");
    let e = one("bogus: 1\ntenants:\n  a:\n    listen: [/x\n");
    assert!(e.message.starts_with("invalid YAML: "), "{e}");
}

#[test]
fn path_rules() {
    let e = errs(
        r#"tenants:
  a:
    listen: /run/same.sock
    uid: 1
    gid: 1
  b:
    listen: /run/same.sock
    uid: 1
    gid: 1
  c:
    listen: /var/run/docker.sock
    uid: 1
    gid: 1
  d:
    listen: /run/d.sock
    upstream: /run/d.sock
    uid: 1
    gid: 1
"#,
    );
    assert_eq!(e.len(), 3, "{}", ConfigErrors(e.clone()));
    assert_eq!((e[0].tenant.as_deref(), e[0].line), (Some("b"), Some(7)));
    assert!(
        e[0].message
            .contains("also the listen path of tenant \"a\""),
        "{}",
        e[0]
    );
    assert_eq!(e[1].tenant.as_deref(), Some("c"));
    assert!(
        e[1].message.contains("the upstream of tenant \"a\""),
        "{}",
        e[1]
    );
    assert_eq!(e[2].tenant.as_deref(), Some("d"));
    assert!(
        e[2].message.contains("this tenant's own upstream"),
        "{}",
        e[2]
    );

    let e = one("metrics:\n  listen: unix:/run/a.sock\ntenants:\n  a:\n    listen: /run/a.sock\n    uid: 1\n    gid: 1\n");
    assert_eq!(e.field.as_deref(), Some("metrics.listen"));
    assert_eq!(e.line, Some(2));
}

#[test]
fn metrics_section() {
    let c = ok("metrics:\n  listen: unix:/run/sockbroker/metrics.sock\ntenants: {}\n");
    assert_eq!(
        c.metrics.unwrap().listen,
        MetricsListen::Unix("/run/sockbroker/metrics.sock".into())
    );
    let e = one("metrics:\ntenants: {}\n");
    assert_eq!(e.field.as_deref(), Some("metrics.listen"));
    assert_eq!(e.line, Some(1));
    let e = one("metrics: {}\n");
    assert!(e.message.contains("no listen address"), "{e}");
}

#[test]
fn allow_lists() {
    let base = "tenants:\n  a:\n    listen: /run/a.sock\n    uid: 1\n    gid: 1\n";
    let c = ok(&format!(
        "{base}    allow:\n      gids: [999, \"1000-1002\"]\n"
    ));
    let allow = c.tenants["a"].allow.clone().unwrap();
    assert!(allow.permits(12345, 1001));
    assert!(!allow.permits(12345, 1003));
    for bad in [
        "    allow:\n",
        "    allow: {}\n",
        "    allow: {uids: [], gids: []}\n",
        "    allow: {uids: null}\n",
    ] {
        let e = one(&format!("{base}{bad}"));
        assert!(e.message.contains("allow lists no ids"), "{bad}: {e}");
        assert_eq!(e.line, Some(6));
    }
    let e = errs(&format!(
        "{base}    allow:\n      uids: [1, \"5-2\", x]\n      gids: 7\n"
    ));
    assert_eq!(e.len(), 3, "{}", ConfigErrors(e.clone()));
    assert!(e[0].message.starts_with("entry 2:"), "{}", e[0]);
    assert!(e[1].message.starts_with("entry 3:"), "{}", e[1]);
    assert_eq!(e[2].field.as_deref(), Some("allow.gids"));
    assert_eq!(e[2].line, Some(8));
}

#[test]
fn permits_matches_every_non_empty_list() {
    let r = |start, end| IdRange { start, end };
    let both = AllowList {
        uids: vec![r(1000, 1000), r(2000, 2999)],
        gids: vec![r(50, 60)],
    };
    assert!(both.permits(1000, 50));
    assert!(both.permits(2999, 60));
    assert!(!both.permits(1000, 61));
    assert!(!both.permits(1001, 55));
    let uids = AllowList {
        uids: vec![r(0, 0)],
        gids: vec![],
    };
    assert!(uids.permits(0, 12345));
    assert!(!uids.permits(1, 0));
    let edge = AllowList {
        uids: vec![r(u32::MAX - 1, u32::MAX)],
        gids: vec![],
    };
    assert!(edge.permits(u32::MAX, 0));
    assert!(
        AllowList::default().permits(7, 7),
        "an empty list is refused at validation; permits() admits"
    );
    assert_eq!(r(5, 5).to_string(), "5");
    assert_eq!(r(5, 9).to_string(), "5-9");
}

#[test]
fn flow_style_errors_fall_back_to_the_tenant_line() {
    let e = one("tenants:\n  a: {listen: /run/a.sock, uid: 1, gid: 1, mode: 0o1777}\n");
    assert_eq!(e.field.as_deref(), Some("mode"));
    assert_eq!((e.line, e.column), (Some(2), Some(3)));
    assert!(e.message.contains("above 0777"), "{e}");
    // The raw scalar is read by the parser, so 0o660 is accepted in flow style too.
    let c = ok("tenants:\n  a: {listen: /run/a.sock, uid: 1, gid: 1, mode: 0o660}\n");
    assert_eq!(c.tenants["a"].mode, 0o660);
}

#[test]
fn modes_in_context() {
    let base = "tenants:\n  a:\n    listen: /run/a.sock\n    uid: 1\n    gid: 1\n";
    for (mode, want) in [
        ("\"0660\"", 0o660),
        ("0660", 0o660),
        ("0o660", 0o660),
        ("\"660\"", 0o660),
        ("'0600'", 0o600),
    ] {
        let c = ok(&format!("{base}    mode: {mode}\n"));
        assert_eq!(c.tenants["a"].mode, want, "{mode}");
    }
    let c = ok(&format!("defaults:\n  mode: 0o600\n{base}"));
    assert_eq!(c.tenants["a"].mode, 0o600);
    let e = one(&format!("defaults:\n  mode: 640\n{base}"));
    assert_eq!(e.field.as_deref(), Some("defaults.mode"));
    assert!(e.message.contains("e.g. mode: \"0640\""), "{e}");
}

#[test]
fn load_reports_file_problems() {
    let dir = tempfile::tempdir().unwrap();
    let ids = SubIdFiles::default();
    let missing = dir.path().join("missing.yaml");
    let e = load(&missing, &ids).unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!(e.0[0].file, missing);
    assert!(e.0[0].message.contains("does not exist"), "{e}");
    let e = load(dir.path(), &ids).unwrap_err();
    assert!(e.0[0].message.contains("is a directory"), "{e}");
    let bin = dir.path().join("bin.yaml");
    std::fs::write(&bin, b"tenants: {}\n\xff\xfe").unwrap();
    let e = load(&bin, &ids).unwrap_err();
    assert!(
        e.0[0].message.contains("not valid UTF-8 (at byte 12)"),
        "{e}"
    );
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, "tenants: {}\n").unwrap();
    assert!(load(&good, &ids).unwrap().tenants.is_empty());
}

#[test]
fn odd_input_never_panics() {
    let e = env();
    let inputs = [
        "tenants:\n  \"\":\n    listen: /a\n",
        "tenants:\n  ? [1]\n  : 2\n",
        "tenants:\n  a:\n    listen: !custom /x\n    uid: !!str 1\n    gid: 1e400\n",
        "tenants:\n  a:\n    listen: \"/a\\0b\"\n    uid: -0\n    gid: 0x10\n    mode: -0o7\n",
        "tenants:\n  a:\n    listen: /a\n    uid: 1\n    gid: 1\n    mode: &m 0o660\n  b:\n    listen: /b\n    uid: 1\n    gid: 1\n    mode: *m\n",
        "a: &a [*a]\n",
        "tenants:\n  a:\n    userns: {user: [1], uid: x, gid: -1}\n",
        "tenants:\n  a:\n    idle_timeout: 99999999999999999999999999h\n",
        "tenants: !!map {}\n",
        "\u{0}",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    ];
    for text in inputs {
        match parse(text, Path::new("/x.yaml"), &e.ids) {
            Ok(c) => {
                // The anchored mode is shared by both tenants.
                if text.contains("*m") {
                    assert_eq!(c.tenants["b"].mode, 0o660);
                }
            }
            Err(errs) => {
                assert!(!errs.is_empty());
                let _ = errs.to_string();
            }
        }
    }
}
