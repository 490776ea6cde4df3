//! From the raw serde view to a [`Config`], collecting every error.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml::Value;

use super::access::{parse_access, AccessError};
use super::error::{parse_unknown_field, unknown_key_message};
use super::locate::Locator;
use super::raw::{LazyModeShadow, RawAllow, RawConfig, RawDefaults, RawTenant, RawUsernsMap};
use super::subid::{Kind, SubIdDb};
use super::values::{
    self, describe, parse_duration, parse_id, parse_id_range, parse_max_connections,
    parse_metrics_listen, parse_mode, parse_socket_path, DurationKind, MAX_ID,
};
use super::{
    AccessPolicy, AllowList, Config, ConfigError, ConfigErrors, IdRange, MetricsConfig,
    MetricsListen, OwnerSource, SubIdFiles, TenantSpec,
};

/// Built-in defaults, used when `defaults:` does not set a value.
const DEFAULT_UPSTREAM: &str = "/var/run/docker.sock";
const DEFAULT_MODE: u32 = 0o660;
const DEFAULT_MAX_CONNECTIONS: usize = 256;
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a policy-mode request head and body may take to arrive (docs/configuration.md).
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

const EMPTY_FILE: &str = "file is empty; write `tenants: {}` to run with no tenants \
     (an empty file is refused so that a half-written file never removes every tenant)";

/// See [`super::parse`].
pub(super) fn parse(text: &str, source: &Path, ids: &SubIdFiles) -> Result<Config, ConfigErrors> {
    if text.trim_start_matches('\u{feff}').trim().is_empty() {
        return Err(ConfigError::file_level(source, EMPTY_FILE).into());
    }
    let raw = match serde_yaml::from_str::<Option<RawConfig>>(text) {
        Ok(Some(raw)) => raw,
        Ok(None) => {
            // Only comments, `---` or `null`: as empty as an empty file.
            return Err(ConfigError::file_level(source, EMPTY_FILE).into());
        }
        Err(e) => {
            // A syntax error anywhere (or a second document) is reported as
            // such, never as a schema error the parser happened to meet first.
            // Checked only on failure: it is a second full parse of the file.
            if let Err(syntax) = serde_yaml::from_str::<serde::de::IgnoredAny>(text) {
                return Err(serde_error(&syntax, text, source, true).into());
            }
            return Err(serde_error(&e, text, source, false).into());
        }
    };
    // Both are more passes over the text, needed only for some errors and for
    // integer modes: built on first use.
    let shadow = LazyModeShadow::new(text);
    let mut ctx = Ctx {
        file: source,
        text,
        locator: OnceCell::new(),
        errors: Vec::new(),
    };
    let mut db = SubIdDb::new(ids);
    let config = resolve(&mut ctx, &raw, &shadow, &mut db);
    if ctx.errors.is_empty() {
        Ok(config)
    } else {
        // In file order; errors without a position last.
        ctx.errors
            .sort_by_key(|e| (e.line.is_none(), e.line, e.column));
        Err(ConfigErrors(ctx.errors))
    }
}

/// A serde_yaml error (syntax or schema) as one friendly [`ConfigError`].
fn serde_error(e: &serde_yaml::Error, text: &str, source: &Path, syntax: bool) -> ConfigError {
    let location = e.location().map(|l| (l.line(), l.column()));
    let mut msg = e.to_string();
    if let Some((line, column)) = location {
        let suffix = format!(" at line {line} column {column}");
        if let Some(i) = msg.find(&suffix) {
            msg.replace_range(i..i + suffix.len(), "");
        }
    }
    let locator = Locator::new(text);
    let tenant = location.and_then(|(line, _)| locator.tenant_at_line(line));
    let mut error = ConfigError {
        file: source.to_path_buf(),
        tenant: tenant.clone(),
        field: None,
        line: location.map(|l| l.0),
        column: location.map(|l| l.1),
        message: String::new(),
    };
    if syntax {
        error.tenant = None;
        if msg.contains("more than one document") {
            error.message = "the file holds more than one YAML document (separated by `---`); \
                 keep a single document"
                .to_string();
            return error;
        }
        error.message = format!(
            "invalid YAML: {msg}; fix the syntax here (indent with spaces, not tabs; \
             quote values that contain `: ` or ` #` or start with a special character)"
        );
        return error;
    }
    // serde_yaml prefixes the path of the value: `tenants.ci-runner.allow: ...`.
    let (path, body) = split_path(&msg);
    let tenant_prefix = tenant.as_ref().map(|t| format!("tenants.{t}"));
    let relative: Option<String> = match (path, &tenant_prefix) {
        (Some(p), Some(prefix)) if p == prefix || p == "tenants" => None,
        (Some(p), Some(prefix)) if p.starts_with(&format!("{prefix}.")) => {
            Some(p[prefix.len() + 1..].to_string())
        }
        (Some(p), _) => Some(p.to_string()),
        (None, _) => None,
    };
    if let Some(u) = parse_unknown_field(body) {
        let place = match (&relative, &tenant) {
            (None, None) => " at the top level".to_string(),
            (None, Some(_)) => String::new(),
            (Some(r), _) => format!(" in {r}"),
        };
        error.field = Some(match &relative {
            Some(r) => format!("{r}.{}", u.key),
            None => u.key.clone(),
        });
        error.message = unknown_key_message(&u.key, &u.expected, &place);
        return error;
    }
    error.field = relative;
    error.message = if let Some(rest) = body.strip_prefix("duplicate field `") {
        let key = rest.split('`').next().unwrap_or_default();
        format!("key `{key}` is given twice; keep only one")
    } else {
        body.to_string()
    };
    error
}

/// Split serde_yaml's `path: message` (the path only for a few known roots).
fn split_path(msg: &str) -> (Option<&str>, &str) {
    for root in ["tenants", "defaults", "metrics"] {
        if let Some(rest) = msg.strip_prefix(root) {
            if rest.starts_with(['.', ':', '[']) {
                if let Some(i) = msg.find(": ") {
                    return (Some(&msg[..i]), &msg[i + 2..]);
                }
            }
        }
    }
    (None, msg)
}

/// Where an error belongs.
#[derive(Debug, Clone, Copy)]
enum Scope<'n> {
    Metrics,
    Defaults,
    Tenant(&'n str),
}

impl<'n> Scope<'n> {
    fn base(self) -> Vec<&'n str> {
        match self {
            Scope::Metrics => vec!["metrics"],
            Scope::Defaults => vec!["defaults"],
            Scope::Tenant(t) => vec!["tenants", t],
        }
    }

    fn field(self, key: &str) -> String {
        match self {
            Scope::Metrics => format!("metrics.{key}"),
            Scope::Defaults => format!("defaults.{key}"),
            Scope::Tenant(_) => key.to_string(),
        }
    }

    fn tenant(self) -> Option<String> {
        match self {
            Scope::Tenant(t) => Some(t.to_string()),
            _ => None,
        }
    }
}

struct Ctx<'a> {
    file: &'a Path,
    /// The file's text, for the locator.
    text: &'a str,
    /// Key positions, built from `text` when the first error needs one.
    locator: OnceCell<Locator>,
    errors: Vec<ConfigError>,
}

impl Ctx<'_> {
    fn locator(&self) -> &Locator {
        self.locator.get_or_init(|| Locator::new(self.text))
    }

    /// An error about `key` (a dotted field under `scope`), located at that key
    /// or the nearest enclosing key found in the text.
    fn err(&mut self, scope: Scope<'_>, key: Option<&str>, message: impl Into<String>) {
        let at: Vec<&str> = key.map(|k| k.split('.').collect()).unwrap_or_default();
        self.err_at(scope, key, &at, message);
    }

    /// Like [`Ctx::err`], but located at `at` (keys under `scope`) instead.
    fn err_at(
        &mut self,
        scope: Scope<'_>,
        key: Option<&str>,
        at: &[&str],
        message: impl Into<String>,
    ) {
        let mut path = scope.base();
        path.extend_from_slice(at);
        let span = self.locator().find_nearest(&path);
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            tenant: scope.tenant(),
            field: key.map(|k| scope.field(k)),
            line: span.map(|s| s.line),
            column: span.map(|s| s.column),
            message: message.into(),
        });
    }

    /// An error about list item `item` (0-based) of the list at `at` (keys
    /// under `scope`), located at the item's `- ` line where the text shows
    /// one, else at the list's key.
    fn err_item(
        &mut self,
        scope: Scope<'_>,
        key: &str,
        at: &[&str],
        item: Option<usize>,
        message: impl Into<String>,
    ) {
        let mut path = scope.base();
        path.extend_from_slice(at);
        let span = item
            .and_then(|i| self.locator().find_item(&path, i))
            .or_else(|| self.locator().find_nearest(&path));
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            tenant: scope.tenant(),
            field: Some(scope.field(key)),
            line: span.map(|s| s.line),
            column: span.map(|s| s.column),
            message: message.into(),
        });
    }

    /// Parse an optional value; an error is recorded and gives `None`.
    fn value<T>(
        &mut self,
        scope: Scope<'_>,
        key: &str,
        v: Option<&Value>,
        parse: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Option<T> {
        match parse(v?) {
            Ok(t) => Some(t),
            Err(m) => {
                self.err(scope, Some(key), m);
                None
            }
        }
    }
}

/// Settings a tenant inherits from `defaults` (or the built-in defaults).
#[derive(Debug, Clone)]
struct Common {
    /// `None` when the `defaults.upstream` given is invalid (already reported).
    upstream: Option<PathBuf>,
    mode: u32,
    access: AccessPolicy,
    max_connections: usize,
    idle_timeout: Option<Duration>,
    drain_timeout: Duration,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl Common {
    fn builtin() -> Self {
        Common {
            upstream: Some(PathBuf::from(DEFAULT_UPSTREAM)),
            mode: DEFAULT_MODE,
            access: AccessPolicy::Full,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: None,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// The fields `defaults` and tenants share.
struct CommonRaw<'v> {
    upstream: Option<&'v Value>,
    mode: Option<&'v Value>,
    access: Option<&'v Value>,
    max_connections: Option<&'v Value>,
    idle_timeout: Option<&'v Value>,
    drain_timeout: Option<&'v Value>,
    connect_timeout: Option<&'v Value>,
    request_timeout: Option<&'v Value>,
}

impl<'v> From<&'v RawDefaults> for CommonRaw<'v> {
    fn from(d: &'v RawDefaults) -> Self {
        CommonRaw {
            upstream: d.upstream.as_ref(),
            mode: d.mode.as_ref(),
            access: d.access.as_ref(),
            max_connections: d.max_connections.as_ref(),
            idle_timeout: d.idle_timeout.as_ref(),
            drain_timeout: d.drain_timeout.as_ref(),
            connect_timeout: d.connect_timeout.as_ref(),
            request_timeout: d.request_timeout.as_ref(),
        }
    }
}

impl<'v> From<&'v RawTenant> for CommonRaw<'v> {
    fn from(t: &'v RawTenant) -> Self {
        CommonRaw {
            upstream: t.upstream.as_ref(),
            mode: t.mode.as_ref(),
            access: t.access.as_ref(),
            max_connections: t.max_connections.as_ref(),
            idle_timeout: t.idle_timeout.as_ref(),
            drain_timeout: t.drain_timeout.as_ref(),
            connect_timeout: t.connect_timeout.as_ref(),
            request_timeout: t.request_timeout.as_ref(),
        }
    }
}

fn resolve(
    ctx: &mut Ctx<'_>,
    raw: &RawConfig,
    shadow: &LazyModeShadow<'_>,
    db: &mut SubIdDb<'_>,
) -> Config {
    let metrics = resolve_metrics(ctx, raw);
    let defaults = match &raw.defaults {
        Some(d) => resolve_common(
            ctx,
            Scope::Defaults,
            CommonRaw::from(d),
            || shadow.mode(None),
            &Common::builtin(),
        ),
        None => Common::builtin(),
    };

    let mut tenants = std::collections::BTreeMap::new();
    // (tenant, listen) and (tenant, upstream) of every tenant whose values are valid.
    let mut listens: Vec<(&str, PathBuf)> = Vec::new();
    let mut upstreams: Vec<(&str, PathBuf)> = Vec::new();
    let empty = RawTenant::default();
    for (name, tenant) in raw.tenants.iter().flat_map(|t| t.0.iter()) {
        let scope = Scope::Tenant(name);
        let before = ctx.errors.len();
        if let Err(m) = values::check_tenant_name(name) {
            ctx.err(scope, None, m);
        }
        let t = tenant.as_ref().unwrap_or(&empty);
        let listen = match &t.listen {
            None => {
                ctx.err(
                    scope,
                    Some("listen"),
                    format!(
                        "missing `listen`: the socket path to create, e.g. listen: /run/sockbroker/{name}/docker.sock"
                    ),
                );
                None
            }
            Some(v) => ctx.value(scope, "listen", Some(v), |v| {
                parse_socket_path(v, &format!("/run/sockbroker/{name}/docker.sock"))
            }),
        };
        let common = resolve_common(
            ctx,
            scope,
            CommonRaw::from(t),
            || shadow.mode(Some(name)),
            &defaults,
        );
        let owner = resolve_owner(ctx, scope, t, db);
        let allow = resolve_allow(ctx, scope, &t.allow);
        if let Some(l) = &listen {
            listens.push((name, l.clone()));
        }
        if let Some(u) = &common.upstream {
            upstreams.push((name, u.clone()));
        }
        if ctx.errors.len() != before {
            continue;
        }
        let (Some(listen), Some((uid, gid, owner)), Some(allow), Some(upstream)) =
            (listen, owner, allow, common.upstream)
        else {
            continue;
        };
        tenants.insert(
            name.clone(),
            TenantSpec {
                name: name.clone(),
                listen,
                uid,
                gid,
                owner,
                mode: common.mode,
                upstream,
                allow,
                access: common.access,
                max_connections: common.max_connections,
                idle_timeout: common.idle_timeout,
                drain_timeout: common.drain_timeout,
                connect_timeout: common.connect_timeout,
                request_timeout: common.request_timeout,
            },
        );
    }

    check_paths(ctx, &listens, &upstreams, metrics.as_ref());
    Config { metrics, tenants }
}

fn resolve_metrics(ctx: &mut Ctx<'_>, raw: &RawConfig) -> Option<MetricsConfig> {
    const HINT: &str = "set metrics.listen (e.g. listen: 127.0.0.1:9477), or remove the `metrics` section to disable the endpoints";
    match &raw.metrics {
        None => None,
        Some(None) | Some(Some(super::raw::RawMetrics { listen: None })) => {
            ctx.err(
                Scope::Metrics,
                Some("listen"),
                format!("metrics has no listen address; {HINT}"),
            );
            None
        }
        Some(Some(m)) => ctx
            .value(
                Scope::Metrics,
                "listen",
                m.listen.as_ref(),
                parse_metrics_listen,
            )
            .map(|listen| MetricsConfig { listen }),
    }
}

fn resolve_common<'m>(
    ctx: &mut Ctx<'_>,
    scope: Scope<'_>,
    raw: CommonRaw<'_>,
    mode_text: impl Fn() -> Option<&'m str>,
    base: &Common,
) -> Common {
    let mut c = base.clone();
    if let Some(v) = raw.upstream {
        c.upstream = ctx.value(scope, "upstream", Some(v), |v| {
            parse_socket_path(v, DEFAULT_UPSTREAM)
        });
    }
    if let Some(m) = ctx.value(scope, "mode", raw.mode, |v| parse_mode(v, mode_text())) {
        c.mode = m;
    }
    if let Some(v) = raw.access {
        match parse_access(v) {
            Ok(a) => c.access = a,
            Err(errors) => {
                for e in errors {
                    match e {
                        AccessError::Message {
                            key: None, message, ..
                        } => ctx.err(scope, Some("access"), message),
                        AccessError::Message {
                            key: Some(k),
                            item,
                            message,
                        } => ctx.err_item(
                            scope,
                            &format!("access.{k}"),
                            &["access", k],
                            item,
                            message,
                        ),
                        AccessError::UnknownKey(k, valid) => ctx.err_at(
                            scope,
                            Some(&format!("access.{k}")),
                            &["access", &k],
                            unknown_key_message(&k, &valid, " in access"),
                        ),
                    }
                }
            }
        }
    }
    if let Some(n) = ctx.value(
        scope,
        "max_connections",
        raw.max_connections,
        parse_max_connections,
    ) {
        c.max_connections = n;
    }
    if let Some(d) = ctx.value(scope, "idle_timeout", raw.idle_timeout, |v| {
        parse_duration(v, DurationKind::Idle)
    }) {
        c.idle_timeout = d;
    }
    if let Some(Some(d)) = ctx.value(scope, "drain_timeout", raw.drain_timeout, |v| {
        parse_duration(v, DurationKind::Drain)
    }) {
        c.drain_timeout = d;
    }
    if let Some(Some(d)) = ctx.value(scope, "connect_timeout", raw.connect_timeout, |v| {
        parse_duration(v, DurationKind::Connect)
    }) {
        c.connect_timeout = d;
    }
    if let Some(Some(d)) = ctx.value(scope, "request_timeout", raw.request_timeout, |v| {
        parse_duration(v, DurationKind::Request)
    }) {
        c.request_timeout = d;
    }
    c
}

/// The socket's owner: `uid` + `gid`, or `userns`.
fn resolve_owner(
    ctx: &mut Ctx<'_>,
    scope: Scope<'_>,
    t: &RawTenant,
    db: &mut SubIdDb<'_>,
) -> Option<(u32, u32, OwnerSource)> {
    let uid = ctx.value(scope, "uid", t.uid.as_ref(), |v| parse_id(v, "uid"));
    let gid = ctx.value(scope, "gid", t.gid.as_ref(), |v| parse_id(v, "gid"));
    match (&t.userns, &t.uid, &t.gid) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            ctx.err(
                scope,
                Some("userns"),
                "both uid/gid and userns are set; set either uid and gid, or userns (which takes the owner \
                 from /etc/subuid and /etc/subgid), not both",
            );
            None
        }
        (Some(u), None, None) => resolve_userns(ctx, scope, u, db),
        (None, Some(_), Some(_)) => Some((uid?, gid?, OwnerSource::Ids)),
        (None, Some(_), None) => {
            ctx.err_at(
                scope,
                Some("gid"),
                &["uid"],
                "uid is set without gid; add gid (e.g. gid: 231072) next to it, or use userns instead",
            );
            None
        }
        (None, None, Some(_)) => {
            ctx.err_at(
                scope,
                Some("uid"),
                &["gid"],
                "gid is set without uid; add uid (e.g. uid: 231072) next to it, or use userns instead",
            );
            None
        }
        (None, None, None) => {
            ctx.err(
                scope,
                None,
                "no owner for the socket: set uid and gid (e.g. uid: 231072 and gid: 231072), or \
                 userns: NAME to use the first ids of NAME's ranges in /etc/subuid and /etc/subgid",
            );
            None
        }
    }
}

fn resolve_userns(
    ctx: &mut Ctx<'_>,
    scope: Scope<'_>,
    v: &Value,
    db: &mut SubIdDb<'_>,
) -> Option<(u32, u32, OwnerSource)> {
    const HINT: &str =
        "write userns: NAME (e.g. userns: dockremap) or userns: {user: NAME, uid: 0, gid: 0}";
    let (user, cuid, cgid) = match v {
        Value::String(s) => (s.trim().to_string(), Some(0), Some(0)),
        Value::Mapping(_) => match serde_yaml::from_value::<RawUsernsMap>(v.clone()) {
            Err(e) => {
                let text = e.to_string();
                match parse_unknown_field(&text) {
                    Some(u) => ctx.err_at(
                        scope,
                        Some(&format!("userns.{}", u.key)),
                        &["userns", &u.key],
                        unknown_key_message(&u.key, &u.expected, " in userns"),
                    ),
                    None => ctx.err(scope, Some("userns"), format!("{text}; {HINT}")),
                }
                return None;
            }
            Ok(m) => {
                let user = match &m.user {
                    Some(Value::String(s)) => s.trim().to_string(),
                    None => {
                        ctx.err(
                            scope,
                            Some("userns"),
                            format!("userns needs `user`; {HINT}"),
                        );
                        return None;
                    }
                    Some(other) => {
                        ctx.err(
                            scope,
                            Some("userns.user"),
                            format!("{} is not a user name; {HINT}", describe(other)),
                        );
                        return None;
                    }
                };
                let cuid = match &m.uid {
                    None => Some(0),
                    v => ctx.value(scope, "userns.uid", v.as_ref(), |v| parse_id(v, "uid")),
                };
                let cgid = match &m.gid {
                    None => Some(0),
                    v => ctx.value(scope, "userns.gid", v.as_ref(), |v| parse_id(v, "gid")),
                };
                (user, cuid, cgid)
            }
        },
        other => {
            ctx.err(
                scope,
                Some("userns"),
                format!("{} is not a user namespace owner; {HINT}", describe(other)),
            );
            return None;
        }
    };
    if user.is_empty() || user.contains(['\0', ':', '\n']) {
        ctx.err(
            scope,
            Some("userns"),
            format!("{user:?} is not a user name; {HINT}"),
        );
        return None;
    }
    let uid = map_id(ctx, scope, db, Kind::Uid, &user, cuid?);
    let gid = map_id(ctx, scope, db, Kind::Gid, &user, cgid?);
    Some((
        uid?,
        gid?,
        OwnerSource::Userns {
            user,
            container_uid: cuid?,
            container_gid: cgid?,
        },
    ))
}

/// Host id = start of `user`'s first range + the container-side id.
fn map_id(
    ctx: &mut Ctx<'_>,
    scope: Scope<'_>,
    db: &mut SubIdDb<'_>,
    kind: Kind,
    user: &str,
    container_id: u32,
) -> Option<u32> {
    let path = db.path(kind).display().to_string();
    let (what, env) = match kind {
        Kind::Uid => ("uid", "SOCKBROKER_SUBUID"),
        Kind::Gid => ("gid", "SOCKBROKER_SUBGID"),
    };
    match db.first_range(kind, user) {
        Err(e) => {
            ctx.err(
                scope,
                Some("userns"),
                format!(
                    "cannot read {path}: {e}; userns owners are resolved from it (make it readable, \
                     or set {env} to use another file)"
                ),
            );
            None
        }
        Ok(None) => {
            ctx.err(
                scope,
                Some("userns"),
                format!(
                    "user {user:?} has no range in {path}; add a line \"{user}:START:COUNT\" to it \
                     (e.g. with `usermod --add-sub{what}s START-END {user}`), or set uid and gid instead"
                ),
            );
            None
        }
        Ok(Some((start, count))) => {
            if container_id >= count {
                let key = format!("userns.{what}");
                ctx.err(
                    scope,
                    Some(&key),
                    format!(
                        "container {what} {container_id} is outside {user}'s first range in {path} \
                         ({start}:{count} maps container {what}s 0…{}); use a smaller {what}",
                        count - 1
                    ),
                );
                return None;
            }
            let host = u64::from(start) + u64::from(container_id);
            if host > u64::from(MAX_ID) {
                ctx.err(
                    scope,
                    Some("userns"),
                    format!(
                        "{user}'s range in {path} maps container {what} {container_id} to {host}, above {MAX_ID}; fix the range"
                    ),
                );
                return None;
            }
            Some(host as u32)
        }
    }
}

/// `allow`: `Some(None)` = absent (any peer); `None` = an error was recorded.
fn resolve_allow(
    ctx: &mut Ctx<'_>,
    scope: Scope<'_>,
    raw: &Option<Option<RawAllow>>,
) -> Option<Option<AllowList>> {
    const EMPTY: &str =
        "allow lists no ids; add uids and/or gids (e.g. uids: [\"231072-296607\"]), or remove `allow` to \
         admit any peer the socket mode lets in";
    let a = match raw {
        None => return Some(None),
        Some(None) => {
            ctx.err(scope, Some("allow"), EMPTY);
            return None;
        }
        Some(Some(a)) => a,
    };
    let before = ctx.errors.len();
    let uids = id_list(ctx, scope, "uids", a.uids.as_ref());
    let gids = id_list(ctx, scope, "gids", a.gids.as_ref());
    if ctx.errors.len() != before {
        return None;
    }
    if uids.is_empty() && gids.is_empty() {
        ctx.err(scope, Some("allow"), EMPTY);
        return None;
    }
    Some(Some(AllowList { uids, gids }))
}

fn id_list(ctx: &mut Ctx<'_>, scope: Scope<'_>, which: &str, v: Option<&Value>) -> Vec<IdRange> {
    let key = format!("allow.{which}");
    match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Sequence(items)) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match parse_id_range(item) {
                    Ok(r) => out.push(r),
                    Err(m) => ctx.err(scope, Some(&key), format!("entry {}: {m}", i + 1)),
                }
            }
            out
        }
        Some(other) => {
            ctx.err(
                scope,
                Some(&key),
                format!(
                    "{} is not a list; write a list of ids and ranges, e.g. {which}: [1000, \"231072-296607\"]",
                    describe(other)
                ),
            );
            Vec::new()
        }
    }
}

/// Cross-tenant rules: every `listen` unique, no `listen` equal to an
/// `upstream`, and the metrics socket clear of both.
fn check_paths(
    ctx: &mut Ctx<'_>,
    listens: &[(&str, PathBuf)],
    upstreams: &[(&str, PathBuf)],
    metrics: Option<&MetricsConfig>,
) {
    // Indexed by path (first tenant wins, as a linear search would find it):
    // pairwise comparison made 10,000 tenants take seconds (docs/performance.md).
    let mut first_upstream: HashMap<&Path, &str> = HashMap::with_capacity(upstreams.len());
    for (owner, u) in upstreams {
        first_upstream.entry(u.as_path()).or_insert(owner);
    }
    let mut seen: HashMap<&Path, &str> = HashMap::with_capacity(listens.len());
    for (name, listen) in listens {
        let scope = Scope::Tenant(name);
        if let Some(other) = seen.get(listen.as_path()).copied() {
            ctx.err(
                scope,
                Some("listen"),
                format!(
                    "listen {} is also the listen path of tenant {other:?}; every tenant needs its own \
                     socket path (and its own directory)",
                    quoted(listen)
                ),
            );
        }
        seen.entry(listen.as_path()).or_insert(name);
        if let Some(owner) = first_upstream.get(listen.as_path()).copied() {
            let whose = if owner == *name {
                "this tenant's own upstream".to_string()
            } else {
                format!("the upstream of tenant {owner:?}")
            };
            ctx.err(
                scope,
                Some("listen"),
                format!(
                    "listen {} is {whose}; a tenant socket must not replace the socket it relays to — \
                     choose another listen path, e.g. /run/sockbroker/{name}/docker.sock",
                    quoted(listen)
                ),
            );
        }
    }
    if let Some(MetricsConfig {
        listen: MetricsListen::Unix(path),
    }) = metrics
    {
        let clash = listens
            .iter()
            .map(|(t, l)| (t, l, "listen path"))
            .chain(upstreams.iter().map(|(t, u)| (t, u, "upstream")))
            .find(|(_, p, _)| *p == path);
        if let Some((tenant, _, what)) = clash {
            ctx.err(
                Scope::Metrics,
                Some("listen"),
                format!(
                    "unix:{} is the {what} of tenant {tenant:?}; give the metrics socket its own path",
                    path.display()
                ),
            );
        }
    }
}

fn quoted(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}
