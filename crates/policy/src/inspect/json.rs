//! A JSON tree read the way Go's `encoding/json` matches it to struct
//! fields: every member kept (repeated keys too), keys compared with Go's
//! case folding.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Whether `key` equals `name` under Go's `encoding/json` key folding
/// (`name` is ASCII): ASCII case, plus `ſ` = `s` and the Kelvin sign = `k`.
pub fn go_fold_eq(key: &str, name: &str) -> bool {
    let mut k = key.chars();
    for n in name.chars() {
        let Some(c) = k.next() else {
            return false;
        };
        let c = match c {
            '\u{17F}' => 's',
            '\u{212A}' => 'k',
            c => c.to_ascii_lowercase(),
        };
        if c != n.to_ascii_lowercase() {
            return false;
        }
    }
    k.next().is_none()
}

/// A JSON value that keeps every member of every object, repeated keys too.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number (its value is never needed).
    Number,
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Json>),
    /// An object, members in order, repeated keys kept.
    Object(Vec<(String, Json)>),
}

impl Json {
    /// Every member value whose key folds to `name`.
    pub fn fields<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Json> + 'a {
        let members: &[(String, Json)] = match self {
            Json::Object(m) => m,
            _ => &[],
        };
        members
            .iter()
            .filter(move |(k, _)| go_fold_eq(k, name))
            .map(|(_, v)| v)
    }

    /// The items of an array (nothing for other values).
    pub fn items(&self) -> impl Iterator<Item = &Json> {
        let items: &[Json] = match self {
            Json::Array(a) => a,
            _ => &[],
        };
        items.iter()
    }

    pub(crate) fn is_true(&self) -> bool {
        matches!(self, Json::Bool(true))
    }

    /// `null`, `[]`, `{}` or `""`: nothing asked for.
    pub fn is_empty(&self) -> bool {
        match self {
            Json::Null => true,
            Json::Array(a) => a.is_empty(),
            Json::Object(m) => m.is_empty(),
            Json::String(s) => s.is_empty(),
            Json::Bool(_) | Json::Number => false,
        }
    }

    /// What a non-empty list, map or string asks for, for messages: array
    /// items and object keys joined by `,`, a string as it is.
    pub(crate) fn listed(&self) -> String {
        let shown: Vec<String> = match self {
            Json::Array(items) => items.iter().map(Json::short).collect(),
            Json::Object(m) => m
                .iter()
                .map(|(k, _)| k.chars().take(40).collect())
                .collect(),
            other => vec![other.short()],
        };
        let mut s = shown.join(",");
        if s.chars().count() > 120 {
            s = s.chars().take(120).chain(['…']).collect();
        }
        s
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    /// A short rendering for messages.
    pub(crate) fn short(&self) -> String {
        match self {
            Json::String(s) => s.chars().take(40).collect(),
            Json::Object(m) => m
                .iter()
                .find(|(k, _)| go_fold_eq(k, "PathOnHost") || go_fold_eq(k, "Driver"))
                .and_then(|(_, v)| v.as_str())
                .filter(|s| !s.is_empty())
                .map(|s| s.chars().take(40).collect())
                .unwrap_or_else(|| "{…}".into()),
            _ => "…".into(),
        }
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short())
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Json;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_none<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Json, E> {
                Ok(Json::Bool(b))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Json, E> {
                Ok(Json::Number)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Json, E> {
                Ok(Json::Number)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Json, E> {
                Ok(Json::Number)
            }
            fn visit_str<E>(self, s: &str) -> Result<Json, E> {
                Ok(Json::String(s.to_string()))
            }
            fn visit_string<E>(self, s: String) -> Result<Json, E> {
                Ok(Json::String(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(v) = seq.next_element()? {
                    items.push(v);
                }
                Ok(Json::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut members = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Json>()? {
                    members.push((k, v));
                }
                Ok(Json::Object(members))
            }
        }
        d.deserialize_any(V)
    }
}
