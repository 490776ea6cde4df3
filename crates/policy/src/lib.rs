//! Docker API access policies (DESIGN.md "Docker API access policy"): what a
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
//! Order of evaluation, first match wins:
//! 1. `CONNECT` is refused (the engine has no use for it);
//! 2. a matching **deny** rule refuses;
//! 3. a matching **allow** rule admits (skipping the preset's method/path checks);
//! 4. otherwise the **preset** decides: `full` admits, `read-only` admits GET and
//!    HEAD without an upgrade, `userns-safe` admits all but plugin installs,
//!    swarm membership and service specs; without a preset, nothing else is admitted;
//! 5. with `userns-safe`, an admitted container create/update/start, exec
//!    create or volume create is admitted only if its body passes
//!    [`inspect::check`] (also when an allow rule admitted it), and a build
//!    asking for `networkmode=host` or a `cgroupparent` is refused.
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms)]

pub mod http1;
pub mod inspect;
pub mod path;
pub mod rules;
pub mod scope;

use std::fmt;
use std::path::PathBuf;

pub use inspect::{BodyKind, HostPaths, Lexical, RealFs};
pub use path::{normalize, Target, TargetError};
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
    pub fn decide(&self, method: &str, target: &Target, upgrade: bool) -> Decision {
        let path = target.path.as_str();
        if method.eq_ignore_ascii_case("CONNECT") {
            return Decision::Deny("CONNECT is not supported".into());
        }
        if let Some(r) = self
            .deny
            .iter()
            .find(|r| r.matches(method, path, Case::Fold))
        {
            return Decision::Deny(format!("deny rule \"{r}\""));
        }
        let by_rule = self
            .allow
            .iter()
            .any(|r| r.matches(method, path, Case::Exact));
        if !by_rule {
            match self.preset {
                None => return Decision::Deny("no allow rule matches".into()),
                Some(Preset::Full) => {}
                Some(Preset::ReadOnly) => {
                    if let Some(why) = read_only_refuses(method, path, upgrade) {
                        return Decision::Deny(why);
                    }
                }
                Some(Preset::UsernsSafe) => {
                    if let Some(why) = userns_safe_refuses_route(method, path) {
                        return Decision::Deny(why);
                    }
                }
            }
        }
        if self.preset == Some(Preset::UsernsSafe) {
            if let Some(q) = &target.query {
                if is(path, &["build"]) {
                    if path::query_values(q, "networkmode")
                        .iter()
                        .any(|v| v.trim().eq_ignore_ascii_case("host"))
                    {
                        return Decision::Deny("build with networkmode host".into());
                    }
                    if path::query_values(q, "cgroupparent")
                        .iter()
                        .any(|v| !v.is_empty())
                    {
                        return Decision::Deny("build with cgroupparent".into());
                    }
                }
            }
            if let Some(kind) = inspected_body(path) {
                return Decision::Inspect(kind);
            }
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

/// Whether `path` is exactly these segments (ignoring ASCII case); `*` in
/// `segs` matches any one segment.
fn is(path: &str, segs: &[&str]) -> bool {
    let mut parts = path.split('/').filter(|s| !s.is_empty());
    for s in segs {
        match parts.next() {
            Some(p) if *s == "*" || p.eq_ignore_ascii_case(s) => {}
            _ => return false,
        }
    }
    parts.next().is_none()
}

/// The first segment of `path`, if any.
fn first(path: &str) -> &str {
    path.split('/').find(|s| !s.is_empty()).unwrap_or("")
}

/// `read-only`: GET and HEAD only; no upgrades, no websocket attach.
fn read_only_refuses(method: &str, path: &str, upgrade: bool) -> Option<String> {
    let m = method.to_ascii_uppercase();
    if m != "GET" && m != "HEAD" {
        return Some("read-only".into());
    }
    if is(path, &["containers", "*", "attach", "ws"]) {
        return Some("read-only: attach".into());
    }
    if upgrade {
        return Some("read-only: protocol upgrade".into());
    }
    None
}

/// `userns-safe` routes refused outright: plugins (they run with the
/// privileges they ask for, outside the remapping), swarm membership (a
/// foreign manager could schedule anything) and service specs (not inspected).
fn userns_safe_refuses_route(method: &str, path: &str) -> Option<String> {
    let m = method.to_ascii_uppercase();
    if m == "GET" || m == "HEAD" {
        return None;
    }
    let top = first(path);
    if top.eq_ignore_ascii_case("plugins") {
        return Some("userns-safe: plugins run outside the user namespace".into());
    }
    if top.eq_ignore_ascii_case("swarm") {
        return Some("userns-safe: swarm membership".into());
    }
    if is(path, &["services", "create"]) || is(path, &["services", "*", "update"]) {
        return Some("userns-safe: service specs are not inspected".into());
    }
    None
}

/// The requests whose bodies `userns-safe` reads (whatever the method: a
/// method the engine does not route here costs one inspection, nothing more).
fn inspected_body(path: &str) -> Option<BodyKind> {
    if is(path, &["containers", "create"]) {
        Some(BodyKind::ContainerCreate)
    } else if is(path, &["containers", "*", "update"]) {
        Some(BodyKind::ContainerUpdate)
    } else if is(path, &["containers", "*", "start"]) {
        Some(BodyKind::ContainerStart)
    } else if is(path, &["containers", "*", "exec"]) {
        Some(BodyKind::ExecCreate)
    } else if is(path, &["volumes", "create"]) {
        Some(BodyKind::VolumeCreate)
    } else {
        None
    }
}

/// Whether a path segment is an API version prefix: `v` followed by digits and
/// dots, the engine's `/v{version:[0-9.]+}` (`V` too, to fail closed).
pub(crate) fn path_is_version(seg: &str) -> bool {
    let mut c = seg.chars();
    matches!(c.next(), Some('v' | 'V'))
        && seg.len() > 1
        && c.all(|c| c.is_ascii_digit() || c == '.')
}

#[cfg(test)]
mod tests;
