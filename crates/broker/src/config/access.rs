//! The `access` setting: a tenant's Docker API access policy, and how it is
//! read from the file — `full`, `read-only`, `userns-safe`, or a mapping with
//! `preset`, `bind_allow`, `allow`, `deny` and `scope` (docs/configuration.md
//! "Access policies", "Tenant isolation"). A new key of the mapping goes into [`RawAccessRules`] (the
//! schema: unknown keys are errors) and [`parse_access_map`] (its checks).

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde_yaml::Value;

use super::raw::present;
use super::values::{describe, normalize};

/// A tenant's Docker API access policy (`access:`).
///
/// `full` (the default) relays bytes untouched. Anything else puts the
/// tenant's connections through the HTTP-aware policy relay, which checks
/// every request against the [`Policy`](crate::policy::Policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessPolicy {
    /// `access: full` (or absent): byte-transparent relay.
    Full,
    /// `access: read-only`, `access: userns-safe` or a rules mapping
    /// `{preset: .., bind_allow: [..], allow: [..], deny: [..]}`.
    Policy(crate::policy::Policy),
    /// A rules mapping with `scope: own`: the policy, and the tenant sees only
    /// its own labelled objects on the engine (docs/security.md).
    Scoped(crate::policy::Policy),
}

impl AccessPolicy {
    /// The policy's kind as written in the file: `full`, `read-only`,
    /// `userns-safe` or `rules` (a mapping with rules).
    pub fn name(&self) -> &'static str {
        match self {
            AccessPolicy::Full => "full",
            AccessPolicy::Policy(p) | AccessPolicy::Scoped(p)
                if p.allow.is_empty() && p.deny.is_empty() =>
            {
                p.preset.map_or("rules", |p| p.name())
            }
            AccessPolicy::Policy(_) | AccessPolicy::Scoped(_) => "rules",
        }
    }

    /// The policy requests are checked against; `None` for the byte relay.
    pub fn policy(&self) -> Option<&crate::policy::Policy> {
        match self {
            AccessPolicy::Full => None,
            AccessPolicy::Policy(p) | AccessPolicy::Scoped(p) => Some(p),
        }
    }

    /// Whose objects the tenant sees (`scope:`; `engine` unless `own`).
    pub fn scope(&self) -> crate::policy::scope::Scope {
        match self {
            AccessPolicy::Scoped(_) => crate::policy::scope::Scope::Own,
            _ => crate::policy::scope::Scope::Engine,
        }
    }
}

impl fmt::Display for AccessPolicy {
    /// `full`, or the policy's one-line summary (e.g. `read-only`,
    /// `userns-safe (bind_allow /srv/data)`, `rules (2 allow, 1 deny)`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccessPolicy::Full => f.write_str("full"),
            AccessPolicy::Policy(p) => write!(f, "{p}"),
            AccessPolicy::Scoped(p) => write!(f, "{p}, scope own"),
        }
    }
}

/// `access: {preset: .., bind_allow: [..], allow: [..], deny: [..]}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccessRules {
    /// `preset:` (full, read-only, userns-safe).
    #[serde(default, deserialize_with = "present")]
    pub preset: Option<Value>,
    /// `bind_allow:` (userns-safe only).
    #[serde(default, deserialize_with = "present")]
    pub bind_allow: Option<Value>,
    /// `allow:`.
    #[serde(default, deserialize_with = "present")]
    pub allow: Option<Value>,
    /// `deny:`.
    #[serde(default, deserialize_with = "present")]
    pub deny: Option<Value>,
    /// `scope:` (engine, own).
    #[serde(default, deserialize_with = "present")]
    pub scope: Option<Value>,
}

/// One problem with an `access` value.
#[derive(Debug)]
pub(crate) enum AccessError {
    /// A message about `access` (`key: None`) or one of its keys (`allow`,
    /// `preset`, ...), optionally about one list item (0-based).
    Message {
        /// The key under `access`, if the problem is inside the mapping.
        key: Option<&'static str>,
        /// The list item (0-based) the problem is in.
        item: Option<usize>,
        /// What is wrong and what to write instead.
        message: String,
    },
    /// An unknown key inside a rules map (key, valid keys).
    UnknownKey(String, Vec<String>),
}

impl AccessError {
    fn at(key: Option<&'static str>, item: Option<usize>, message: impl Into<String>) -> Self {
        AccessError::Message {
            key,
            item,
            message: message.into(),
        }
    }
}

const ACCESS_HINT: &str = "write full, read-only, userns-safe, or a mapping such as \
     {preset: userns-safe, bind_allow: [/srv/data]} or {allow: [\"GET,HEAD /**\"], deny: [..]}";

/// `access`: `full`, `read-only`, `userns-safe`, or a mapping with `preset`,
/// `bind_allow` (userns-safe only), `allow` and `deny` rule lists. Every
/// problem is returned.
pub(crate) fn parse_access(v: &Value) -> Result<AccessPolicy, Vec<AccessError>> {
    use crate::policy::{Policy, Preset};
    match v {
        Value::String(s) => match s.trim() {
            "full" => Ok(AccessPolicy::Full),
            "rules" => Err(vec![AccessError::at(
                None,
                None,
                "write rules as a mapping, e.g. access: {allow: [\"GET,HEAD /**\"], deny: [\"GET /secrets/**\"]}",
            )]),
            name => match Preset::from_name(name) {
                Some(p) => Ok(AccessPolicy::Policy(Policy::preset(p))),
                None => Err(vec![AccessError::at(
                    None,
                    None,
                    format!("unknown access policy {name:?}; {ACCESS_HINT}"),
                )]),
            },
        },
        Value::Mapping(_) => {
            let raw = match serde_yaml::from_value::<RawAccessRules>(v.clone()) {
                Ok(raw) => raw,
                Err(e) => {
                    let text = e.to_string();
                    return Err(vec![match super::error::parse_unknown_field(&text) {
                        Some(u) => AccessError::UnknownKey(u.key, u.expected),
                        None => AccessError::at(None, None, format!("access rules: {text}; {ACCESS_HINT}")),
                    }]);
                }
            };
            parse_access_map(&raw)
        }
        Value::Null => Err(vec![AccessError::at(
            None,
            None,
            format!("access has no value; {ACCESS_HINT}, or remove the key for full access"),
        )]),
        other => Err(vec![AccessError::at(
            None,
            None,
            format!("{} is not an access policy; {ACCESS_HINT}", describe(other)),
        )]),
    }
}

fn parse_access_map(raw: &RawAccessRules) -> Result<AccessPolicy, Vec<AccessError>> {
    use crate::policy::scope::Scope;
    use crate::policy::{Policy, Preset, Rule};
    let mut errors = Vec::new();
    let preset = match &raw.preset {
        None => None,
        Some(Value::String(s)) => match Preset::from_name(s.trim()) {
            Some(p) => Some(p),
            None => {
                errors.push(AccessError::at(
                    Some("preset"),
                    None,
                    format!("unknown preset {s:?}; write full, read-only or userns-safe"),
                ));
                None
            }
        },
        Some(other) => {
            errors.push(AccessError::at(
                Some("preset"),
                None,
                format!(
                    "{} is not a preset; write full, read-only or userns-safe",
                    describe(other)
                ),
            ));
            None
        }
    };
    let rules = |key: &'static str, v: &Option<Value>, errors: &mut Vec<AccessError>| {
        let mut out = Vec::new();
        for (i, item) in list(key, v, "\"GET,HEAD /**\"", errors).iter().enumerate() {
            match item {
                Value::String(s) => match Rule::parse(s) {
                    Ok(r) => out.push(r),
                    Err(m) => errors.push(AccessError::at(Some(key), Some(i), format!("rule {}: {m}", i + 1))),
                },
                other => errors.push(AccessError::at(
                    Some(key),
                    Some(i),
                    format!(
                        "rule {}: {} is not a rule; write a string such as \"POST /containers/*/restart\"",
                        i + 1,
                        describe(other)
                    ),
                )),
            }
        }
        out
    };
    let allow = rules("allow", &raw.allow, &mut errors);
    let deny = rules("deny", &raw.deny, &mut errors);
    let mut bind_allow = Vec::new();
    for (i, item) in list("bind_allow", &raw.bind_allow, "/srv/data", &mut errors)
        .iter()
        .enumerate()
    {
        match parse_bind_dir(item) {
            Ok(p) => bind_allow.push(p),
            Err(m) => errors.push(AccessError::at(
                Some("bind_allow"),
                Some(i),
                format!("entry {}: {m}", i + 1),
            )),
        }
    }
    if raw.bind_allow.is_some() && preset.is_some() && preset != Some(Preset::UsernsSafe) {
        errors.push(AccessError::at(
            Some("bind_allow"),
            None,
            format!(
                "bind_allow only applies to preset: userns-safe (preset {} does not inspect bind mounts); \
                 remove it or use preset: userns-safe",
                preset.map_or("", |p| p.name())
            ),
        ));
    } else if raw.bind_allow.is_some() && raw.preset.is_none() {
        errors.push(AccessError::at(
            Some("bind_allow"),
            None,
            "bind_allow only applies to preset: userns-safe; add preset: userns-safe",
        ));
    }
    if errors.is_empty() && preset.is_none() && allow.is_empty() && raw.preset.is_none() {
        errors.push(AccessError::at(
            None,
            None,
            "these access rules admit nothing: add allow rules (e.g. allow: [\"GET,HEAD /**\"]), \
             or a preset for what no rule matches (e.g. preset: full to allow everything but the deny rules)",
        ));
    }
    let scope = parse_scope(raw.scope.as_ref(), &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let policy = Policy {
        preset,
        bind_allow,
        allow,
        deny,
    };
    Ok(match scope {
        Scope::Engine => AccessPolicy::Policy(policy),
        Scope::Own => AccessPolicy::Scoped(policy),
    })
}

/// `access.scope`: `engine` (the default) or `own`.
fn parse_scope(v: Option<&Value>, errors: &mut Vec<AccessError>) -> crate::policy::scope::Scope {
    use crate::policy::scope::Scope;
    const HINT: &str = "write engine (every object on the engine, the default) or own \
                        (only the objects this tenant created, labelled io.sockbroker.tenant)";
    match v {
        None => Scope::Engine,
        Some(Value::String(s)) => Scope::from_name(s.trim()).unwrap_or_else(|| {
            errors.push(AccessError::at(
                Some("scope"),
                None,
                format!("unknown scope {s:?}; {HINT}"),
            ));
            Scope::Engine
        }),
        Some(other) => {
            errors.push(AccessError::at(
                Some("scope"),
                None,
                format!("{} is not a scope; {HINT}", describe(other)),
            ));
            Scope::Engine
        }
    }
}

/// The items of an optional list under `access`; `null` is an empty list.
fn list<'v>(
    key: &'static str,
    v: &'v Option<Value>,
    example: &str,
    errors: &mut Vec<AccessError>,
) -> &'v [Value] {
    match v {
        None | Some(Value::Null) => &[],
        Some(Value::Sequence(items)) => items,
        Some(other) => {
            errors.push(AccessError::at(
                Some(key),
                None,
                format!(
                    "{} is not a list; write a list, e.g. {key}: [{example}]",
                    describe(other)
                ),
            ));
            &[]
        }
    }
}

/// A `bind_allow` entry: an absolute directory in normal form.
fn parse_bind_dir(v: &Value) -> Result<PathBuf, String> {
    let Value::String(s) = v else {
        return Err(format!(
            "{} is not a path; write an absolute directory, e.g. /srv/data",
            describe(v)
        ));
    };
    if !s.starts_with('/') {
        return Err(format!(
            "{s:?} is a relative path; write an absolute directory, e.g. /srv/data"
        ));
    }
    if s.contains('\0') {
        return Err(format!("{s:?} contains a NUL byte"));
    }
    let normal = normalize(s);
    if normal != *s && format!("{normal}/") != *s {
        return Err(format!(
            "{s:?} is not in normal form (it contains `.`, `..` or `//`); write it as {normal:?}"
        ));
    }
    Ok(PathBuf::from(normal))
}

#[cfg(test)]
mod tests {
    use super::*;

    // YAML values to feed the parsers, shared with values.rs's tests.
    use crate::config::values::tests::{n, s, yaml};

    /// The messages of a refused `access` value, as (key, item, message).
    fn access_errors(v: &Value) -> Vec<(Option<&'static str>, Option<usize>, String)> {
        match parse_access(v) {
            Ok(p) => panic!("accepted: {p:?}"),
            Err(errors) => errors
                .into_iter()
                .map(|e| match e {
                    AccessError::Message { key, item, message } => (key, item, message),
                    AccessError::UnknownKey(k, valid) => (
                        None,
                        None,
                        format!("unknown {k}; valid {}", valid.join(",")),
                    ),
                })
                .collect(),
        }
    }

    #[test]
    fn access_policies() {
        use crate::policy::{Policy, Preset, Rule};
        assert_eq!(parse_access(&s("full")).ok(), Some(AccessPolicy::Full));
        assert_eq!(
            parse_access(&s("read-only")).ok(),
            Some(AccessPolicy::Policy(Policy::preset(Preset::ReadOnly)))
        );
        assert_eq!(
            parse_access(&s("userns-safe")).ok(),
            Some(AccessPolicy::Policy(Policy::preset(Preset::UsernsSafe)))
        );
        let p = parse_access(&yaml(
            "{allow: ['GET,HEAD /**', 'POST /containers/*/restart'], deny: ['GET /secrets/**']}",
        ))
        .unwrap();
        assert_eq!(
            p,
            AccessPolicy::Policy(Policy {
                preset: None,
                bind_allow: vec![],
                allow: vec![
                    Rule::parse("GET,HEAD /**").unwrap(),
                    Rule::parse("POST /containers/*/restart").unwrap()
                ],
                deny: vec![Rule::parse("GET /secrets/**").unwrap()],
            })
        );
        assert_eq!(p.name(), "rules");
        assert_eq!(p.to_string(), "rules (2 allow, 1 deny)");
        let p = parse_access(&yaml(
            "{preset: userns-safe, bind_allow: [/srv/data, /srv/x/]}",
        ))
        .unwrap();
        assert_eq!(p.name(), "userns-safe");
        assert_eq!(
            p.policy().unwrap().bind_allow,
            [PathBuf::from("/srv/data"), PathBuf::from("/srv/x")]
        );
        let p = parse_access(&yaml("{preset: full, deny: ['POST /containers/*/exec']}")).unwrap();
        assert_eq!(p.to_string(), "full + rules (1 deny)");
        assert!(parse_access(&yaml("{preset: read-only}")).is_ok());

        use crate::policy::scope::Scope;
        let p = parse_access(&yaml("{preset: userns-safe, scope: own}")).unwrap();
        assert_eq!(p, AccessPolicy::Scoped(Policy::preset(Preset::UsernsSafe)));
        assert_eq!((p.scope(), p.name()), (Scope::Own, "userns-safe"));
        let p = parse_access(&yaml("{preset: read-only, scope: engine}")).unwrap();
        assert_eq!(p, AccessPolicy::Policy(Policy::preset(Preset::ReadOnly)));
        assert_eq!(p.scope(), Scope::Engine);
        assert_eq!(AccessPolicy::Full.scope(), Scope::Engine);
        let e = access_errors(&yaml("{preset: full, scope: mine}"));
        assert_eq!(e[0].0, Some("scope"));
        assert!(
            e[0].2.contains("unknown scope \"mine\"; write engine"),
            "{e:?}"
        );
        let e = access_errors(&yaml("{preset: full, scope: [own]}"));
        assert!(e[0].2.contains("is not a scope"), "{e:?}");
        let e = access_errors(&yaml("{scope: own}"));
        assert!(e[0].2.contains("admit nothing"), "{e:?}");

        let e = access_errors(&s("rules"));
        assert!(e[0].2.contains("write rules as a mapping"), "{e:?}");
        let e = access_errors(&s("readonly"));
        assert!(
            e[0].2.contains("unknown access policy \"readonly\""),
            "{e:?}"
        );
        let e = access_errors(&yaml("{allow: [], denny: []}"));
        assert!(
            e[0].2
                .contains("unknown denny; valid preset,bind_allow,allow,deny,scope"),
            "{e:?}"
        );
        let e = access_errors(&yaml("{allow: ['GET /x', 'GOT /y', 7], deny: ['GET x']}"));
        assert_eq!(e.len(), 3, "{e:?}");
        assert_eq!((e[0].0, e[0].1), (Some("allow"), Some(1)));
        assert!(
            e[0].2.starts_with("rule 2: unknown method \"GOT\""),
            "{e:?}"
        );
        assert!(
            e[1].2.starts_with("rule 3: the number 7 is not a rule"),
            "{e:?}"
        );
        assert_eq!((e[2].0, e[2].1), (Some("deny"), Some(0)));
        assert!(e[2].2.contains("does not start with /"), "{e:?}");
        let e = access_errors(&yaml("{deny: ['GET /x']}"));
        assert!(e[0].2.contains("admit nothing"), "{e:?}");
        let e = access_errors(&yaml("{allow: []}"));
        assert!(e[0].2.contains("admit nothing"), "{e:?}");
        let e = access_errors(&yaml("{preset: readonly}"));
        assert_eq!(e[0].0, Some("preset"));
        let e = access_errors(&yaml("{preset: read-only, bind_allow: [/srv]}"));
        assert!(
            e[0].2.contains("only applies to preset: userns-safe"),
            "{e:?}"
        );
        let e = access_errors(&yaml("{allow: ['GET /**'], bind_allow: [/srv]}"));
        assert!(e[0].2.contains("add preset: userns-safe"), "{e:?}");
        let e = access_errors(&yaml(
            "{preset: userns-safe, bind_allow: [srv, /a/../b, 3]}",
        ));
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].2.contains("relative path"), "{e:?}");
        assert!(e[1].2.contains("write it as \"/b\""), "{e:?}");
        assert_eq!((e[2].0, e[2].1), (Some("bind_allow"), Some(2)));
        let e = access_errors(&yaml("{preset: userns-safe, bind_allow: /srv}"));
        assert!(e[0].2.contains("is not a list"), "{e:?}");
        assert!(parse_access(&Value::Null).is_err());
        assert!(parse_access(&n(1)).is_err());
    }
}
