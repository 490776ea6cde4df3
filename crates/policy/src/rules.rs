//! Access rules: `METHODS /path/glob`, e.g. `GET,HEAD /**` or
//! `POST /containers/*/restart`.
//!
//! * METHODS is a comma-separated list of HTTP methods (`GET`, `HEAD`, `POST`,
//!   `PUT`, `DELETE`, `PATCH`, `OPTIONS`; any case) or `*` for every method.
//! * The glob is an absolute path written decoded and without the `/v1.xx`
//!   prefix. It is split into segments: `*` matches exactly one segment, `**`
//!   matches any number of segments (also none), anything else matches that
//!   segment literally. A `*` inside a segment (`/containers/ab*`) is an error
//!   rather than a surprise.
//!
//! Matching fails closed: deny rules compare literal segments ignoring case
//! (so `/Containers/create` is denied like `/containers/create`), allow rules
//! compare them exactly (so an allow rule never admits a spelling it does not
//! show). Request methods are compared ignoring case.

use std::fmt;

use crate::route::Segments;

/// Methods a rule may name.
pub const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

/// One parsed rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The methods it applies to; empty = every method (`*`).
    methods: Vec<&'static str>,
    /// The path glob.
    glob: PathGlob,
    /// The rule as written (normalized spacing), for messages.
    text: String,
}

/// A parsed path glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathGlob {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Exactly this text.
    Literal(String),
    /// `*`: one segment.
    One,
    /// `**`: any number of segments.
    Any,
}

/// How literal segments are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// Exactly (allow rules).
    Exact,
    /// Ignoring ASCII case (deny rules, built-in checks).
    Fold,
}

impl Rule {
    /// Parse `METHODS /glob`; the error says what is wrong and what to write.
    pub fn parse(text: &str) -> Result<Rule, String> {
        const EXAMPLE: &str = "e.g. \"GET,HEAD /containers/**\" or \"POST /containers/*/restart\"";
        let mut words = text.split_whitespace();
        let (Some(methods), Some(path)) = (words.next(), words.next()) else {
            return Err(if text.trim().starts_with('/') {
                format!("{text:?} has no methods; write the methods before the path, {EXAMPLE}")
            } else {
                format!("{text:?} is not a rule; write METHODS /path, {EXAMPLE}")
            });
        };
        if words.next().is_some() {
            return Err(format!(
                "{text:?} has more than a method list and a path; separate methods with commas, \
                 without spaces, {EXAMPLE}"
            ));
        }
        let methods = parse_methods(methods)?;
        let glob = PathGlob::parse(path)?;
        let shown = if methods.is_empty() {
            "*".to_string()
        } else {
            methods.join(",")
        };
        Ok(Rule {
            methods,
            glob,
            text: format!("{shown} {path}"),
        })
    }

    /// Whether the rule applies to `method` (any case) on the normalized `path`.
    pub fn matches(&self, method: &str, path: &str, case: Case) -> bool {
        self.matches_route(method, Segments::raw(path), case)
    }

    /// Whether the rule applies to `method` on a path given as segments (a
    /// segment may hold a `/`: an object name folded by [`crate::route`]).
    pub fn matches_segments<S: AsRef<str>>(&self, method: &str, parts: &[S], case: Case) -> bool {
        self.matches_method(method)
            && self
                .glob
                .matches_iter(parts.iter().map(AsRef::as_ref), case)
    }

    /// [`Rule::matches_segments`] on a route's (borrowed) segments.
    pub fn matches_route(&self, method: &str, segs: Segments<'_>, case: Case) -> bool {
        self.matches_method(method) && self.glob.matches_iter(segs.iter(), case)
    }

    fn matches_method(&self, method: &str) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
    }

    /// The rule as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn parse_methods(s: &str) -> Result<Vec<&'static str>, String> {
    if s == "*" {
        return Ok(Vec::new());
    }
    let mut out: Vec<&'static str> = Vec::new();
    for m in s.split(',') {
        if m.is_empty() {
            return Err(format!(
                "method list {s:?} has an empty entry; separate methods with single commas, e.g. GET,HEAD"
            ));
        }
        if m == "*" {
            return Err(format!(
                "method list {s:?} mixes * with methods; write * alone for every method"
            ));
        }
        let Some(known) = METHODS.iter().find(|k| k.eq_ignore_ascii_case(m)) else {
            return Err(format!(
                "unknown method {m:?}; use {} or * (every method)",
                METHODS.join(", ")
            ));
        };
        if !out.contains(known) {
            out.push(known);
        }
    }
    Ok(out)
}

impl PathGlob {
    /// Parse an absolute path glob.
    pub fn parse(s: &str) -> Result<PathGlob, String> {
        if !s.starts_with('/') {
            return Err(format!(
                "path {s:?} does not start with /; write an absolute API path, e.g. /containers/**"
            ));
        }
        if let Some(i) = s.find(['?', '#']) {
            return Err(format!(
                "path {s:?} has a query string or fragment ({:?}); rules match the path only, remove it",
                &s[i..]
            ));
        }
        if s.contains('%') {
            return Err(format!(
                "path {s:?} contains %; write the path decoded (requests are percent-decoded before matching)"
            ));
        }
        if s.chars().any(char::is_control) {
            return Err(format!("path {s:?} contains a control character"));
        }
        if s == "/" {
            return Ok(PathGlob {
                segments: Vec::new(),
            });
        }
        if s.ends_with('/') {
            return Err(format!(
                "path {s:?} ends with /; write it without (a trailing slash never reaches a rule), \
                 or end it with /** to match everything below"
            ));
        }
        let mut segments = Vec::new();
        for (i, seg) in s[1..].split('/').enumerate() {
            let seg = match seg {
                "" => {
                    return Err(format!(
                        "path {s:?} has an empty segment (//); write single slashes"
                    ))
                }
                "." | ".." => {
                    return Err(format!(
                    "path {s:?} has a {seg:?} segment; write the path it stands for (requests are \
                         normalized before matching)"
                ))
                }
                "*" => Segment::One,
                "**" => Segment::Any,
                v if i == 0 && super::path_is_version(v) => {
                    return Err(format!(
                        "path {s:?} starts with the API version /{v}; write the path without it \
                         (requests match with and without /v1.xx)"
                    ))
                }
                lit if lit.contains('*') => {
                    return Err(format!(
                    "path {s:?}: segment {lit:?} mixes * with text; * and ** match whole segments \
                         (e.g. /containers/*/logs or /images/**)"
                ))
                }
                lit => Segment::Literal(lit.to_string()),
            };
            segments.push(seg);
        }
        Ok(PathGlob { segments })
    }

    /// Whether the normalized `path` matches. Runs in O(segments × path
    /// segments) time whatever the number of `**`.
    pub fn matches(&self, path: &str, case: Case) -> bool {
        self.matches_iter(Segments::raw(path).iter(), case)
    }

    /// [`PathGlob::matches`] on a path given as segments.
    pub fn matches_segments<S: AsRef<str>>(&self, parts: &[S], case: Case) -> bool {
        self.matches_iter(parts.iter().map(AsRef::as_ref), case)
    }

    /// The match itself, on segments given by an iterator that is cloned to
    /// remember a position. Wildcard matching with backtracking to the last
    /// `**` only (`*` and literals match one segment each, so the pattern
    /// between two `**` has a fixed length and an earlier `**` never needs
    /// to take more): O(segments × path segments), no allocation.
    fn matches_iter<'s, I>(&self, parts: I, case: Case) -> bool
    where
        I: Iterator<Item = &'s str> + Clone,
    {
        let pat = &self.segments;
        let lit_ok = |lit: &str, part: &str| match case {
            Case::Exact => part == lit,
            Case::Fold => part.eq_ignore_ascii_case(lit),
        };
        let mut pi = 0;
        let mut text = parts;
        // The last `**` seen: the pattern index after it, and the text
        // from where it would take one more segment.
        let mut star: Option<(usize, I)> = None;
        loop {
            let mut rest = text.clone();
            let Some(part) = rest.next() else { break };
            match pat.get(pi) {
                Some(Segment::Any) => {
                    pi += 1;
                    star = Some((pi, text.clone()));
                    continue;
                }
                Some(Segment::One) => {
                    pi += 1;
                    text = rest;
                    continue;
                }
                Some(Segment::Literal(lit)) if lit_ok(lit, part) => {
                    pi += 1;
                    text = rest;
                    continue;
                }
                _ => {}
            }
            // Mismatch: let the last `**` take one more segment.
            let Some((after, from)) = &mut star else {
                return false;
            };
            if from.next().is_none() {
                return false;
            }
            pi = *after;
            text = from.clone();
        }
        pat[pi.min(pat.len())..]
            .iter()
            .all(|s| matches!(s, Segment::Any))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> Rule {
        Rule::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn m(r: &str, method: &str, path: &str) -> bool {
        rule(r).matches(method, path, Case::Exact)
    }

    #[test]
    fn methods() {
        assert!(m("GET,HEAD /**", "GET", "/containers/json"));
        assert!(m("GET,HEAD /**", "HEAD", "/_ping"));
        assert!(m("GET,HEAD /**", "head", "/_ping"));
        assert!(!m("GET,HEAD /**", "POST", "/containers/create"));
        assert!(m("* /**", "DELETE", "/containers/x"));
        assert!(m("get /x", "GET", "/x"));
        assert_eq!(rule("get,Head,GET /x").as_str(), "GET,HEAD /x");
        assert_eq!(rule("  POST   /x  ").as_str(), "POST /x");
    }

    #[test]
    fn globs() {
        let r = "POST /containers/*/restart";
        assert!(m(r, "POST", "/containers/abc/restart"));
        assert!(!m(r, "POST", "/containers/restart"));
        assert!(!m(r, "POST", "/containers/a/b/restart"));
        assert!(!m(r, "POST", "/containers/abc/restart/x"));
        assert!(m("GET /**", "GET", "/"));
        assert!(m("GET /**", "GET", "/a/b/c"));
        assert!(m("GET /images/**", "GET", "/images"));
        assert!(m("GET /images/**", "GET", "/images/library/busybox/json"));
        assert!(!m("GET /images/**", "GET", "/imagesx"));
        assert!(m(
            "GET /images/**/json",
            "GET",
            "/images/library/busybox/json"
        ));
        assert!(m("GET /images/**/json", "GET", "/images/json"));
        assert!(!m("GET /images/**/json", "GET", "/images/a/history"));
        assert!(m("GET /", "GET", "/"));
        assert!(!m("GET /", "GET", "/x"));
        assert!(m("GET /*", "GET", "/x"));
        assert!(!m("GET /*", "GET", "/"));
        assert!(m("GET /**/**/x/**", "GET", "/a/x"));
        assert!(m("GET /*/**", "GET", "/a"));
        assert!(!m("GET /*/**", "GET", "/"));
    }

    #[test]
    fn case_handling() {
        let r = rule("POST /containers/create");
        assert!(!r.matches("POST", "/Containers/Create", Case::Exact));
        assert!(r.matches("POST", "/Containers/Create", Case::Fold));
        assert!(r.matches("post", "/containers/create", Case::Exact));
    }

    #[test]
    fn many_double_stars_stay_fast() {
        let pat = format!("GET {}/x", "/**".repeat(200));
        let path = "/a".repeat(5000);
        let start = std::time::Instant::now();
        assert!(!rule(&pat).matches("GET", &path, Case::Fold));
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }

    /// The matching the allocation-free one replaced (a table of reachable
    /// positions per pattern segment), as the reference.
    fn old_matches(glob: &PathGlob, parts: &[&str], case: Case) -> bool {
        let mut reach = vec![false; parts.len() + 1];
        reach[0] = true;
        for seg in &glob.segments {
            let mut next = vec![false; parts.len() + 1];
            match seg {
                Segment::Any => {
                    let mut any = false;
                    for j in 0..=parts.len() {
                        any |= reach[j];
                        next[j] = any;
                    }
                }
                Segment::One => next[1..].copy_from_slice(&reach[..parts.len()]),
                Segment::Literal(lit) => {
                    for j in 0..parts.len() {
                        next[j + 1] = reach[j]
                            && match case {
                                Case::Exact => parts[j] == lit,
                                Case::Fold => parts[j].eq_ignore_ascii_case(lit),
                            };
                    }
                }
            }
            reach = next;
        }
        reach[parts.len()]
    }

    #[test]
    fn matching_gives_what_the_table_version_gave() {
        // Every glob of up to four segments and every path of up to five
        // segments over a small alphabet (a folded name with a `/` too).
        let glob_pieces = ["*", "**", "a", "B", "c"];
        let path_pieces = ["a", "A", "b", "c", "a/b"];
        let all = |pieces: &[&'static str], max: usize| {
            let mut out: Vec<Vec<&'static str>> = vec![vec![]];
            let mut last = out.clone();
            for _ in 0..max {
                last = last
                    .iter()
                    .flat_map(|v| {
                        pieces.iter().map(move |p| {
                            let mut v = v.clone();
                            v.push(*p);
                            v
                        })
                    })
                    .collect();
                out.extend(last.iter().cloned());
            }
            out
        };
        let paths = all(&path_pieces, 5);
        let mut matched = 0;
        for g in all(&glob_pieces, 4) {
            let glob = PathGlob::parse(&format!("/{}", g.join("/"))).unwrap();
            for p in &paths {
                for case in [Case::Exact, Case::Fold] {
                    let old = old_matches(&glob, p, case);
                    assert_eq!(glob.matches_segments(p, case), old, "{g:?} {p:?} {case:?}");
                    matched += usize::from(old);
                }
            }
        }
        assert!(matched > 10_000, "{matched}");
    }

    #[test]
    fn bad_rules() {
        let e = |s: &str| Rule::parse(s).unwrap_err();
        assert!(
            e("GOT /x").contains("unknown method \"GOT\""),
            "{}",
            e("GOT /x")
        );
        assert!(e("GET, HEAD /x").contains("more than a method list and a path"));
        assert!(e("GET,,HEAD /x").contains("empty entry"));
        assert!(e("GET,* /x").contains("write * alone"));
        assert!(e("/containers/**").contains("has no methods"));
        assert!(e("").contains("is not a rule"));
        assert!(e("GET").contains("is not a rule"));
        assert!(e("GET containers/**").contains("does not start with /"));
        assert!(e("GET /containers/").contains("ends with /"));
        assert!(e("GET /containers//json").contains("empty segment"));
        assert!(e("GET /containers/../x").contains("\"..\" segment"));
        assert!(e("GET /./x").contains("\".\" segment"));
        assert!(e("GET /containers/ab*").contains("mixes * with text"));
        assert!(e("GET /containers/***").contains("mixes * with text"));
        assert!(e("GET /containers/json?all=1").contains("query string"));
        assert!(e("GET /containers%2Fjson").contains("decoded"));
        assert!(e("GET /v1.41/containers/json").contains("API version"));
        assert!(e("CONNECT /x").contains("unknown method"));
        // A version-like segment later in the path is just text.
        assert!(Rule::parse("GET /x/v1.41").is_ok());
    }
}
