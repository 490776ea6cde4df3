//! The borrowed, allocation-free normalization and route resolution give
//! exactly what the owned versions they replaced gave (kept here, as they
//! were, as the reference): the same path, version and query or the same
//! refusal; the same folded and raw segments, `known` and `libpod`; and the
//! same deny views, in the same order, for every method. Inputs: hand-picked
//! spellings, every route of the table with names of one to three segments,
//! and pseudo-random targets built from pieces that matter (version
//! prefixes, `libpod`, dot segments, encoded slashes, dots and controls,
//! broken escapes, non-ASCII, trailing slashes, queries).

use crate::path::{normalize, percent_decode, TargetError};
use crate::route::{resolve, ROUTES};

/// The owned target the old `normalize` returned.
#[derive(Debug, PartialEq, Eq)]
struct OldTarget {
    path: String,
    api_version: Option<String>,
    query: Option<String>,
}

fn old_normalize(target: &str) -> Result<OldTarget, TargetError> {
    if !target.starts_with('/') {
        return Err(TargetError::NotOriginForm);
    }
    let (raw_path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (target, None),
    };
    let decoded = percent_decode(raw_path.as_bytes())?;
    let decoded = String::from_utf8(decoded).map_err(|_| TargetError::NotUtf8)?;
    if decoded.chars().any(char::is_control) {
        return Err(TargetError::ControlCharacter);
    }
    let mut segments: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut api_version = None;
    let mut skip = 0;
    while skip < segments.len() && crate::path_is_version(segments[skip]) {
        if api_version.is_none() {
            api_version = Some(segments[skip][1..].to_string());
        }
        skip += 1;
    }
    let path = format!("/{}", segments[skip..].join("/"));
    Ok(OldTarget {
        path,
        api_version,
        query,
    })
}

#[derive(Debug, PartialEq, Eq)]
struct OldRoute {
    segments: Vec<String>,
    raw: Vec<String>,
    known: bool,
    libpod: bool,
}

#[derive(Clone, Copy)]
enum Seg {
    Lit(&'static str),
    One,
    Many,
}

fn old_table() -> Vec<(&'static str, Vec<Seg>)> {
    ROUTES
        .iter()
        .map(|(m, p)| {
            let pat = p
                .split('/')
                .filter(|s| !s.is_empty())
                .map(|s| match s {
                    "{}" => Seg::One,
                    "{*}" => Seg::Many,
                    lit => Seg::Lit(lit),
                })
                .collect();
            (if *m == "HEAD" { "GET" } else { *m }, pat)
        })
        .collect()
}

fn old_bind(pat: &[Seg], parts: &[&str]) -> Option<Vec<String>> {
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

fn old_resolve(table: &[(&str, Vec<Seg>)], method: &str, path: &str) -> OldRoute {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let raw: Vec<String> = parts.iter().map(|p| p.to_string()).collect();
    let libpod = parts
        .first()
        .is_some_and(|p| p.eq_ignore_ascii_case("libpod"));
    let m = method.to_ascii_uppercase();
    let m = if m == "HEAD" { "GET" } else { m.as_str() };
    if m == "OPTIONS" && !libpod {
        return OldRoute {
            segments: raw.clone(),
            raw,
            known: true,
            libpod,
        };
    }
    if !libpod {
        for (rm, pat) in table {
            if *rm != m {
                continue;
            }
            if let Some(segments) = old_bind(pat, &parts) {
                return OldRoute {
                    segments,
                    raw,
                    known: true,
                    libpod,
                };
            }
        }
    }
    OldRoute {
        segments: raw.clone(),
        raw,
        known: false,
        libpod,
    }
}

fn old_deny_views(table: &[(&str, Vec<Seg>)], route: &OldRoute, method: &str) -> Vec<Vec<String>> {
    let mut views = vec![route.raw.clone()];
    if route.segments != route.raw {
        views.push(route.segments.clone());
    }
    if route.libpod && route.raw.len() > 1 {
        let rest = format!("/{}", route.raw[1..].join("/"));
        let inner = old_resolve(table, method, &rest);
        views.push(inner.raw.clone());
        if inner.segments != inner.raw {
            views.push(inner.segments);
        }
    }
    views
}

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "get", "head", "Post",
    "options", "delete", "BREW",
];

/// Pieces random targets are made of.
const PIECES: &[&str] = &[
    "",
    ".",
    "..",
    "%2e",
    "%2E%2e",
    "v1.41",
    "V1.24",
    "v4.0.0-dev",
    "v1",
    "v",
    "va1",
    "%761.41",
    "libpod",
    "LibPod",
    "containers",
    "Containers",
    "images",
    "exec",
    "volumes",
    "services",
    "swarm",
    "plugins",
    "networks",
    "distribution",
    "build",
    "_ping",
    "json",
    "create",
    "start",
    "attach",
    "ws",
    "archive",
    "export",
    "get",
    "checkpoints",
    "logs",
    "clear",
    "update",
    "unlockkey",
    "search",
    "privileges",
    "web",
    "al",
    "a",
    "b",
    "web%2Fal",
    "a%2fb%2Fc",
    "%63ontainers",
    "%00",
    "x%0ay",
    "%7f",
    "%C2%85",
    "%zz",
    "%2",
    "%",
    "%ff",
    "%C3%A9t%C3%A9",
    "été",
    "a+b",
    "%252F",
    "*",
    "**",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn targets() -> Vec<String> {
    let mut out: Vec<String> = [
        "/",
        "//",
        "/.",
        "/..",
        "",
        "*",
        "http://h/x",
        "x",
        "/?",
        "/?a=1",
        "/v1.41",
        "/v1.41/",
        "/v1.41?x",
        "/_ping",
        "/v1.41/_ping",
        "/libpod",
        "/libpod/",
        "/libpod/_ping",
        "/v4.0.0/libpod/containers/a/b/exec",
        "/libpod/containers/web/al/exec",
        "/containers/web/al/exec",
        "/containers//web/./al/exec/",
        "/containers%2Fweb%2Fal/exec",
        "/a%2",
        "/a%zz",
        "/a%ff",
        "/a%00b",
        "/a\u{85}b",
        "/a\u{7f}",
        "/a\tb",
        "/é/%C3%A9",
        "/containers/create?name=x&y=%zz",
        "/containers/create?/../../_ping",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Every route of the table, with names of one to three segments.
    for (_, pat) in ROUTES {
        for name in ["n", "web/al", "a/exec/json"] {
            let path = pat.replace("{*}", name).replace("{}", "id");
            out.push(format!("/v1.41{path}"));
            out.push(path.to_ascii_uppercase());
            out.push(format!("/libpod{path}"));
            out.push(path);
        }
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let mut t = String::new();
        for _ in 0..=rng.next(7) {
            t.push('/');
            t.push_str(PIECES[rng.next(PIECES.len())]);
        }
        match rng.next(6) {
            0 => t.push('/'),
            1 => t.push_str("?networkmode=host"),
            _ => {}
        }
        out.push(t);
    }
    out
}

/// The segment lists the built-in checks ask [`crate::Route::is`] about.
const CHECKS: &[&[&str]] = &[
    &["containers", "*", "attach", "ws"],
    &["containers", "*", "archive"],
    &["containers", "*", "export"],
    &["images", "get"],
    &["images", "*", "get"],
    &["swarm", "unlockkey"],
    &["swarm"],
    &["images", "search"],
    &["plugins", "privileges"],
    &["distribution", "*", "json"],
    &["services", "create"],
    &["services", "*", "update"],
    &["build"],
    &["containers", "*", "start"],
    &["containers", "create"],
    &["containers", "*", "update"],
    &["containers", "*", "exec"],
    &["containers", "*", "checkpoints"],
    &["volumes", "create"],
    &[],
    &["*"],
    &["*", "*", "*", "*", "*"],
];

fn old_is(route: &OldRoute, segs: &[&str]) -> bool {
    route.segments.len() == segs.len()
        && route
            .segments
            .iter()
            .zip(segs)
            .all(|(p, s)| *s == "*" || p.eq_ignore_ascii_case(s))
}

#[test]
fn normalize_gives_what_the_owned_version_gave() {
    let mut borrowed = 0;
    for t in targets() {
        let new = normalize(&t);
        let old = old_normalize(&t);
        match (&new, &old) {
            (Ok(n), Ok(o)) => {
                assert_eq!(n.path, o.path, "{t:?}");
                assert_eq!(n.api_version.as_deref(), o.api_version.as_deref(), "{t:?}");
                assert_eq!(n.query.as_deref(), o.query.as_deref(), "{t:?}");
                borrowed += usize::from(matches!(n.path, std::borrow::Cow::Borrowed(_)));
            }
            (Err(n), Err(o)) => assert_eq!(n, o, "{t:?}"),
            _ => panic!("{t:?}: new {new:?}, old {old:?}"),
        }
    }
    // The common case borrows (the test would prove little otherwise).
    assert!(borrowed > 1_000, "{borrowed}");
    for t in ["/_ping", "/v1.41/_ping", "/v1.41/containers/a/json?all=1"] {
        let n = normalize(t).unwrap();
        assert!(matches!(n.path, std::borrow::Cow::Borrowed(_)), "{t}");
    }
}

#[test]
fn resolve_and_deny_views_give_what_the_owned_versions_gave() {
    let table = old_table();
    let mut paths: Vec<String> = targets()
        .iter()
        .filter_map(|t| normalize(t).ok().map(|n| n.path.into_owned()))
        .collect();
    paths.sort();
    paths.dedup();
    assert!(paths.len() > 5_000, "{}", paths.len());
    let (mut folded, mut libpod) = (0, 0);
    for path in &paths {
        for &m in METHODS {
            let new = resolve(m, path);
            let old = old_resolve(&table, m, path);
            let ctx = format!("{m} {path}");
            assert_eq!(new.segments().to_vec(), old.segments, "{ctx}");
            assert_eq!(new.raw().to_vec(), old.raw, "{ctx}");
            assert_eq!(new.known, old.known, "{ctx}");
            assert_eq!(new.libpod, old.libpod, "{ctx}");
            assert_eq!(new.first(), old.segments.first().map_or("", |s| s.as_str()));
            let own: Vec<&str> = old.segments.iter().map(String::as_str).collect();
            for segs in CHECKS.iter().copied().chain([&own[..]]) {
                assert_eq!(new.is(segs), old_is(&old, segs), "{ctx} is {segs:?}");
            }
            let views: Vec<Vec<String>> = new.deny_views(m).map(|v| v.to_vec()).collect();
            let old_views = old_deny_views(&table, &old, m);
            assert_eq!(views, old_views, "{ctx}");
            folded += usize::from(old.segments != old.raw);
            libpod += usize::from(old_views.len() > 2);
        }
    }
    // The inputs reach the interesting cases.
    assert!(folded > 1_000 && libpod > 300, "{folded} {libpod}");
}
