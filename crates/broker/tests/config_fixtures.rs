//! Table-driven tests over the configuration fixtures.
//!
//! * `tests/fixtures/valid/*.yaml` must all load; a few resolved values are checked.
//! * `tests/fixtures/invalid/*.yaml` must all fail. Each starts with comment
//!   lines saying what the error must be:
//!
//!   ```yaml
//!   # expect: <substring of the rendered error>
//!   # expect-line: N          (optional: the matching error's line)
//!   # expect-tenant: NAME     (optional: the matching error's tenant)
//!   # expect-field: FIELD     (optional: the matching error's field)
//!   ```
//!
//! `userns` owners resolve through `tests/fixtures/subuid` and `subgid`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sockbroker::config::{
    self, AccessPolicy, Config, ConfigErrors, IdRange, MetricsListen, OwnerSource, SubIdFiles,
};
use sockbroker::policy::{Policy, Preset};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn ids() -> SubIdFiles {
    SubIdFiles {
        subuid: fixtures().join("subuid"),
        subgid: fixtures().join("subgid"),
    }
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {dir}");
    files
}

fn load_valid(name: &str) -> Config {
    let path = fixtures().join("valid").join(name);
    config::load(&path, &ids()).unwrap_or_else(|e| panic!("{}:\n{e}", path.display()))
}

#[test]
fn every_valid_fixture_loads() {
    for path in yaml_files("valid") {
        if let Err(e) = config::load(&path, &ids()) {
            panic!("{} should be valid:\n{e}", path.display());
        }
    }
}

#[test]
fn valid_fixtures_resolve_as_documented() {
    let c = load_valid("minimal.yaml");
    let t = &c.tenants["ci-runner"];
    assert_eq!((t.uid, t.gid, t.mode), (231072, 231072, 0o660));
    assert_eq!(t.owner, OwnerSource::Ids);
    assert_eq!(t.upstream, PathBuf::from("/var/run/docker.sock"));
    assert_eq!(t.max_connections, 256);
    assert_eq!(t.idle_timeout, None);
    assert_eq!(t.drain_timeout, Duration::from_secs(30));
    assert_eq!(t.connect_timeout, Duration::from_secs(5));
    assert_eq!(t.request_timeout, Duration::from_secs(10));
    assert_eq!(t.access, AccessPolicy::Full);
    assert_eq!(c.metrics, None);

    let c = load_valid("full.yaml");
    assert_eq!(c.tenants.len(), 3);
    assert_eq!(
        c.metrics.as_ref().map(|m| &m.listen),
        Some(&MetricsListen::Tcp("127.0.0.1:9477".parse().unwrap()))
    );
    let p = &c.tenants["portainer"];
    assert_eq!((p.uid, p.gid), (231072, 231072));
    assert_eq!(p.owner_string(), "231072:231072 (userns dockremap)");
    assert!(p.allow.as_ref().unwrap().permits(231072, 0));
    assert!(!p.allow.as_ref().unwrap().permits(1000, 0));
    let tr = &c.tenants["traefik"];
    assert_eq!(tr.mode_string(), "0600");
    assert_eq!(tr.upstream, PathBuf::from("/run/docker-ro.sock"));
    assert_eq!(tr.max_connections, 16);
    assert_eq!(tr.idle_timeout, Some(Duration::from_secs(15 * 60)));
    assert_eq!(tr.drain_timeout, Duration::from_secs(60));
    assert_eq!(tr.connect_timeout, Duration::from_secs(2));
    assert_eq!(tr.request_timeout, Duration::from_secs(30));
    assert_eq!(
        c.tenants["portainer"].request_timeout,
        Duration::from_secs(10)
    );
    let table = config::format_table(&c);
    assert!(table.starts_with("TENANT"), "{table}");
    assert_eq!(table.lines().count(), 4, "{table}");

    let c = load_valid("userns-name.yaml");
    assert_eq!(c.tenants["portainer"].uid, 231072);
    assert_eq!(c.tenants["portainer"].gid, 231072);
    assert_eq!(c.tenants["watchtower"].uid, 296608);

    let c = load_valid("userns-map.yaml");
    let r = &c.tenants["runner"];
    assert_eq!((r.uid, r.gid), (232072, 232072));
    assert_eq!(
        r.owner,
        OwnerSource::Userns {
            user: "dockremap".into(),
            container_uid: 1000,
            container_gid: 1000
        }
    );
    assert_eq!(
        (c.tenants["flow"].uid, c.tenants["flow"].gid),
        (296608, 296608 + 999)
    );

    let c = load_valid("allow-ranges.yaml");
    let allow = c.tenants["portainer"].allow.clone().unwrap();
    assert_eq!(
        allow.uids,
        [
            IdRange {
                start: 231072,
                end: 296607
            },
            IdRange {
                start: 1000,
                end: 1000
            },
            IdRange { start: 0, end: 0 }
        ]
    );
    assert!(allow.permits(1000, 300005));
    assert!(!allow.permits(1000, 300011));
    assert!(c.tenants["gids-only"]
        .allow
        .as_ref()
        .unwrap()
        .permits(12345, 999));

    let c = load_valid("mode-unquoted-0660.yaml");
    assert_eq!(c.tenants["a"].mode, 0o660);
    assert_eq!(c.tenants["inherits"].mode, 0o640);

    let c = load_valid("mode-0o660.yaml");
    assert_eq!(c.tenants["a"].mode, 0o660);
    assert_eq!(c.tenants["flow"].mode, 0o600);

    let c = load_valid("mode-quoted.yaml");
    assert_eq!(c.tenants["a"].mode, 0o660);
    assert_eq!(c.tenants["b"].mode, 0o660);
    assert_eq!(c.tenants["c"].mode, 0o777);

    let c = load_valid("metrics-unix.yaml");
    assert_eq!(
        c.metrics.unwrap().listen,
        MetricsListen::Unix("/run/sockbroker/metrics.sock".into())
    );

    let c = load_valid("access-read-only.yaml");
    assert_eq!(
        c.tenants["a"].access,
        AccessPolicy::Policy(Policy::preset(Preset::ReadOnly))
    );

    let c = load_valid("access-rules.yaml");
    let inherits = c.tenants["inherits"].access.policy().unwrap();
    assert_eq!(inherits.preset, None);
    assert_eq!(inherits.allow.len(), 2);
    assert_eq!(inherits.deny[0].as_str(), "GET /secrets/**");
    let rpr = c.tenants["read-plus-restart"].access.policy().unwrap();
    assert_eq!(rpr.preset, Some(Preset::ReadOnly));
    assert_eq!(rpr.allow[0].as_str(), "POST /containers/*/restart");
    assert!(
        rpr.deny.is_empty(),
        "a tenant's access replaces the default's"
    );
    let audited = c.tenants["audited"].access.policy().unwrap();
    assert_eq!(audited.preset, Some(Preset::Full));
    assert_eq!(audited.deny.len(), 2);
    assert_eq!(
        c.tenants["all-methods"].access.to_string(),
        "rules (1 allow)"
    );

    let c = load_valid("access-scope-own.yaml");
    for t in ["ci-a", "ci-b"] {
        let a = &c.tenants[t].access;
        assert!(matches!(a, AccessPolicy::Scoped(_)), "{t}: {a:?}");
        assert_eq!(a.policy().unwrap().preset, Some(Preset::UsernsSafe));
        assert_eq!(a.to_string(), "userns-safe, scope own");
    }
    assert_eq!(
        c.tenants["ops"].access,
        AccessPolicy::Policy(sockbroker::policy::Policy::preset(Preset::Full))
    );

    let c = load_valid("access-userns-safe.yaml");
    assert_eq!(c.tenants["ci"].access.name(), "userns-safe");
    let data = c.tenants["data"].access.policy().unwrap();
    assert_eq!(data.preset, Some(Preset::UsernsSafe));
    assert_eq!(
        data.bind_allow,
        [PathBuf::from("/srv/data"), PathBuf::from("/srv/cache")]
    );
    let table = config::format_table(&c);
    assert!(
        table.contains("userns-safe (bind_allow /srv/data,/srv/cache)"),
        "{table}"
    );

    let c = load_valid("zero-tenants.yaml");
    assert!(c.tenants.is_empty());
    assert_eq!(
        c.metrics.unwrap().listen,
        MetricsListen::Tcp("127.0.0.1:9477".parse().unwrap())
    );
}

/// The `# expect...` header of an invalid fixture.
#[derive(Debug, Default)]
struct Expect {
    message: String,
    line: Option<usize>,
    tenant: Option<String>,
    field: Option<String>,
}

fn expectations(path: &Path) -> Expect {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    let message = first
        .strip_prefix("# expect: ")
        .unwrap_or_else(|| panic!("{}: first line must be `# expect: ...`", path.display()))
        .to_string();
    let mut e = Expect {
        message,
        ..Expect::default()
    };
    for line in lines.take_while(|l| l.starts_with("# expect-")) {
        let (key, value) = line[2..].split_once(": ").unwrap();
        match key {
            "expect-line" => e.line = Some(value.parse().unwrap()),
            "expect-tenant" => e.tenant = Some(value.to_string()),
            "expect-field" => e.field = Some(value.to_string()),
            other => panic!("{}: unknown header {other}", path.display()),
        }
    }
    e
}

#[test]
fn every_invalid_fixture_fails_as_expected() {
    let mut failures = Vec::new();
    for path in yaml_files("invalid") {
        let expect = expectations(&path);
        let errors: ConfigErrors = match config::load(&path, &ids()) {
            Ok(c) => {
                failures.push(format!("{}: accepted: {c:?}", path.display()));
                continue;
            }
            Err(e) => e,
        };
        let rendered = errors.to_string();
        println!("{rendered}");
        let Some(error) = errors
            .iter()
            .find(|e| e.to_string().contains(&expect.message))
        else {
            failures.push(format!(
                "{}: no error contains {:?}; got:\n{rendered}",
                path.display(),
                expect.message
            ));
            continue;
        };
        let text = error.to_string();
        let mut check = |what: &str, ok: bool| {
            if !ok {
                failures.push(format!(
                    "{}: wrong {what}: {text}\n{error:?}",
                    path.display()
                ));
            }
        };
        check("file", error.file == path);
        check("line", expect.line.is_none() || error.line == expect.line);
        if let Some(line) = expect.line {
            check(
                "rendered line",
                text.starts_with(&format!("{}:{line}:", path.display())),
            );
        }
        if let Some(t) = &expect.tenant {
            check("tenant", error.tenant.as_ref() == Some(t));
            check("rendered tenant", text.contains(&format!("tenant {t:?}")));
        }
        if let Some(f) = &expect.field {
            check("field", error.field.as_ref() == Some(f));
            check("rendered field", text.contains(&format!("field {f:?}")));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

#[test]
fn a_zero_byte_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sockbroker.yaml");
    std::fs::write(&path, "").unwrap();
    let e = config::load(&path, &ids()).unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert!(
        e.to_string().contains("file is empty; write `tenants: {}`"),
        "{e}"
    );
}

#[test]
fn a_missing_file_is_named() {
    let path = fixtures().join("does-not-exist.yaml");
    let e = config::load(&path, &ids()).unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert!(
        e.to_string().starts_with(&path.display().to_string()),
        "{e}"
    );
}
