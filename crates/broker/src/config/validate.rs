//! From the raw serde view to a [`Config`], collecting every error.
//!
//! This module walks the file (`defaults`, `metrics`, each tenant) and merges
//! defaults; its submodules hold the parts with their own rules: `yaml_error`
//! (serde_yaml's errors), `ids` (owner and `allow`), `paths` (rules across
//! tenants).

mod ids;
mod paths;
mod yaml_error;

use std::cell::OnceCell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml::Value;

use super::access::{parse_access, AccessError};
use super::error::unknown_key_message;
use super::locate::Locator;
use super::raw::{LazyModeShadow, RawConfig, RawDefaults, RawTenant};
use super::subid::SubIdDb;
use super::values::{
    self, parse_duration, parse_max_connections, parse_metrics_listen, parse_mode,
    parse_socket_path, DurationKind,
};
use super::{
    AccessPolicy, Config, ConfigError, ConfigErrors, MetricsConfig, SubIdFiles, TenantSpec,
};
use ids::{resolve_allow, resolve_owner};
use paths::check_paths;
use yaml_error::serde_error;

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
