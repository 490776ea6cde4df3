//! A JSON tree read the way Go's `encoding/json` matches it to struct
//! fields: every member kept (repeated keys too), keys compared with Go's
//! case folding.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Whether `key` equals `name` under Go's `encoding/json` key folding
/// (`name` is ASCII): ASCII case, plus `ſ` = `s` and the Kelvin sign = `k`.
pub fn go_fold_eq(key: &str, name: &str) -> bool {
    debug_assert!(name.is_ascii(), "{name:?}");
    // Each character of `key` must fold to one (ASCII) byte of `name`, and
    // a non-ASCII character takes two or three bytes: a key no longer than
    // `name` can only match if it is ASCII, byte for byte up to case (a
    // non-ASCII byte never equals `name`'s), and a longer key must hold one
    // of the two non-ASCII folds. So the usual key, of another length or
    // plain ASCII, is decided without decoding a character.
    if key.len() <= name.len() {
        return key.eq_ignore_ascii_case(name);
    }
    if key.is_ascii() {
        return false;
    }
    fold_eq_by_char(key, name)
}

/// [`go_fold_eq`] a character at a time (the reference the fast path must
/// agree with).
fn fold_eq_by_char(key: &str, name: &str) -> bool {
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
/// Keys and strings borrow from the body unless they hold escapes (the
/// usual body allocates only its arrays and objects).
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number (its value is never needed).
    Number,
    /// A string.
    String(Cow<'a, str>),
    /// An array.
    Array(Vec<Json<'a>>),
    /// An object, members in order, repeated keys kept.
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'j> Json<'j> {
    /// Every member value whose key folds to `name`.
    pub fn fields<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Json<'j>> + 'a {
        let members: &[(Cow<'j, str>, Json<'j>)] = match self {
            Json::Object(m) => m,
            _ => &[],
        };
        members
            .iter()
            .filter(move |(k, _)| go_fold_eq(k, name))
            .map(|(_, v)| v)
    }

    /// The items of an array (nothing for other values).
    pub fn items(&self) -> impl Iterator<Item = &Json<'j>> {
        let items: &[Json<'j>] = match self {
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

impl fmt::Display for Json<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short())
    }
}

/// A key or string, borrowed from the body when it has no escapes.
struct Text<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Json<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Json<'de>, E> {
                Ok(Json::Null)
            }
            fn visit_none<E>(self) -> Result<Json<'de>, E> {
                Ok(Json::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Json<'de>, E> {
                Ok(Json::Bool(b))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Json<'de>, E> {
                Ok(Json::Number)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Json<'de>, E> {
                Ok(Json::Number)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Json<'de>, E> {
                Ok(Json::Number)
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Json<'de>, E> {
                Ok(Json::String(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Json<'de>, E> {
                Ok(Json::String(Cow::Owned(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> Result<Json<'de>, E> {
                Ok(Json::String(Cow::Owned(s)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
                let mut items = Vec::new();
                while let Some(v) = seq.next_element()? {
                    items.push(v);
                }
                Ok(Json::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
                let mut members = Vec::new();
                while let Some((Text(k), v)) = map.next_entry::<Text<'de>, Json<'de>>()? {
                    members.push((k, v));
                }
                Ok(Json::Object(members))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The length and ASCII shortcuts decide exactly as the character walk
    /// does, for keys made of every mix of ASCII letters, the two non-ASCII
    /// folds, other non-ASCII characters and punctuation.
    #[test]
    fn the_fast_fold_agrees_with_the_character_walk() {
        let names = [
            "",
            "s",
            "k",
            "Sk",
            "Privileged",
            "HostConfig",
            "Binds",
            "CapAdd",
            "Ks",
        ];
        let alphabet = [
            "s", "S", "k", "K", "\u{17F}", "\u{212A}", "é", "x", "_", "ǅ", "\u{0}",
        ];
        let mut keys = vec![String::new()];
        for len in 1..=4 {
            let mut next = Vec::new();
            for k in keys.iter().filter(|k| k.chars().count() == len - 1) {
                for a in alphabet {
                    next.push(format!("{k}{a}"));
                }
            }
            keys.extend(next);
        }
        for name in names {
            let mut spellings = vec![
                name.to_string(),
                name.to_ascii_lowercase(),
                name.to_ascii_uppercase(),
                name.replace(['s', 'S'], "\u{17F}"),
                name.replace(['k', 'K'], "\u{212A}"),
                format!("{name}x"),
                format!("x{name}"),
                format!("{name}\u{17F}"),
            ];
            spellings.extend(keys.iter().cloned());
            for key in &spellings {
                assert_eq!(
                    go_fold_eq(key, name),
                    fold_eq_by_char(key, name),
                    "{key:?} vs {name:?}"
                );
            }
        }
        assert!(go_fold_eq("privi\u{17F}leged", "Privisleged"));
        assert!(go_fold_eq("\u{212A}ernel", "kernel"));
        assert!(!go_fold_eq("Privileged2", "Privileged"));
    }
}
