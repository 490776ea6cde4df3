//! Request-target normalization: the one path every rule is matched against.
//!
//! The Docker engine (Go `net/http` + gorilla/mux) routes on the
//! percent-decoded path, accepts an optional `/v1.xx` version prefix, and
//! ignores the query string when routing. A policy that matched the raw target
//! could be bypassed with `/v%31.41/containers/create`, `/containers%2Fcreate`,
//! `//containers/create` or `/x/../containers/create`, so the target is first
//! brought to one canonical form:
//!
//! 1. only origin-form targets (`/path?query`) are accepted;
//! 2. the query string is split off (kept for the few checks that read it);
//! 3. the path is percent-decoded once (as Go does; `%2F` becomes `/`), and must
//!    then be UTF-8 without control characters;
//! 4. empty segments (`//`) and `.` are dropped, `..` removes the segment before
//!    it (never above the root), a trailing `/` is dropped;
//! 5. leading version segments (`v`, a digit or dot, then letters, digits, dots
//!    and dashes: Docker's router takes `v[0-9.]+`, Podman's
//!    `v[0-9][0-9A-Za-z.-]*`) are removed — repeatedly, so a doubled prefix
//!    never hides a path from a rule.
//!
//! Steps 4 and 5 can only make a path match *more* of the built-in checks and
//! deny rules than the engine would route it to; where the engine would not
//! route the normalized form at all, forwarding it is harmless (a 404/301).
//!
//! The common target needs none of this (printable ASCII, no `%`, no empty,
//! `.` or `..` segment, no trailing `/`): its [`Target`] borrows the path (after the
//! version prefixes), the version and the query from it, allocating nothing.
//! The owned reference it must agree with is kept in the crate's
//! `equivalence` tests.

use std::borrow::Cow;
use std::fmt;

/// A request target brought to canonical form. Its parts borrow from the
/// raw target when it is already canonical (the common case: nothing to
/// decode, no empty, `.` or `..` segments, no trailing `/`), and are owned
/// only when normalizing changed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    /// The canonical path: starts with `/`, no empty, `.` or `..` segments, no
    /// trailing `/` (except the root itself), no version prefix, decoded.
    pub path: Cow<'a, str>,
    /// The first version prefix removed, e.g. `1.41` for `/v1.41/...`.
    pub api_version: Option<Cow<'a, str>>,
    /// The raw (still encoded) query string after `?`, if any.
    pub query: Option<Cow<'a, str>>,
}

impl Target<'_> {
    /// The same target, owning its parts.
    pub fn into_owned(self) -> Target<'static> {
        Target {
            path: Cow::Owned(self.path.into_owned()),
            api_version: self.api_version.map(|v| Cow::Owned(v.into_owned())),
            query: self.query.map(|q| Cow::Owned(q.into_owned())),
        }
    }
}

/// Why a request target was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    /// Not origin-form: absolute-form (`http://host/…`), `*`, or empty.
    NotOriginForm,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// The decoded path is not UTF-8.
    NotUtf8,
    /// The decoded path contains a control character (e.g. `%00`).
    ControlCharacter,
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TargetError::NotOriginForm => "the request target must be a path starting with /",
            TargetError::BadEscape => "the path has a % not followed by two hex digits",
            TargetError::NotUtf8 => "the decoded path is not UTF-8",
            TargetError::ControlCharacter => "the decoded path contains a control character",
        })
    }
}

impl std::error::Error for TargetError {}

/// Normalize a raw request target (the second word of the request line).
pub fn normalize(target: &str) -> Result<Target<'_>, TargetError> {
    if !target.starts_with('/') {
        return Err(TargetError::NotOriginForm);
    }
    if let Some(t) = plain(target) {
        return Ok(t);
    }
    let (raw_path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(Cow::Borrowed(q))),
        None => (target, None),
    };
    if !raw_path.contains('%') {
        // Nothing to decode: the path is the raw one (UTF-8 already).
        if has_control(raw_path) {
            return Err(TargetError::ControlCharacter);
        }
        // (Not `plain`: non-ASCII characters, or segments to clean; rare
        // enough to build the path.)
        let (path, version) = clean(raw_path);
        return Ok(Target {
            path: Cow::Owned(path),
            api_version: version.map(|v| Cow::Owned(v.to_string())),
            query,
        });
    }
    let decoded = percent_decode(raw_path.as_bytes())?;
    let decoded = String::from_utf8(decoded).map_err(|_| TargetError::NotUtf8)?;
    if has_control(&decoded) {
        return Err(TargetError::ControlCharacter);
    }
    let (path, version) = clean(&decoded);
    Ok(Target {
        path: Cow::Owned(path),
        api_version: version.map(|v| Cow::Owned(v.to_string())),
        query,
    })
}

/// The common target in one pass over its path: printable ASCII without `%`,
/// no empty, `.` or `..` segment, no trailing `/`; borrowed whole. `None`:
/// anything else, which the general steps handle (and refuse).
fn plain(target: &str) -> Option<Target<'_>> {
    let b = target.as_bytes();
    let mut version = None;
    // Byte offset of the first segment that is not a version prefix.
    let mut rest = None;
    let mut seg_start = 1;
    let mut i = 1;
    loop {
        let c = b.get(i).copied().unwrap_or(b'?');
        if c == b'/' || c == b'?' {
            let seg = &target[seg_start..i];
            if i == 1 && c == b'?' {
                // The root: `/` or `/?query`.
                break;
            }
            if matches!(seg, "" | "." | "..") {
                return None;
            }
            if rest.is_none() {
                if super::path_is_version(seg) {
                    version.get_or_insert(&seg[1..]);
                } else {
                    rest = Some(seg_start);
                }
            }
            if c == b'?' {
                break;
            }
            seg_start = i + 1;
        } else if c == b'%' || !(0x20..0x7f).contains(&c) {
            return None;
        }
        i += 1;
    }
    Some(Target {
        path: Cow::Borrowed(rest.map_or("/", |r| &target[r - 1..i])),
        api_version: version.map(Cow::Borrowed),
        query: (i < b.len()).then(|| Cow::Borrowed(&target[i + 1..])),
    })
}

/// Whether the (decoded) path has a control character (`char::is_control`:
/// C0, DEL and C1).
fn has_control(path: &str) -> bool {
    path.bytes().any(|b| b < 0x20 || b == 0x7f)
        || (!path.is_ascii() && path.chars().any(char::is_control))
}

/// The general case: drop empty and `.` segments, apply `..`, remove the
/// version prefixes. Returns the path and the first prefix's version.
fn clean(decoded: &str) -> (String, Option<&str>) {
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
    while skip < segments.len() && super::path_is_version(segments[skip]) {
        if api_version.is_none() {
            api_version = Some(&segments[skip][1..]);
        }
        skip += 1;
    }
    (format!("/{}", segments[skip..].join("/")), api_version)
}

/// Decode `%XX` escapes once. `+` stays `+` (it means space only in queries).
pub fn percent_decode(raw: &[u8]) -> Result<Vec<u8>, TargetError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hi = raw.get(i + 1).and_then(|b| hex(*b));
            let lo = raw.get(i + 2).and_then(|b| hex(*b));
            match (hi, lo) {
                (Some(h), Some(l)) => out.push(h << 4 | l),
                _ => return Err(TargetError::BadEscape),
            }
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The decoded values of every query parameter whose name equals `name`
/// (ignoring ASCII case). Parameters are split on `&` and `;` (older Go
/// versions, as in Docker 20.10, split on both); `+` is a space. Undecodable
/// values are returned raw, so a check never misses them.
pub fn query_values(query: &str, name: &str) -> Vec<String> {
    query
        .split(['&', ';'])
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = decode_query_part(k);
            k.eq_ignore_ascii_case(name).then(|| decode_query_part(v))
        })
        .collect()
}

fn decode_query_part(s: &str) -> String {
    let plus = s.replace('+', " ");
    match percent_decode(plus.as_bytes()) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => plus,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: &str) -> String {
        normalize(t)
            .unwrap_or_else(|e| panic!("{t}: {e}"))
            .path
            .into_owned()
    }

    #[test]
    fn plain_paths() {
        assert_eq!(p("/containers/json"), "/containers/json");
        assert_eq!(p("/"), "/");
        assert_eq!(p("/_ping"), "/_ping");
        assert_eq!(p("/containers/json?all=1&limit=5"), "/containers/json");
        let t = normalize("/v1.41/containers/json?all=1").unwrap();
        assert_eq!(t.api_version.as_deref(), Some("1.41"));
        assert_eq!(t.query.as_deref(), Some("all=1"));
        assert_eq!(t.path, "/containers/json");
        assert_eq!(normalize("/x").unwrap().api_version, None);
    }

    #[test]
    fn version_prefixes() {
        for t in [
            "/v1.41/containers/create",
            "/v1.24/containers/create",
            "/v1/containers/create",
            "/v1.41/v1.41/containers/create",
            "/v%31.41/containers/create",
            "/%761.41/containers/create",
            "/V1.41/containers/create",
            "/v./containers/create",
            // Podman's wider prefix: `v[0-9][0-9A-Za-z.-]*`.
            "/v4.0.0-dev/containers/create",
            "/v1a/containers/create",
        ] {
            assert_eq!(p(t), "/containers/create", "{t}");
        }
        // Not a version: kept.
        assert_eq!(p("/v/containers"), "/v/containers");
        assert_eq!(p("/va1/containers"), "/va1/containers");
        assert_eq!(p("/v1_a/containers"), "/v1_a/containers");
        assert_eq!(p("/volumes/create"), "/volumes/create");
        assert_eq!(p("/containers/v1.41"), "/containers/v1.41");
        assert_eq!(p("/v1.41"), "/");
    }

    #[test]
    fn bypass_attempts_all_normalize_to_the_same_path() {
        for t in [
            "/containers/create",
            "//containers/create",
            "/containers//create",
            "/containers/create/",
            "/containers/create//",
            "/./containers/./create",
            "/containers/x/../create",
            "/x/y/../../containers/create",
            "/../containers/create",
            "/../../../containers/create",
            "/containers%2Fcreate",
            "/containers%2fcreate",
            "/%2Fcontainers/create",
            "/%63ontainers/create",
            "/containers/%63%72%65%61%74%65",
            "/containers/create?x=/../../exec",
            "/v1.41//containers/create",
            "/v1.41/./containers/x/../create/",
            "/%2e/containers/create",
            "/containers/%2e%2e/containers/create",
            "/v1.41/%2e%2e/containers/create",
        ] {
            assert_eq!(p(t), "/containers/create", "{t}");
        }
    }

    #[test]
    fn case_is_kept() {
        // The engine's router is case-sensitive; matching decides how to treat case.
        assert_eq!(p("/Containers/Create"), "/Containers/Create");
    }

    #[test]
    fn double_encoding_decodes_once() {
        // Go decodes once: %252F reaches the router as the three characters %2F.
        assert_eq!(p("/containers%252Fcreate"), "/containers%2Fcreate");
    }

    #[test]
    fn refused_targets() {
        assert_eq!(
            normalize("http://localhost/containers/json"),
            Err(TargetError::NotOriginForm)
        );
        assert_eq!(normalize("*"), Err(TargetError::NotOriginForm));
        assert_eq!(normalize(""), Err(TargetError::NotOriginForm));
        assert_eq!(normalize("/a%2"), Err(TargetError::BadEscape));
        assert_eq!(normalize("/a%zz"), Err(TargetError::BadEscape));
        assert_eq!(normalize("/a%"), Err(TargetError::BadEscape));
        assert_eq!(normalize("/a%ff"), Err(TargetError::NotUtf8));
        assert_eq!(normalize("/a%00b"), Err(TargetError::ControlCharacter));
        assert_eq!(normalize("/a%0a"), Err(TargetError::ControlCharacter));
        // A broken escape in the query does not matter to routing.
        assert_eq!(p("/a?x=%zz"), "/a");
    }

    #[test]
    fn unicode_is_fine() {
        assert_eq!(p("/containers/%C3%A9t%C3%A9/json"), "/containers/été/json");
    }

    #[test]
    fn query_parameters() {
        let q = "t=img&networkmode=host;x=1";
        assert_eq!(query_values(q, "networkmode"), ["host"]);
        assert_eq!(query_values("NetworkMode=%68ost", "networkmode"), ["host"]);
        assert_eq!(
            query_values("a=1;networkmode=host", "networkmode"),
            ["host"]
        );
        assert_eq!(query_values("networkmode=a+b", "networkmode"), ["a b"]);
        assert!(query_values("networkmodex=host", "networkmode").is_empty());
        assert_eq!(query_values("networkmode", "networkmode"), [""]);
        assert_eq!(query_values("networkmode=%zz", "networkmode"), ["%zz"]);
    }
}
