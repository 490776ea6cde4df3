//! Tenant isolation on a shared engine (`access: {scope: own}`): the pure part.
//!
//! A scoped tenant sees and acts on the objects that carry its label
//! [`LABEL`]`=<tenant>` only (docs/security.md, "Tenant isolation"). This
//! module decides, without I/O, what the broker must do with each request:
//!
//! * [`classify`] names the route: one object named by a reference (resolve it
//!   at the engine, check its owner, forward by full ID), a list/prune/events
//!   (merge the label into `filters`), a create (stamp the label into the
//!   body), a response to filter (`system df`), or a refusal;
//! * [`query`] rewrites query strings (`filters`, a build's `labels`, a
//!   commit's `container`);
//! * [`body`] stamps the label into create bodies and lists the objects a
//!   container create names (`VolumesFrom`, `container:` modes, links, named
//!   volumes and networks);
//! * [`response`] filters answers that mix tenants.
//!
//! Routes are matched the way the engine's router (gorilla/mux, Docker 20.10
//! to 24) matches them: the method exactly, the path case-sensitively, object
//! names as `{name:.*}` (a name may span several segments, `web/al`). What is
//! not recognized is refused: under `scope: own` the broker admits only what
//! it knows how to confine.

pub mod body;
pub mod query;
pub mod response;

use std::fmt;

/// The label that marks an object as a scoped tenant's.
pub const LABEL: &str = "io.sockbroker.tenant";

/// Whose objects a tenant sees (`access: {scope: ...}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Scope {
    /// Every object on the engine (no isolation; the default).
    #[default]
    Engine,
    /// Only the objects labelled with the tenant's name.
    Own,
}

impl Scope {
    /// The name as written in the file.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Engine => "engine",
            Scope::Own => "own",
        }
    }

    /// Parse a scope name.
    pub fn from_name(s: &str) -> Option<Scope> {
        match s {
            "engine" => Some(Scope::Engine),
            "own" => Some(Scope::Own),
            _ => None,
        }
    }
}

/// The kinds of engine objects a request can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A container (name, ID or ID prefix).
    Container,
    /// A volume (name).
    Volume,
    /// A network (name, ID or ID prefix).
    Network,
    /// An exec instance (ID); owned through its container.
    Exec,
    /// An image (name, tag, digest, ID or ID prefix); shared.
    Image,
}

impl Kind {
    /// A short name for logs and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Container => "container",
            Kind::Volume => "volume",
            Kind::Network => "network",
            Kind::Exec => "exec",
            Kind::Image => "image",
        }
    }

    /// The engine's own `404` message for a missing object of this kind
    /// (Docker 20.10, checked against the engine): a scoped tenant gets
    /// exactly this for someone else's object, so that it cannot tell the two
    /// apart.
    pub fn not_found(self, reference: &str) -> String {
        match self {
            Kind::Container => format!("No such container: {reference}"),
            Kind::Volume => format!("get {reference}: no such volume"),
            Kind::Network => format!("network {reference} not found"),
            Kind::Exec => format!("No such exec instance: {reference}"),
            Kind::Image => format!("No such image: {reference}"),
        }
    }

    /// The inspect path that resolves a reference of this kind (`reference`
    /// is percent-encoded by the caller).
    pub fn inspect_path(self, encoded: &str) -> String {
        match self {
            Kind::Container => format!("/containers/{encoded}/json"),
            Kind::Volume => format!("/volumes/{encoded}"),
            Kind::Network => format!("/networks/{encoded}"),
            Kind::Exec => format!("/exec/{encoded}/json"),
            Kind::Image => format!("/images/{encoded}/json"),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The networks every engine has; shared by all tenants (the preset still
/// decides whether `host` may be used).
pub fn predefined_network(name: &str) -> bool {
    matches!(name, "bridge" | "none" | "host" | "default")
}

/// A request that names one object: `prefix` + reference + `suffix` is the
/// path; the broker forwards `prefix` + full ID + `suffix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRoute {
    /// The object's kind.
    pub kind: Kind,
    /// The reference as the client wrote it (decoded): a name, an ID or an
    /// ID prefix; may contain `/`.
    pub reference: String,
    /// The path before the reference, e.g. `/containers/`.
    pub prefix: &'static str,
    /// The path after the reference, e.g. `/json` (empty for `DELETE`).
    pub suffix: String,
    /// What the request does to it.
    pub action: Action,
}

impl ObjectRoute {
    /// The path with the reference replaced by `id` (percent-encoded here).
    pub fn path_for(&self, id: &str) -> String {
        format!("{}{}{}", self.prefix, encode_segment(id), self.suffix)
    }
}

/// What an object request does, where it matters to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Anything that reads or changes the object alone.
    Plain,
    /// `DELETE /images/{name}`: images are shared, but a tenant removes only
    /// images with its own label.
    RemoveImage,
    /// `POST /networks/{id}/connect|disconnect`: the body names a container.
    NetworkAttach,
    /// `GET /networks/{id}`: a shared network's answer lists other tenants'
    /// containers, which are removed ([`response::network`]).
    InspectNetwork,
}

/// The bodies a scoped tenant's creates are stamped in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateKind {
    /// `POST /containers/create`: labels, and references checked.
    Container,
    /// `POST /volumes/create`.
    Volume,
    /// `POST /networks/create`.
    Network,
    /// `POST /commit?container=X`: the new image's config (labels); the
    /// container in the query is checked.
    Commit,
}

/// What the broker must do with a request of a scoped tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Nothing object-specific: forward as it is (ping, version, images, ...).
    Pass,
    /// One object, named in the path.
    Object(ObjectRoute),
    /// A list, prune or the event stream: the tenant's label is merged into
    /// the `filters` query ([`query::with_label_filter`]).
    Filter,
    /// A create: the tenant's label is stamped into the body ([`body::stamp`]).
    Create(CreateKind),
    /// `POST /build`: the label goes into the `labels` query.
    Build,
    /// `GET /system/df`: the answer is filtered ([`response::system_df`]).
    SystemDf,
    /// `GET /info`: the engine-wide container counts are replaced by the
    /// tenant's own ([`response::info`]).
    Info,
    /// Refused; the reason goes into the 403 message.
    Refuse(&'static str),
}

/// Classify a request by its method and normalized path
/// ([`crate::path::normalize`]).
pub fn classify(method: &str, path: &str) -> Route {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let Some((&top, rest)) = segs.split_first() else {
        return Route::Refuse("no endpoint at /");
    };
    if method == "OPTIONS" {
        // The engine answers OPTIONS on any path itself (CORS), naming nothing.
        return Route::Pass;
    }
    match top {
        "_ping" if rest.is_empty() && (method == "GET" || method == "HEAD") => Route::Pass,
        "version" if rest.is_empty() && method == "GET" => Route::Pass,
        "info" if rest.is_empty() && method == "GET" => Route::Info,
        "auth" if rest.is_empty() && method == "POST" => Route::Pass,
        "events" if rest.is_empty() && method == "GET" => Route::Filter,
        "system" if rest == ["df"] && method == "GET" => Route::SystemDf,
        "containers" => containers(method, rest),
        "exec" => object(method, rest, Kind::Exec, "/exec/", &[("GET", "json"), ("POST", "start"), ("POST", "resize")]),
        "commit" if rest.is_empty() && method == "POST" => Route::Create(CreateKind::Commit),
        "images" => images(method, rest),
        "distribution" if method == "GET" && rest.len() >= 2 && rest.last() == Some(&"json") => {
            Route::Pass
        }
        "volumes" => volumes(method, rest),
        "networks" => networks(method, rest),
        "build" => match (method, rest) {
            ("POST", []) => Route::Build,
            ("POST", ["cancel"]) => Route::Pass,
            ("POST", ["prune"]) => Route::Refuse(
                "scope own: the build cache is shared and unlabelled; it cannot be pruned per tenant",
            ),
            _ => Route::Refuse("scope own: unknown build endpoint"),
        },
        // The classic builder's session (file sync for `docker build`).
        "session" if rest.is_empty() && method == "POST" => Route::Pass,
        "grpc" => Route::Refuse("scope own: BuildKit /grpc streams cannot be checked"),
        "swarm" | "nodes" | "services" | "tasks" | "secrets" | "configs" => {
            Route::Refuse("scope own: swarm objects have no owner")
        }
        "plugins" => Route::Refuse("scope own: plugins are engine-wide"),
        _ => Route::Refuse("scope own: unknown endpoint"),
    }
}

fn containers(method: &str, rest: &[&str]) -> Route {
    match (method, rest) {
        ("GET", ["json"]) => return Route::Filter,
        ("POST", ["create"]) => return Route::Create(CreateKind::Container),
        ("POST", ["prune"]) => return Route::Filter,
        _ => {}
    }
    if rest.contains(&"checkpoints") {
        // Experimental routes whose name/checkpoint split is ambiguous.
        return Route::Refuse("scope own: checkpoints are not supported");
    }
    if method == "GET" && rest.len() >= 3 && rest[rest.len() - 2..] == ["attach", "ws"] {
        return object_route(
            Kind::Container,
            "/containers/",
            &rest[..rest.len() - 2],
            "/attach/ws",
        );
    }
    object(
        method,
        rest,
        Kind::Container,
        "/containers/",
        &[
            ("GET", "json"),
            ("GET", "export"),
            ("GET", "changes"),
            ("GET", "top"),
            ("GET", "logs"),
            ("GET", "stats"),
            ("GET", "archive"),
            ("HEAD", "archive"),
            ("PUT", "archive"),
            ("POST", "kill"),
            ("POST", "pause"),
            ("POST", "unpause"),
            ("POST", "restart"),
            ("POST", "start"),
            ("POST", "stop"),
            ("POST", "wait"),
            ("POST", "resize"),
            ("POST", "attach"),
            ("POST", "copy"),
            ("POST", "exec"),
            ("POST", "rename"),
            ("POST", "update"),
            ("DELETE", ""),
        ],
    )
}

fn images(method: &str, rest: &[&str]) -> Route {
    match (method, rest) {
        ("GET", ["json"]) | ("GET", ["search"]) | ("GET", ["get"]) => Route::Pass,
        ("POST", ["load"]) | ("POST", ["create"]) => Route::Pass,
        ("POST", ["prune"]) => Route::Filter,
        ("DELETE", r) if !r.is_empty() => match object_route(Kind::Image, "/images/", r, "") {
            Route::Object(mut o) => {
                o.action = Action::RemoveImage;
                Route::Object(o)
            }
            other => other,
        },
        ("GET", [_, .., "get" | "history" | "json"]) | ("POST", [_, .., "push" | "tag"]) => {
            // Images are shared: reading, tagging and pushing any is allowed.
            Route::Pass
        }
        _ => Route::Refuse("scope own: unknown image endpoint"),
    }
}

fn volumes(method: &str, rest: &[&str]) -> Route {
    match (method, rest) {
        ("GET", []) => Route::Filter,
        ("POST", ["create"]) => Route::Create(CreateKind::Volume),
        ("POST", ["prune"]) => Route::Filter,
        ("GET" | "DELETE" | "PUT", r) if !r.is_empty() => {
            object_route(Kind::Volume, "/volumes/", r, "")
        }
        _ => Route::Refuse("scope own: unknown volume endpoint"),
    }
}

fn networks(method: &str, rest: &[&str]) -> Route {
    let route = match (method, rest) {
        ("GET", []) => return Route::Filter,
        ("POST", ["create"]) => return Route::Create(CreateKind::Network),
        ("POST", ["prune"]) => return Route::Filter,
        ("GET", r) if !r.is_empty() => (
            object_route(Kind::Network, "/networks/", r, ""),
            Action::InspectNetwork,
        ),
        ("DELETE", r) if !r.is_empty() => (
            object_route(Kind::Network, "/networks/", r, ""),
            Action::Plain,
        ),
        ("POST", [r @ .., "connect"]) if !r.is_empty() => (
            object_route(Kind::Network, "/networks/", r, "/connect"),
            Action::NetworkAttach,
        ),
        ("POST", [r @ .., "disconnect"]) if !r.is_empty() => (
            object_route(Kind::Network, "/networks/", r, "/disconnect"),
            Action::NetworkAttach,
        ),
        _ => return Route::Refuse("scope own: unknown network endpoint"),
    };
    match route {
        (Route::Object(mut o), action) => {
            o.action = action;
            Route::Object(o)
        }
        (other, _) => other,
    }
}

/// `/{kind}/{name...}/{action}` for the (method, action) pairs in `table`;
/// an empty action means the name is the whole rest (`DELETE`).
fn object(
    method: &str,
    rest: &[&str],
    kind: Kind,
    prefix: &'static str,
    table: &[(&str, &str)],
) -> Route {
    for &(m, act) in table {
        if m != method {
            continue;
        }
        if act.is_empty() {
            if !rest.is_empty() {
                return object_route(kind, prefix, rest, "");
            }
        } else if rest.len() >= 2 && rest[rest.len() - 1] == act {
            return object_route(kind, prefix, &rest[..rest.len() - 1], &format!("/{act}"));
        }
    }
    Route::Refuse(match kind {
        Kind::Container => "scope own: unknown container endpoint",
        Kind::Exec => "scope own: unknown exec endpoint",
        _ => "scope own: unknown endpoint",
    })
}

fn object_route(kind: Kind, prefix: &'static str, name: &[&str], suffix: &str) -> Route {
    if name.is_empty() {
        return Route::Refuse("scope own: no object named");
    }
    Route::Object(ObjectRoute {
        kind,
        reference: name.join("/"),
        prefix,
        suffix: suffix.to_string(),
        action: Action::Plain,
    })
}

/// Percent-encode one path segment (an ID, or a name sent to the engine in a
/// lookup): unreserved characters stay, everything else (`/` too) is `%XX`.
/// The engine decodes the path once before routing.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether a request body would be read by the engine as form values: Go's
/// `ParseForm` reads `application/x-www-form-urlencoded` bodies of POST, PUT
/// and PATCH, and such values take precedence over the query — a `filters`
/// in the body would replace the one the broker merged. Under `scope: own`
/// such requests are refused (no Docker client sends them).
pub fn form_body(method: &str, content_types: &[&[u8]]) -> bool {
    matches!(method, "POST" | "PUT" | "PATCH")
        && content_types.iter().any(|ct| {
            let ct = String::from_utf8_lossy(ct).to_ascii_lowercase();
            ct.contains("x-www-form-urlencoded")
        })
}

#[cfg(test)]
mod tests;
