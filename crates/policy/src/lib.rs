//! Docker API access policies (docs/configuration.md "Access policies"): what a
//! tenant may ask of the engine, decided per HTTP request.
//!
//! Pure logic, no I/O (except resolving bind-mount paths through
//! [`HostPaths`]): [`path::normalize`] brings a request target to the form the
//! engine routes on, [`Policy::decide`] checks `METHOD path` against the deny
//! rules, the allow rules and the preset, and for `userns-safe` names the
//! request bodies that must be read and checked by [`inspect::check`] before
//! the request may go on. The broker's HTTP relay (`sockbroker::policy_relay`)
//! drives it, framing messages with [`http1`].
//!
//! This crate is the broker's pure request-checking logic on its own, with no
//! async runtime, metrics or config dependencies, so that the fuzz targets
//! (`fuzz/`, cargo-fuzz with sanitizers) build only this. The broker re-exports
//! it as `sockbroker::policy` (and [`http1`] as `sockbroker::policy_relay::http1`).
//!
//! Order of evaluation, first match wins (the path is first resolved against
//! the engine's route table, [`route::resolve`], so that an object name of
//! any number of segments is one segment for every rule and check):
//! 1. `CONNECT` is refused (the engine has no use for it);
//! 2. a matching **deny** rule refuses (matched on the raw and the resolved
//!    segments, and a `/libpod/X` path also as `/X`);
//! 3. `userns-safe` refuses Podman's `/libpod/…` API (never inspected);
//! 4. a matching **allow** rule admits (skipping the preset's method/path checks);
//! 5. otherwise the **preset** decides: `full` admits; `read-only` admits GET
//!    and HEAD on known routes, without an upgrade and without contents
//!    (archive, export, image tarballs, swarm unlock key and join tokens);
//!    `userns-safe` admits known routes but plugin changes, swarm membership
//!    and service specs; without a preset, nothing else is admitted;
//! 6. with `userns-safe`, an admitted container create/update/start, exec
//!    create, checkpoint create or volume create is admitted only if its body
//!    passes [`inspect::check`] (also when an allow rule admitted it), and a
//!    build asking for `networkmode=host` or a `cgroupparent`, or a start
//!    from a `checkpoint-dir`, is refused; with any other policy but `full`,
//!    a container start's body (API < 1.24: a HostConfig) is checked the same.
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms)]

pub mod http1;
pub mod inspect;
pub mod path;
pub mod route;
pub mod rules;
pub mod scope;

use std::fmt;
use std::path::PathBuf;

pub use inspect::{BodyKind, HostPaths, Lexical, RealFs};
pub use path::{normalize, Target, TargetError};
pub use route::Route;
pub use rules::{Case, Rule};

/// The built-in policies a tenant can start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// Everything (with a policy: every request is still parsed, counted, logged
    /// and checked against the deny rules).
    Full,
    /// GET and HEAD only, no upgrades (no attach/ws).
    ReadOnly,
    /// Ordinary use, but nothing that leaves the user namespace.
    UsernsSafe,
}

impl Preset {
    /// The name as written in the file.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Full => "full",
            Preset::ReadOnly => "read-only",
            Preset::UsernsSafe => "userns-safe",
        }
    }

    /// Parse a preset name.
    pub fn from_name(s: &str) -> Option<Preset> {
        match s {
            "full" => Some(Preset::Full),
            "read-only" => Some(Preset::ReadOnly),
            "userns-safe" => Some(Preset::UsernsSafe),
            _ => None,
        }
    }
}

/// A tenant's policy as configured: a preset and/or rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The preset that decides what no rule matches; `None` = refuse it.
    pub preset: Option<Preset>,
    /// Host directories `userns-safe` lets containers bind-mount (at or below).
    pub bind_allow: Vec<PathBuf>,
    /// Rules that admit a request (before the preset is asked).
    pub allow: Vec<Rule>,
    /// Rules that refuse a request (before anything else).
    pub deny: Vec<Rule>,
}

impl Policy {
    /// A policy that is just a preset.
    pub fn preset(p: Preset) -> Policy {
        Policy {
            preset: Some(p),
            bind_allow: Vec::new(),
            allow: Vec::new(),
            deny: Vec::new(),
        }
    }

    /// Whether every request is admitted (preset `full`, no deny rules): then an
    /// HTTP/2 connection, which cannot be checked, may pass through.
    pub fn allows_everything(&self) -> bool {
        self.preset == Some(Preset::Full) && self.deny.is_empty()
    }

    /// Decide a request from its method, normalized target and whether it asks
    /// for a protocol upgrade (an `Upgrade` header).
    pub fn decide(&self, method: &str, target: &Target<'_>, upgrade: bool) -> Decision {
        let path: &str = &target.path;
        if method.eq_ignore_ascii_case("CONNECT") {
            return Decision::Deny("CONNECT is not supported".into());
        }
        let route = route::resolve(method, path);
        // Deny rules see every spelling: raw and folded segments, and a
        // libpod path as its Docker twin (fail closed).
        if !self.deny.is_empty() {
            for view in route.deny_views(method) {
                if let Some(r) = self
                    .deny
                    .iter()
                    .find(|r| r.matches_route(method, view, Case::Fold))
                {
                    return Decision::Deny(format!("deny rule \"{r}\""));
                }
            }
        }
        // Podman's own API: its bodies are never inspected, so userns-safe
        // refuses it whatever the allow rules say (they never skip checks).
        if self.preset == Some(Preset::UsernsSafe) && route.libpod {
            return Decision::Deny(
                "userns-safe: Podman's libpod API is not checked; use its Docker API".into(),
            );
        }
        // Allow rules see the route as the engine binds it.
        let by_rule = self
            .allow
            .iter()
            .any(|r| r.matches_route(method, route.segments(), Case::Exact));
        if !by_rule {
            match self.preset {
                None => return Decision::Deny("no allow rule matches".into()),
                Some(Preset::Full) => {}
                Some(Preset::ReadOnly) => {
                    if let Some(why) = read_only_refuses(method, &route, upgrade) {
                        return Decision::Deny(why);
                    }
                }
                Some(Preset::UsernsSafe) => {
                    if let Some(why) = userns_safe_refuses_route(method, &route) {
                        return Decision::Deny(why);
                    }
                }
            }
        }
        match self.preset {
            Some(Preset::UsernsSafe) => {
                if let Some(why) = userns_safe_refuses_query(&route, target.query.as_deref()) {
                    return Decision::Deny(why);
                }
                if let Some(kind) = inspected_body(&route) {
                    return Decision::Inspect(kind);
                }
            }
            // A start body (API < 1.24) is a HostConfig: a tenant allowed to
            // start containers is not thereby allowed to make them
            // privileged. Checked for every policy but `full`.
            Some(Preset::ReadOnly) | None => {
                if route.is(&["containers", "*", "start"]) {
                    return Decision::Inspect(BodyKind::ContainerStart);
                }
            }
            Some(Preset::Full) => {}
        }
        Decision::Allow
    }

    /// Check a body named by [`Decision::Inspect`]; `Err(reason)` refuses.
    pub fn check_body(
        &self,
        kind: BodyKind,
        body: &[u8],
        fs: &dyn HostPaths,
    ) -> Result<(), String> {
        inspect::check(kind, body, &self.bind_allow, fs)
    }
}

impl fmt::Display for Policy {
    /// A one-line summary for `sockbroker check`: `read-only`,
    /// `userns-safe (bind_allow /srv/data)`, `rules (2 allow, 1 deny)`,
    /// `read-only + rules (1 allow)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(p) = self.preset {
            let mut s = p.name().to_string();
            if !self.bind_allow.is_empty() {
                let dirs: Vec<String> = self
                    .bind_allow
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect();
                s.push_str(&format!(" (bind_allow {})", dirs.join(",")));
            }
            parts.push(s);
        }
        if !self.allow.is_empty() || !self.deny.is_empty() {
            let mut counts = Vec::new();
            if !self.allow.is_empty() {
                counts.push(format!("{} allow", self.allow.len()));
            }
            if !self.deny.is_empty() {
                counts.push(format!("{} deny", self.deny.len()));
            }
            parts.push(format!("rules ({})", counts.join(", ")));
        }
        f.write_str(&parts.join(" + "))
    }
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forward it as it is; its body is streamed.
    Allow,
    /// Read its whole body (bounded), then [`Policy::check_body`] decides.
    Inspect(BodyKind),
    /// Refuse it; the reason goes into the 403 message and the audit line.
    Deny(String),
}

/// `read-only` is monitoring: GET and HEAD on the engine's known routes,
/// without protocol upgrades (attach), file contents (`archive`, `export`,
/// image tarballs), swarm secrets (the unlock key, the join tokens in
/// `GET /swarm`) or requests the engine makes to a registry (`images/search`,
/// `plugins/privileges`, `distribution`). An allow rule opens any of these per tenant.
fn read_only_refuses(method: &str, route: &Route<'_>, upgrade: bool) -> Option<String> {
    if !method.eq_ignore_ascii_case("GET") && !method.eq_ignore_ascii_case("HEAD") {
        return Some("read-only".into());
    }
    if route.libpod {
        return Some("read-only: Podman's libpod API is not checked; use its Docker API".into());
    }
    if !route.known {
        return Some("read-only: not a Docker API route sockbroker knows".into());
    }
    if route.is(&["containers", "*", "attach", "ws"]) {
        return Some("read-only: attach".into());
    }
    if upgrade {
        return Some("read-only: protocol upgrade".into());
    }
    for (segs, what) in [
        (&["containers", "*", "archive"][..], "file contents"),
        (&["containers", "*", "export"], "file contents"),
        (&["images", "get"], "image contents"),
        (&["images", "*", "get"], "image contents"),
        (&["swarm", "unlockkey"], "swarm unlock key"),
        (&["swarm"], "swarm join tokens"),
        // The engine contacts the registry the term or name names, from the
        // host's network (plain HTTP for one on 127.0.0.0/8).
        (
            &["images", "search"],
            "registry requests from the host's network",
        ),
        (
            &["plugins", "privileges"],
            "registry requests from the host's network",
        ),
        (
            &["distribution", "*", "json"],
            "registry requests from the host's network",
        ),
    ] {
        if route.is(segs) {
            return Some(format!("read-only: {what}"));
        }
    }
    None
}

/// `userns-safe` routes refused outright: routes sockbroker does not know
/// (Podman's libpod API included: its bodies are not inspected), plugins
/// (they run with the privileges they ask for, outside the remapping),
/// swarm membership (a foreign manager could schedule anything) and service
/// specs (not inspected).
fn userns_safe_refuses_route(method: &str, route: &Route<'_>) -> Option<String> {
    if !route.known {
        return Some("userns-safe: not a Docker API route sockbroker knows".into());
    }
    if ["GET", "HEAD", "OPTIONS"]
        .iter()
        .any(|m| method.eq_ignore_ascii_case(m))
    {
        return None;
    }
    let top = route.first();
    if top.eq_ignore_ascii_case("plugins") {
        return Some("userns-safe: plugins run outside the user namespace".into());
    }
    if top.eq_ignore_ascii_case("swarm") {
        return Some("userns-safe: swarm membership".into());
    }
    if route.is(&["services", "create"]) || route.is(&["services", "*", "update"]) {
        return Some("userns-safe: service specs are not inspected".into());
    }
    None
}

/// `userns-safe` query parameters that name host resources: a build on the
/// host network or in another cgroup, a restore from a host directory.
fn userns_safe_refuses_query(route: &Route<'_>, query: Option<&str>) -> Option<String> {
    let q = query?;
    if route.is(&["build"]) {
        if path::query_values(q, "networkmode")
            .iter()
            .any(|v| v.trim().eq_ignore_ascii_case("host"))
        {
            return Some("build with networkmode host".into());
        }
        if path::query_values(q, "cgroupparent")
            .iter()
            .any(|v| !v.is_empty())
        {
            return Some("build with cgroupparent".into());
        }
    }
    if route.is(&["containers", "*", "start"])
        && path::query_values(q, "checkpoint-dir")
            .iter()
            .any(|v| !v.is_empty())
    {
        return Some("start from a checkpoint-dir (a host directory)".into());
    }
    None
}

/// The requests whose bodies `userns-safe` reads (whatever the method: a
/// method the engine does not route here costs one inspection, nothing more).
fn inspected_body(route: &Route<'_>) -> Option<BodyKind> {
    if route.is(&["containers", "create"]) {
        Some(BodyKind::ContainerCreate)
    } else if route.is(&["containers", "*", "update"]) {
        Some(BodyKind::ContainerUpdate)
    } else if route.is(&["containers", "*", "start"]) {
        Some(BodyKind::ContainerStart)
    } else if route.is(&["containers", "*", "exec"]) {
        Some(BodyKind::ExecCreate)
    } else if route.is(&["containers", "*", "checkpoints"]) {
        Some(BodyKind::CheckpointCreate)
    } else if route.is(&["volumes", "create"]) {
        Some(BodyKind::VolumeCreate)
    } else {
        None
    }
}

/// Whether a path segment is an API version prefix: Docker's
/// `/v{version:[0-9.]+}` or Podman's wider `/v{version:[0-9][0-9A-Za-z.-]*}`
/// (`v4.0.0-dev`): `v` (or `V`, to fail closed), a digit or dot, then
/// letters, digits, dots and dashes.
pub(crate) fn path_is_version(seg: &str) -> bool {
    let b = seg.as_bytes();
    b.len() > 1
        && matches!(b[0], b'v' | b'V')
        && (b[1].is_ascii_digit() || b[1] == b'.')
        && b[2..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'-')
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod equivalence;
