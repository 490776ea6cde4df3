//! Query rewriting for scoped tenants: the tenant's label merged into a
//! `filters` query, stamped into a build's `labels`, a commit's `container`
//! replaced by the resolved ID.
//!
//! The engine reads query parameters with Go's `url.ParseQuery` and
//! `Form.Get` (the first value of an exactly named, decoded key). Every
//! rewrite here removes *all* parameters whose decoded key is the one
//! rewritten — split on `&` and on `;` (older Go splits on both) — and appends
//! one canonical parameter, so whatever the engine takes as "first", it is
//! the broker's.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use super::LABEL;
use crate::path::percent_decode;

/// A query value the broker cannot rewrite; answered with `400`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError(pub String);

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for QueryError {}

/// `filters` with `label=io.sockbroker.tenant=<tenant>` added, in the map form
/// `{"label":{"k=v":true}}`; the client's own filters (map form, or the
/// legacy list form `{"label":["k=v"]}`) are kept. The engine ANDs label
/// filters, so the answer is the client's selection within the tenant's
/// objects.
pub fn merge_label_filter(filters: Option<&str>, tenant: &str) -> Result<String, QueryError> {
    let mut map: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    if let Some(raw) = filters.filter(|s| !s.is_empty()) {
        let parsed: Value =
            serde_json::from_str(raw).map_err(|e| QueryError(format!("invalid filter: {e}")))?;
        match parsed {
            Value::Null => {}
            Value::Object(fields) => {
                for (key, v) in fields {
                    let entry = map.entry(key.clone()).or_default();
                    match v {
                        Value::Null => {}
                        // {"label": {"k=v": true}}: Go's map[string]map[string]bool.
                        Value::Object(values) => {
                            for (val, b) in values {
                                if !b.is_boolean() {
                                    return Err(QueryError(format!(
                                        "invalid filter: the value of {key:?}.{val:?} is not true or false"
                                    )));
                                }
                                entry.insert(val, b);
                            }
                        }
                        // {"label": ["k=v"]}: the legacy map[string][]string.
                        Value::Array(values) => {
                            for val in values {
                                match val {
                                    Value::String(s) => {
                                        entry.insert(s, Value::Bool(true));
                                    }
                                    _ => {
                                        return Err(QueryError(format!(
                                            "invalid filter: {key:?} lists something that is not a string"
                                        )))
                                    }
                                }
                            }
                        }
                        _ => {
                            return Err(QueryError(format!(
                                "invalid filter: {key:?} is neither an object nor a list"
                            )))
                        }
                    }
                }
            }
            _ => {
                return Err(QueryError(
                    "invalid filter: filters must be a JSON object".into(),
                ))
            }
        }
    }
    map.entry("label".into())
        .or_default()
        .insert(format!("{LABEL}={tenant}"), Value::Bool(true));
    Ok(serde_json::to_string(&map).expect("a map of strings serializes"))
}

/// A build's `labels` query value with the tenant's label set (replacing a
/// value the client sent for [`LABEL`]).
pub fn stamp_labels_param(labels: Option<&str>, tenant: &str) -> Result<String, QueryError> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    if let Some(raw) = labels.filter(|s| !s.is_empty()) {
        let parsed: Option<BTreeMap<String, String>> = serde_json::from_str(raw)
            .map_err(|e| QueryError(format!("labels is not a JSON object of strings: {e}")))?;
        map = parsed.unwrap_or_default();
    }
    map.insert(LABEL.into(), tenant.into());
    Ok(serde_json::to_string(&map).expect("a map of strings serializes"))
}

/// The query's parameters as (raw pair, decoded key, decoded value).
fn pairs(query: &str) -> impl Iterator<Item = (&str, String, String)> {
    query
        .split(['&', ';'])
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (pair, decode(k), decode(v))
        })
}

fn decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    match percent_decode(plus.as_bytes()) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => plus,
    }
}

/// The first value of parameter `name` (exact, decoded key), as Go's
/// `Form.Get` reads it.
pub fn first(query: Option<&str>, name: &str) -> Option<String> {
    pairs(query?).find(|(_, k, _)| k == name).map(|(_, _, v)| v)
}

/// The query with every `name` parameter removed and `name=value` appended
/// (`value` percent-encoded here). Other parameters keep their raw form.
pub fn replace(query: Option<&str>, name: &str, value: &str) -> String {
    let mut out: Vec<String> = query
        .map(|q| {
            pairs(q)
                .filter(|(_, k, _)| k != name)
                .map(|(raw, _, _)| raw.to_string())
                .collect()
        })
        .unwrap_or_default();
    out.push(format!("{name}={}", encode_value(value)));
    out.join("&")
}

/// The query for a list, prune or events request of a scoped tenant.
pub fn with_label_filter(query: Option<&str>, tenant: &str) -> Result<String, QueryError> {
    let merged = merge_label_filter(first(query, "filters").as_deref(), tenant)?;
    Ok(replace(query, "filters", &merged))
}

/// The query for a build of a scoped tenant: `labels` stamped; a
/// `networkmode=container:X` (a reference to a container, unchecked) refused.
pub fn for_build(query: Option<&str>, tenant: &str) -> Result<String, QueryError> {
    if let Some(q) = query {
        if pairs(q).any(|(_, k, v)| {
            k.eq_ignore_ascii_case("networkmode")
                && v.trim().to_ascii_lowercase().starts_with("container:")
        }) {
            return Err(QueryError(
                "scope own: a build cannot join another container's network (networkmode=container:…)".into(),
            ));
        }
    }
    let labels = stamp_labels_param(first(query, "labels").as_deref(), tenant)?;
    Ok(replace(query, "labels", &labels))
}

/// Whether a commit's or an image import's `changes` (Dockerfile
/// instructions applied to the new image's config, after the broker's
/// stamp) mention the owner label: refused, so that no tenant makes an
/// image that looks like another's.
pub fn changes_forge_label(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        pairs(q).any(|(_, k, v)| {
            k.eq_ignore_ascii_case("changes") && v.to_ascii_lowercase().contains(LABEL)
        })
    })
}

/// Percent-encode a query value (everything but unreserved characters).
pub fn encode_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(filters: &str) -> Vec<String> {
        let v: Value = serde_json::from_str(filters).unwrap();
        v["label"].as_object().unwrap().keys().cloned().collect()
    }

    #[test]
    fn merges_into_every_form() {
        let own = "io.sockbroker.tenant=a";
        for (given, want) in [
            (None, vec![own]),
            (Some(""), vec![own]),
            (Some("{}"), vec![own]),
            (Some("null"), vec![own]),
            (Some(r#"{"label":{"x=1":true}}"#), vec![own, "x=1"]),
            (Some(r#"{"label":["x=1","y"]}"#), vec![own, "x=1", "y"]),
            (Some(r#"{"label":null}"#), vec![own]),
            // The client's own claim to be another tenant is ANDed: it selects nothing.
            (
                Some(r#"{"label":{"io.sockbroker.tenant=b":true}}"#),
                vec![own, "io.sockbroker.tenant=b"],
            ),
            (
                Some(r#"{"label":{"io.sockbroker.tenant":true}}"#),
                vec!["io.sockbroker.tenant", own],
            ),
        ] {
            let got = merge_label_filter(given, "a").unwrap();
            let mut want: Vec<String> = want.into_iter().map(String::from).collect();
            want.sort();
            assert_eq!(labels(&got), want, "{given:?} -> {got}");
        }
    }

    #[test]
    fn other_filters_are_kept() {
        let got = merge_label_filter(
            Some(r#"{"name":{"web":true},"status":["running"],"dangling":{"false":false}}"#),
            "a",
        )
        .unwrap();
        let v: Value = serde_json::from_str(&got).unwrap();
        assert_eq!(v["name"], serde_json::json!({"web": true}));
        assert_eq!(v["status"], serde_json::json!({"running": true}));
        assert_eq!(v["dangling"], serde_json::json!({"false": false}));
    }

    #[test]
    fn duplicate_keys_collapse_to_one_canonical_value() {
        // Go and serde both take the last; the engine sees one key either way.
        let got =
            merge_label_filter(Some(r#"{"label":{"x":true},"label":{"y":true}}"#), "a").unwrap();
        assert_eq!(got.matches("\"label\"").count(), 1, "{got}");
        assert!(got.contains("io.sockbroker.tenant=a"), "{got}");
    }

    #[test]
    fn malformed_filters_are_refused() {
        for bad in [
            "{",
            "[]",
            "\"label\"",
            "1",
            r#"{"label":"x"}"#,
            r#"{"label":{"x":1}}"#,
            r#"{"label":[1]}"#,
            r#"{"label":{"x":"true"}}"#,
        ] {
            let e = merge_label_filter(Some(bad), "a").unwrap_err();
            assert!(e.0.starts_with("invalid filter"), "{bad}: {e}");
        }
    }

    #[test]
    fn query_rewrite_replaces_every_copy() {
        let f = |q: Option<&str>| with_label_filter(q, "a").unwrap();
        let own = encode_value(r#"{"label":{"io.sockbroker.tenant=a":true}}"#);
        assert_eq!(f(None), format!("filters={own}"));
        assert_eq!(f(Some("all=1")), format!("all=1&filters={own}"));
        for q in [
            "filters=%7B%7D&all=1",
            "all=1&filters=%7B%7D&filters=%7B%22label%22%3A%7B%22x%22%3Atrue%7D%7D",
            "%66ilters=%7B%7D&all=1",
            "filters=&all=1",
            "all=1;filters=%7B%7D",
        ] {
            let got = f(Some(q));
            assert_eq!(got.matches("filters=").count(), 1, "{q} -> {got}");
            assert!(got.starts_with("all=1&filters="), "{q} -> {got}");
            let value = first(Some(&got), "filters").unwrap();
            assert!(value.contains("io.sockbroker.tenant=a"), "{q} -> {value}");
        }
        // The first copy is the one the engine reads, so it is the one merged.
        let got = f(Some(
            "filters=%7B%22name%22%3A%5B%22w%22%5D%7D&filters=%7B%7D",
        ));
        assert!(first(Some(&got), "filters").unwrap().contains("\"name\""));
        // Case matters to Go's Form.Get: "Filters" is not read and stays.
        let got = f(Some("Filters=x"));
        assert!(got.starts_with("Filters=x&filters="), "{got}");
        assert!(with_label_filter(Some("filters=%7B"), "a").is_err());
    }

    #[test]
    fn build_labels_are_stamped() {
        let got = for_build(
            Some("t=x&labels=%7B%22io.sockbroker.tenant%22%3A%22b%22%2C%22k%22%3A%22v%22%7D"),
            "a",
        )
        .unwrap();
        let labels: BTreeMap<String, String> =
            serde_json::from_str(&first(Some(&got), "labels").unwrap()).unwrap();
        assert_eq!(labels[LABEL], "a");
        assert_eq!(labels["k"], "v");
        assert!(got.starts_with("t=x&"));
        let got = for_build(None, "a").unwrap();
        assert_eq!(
            first(Some(&got), "labels").unwrap(),
            r#"{"io.sockbroker.tenant":"a"}"#
        );
        assert!(for_build(Some("labels=null"), "a").is_ok());
        assert!(for_build(Some("labels=%5B%5D"), "a").is_err());
        assert!(for_build(Some("labels=%7B%22k%22%3A1%7D"), "a").is_err());
        assert!(for_build(Some("networkmode=container%3Aother"), "a").is_err());
        assert!(for_build(Some("NetworkMode=Container:x"), "a").is_err());
        assert!(for_build(Some("networkmode=none"), "a").is_ok());
    }

    #[test]
    fn label_changes_are_found() {
        assert!(changes_forge_label(Some(
            "container=x&changes=LABEL+io.sockbroker.tenant%3Db"
        )));
        assert!(changes_forge_label(Some(
            "Changes=label%20IO.SOCKBROKER.TENANT=b"
        )));
        assert!(!changes_forge_label(Some(
            "changes=ENV+A%3D1&changes=LABEL+k%3Dv"
        )));
        assert!(!changes_forge_label(None));
    }

    #[test]
    fn replace_encodes() {
        assert_eq!(
            replace(Some("container=x&m=1"), "container", "abc"),
            "m=1&container=abc"
        );
        assert_eq!(replace(None, "x", "a b/c"), "x=a%20b%2Fc");
    }
}
