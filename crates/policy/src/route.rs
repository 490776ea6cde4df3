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
//!
//! Resolving allocates nothing: a [`Route`] borrows the path, its segments
//! are slices of it (a folded name is one slice from its first segment to
//! its last), and only the routes under the path's first segment are tried.

/// A path resolved against the engine's routes. It borrows the path: its
/// segments are slices of it (a multi-segment name is one slice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<'a> {
    /// The normalized path.
    path: &'a str,
    /// Byte range in `path` of the object name the route folds into one
    /// segment (for a known route with a `{name:.*}`).
    name: Option<(usize, usize)>,
    /// The number of (folded) segments.
    count: usize,
    /// The byte ranges of the first [`MAX_PATTERN`] (folded) segments: the
    /// built-in checks compare these, without walking the path again.
    first_segs: [(usize, usize); MAX_PATTERN],
    /// Whether a route of the engine's table matched.
    pub known: bool,
    /// The path is Podman's own API (`/libpod/…`).
    pub libpod: bool,
}

/// A path as a list of segments: the non-empty pieces between `/`, except
/// that an object name (a byte range of the path) is one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments<'a> {
    path: &'a str,
    name: Option<(usize, usize)>,
}

impl<'a> Segments<'a> {
    /// The raw segments of `path`.
    pub fn raw(path: &'a str) -> Self {
        Segments { path, name: None }
    }

    /// The segments, in order.
    pub fn iter(&self) -> SegmentIter<'a> {
        SegmentIter {
            path: self.path,
            pos: 0,
            name: self.name,
        }
    }

    /// The segments as owned strings (tests, messages).
    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_string).collect()
    }
}

impl<'a> IntoIterator for Segments<'a> {
    type Item = &'a str;
    type IntoIter = SegmentIter<'a>;
    fn into_iter(self) -> SegmentIter<'a> {
        self.iter()
    }
}

/// Iterator over [`Segments`].
#[derive(Debug, Clone)]
pub struct SegmentIter<'a> {
    path: &'a str,
    pos: usize,
    name: Option<(usize, usize)>,
}

impl<'a> Iterator for SegmentIter<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        let b = self.path.as_bytes();
        while self.pos < b.len() && b[self.pos] == b'/' {
            self.pos += 1;
        }
        if self.pos >= b.len() {
            return None;
        }
        let start = self.pos;
        let end = match self.name {
            Some((s, e)) if s == start => e,
            // Segments are short: a plain loop beats a memchr call.
            _ => b[start..]
                .iter()
                .position(|&c| c == b'/')
                .map_or(b.len(), |i| start + i),
        };
        self.pos = end;
        Some(&self.path[start..end])
    }
}

impl<'a> Route<'a> {
    /// The segments as the engine binds them: a multi-segment name is one
    /// segment. For an unknown route, the raw segments.
    pub fn segments(&self) -> Segments<'a> {
        Segments {
            path: self.path,
            name: self.name,
        }
    }

    /// The raw segments of the normalized path.
    pub fn raw(&self) -> Segments<'a> {
        Segments::raw(self.path)
    }

    /// Whether the folded segments are exactly `segs` (ASCII case ignored);
    /// `*` in `segs` matches any one (folded) segment.
    pub fn is(&self, segs: &[&str]) -> bool {
        let same = |p: &str, s: &&str| *s == "*" || p.eq_ignore_ascii_case(s);
        if segs.len() != self.count {
            return false;
        }
        if self.count <= MAX_PATTERN {
            return self.first_segs[..self.count]
                .iter()
                .zip(segs)
                .all(|(&(b, e), s)| same(&self.path[b..e], s));
        }
        self.segments().iter().zip(segs).all(|(p, s)| same(p, s))
    }

    /// The first segment, if any.
    pub fn first(&self) -> &'a str {
        if self.count == 0 {
            return "";
        }
        let (b, e) = self.first_segs[0];
        &self.path[b..e]
    }

    /// Every segment list a deny rule is matched against: the raw and the
    /// folded segments, and for `/libpod/X` the same for `/X` (Podman's API
    /// mirrors Docker's routes under that prefix). At most four, borrowed.
    pub fn deny_views(&self, method: &str) -> DenyViews<'a> {
        let mut views = DenyViews {
            views: [Segments::raw(""); 4],
            len: 0,
            next: 0,
        };
        views.push_both(self);
        if self.libpod {
            // `/libpod/X`: X is the rest of the path after its first
            // segment, from the `/` that starts its second one.
            let mut raw = self.raw().iter();
            raw.next();
            if raw.next().is_some() {
                let start = self.path.trim_start_matches('/');
                let rest = &start[start.find('/').unwrap_or(start.len())..];
                views.push_both(&resolve(method, rest));
            }
        }
        views
    }
}

/// The views [`Route::deny_views`] gives (an iterator, without allocating).
#[derive(Debug, Clone)]
pub struct DenyViews<'a> {
    views: [Segments<'a>; 4],
    len: usize,
    next: usize,
}

impl<'a> DenyViews<'a> {
    /// A route's raw segments, and its folded ones when they differ.
    fn push_both(&mut self, route: &Route<'a>) {
        self.views[self.len] = route.raw();
        self.len += 1;
        if !route.raw().iter().eq(route.segments().iter()) {
            self.views[self.len] = route.segments();
            self.len += 1;
        }
    }
}

impl<'a> Iterator for DenyViews<'a> {
    type Item = Segments<'a>;
    fn next(&mut self) -> Option<Segments<'a>> {
        (self.next < self.len).then(|| {
            self.next += 1;
            self.views[self.next - 1]
        })
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
pub(crate) const ROUTES: &[(&str, &str)] = &[
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

/// The longest pattern, in segments.
const MAX_PATTERN: usize = 4;

/// A route pattern.
struct Pattern {
    /// The method, upper-case (`GET` also for `HEAD`).
    method: &'static str,
    segs: Vec<Seg>,
}

/// The table with its patterns split once (methods upper-case, `HEAD`-only
/// routes filed under `GET`, which stands for both), grouped by their first
/// segment (always a literal) in the table's order. Routes whose first
/// segments differ never match the same path, so trying only the group of
/// the path's first segment finds the route a scan of the whole table
/// would.
fn table() -> &'static [(&'static str, Vec<Pattern>)] {
    static TABLE: std::sync::OnceLock<Vec<(&'static str, Vec<Pattern>)>> =
        std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut groups: Vec<(&'static str, Vec<Pattern>)> = Vec::new();
        for (m, p) in ROUTES {
            let segs = pattern(p);
            assert!(segs.len() <= MAX_PATTERN, "{p}");
            let Some(Seg::Lit(first)) = segs.first().copied() else {
                panic!("{p} does not start with a literal");
            };
            let pat = Pattern {
                method: if *m == "HEAD" { "GET" } else { m },
                segs,
            };
            match groups
                .iter_mut()
                .find(|(f, _)| f.eq_ignore_ascii_case(first))
            {
                Some((_, g)) => g.push(pat),
                None => groups.push((first, vec![pat])),
            }
        }
        groups
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

/// What [`bind`] needs of a path's segments, found in one pass: their
/// number, the first and the last [`MAX_PATTERN`] (as byte ranges).
struct Parts<'a> {
    path: &'a str,
    n: usize,
    head: [(usize, usize); MAX_PATTERN],
    /// `tail[k]`: the k-th segment from the end.
    tail: [(usize, usize); MAX_PATTERN],
}

impl<'a> Parts<'a> {
    fn new(path: &'a str) -> Self {
        let mut p = Parts {
            path,
            n: 0,
            head: [(0, 0); MAX_PATTERN],
            tail: [(0, 0); MAX_PATTERN],
        };
        let mut it = Segments::raw(path).iter();
        while let Some(seg) = it.next() {
            let end = it.pos;
            let r = (end - seg.len(), end);
            if p.n < MAX_PATTERN {
                p.head[p.n] = r;
            }
            p.tail.copy_within(0..MAX_PATTERN - 1, 1);
            p.tail[0] = r;
            p.n += 1;
        }
        p
    }

    fn first(&self) -> Option<&'a str> {
        (self.n > 0).then(|| &self.path[self.head[0].0..self.head[0].1])
    }

    /// Segment `i` (counted from the start), if among the first or last
    /// [`MAX_PATTERN`].
    fn get(&self, i: usize) -> &'a str {
        let (s, e) = if i < MAX_PATTERN {
            self.head[i]
        } else {
            self.tail[self.n - 1 - i]
        };
        &self.path[s..e]
    }
}

/// `parts` against one pattern: if it matches, the byte range of the name
/// it folds into one segment (`Some(None)` when it has none).
fn bind(pat: &[Seg], parts: &Parts<'_>) -> Option<Option<(usize, usize)>> {
    let lit = |s: &Seg, i: usize| match s {
        Seg::Lit(l) => l.eq_ignore_ascii_case(parts.get(i)),
        Seg::One | Seg::Many => true,
    };
    match pat.iter().position(|s| matches!(s, Seg::Many)) {
        None => {
            (pat.len() == parts.n && pat.iter().enumerate().all(|(i, s)| lit(s, i))).then_some(None)
        }
        Some(i) => {
            let after = pat.len() - i - 1;
            if parts.n < pat.len() {
                return None;
            }
            let name_end = parts.n - after;
            let head_ok = pat[..i].iter().enumerate().all(|(j, s)| lit(s, j));
            let tail_ok = pat[i + 1..]
                .iter()
                .enumerate()
                .all(|(k, s)| lit(s, name_end + k));
            // The name: from segment i (one of the first MAX_PATTERN) to
            // segment name_end - 1 (one of the last MAX_PATTERN).
            let start = parts.head[i].0;
            let end = parts.tail[parts.n - name_end].1;
            (head_ok && tail_ok).then_some(Some((start, end)))
        }
    }
}

/// Resolve `method` on the normalized `path` (as [`crate::normalize`] gives
/// it: no empty segments, so that a folded name is one slice of it).
pub fn resolve<'a>(method: &str, path: &'a str) -> Route<'a> {
    let parts = Parts::new(path);
    let first = parts.first();
    let libpod = first.is_some_and(|p| p.eq_ignore_ascii_case("libpod"));
    let m = if method.eq_ignore_ascii_case("HEAD") {
        "GET"
    } else {
        method
    };
    let unfolded = |known| Route {
        path,
        name: None,
        count: parts.n,
        first_segs: parts.head,
        known,
        libpod,
    };
    if m.eq_ignore_ascii_case("OPTIONS") && !libpod {
        // The engine answers OPTIONS on any path (CORS), without acting.
        return unfolded(true);
    }
    if libpod {
        return unfolded(false);
    }
    let Some(first) = first else {
        return unfolded(false);
    };
    let Some((_, group)) = table().iter().find(|(f, _)| f.eq_ignore_ascii_case(first)) else {
        return unfolded(false);
    };
    for pat in group {
        if !pat.method.eq_ignore_ascii_case(m) {
            continue;
        }
        if let Some(name) = bind(&pat.segs, &parts) {
            let mut first_segs = parts.head;
            if let (Some(name), Some(i)) =
                (name, pat.segs.iter().position(|s| matches!(s, Seg::Many)))
            {
                // Folded: the segments before the name, the name, the
                // pattern's last ones (the path's last ones).
                first_segs[i] = name;
                let after = pat.segs.len() - i - 1;
                for k in 0..after {
                    first_segs[i + 1 + k] = parts.tail[after - 1 - k];
                }
            }
            return Route {
                path,
                name,
                count: pat.segs.len(),
                first_segs,
                known: true,
                libpod,
            };
        }
    }
    unfolded(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(m: &str, p: &str) -> Vec<String> {
        resolve(m, p).segments().to_vec()
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
        assert_eq!(r.segments().to_vec(), ["services", "a", "b"]);
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
        assert!(views
            .map(|v| v.to_vec())
            .any(|v| v == vec!["containers".to_string(), "a/b".into(), "exec".into()]));
    }
}
