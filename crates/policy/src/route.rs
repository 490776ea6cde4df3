//! Which engine route a normalized path reaches, whatever the number of path
//! segments in the object name it carries.
//!
//! The Docker engine's router (gorilla/mux) declares most object names as
//! `{name:.*}`: `/containers/{name:.*}/exec` takes `POST /containers/web/al/exec`
//! as an exec in the container named `web/al` (a legacy link alias; `%2F`
//! decodes to the same). Matching rules segment by segment would see four
//! segments there and miss `POST /containers/*/exec`. So a path is first
//! resolved against the engine's own route table, in the engine's order:
//! the action is found from the END of the path and the name is everything in
//! between, folded into ONE segment (`["containers", "web/al", "exec"]`). Rules
//! and built-in checks then match the folded segments, the same for any name.
//!
//! A path that reaches no route of the table is *unknown*: the engine answers
//! it with 404 unless it is newer than this table (or not Docker at all, such
//! as Podman's `/libpod/…` API). `read-only` and `userns-safe` refuse unknown
//! routes; deny rules see both the raw and the folded segments (fail closed).
//!
//! Literal segments are compared ignoring ASCII case (the engine's router is
//! case-sensitive, so this can only fold more spellings than the engine
//! routes, never fewer).

/// A path resolved against the engine's routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The segments as the engine binds them: a multi-segment name is one
    /// segment. For an unknown route, the raw segments.
    pub segments: Vec<String>,
    /// The raw segments of the normalized path.
    pub raw: Vec<String>,
    /// Whether a route of the engine's table matched.
    pub known: bool,
    /// The path is Podman's own API (`/libpod/…`).
    pub libpod: bool,
}

impl Route {
    /// Whether the folded segments are exactly `segs` (ASCII case ignored);
    /// `*` in `segs` matches any one (folded) segment.
    pub fn is(&self, segs: &[&str]) -> bool {
        self.segments.len() == segs.len()
            && self
                .segments
                .iter()
                .zip(segs)
                .all(|(p, s)| *s == "*" || p.eq_ignore_ascii_case(s))
    }

    /// The first segment, if any.
    pub fn first(&self) -> &str {
        self.segments.first().map(String::as_str).unwrap_or("")
    }

    /// Every segment list a deny rule is matched against: the raw and the
    /// folded segments, and for `/libpod/X` the same for `/X` (Podman's API
    /// mirrors Docker's routes under that prefix).
    pub fn deny_views(&self, method: &str) -> Vec<Vec<String>> {
        let mut views = vec![self.raw.clone()];
        if self.segments != self.raw {
            views.push(self.segments.clone());
        }
        if self.libpod && self.raw.len() > 1 {
            let rest = format!("/{}", self.raw[1..].join("/"));
            let inner = resolve(method, &rest);
            views.push(inner.raw.clone());
            if inner.segments != inner.raw {
                views.push(inner.segments);
            }
        }
        views
    }
}

/// One segment of a route pattern.
#[derive(Clone, Copy)]
enum Seg {
    Lit(&'static str),
    /// `{id}`: exactly one segment.
    One,
    /// `{name:.*}`: one or more segments (a normalized path has no empty ones).
    Many,
}

/// The engine's routes, in the order its router tries them (checkpoints
/// before containers, as `dockerd` registers them). `{}` is one segment,
/// `{*}` any number (`{name:.*}`). Methods: `GET` also stands for `HEAD`.
const ROUTES: &[(&str, &str)] = &[
    // checkpoint router (experimental)
    ("GET", "/containers/{*}/checkpoints"),
    ("POST", "/containers/{*}/checkpoints"),
    ("DELETE", "/containers/{}/checkpoints/{}"),
    // container router
    ("HEAD", "/containers/{*}/archive"),
    ("GET", "/containers/json"),
    ("GET", "/containers/{*}/export"),
    ("GET", "/containers/{*}/changes"),
    ("GET", "/containers/{*}/json"),
    ("GET", "/containers/{*}/top"),
    ("GET", "/containers/{*}/logs"),
    ("GET", "/containers/{*}/stats"),
    ("GET", "/containers/{*}/attach/ws"),
    ("GET", "/exec/{*}/json"),
    ("GET", "/containers/{*}/archive"),
    ("POST", "/containers/create"),
    ("POST", "/containers/{*}/kill"),
    ("POST", "/containers/{*}/pause"),
    ("POST", "/containers/{*}/unpause"),
    ("POST", "/containers/{*}/restart"),
    ("POST", "/containers/{*}/start"),
    ("POST", "/containers/{*}/stop"),
    ("POST", "/containers/{*}/wait"),
    ("POST", "/containers/{*}/resize"),
    ("POST", "/containers/{*}/attach"),
    ("POST", "/containers/{*}/copy"),
    ("POST", "/containers/{*}/exec"),
    ("POST", "/containers/{*}/logs/clear"),
    ("POST", "/exec/{*}/start"),
    ("POST", "/exec/{*}/resize"),
    ("POST", "/containers/{*}/rename"),
    ("POST", "/containers/{*}/update"),
    ("POST", "/containers/prune"),
    ("POST", "/commit"),
    ("PUT", "/containers/{*}/archive"),
    ("DELETE", "/containers/{*}"),
    // image router
    ("GET", "/images/json"),
    ("GET", "/images/search"),
    ("GET", "/images/get"),
    ("GET", "/images/{*}/get"),
    ("GET", "/images/{*}/history"),
    ("GET", "/images/{*}/json"),
    ("POST", "/images/load"),
    ("POST", "/images/create"),
    ("POST", "/images/{*}/push"),
    ("POST", "/images/{*}/tag"),
    ("POST", "/images/prune"),
    ("DELETE", "/images/{*}"),
    // system router
    ("GET", "/_ping"),
    ("GET", "/events"),
    ("GET", "/info"),
    ("GET", "/version"),
    ("GET", "/system/df"),
    ("POST", "/auth"),
    // volume router
    ("GET", "/volumes"),
    ("GET", "/volumes/{*}"),
    ("POST", "/volumes/create"),
    ("POST", "/volumes/prune"),
    ("PUT", "/volumes/{*}"),
    ("DELETE", "/volumes/{*}"),
    // build, session, grpc (BuildKit)
    ("POST", "/build"),
    ("POST", "/build/prune"),
    ("POST", "/build/cancel"),
    ("POST", "/session"),
    ("POST", "/grpc"),
    // swarm router
    ("POST", "/swarm/init"),
    ("POST", "/swarm/join"),
    ("POST", "/swarm/leave"),
    ("GET", "/swarm"),
    ("GET", "/swarm/unlockkey"),
    ("POST", "/swarm/update"),
    ("POST", "/swarm/unlock"),
    ("GET", "/services"),
    ("GET", "/services/{}"),
    ("POST", "/services/create"),
    ("POST", "/services/{}/update"),
    ("DELETE", "/services/{}"),
    ("GET", "/services/{}/logs"),
    ("GET", "/nodes"),
    ("GET", "/nodes/{}"),
    ("DELETE", "/nodes/{}"),
    ("POST", "/nodes/{}/update"),
    ("GET", "/tasks"),
    ("GET", "/tasks/{}"),
    ("GET", "/tasks/{}/logs"),
    ("GET", "/secrets"),
    ("POST", "/secrets/create"),
    ("DELETE", "/secrets/{}"),
    ("GET", "/secrets/{}"),
    ("POST", "/secrets/{}/update"),
    ("GET", "/configs"),
    ("POST", "/configs/create"),
    ("DELETE", "/configs/{}"),
    ("GET", "/configs/{}"),
    ("POST", "/configs/{}/update"),
    // plugin router
    ("GET", "/plugins"),
    ("GET", "/plugins/{*}/json"),
    ("GET", "/plugins/privileges"),
    ("DELETE", "/plugins/{*}"),
    ("POST", "/plugins/{*}/enable"),
    ("POST", "/plugins/{*}/disable"),
    ("POST", "/plugins/pull"),
    ("POST", "/plugins/{*}/push"),
    ("POST", "/plugins/{*}/upgrade"),
    ("POST", "/plugins/{*}/set"),
    ("POST", "/plugins/create"),
    // distribution router
    ("GET", "/distribution/{*}/json"),
    // network router
    ("GET", "/networks"),
    ("GET", "/networks/{*}"),
    ("POST", "/networks/create"),
    ("POST", "/networks/{*}/connect"),
    ("POST", "/networks/{*}/disconnect"),
    ("POST", "/networks/prune"),
    ("DELETE", "/networks/{*}"),
];

/// The table with its patterns split once (methods upper-case, `HEAD`-only
/// routes filed under `GET`, which stands for both).
fn table() -> &'static [(&'static str, Vec<Seg>)] {
    static TABLE: std::sync::OnceLock<Vec<(&'static str, Vec<Seg>)>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        ROUTES
            .iter()
            .map(|(m, p)| (if *m == "HEAD" { "GET" } else { *m }, pattern(p)))
            .collect()
    })
}

fn pattern(p: &'static str) -> Vec<Seg> {
    p.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| match s {
            "{}" => Seg::One,
            "{*}" => Seg::Many,
            lit => Seg::Lit(lit),
        })
        .collect()
}

/// `parts` against one pattern: the folded segments if it matches.
fn bind(pat: &[Seg], parts: &[&str]) -> Option<Vec<String>> {
    let lit = |s: &Seg, p: &str| match s {
        Seg::Lit(l) => l.eq_ignore_ascii_case(p),
        Seg::One | Seg::Many => true,
    };
    match pat.iter().position(|s| matches!(s, Seg::Many)) {
        None => (pat.len() == parts.len() && pat.iter().zip(parts).all(|(s, p)| lit(s, p)))
            .then(|| parts.iter().map(|p| p.to_string()).collect()),
        Some(i) => {
            let after = pat.len() - i - 1;
            if parts.len() < pat.len() {
                return None;
            }
            let name_end = parts.len() - after;
            let head_ok = pat[..i].iter().zip(&parts[..i]).all(|(s, p)| lit(s, p));
            let tail_ok = pat[i + 1..]
                .iter()
                .zip(&parts[name_end..])
                .all(|(s, p)| lit(s, p));
            (head_ok && tail_ok).then(|| {
                let mut out: Vec<String> = parts[..i].iter().map(|p| p.to_string()).collect();
                out.push(parts[i..name_end].join("/"));
                out.extend(parts[name_end..].iter().map(|p| p.to_string()));
                out
            })
        }
    }
}

/// Resolve `method` on the normalized `path` (as [`crate::normalize`] gives it).
pub fn resolve(method: &str, path: &str) -> Route {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let raw: Vec<String> = parts.iter().map(|p| p.to_string()).collect();
    let libpod = parts
        .first()
        .is_some_and(|p| p.eq_ignore_ascii_case("libpod"));
    let m = method.to_ascii_uppercase();
    let m = if m == "HEAD" { "GET" } else { m.as_str() };
    if m == "OPTIONS" && !libpod {
        // The engine answers OPTIONS on any path (CORS), without acting.
        return Route {
            segments: raw.clone(),
            raw,
            known: true,
            libpod,
        };
    }
    if !libpod {
        for (rm, pat) in table() {
            if *rm != m {
                continue;
            }
            if let Some(segments) = bind(pat, &parts) {
                return Route {
                    segments,
                    raw,
                    known: true,
                    libpod,
                };
            }
        }
    }
    Route {
        segments: raw.clone(),
        raw,
        known: false,
        libpod,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(m: &str, p: &str) -> Vec<String> {
        resolve(m, p).segments
    }

    #[test]
    fn names_of_any_length_fold_into_one_segment() {
        assert_eq!(
            segs("POST", "/containers/web/exec"),
            ["containers", "web", "exec"]
        );
        assert_eq!(
            segs("POST", "/containers/web/al/exec"),
            ["containers", "web/al", "exec"]
        );
        assert_eq!(
            segs("POST", "/containers/a/exec/exec"),
            ["containers", "a/exec", "exec"]
        );
        assert_eq!(
            segs("GET", "/containers/a/b/json"),
            ["containers", "a/b", "json"]
        );
        assert_eq!(segs("GET", "/containers/json"), ["containers", "json"]);
        assert_eq!(
            segs("GET", "/containers/a/b/attach/ws"),
            ["containers", "a/b", "attach", "ws"]
        );
        assert_eq!(
            segs("HEAD", "/containers/a/b/archive"),
            ["containers", "a/b", "archive"]
        );
        // DELETE takes everything after /containers as the name.
        assert_eq!(
            segs("DELETE", "/containers/a/b/json"),
            ["containers", "a/b/json"]
        );
        assert_eq!(
            segs("DELETE", "/containers/a/checkpoints/c"),
            ["containers", "a", "checkpoints", "c"]
        );
        assert_eq!(segs("GET", "/images/a/b/c/get"), ["images", "a/b/c", "get"]);
        assert_eq!(segs("GET", "/images/get"), ["images", "get"]);
        assert_eq!(segs("POST", "/exec/a/b/start"), ["exec", "a/b", "start"]);
        assert_eq!(segs("GET", "/volumes/a/b"), ["volumes", "a/b"]);
        // Case is kept in the segments, ignored when matching.
        assert_eq!(
            segs("post", "/Containers/a/b/EXEC"),
            ["Containers", "a/b", "EXEC"]
        );
        // One-segment ids stay that way.
        let r = resolve("GET", "/services/a/b");
        assert!(!r.known);
        assert_eq!(r.segments, ["services", "a", "b"]);
    }

    #[test]
    fn unknown_and_libpod() {
        assert!(resolve("GET", "/_ping").known);
        assert!(resolve("HEAD", "/_ping").known);
        assert!(resolve("OPTIONS", "/anything/at/all").known);
        assert!(!resolve("POST", "/containers/json").known);
        assert!(!resolve("GET", "/debug/pprof").known);
        let r = resolve("POST", "/libpod/containers/create");
        assert!(r.libpod && !r.known);
        assert!(resolve("OPTIONS", "/libpod/x").libpod);
        let views = resolve("POST", "/libpod/containers/a/b/exec").deny_views("POST");
        assert!(views.contains(&vec!["containers".to_string(), "a/b".into(), "exec".into()]));
    }
}
