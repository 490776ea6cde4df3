//! The file's schema as serde sees it, before validation.
//!
//! Every struct denies unknown fields, so a typo such as `guid:` is an error
//! with serde_yaml's line and column. Leaf values are kept as
//! [`serde_yaml::Value`] so that validation can check them all (collecting
//! every error) with messages that say what to write instead; `Some(Null)`
//! records a key that is present with an empty value, `None` an absent key.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserializer, Error as _, MapAccess, Visitor};
use serde::Deserialize;
use serde_yaml::Value;

/// Deserialize a field that is present (possibly `null`) as `Some(..)`; with
/// `#[serde(default)]` an absent field stays `None`.
pub(super) fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "the sockbroker configuration: a mapping with the keys metrics, defaults and tenants"
)]
pub(crate) struct RawConfig {
    /// `metrics:` (`Some(None)` when present but empty).
    #[serde(default, deserialize_with = "present")]
    pub metrics: Option<Option<RawMetrics>>,
    /// `defaults:`.
    #[serde(default)]
    pub defaults: Option<RawDefaults>,
    /// `tenants:`, in file order.
    #[serde(default)]
    pub tenants: Option<RawTenants>,
}

/// `metrics:`.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "the metrics settings: a mapping with the key listen"
)]
pub(crate) struct RawMetrics {
    /// `listen:`.
    #[serde(default, deserialize_with = "present")]
    pub listen: Option<Value>,
}

/// `defaults:`: the values every tenant inherits.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "the defaults: a mapping of settings every tenant inherits"
)]
pub(crate) struct RawDefaults {
    /// `upstream:`.
    #[serde(default, deserialize_with = "present")]
    pub upstream: Option<Value>,
    /// `mode:`.
    #[serde(default, deserialize_with = "present")]
    pub mode: Option<Value>,
    /// `access:`.
    #[serde(default, deserialize_with = "present")]
    pub access: Option<Value>,
    /// `max_connections:`.
    #[serde(default, deserialize_with = "present")]
    pub max_connections: Option<Value>,
    /// `idle_timeout:`.
    #[serde(default, deserialize_with = "present")]
    pub idle_timeout: Option<Value>,
    /// `drain_timeout:`.
    #[serde(default, deserialize_with = "present")]
    pub drain_timeout: Option<Value>,
    /// `connect_timeout:`.
    #[serde(default, deserialize_with = "present")]
    pub connect_timeout: Option<Value>,
    /// `request_timeout:`.
    #[serde(default, deserialize_with = "present")]
    pub request_timeout: Option<Value>,
}

/// One tenant.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a tenant's settings: a mapping with listen, an owner (uid + gid, or userns) and optional settings"
)]
pub(crate) struct RawTenant {
    /// `listen:`.
    #[serde(default, deserialize_with = "present")]
    pub listen: Option<Value>,
    /// `uid:`.
    #[serde(default, deserialize_with = "present")]
    pub uid: Option<Value>,
    /// `gid:`.
    #[serde(default, deserialize_with = "present")]
    pub gid: Option<Value>,
    /// `userns:` (a name, or a mapping checked against [`RawUsernsMap`]).
    #[serde(default, deserialize_with = "present")]
    pub userns: Option<Value>,
    /// `mode:`.
    #[serde(default, deserialize_with = "present")]
    pub mode: Option<Value>,
    /// `upstream:`.
    #[serde(default, deserialize_with = "present")]
    pub upstream: Option<Value>,
    /// `allow:` (`Some(None)` when present but empty).
    #[serde(default, deserialize_with = "present")]
    pub allow: Option<Option<RawAllow>>,
    /// `access:` (a name, or a rules mapping checked against `access::RawAccessRules`).
    #[serde(default, deserialize_with = "present")]
    pub access: Option<Value>,
    /// `max_connections:`.
    #[serde(default, deserialize_with = "present")]
    pub max_connections: Option<Value>,
    /// `idle_timeout:`.
    #[serde(default, deserialize_with = "present")]
    pub idle_timeout: Option<Value>,
    /// `drain_timeout:`.
    #[serde(default, deserialize_with = "present")]
    pub drain_timeout: Option<Value>,
    /// `connect_timeout:`.
    #[serde(default, deserialize_with = "present")]
    pub connect_timeout: Option<Value>,
    /// `request_timeout:`.
    #[serde(default, deserialize_with = "present")]
    pub request_timeout: Option<Value>,
}

/// `allow:`.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an allow list: a mapping with uids and/or gids, e.g. {uids: [\"231072-296607\"]}"
)]
pub(crate) struct RawAllow {
    /// `uids:`.
    #[serde(default, deserialize_with = "present")]
    pub uids: Option<Value>,
    /// `gids:`.
    #[serde(default, deserialize_with = "present")]
    pub gids: Option<Value>,
}

/// `userns: {user: NAME, uid: N, gid: N}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUsernsMap {
    /// `user:`.
    #[serde(default, deserialize_with = "present")]
    pub user: Option<Value>,
    /// `uid:` (container side, default 0).
    #[serde(default, deserialize_with = "present")]
    pub uid: Option<Value>,
    /// `gid:` (container side, default 0).
    #[serde(default, deserialize_with = "present")]
    pub gid: Option<Value>,
}

/// `tenants:` in file order; a tenant without settings (`name:` alone) is `None`.
/// A name given twice is an error (serde_yaml would silently keep one).
#[derive(Debug, Default)]
pub(crate) struct RawTenants(pub Vec<(String, Option<RawTenant>)>);

impl<'de> Deserialize<'de> for RawTenants {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawTenants;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of tenant name to the tenant's settings (write `tenants: {}` for none)")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<RawTenants, E> {
                Ok(RawTenants::default())
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<RawTenants, M::Error> {
                let mut tenants: Vec<(String, Option<RawTenant>)> = Vec::new();
                // A set, not a scan of `tenants`: 10,000 tenants must not cost
                // 50 million string comparisons (docs/performance.md).
                let mut names = std::collections::HashSet::new();
                while let Some(name) = map.next_key::<String>()? {
                    if !names.insert(name.clone()) {
                        return Err(M::Error::custom(format!(
                            "tenant {name:?} is defined twice; give each tenant a unique name"
                        )));
                    }
                    let tenant = map.next_value::<Option<RawTenant>>()?;
                    tenants.push((name, tenant));
                }
                Ok(RawTenants(tenants))
            }
        }
        d.deserialize_any(V)
    }
}

/// A second, lenient view of the file that keeps each `mode:` scalar exactly
/// as written (see [`super::values::parse_mode`]): serde_norway hands
/// `mode: 0o660` and `mode: 432` both over as the integer 432, but asked for a
/// string (`deserialize_str`) it yields the scalar's source text (`"0o660"`).
/// Everything but `defaults.mode` and `tenants.*.mode` is ignored.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ModeShadow {
    /// `defaults:`.
    #[serde(default)]
    pub defaults: Option<ShadowBlock>,
    /// `tenants:`.
    #[serde(default)]
    pub tenants: Option<BTreeMap<String, Option<ShadowBlock>>>,
}

impl ModeShadow {
    /// Read the raw `mode:` scalars of `text`; empty if that fails (then an
    /// integer mode is refused rather than guessed).
    pub fn read(text: &str) -> Self {
        serde_yaml::from_str::<Option<ModeShadow>>(text)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// The raw `mode:` text of `defaults` (tenant `None`) or a tenant.
    pub fn mode(&self, tenant: Option<&str>) -> Option<&str> {
        let block = match tenant {
            None => self.defaults.as_ref(),
            Some(t) => self.tenants.as_ref()?.get(t)?.as_ref(),
        };
        block?.mode.as_ref().map(|m| m.0.as_str())
    }
}

/// [`ModeShadow`], read only when a `mode:` turns out to be an integer (rare:
/// the documented form is quoted), since reading it is another full parse.
pub(crate) struct LazyModeShadow<'t> {
    /// The file's text.
    text: &'t str,
    /// The shadow, once read.
    read: std::cell::OnceCell<ModeShadow>,
}

impl<'t> LazyModeShadow<'t> {
    /// Nothing is parsed yet.
    pub fn new(text: &'t str) -> Self {
        LazyModeShadow {
            text,
            read: std::cell::OnceCell::new(),
        }
    }

    /// See [`ModeShadow::mode`].
    pub fn mode(&self, tenant: Option<&str>) -> Option<&str> {
        self.read
            .get_or_init(|| ModeShadow::read(self.text))
            .mode(tenant)
    }
}

/// A block with a `mode:` key, other keys ignored.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ShadowBlock {
    /// `mode:` as written.
    #[serde(default)]
    pub mode: Option<ModeText>,
}

/// A scalar's text as written in the source.
#[derive(Debug)]
pub(crate) struct ModeText(pub String);

impl<'de> Deserialize<'de> for ModeText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ModeText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ModeText, E> {
                Ok(ModeText(v.to_string()))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_keeps_the_scalar_as_written() {
        let text = "\
defaults:
  mode: 0o640
  upstream: /x
tenants:
  a:
    mode: 0o660
    listen: /a
  b:
    mode: 432
  c: {mode: 0x1b0, uid: 1}
  d:
  e:
    mode: \"660\"
  f:
    mode: *m
  g:
    mode: &m 0o600
";
        // The alias is defined after its use, which is invalid YAML: the
        // shadow gives up, and integer modes will then be refused.
        assert!(ModeShadow::read(text).mode(Some("a")).is_none());
        let text = text.replace("mode: *m", "mode: 0o700");
        let s = ModeShadow::read(&text);
        assert_eq!(s.mode(None), Some("0o640"));
        assert_eq!(s.mode(Some("a")), Some("0o660"));
        assert_eq!(s.mode(Some("b")), Some("432"));
        assert_eq!(s.mode(Some("c")), Some("0x1b0"));
        assert_eq!(s.mode(Some("d")), None);
        assert_eq!(s.mode(Some("e")), Some("660"));
        assert_eq!(s.mode(Some("g")), Some("0o600"));
        assert_eq!(s.mode(Some("zz")), None);

        let aliased = "tenants:\n  a:\n    mode: &m 0o660\n  b:\n    mode: *m\n";
        assert_eq!(ModeShadow::read(aliased).mode(Some("b")), Some("0o660"));
    }

    #[test]
    fn tenants_keep_file_order_and_reject_duplicates() {
        let c: RawConfig =
            serde_yaml::from_str("tenants:\n  zz: {}\n  aa:\n  mm: {listen: /x}\n").unwrap();
        let names: Vec<&str> = c
            .tenants
            .as_ref()
            .unwrap()
            .0
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(names, ["zz", "aa", "mm"]);
        assert!(c.tenants.unwrap().0[1].1.is_none());
        let e = serde_yaml::from_str::<RawConfig>("tenants:\n  a: {}\n  a: {}\n").unwrap_err();
        assert!(e.to_string().contains("defined twice"), "{e}");
        let c: RawConfig = serde_yaml::from_str("tenants:\n").unwrap();
        assert!(c.tenants.is_none());
    }

    #[test]
    fn present_but_empty_is_not_absent() {
        let c: RawConfig =
            serde_yaml::from_str("metrics:\ntenants:\n  a:\n    idle_timeout: null\n    allow:\n")
                .unwrap();
        assert!(matches!(c.metrics, Some(None)));
        let t = c.tenants.unwrap().0.remove(0).1.unwrap();
        assert!(matches!(t.idle_timeout, Some(Value::Null)));
        assert!(t.drain_timeout.is_none());
        assert!(matches!(t.allow, Some(None)));
    }
}
