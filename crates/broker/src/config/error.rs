//! Configuration errors: every problem names the file, and where known the
//! tenant, the field and the line:column, and says what to do about it.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem found in a configuration file.
///
/// Rendered (by [`Display`](fmt::Display)) as
/// `FILE:LINE:COLUMN: tenant "NAME", field "FIELD": MESSAGE`, leaving out the
/// parts that are not known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The configuration file the problem is in.
    pub file: PathBuf,
    /// The tenant the problem belongs to, if it belongs to one.
    pub tenant: Option<String>,
    /// The offending key, e.g. `mode`, `allow.uids` or `defaults.drain_timeout`.
    pub field: Option<String>,
    /// 1-based line of the offending key (or value), when it could be found.
    pub line: Option<usize>,
    /// 1-based column of the offending key (or value), when it could be found.
    pub column: Option<usize>,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl ConfigError {
    /// An error about the file as a whole (no tenant, field or position).
    pub fn file_level(file: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            tenant: None,
            field: None,
            line: None,
            column: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        match (&self.tenant, &self.field) {
            (Some(t), Some(k)) => write!(f, "tenant {t:?}, field {k:?}: ")?,
            (Some(t), None) => write!(f, "tenant {t:?}: ")?,
            (None, Some(k)) => write!(f, "field {k:?}: ")?,
            (None, None) => {}
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a configuration file (never empty when returned as
/// an error). Semantic validation collects all problems; a YAML syntax or
/// schema error (unknown key, wrong shape) stops parsing and is reported alone.
///
/// Displayed as one error per line.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", render_lines(.0))]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The individual errors, in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// How many errors there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none (never the case for an `Err` from this module).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

fn render_lines(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The parts of a serde "unknown field" message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UnknownKey {
    /// The path serde_yaml reports before the message (`tenants.ci-runner`), if any.
    pub path: Option<String>,
    /// The key that is not allowed.
    pub key: String,
    /// The keys that are allowed at that place.
    pub expected: Vec<String>,
}

/// Recognise serde's `unknown field `x`, expected one of `a`, `b`` message
/// (optionally prefixed by serde_yaml's `path: `), with the location suffix
/// already removed.
pub(crate) fn parse_unknown_field(message: &str) -> Option<UnknownKey> {
    const MARK: &str = "unknown field `";
    let at = message.find(MARK)?;
    let path = message[..at]
        .strip_suffix(": ")
        .filter(|p| !p.is_empty())
        .map(str::to_string);
    let rest = &message[at + MARK.len()..];
    let end = rest.find('`')?;
    let key = rest[..end].to_string();
    let tail = &rest[end + 1..];
    let expected = match tail.find("expected") {
        Some(i) => backticked(&tail[i..]),
        None => Vec::new(),
    };
    Some(UnknownKey {
        path,
        key,
        expected,
    })
}

/// Every `word` between backticks in `s`.
fn backticked(s: &str) -> Vec<String> {
    s.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// A friendly message for an unknown key: what is wrong, a guess at what was
/// meant, and the keys that are valid there.
pub(crate) fn unknown_key_message(key: &str, expected: &[String], place: &str) -> String {
    let mut msg = format!("unknown key `{key}`{place}");
    let guesses = closest(key, expected);
    if !guesses.is_empty() {
        let list: Vec<String> = guesses.iter().map(|g| format!("`{g}`")).collect();
        msg.push_str(&format!(" (did you mean {}?)", list.join(" or ")));
    }
    if expected.is_empty() {
        msg.push_str("; no keys are allowed here");
    } else {
        msg.push_str(&format!(
            "; remove or rename it. Valid keys here: {}",
            expected.join(", ")
        ));
    }
    msg
}

/// The expected keys closest to `key` by edit distance (all ties), if they
/// are close enough to be a plausible typo.
fn closest<'a>(key: &str, expected: &'a [String]) -> Vec<&'a str> {
    let key_lower = key.to_ascii_lowercase();
    let scored: Vec<(usize, &str)> = expected
        .iter()
        .map(|e| (levenshtein(&key_lower, e), e.as_str()))
        .filter(|(d, e)| *d <= 2.max(e.len() / 4) && *d < e.len())
        .collect();
    let Some(best) = scored.iter().map(|(d, _)| *d).min() else {
        return Vec::new();
    };
    scored
        .into_iter()
        .filter(|(d, _)| *d == best)
        .map(|(_, e)| e)
        .collect()
}

fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(tenant: Option<&str>, field: Option<&str>, line: Option<usize>) -> ConfigError {
        ConfigError {
            file: PathBuf::from("/etc/sockbroker/sockbroker.yaml"),
            tenant: tenant.map(str::to_string),
            field: field.map(str::to_string),
            line,
            column: line.map(|_| 5),
            message: "something is wrong; fix it".into(),
        }
    }

    #[test]
    fn display_forms() {
        assert_eq!(
            err(Some("ci-runner"), Some("mode"), Some(12)).to_string(),
            "/etc/sockbroker/sockbroker.yaml:12:5: tenant \"ci-runner\", field \"mode\": something is wrong; fix it"
        );
        assert_eq!(
            err(None, None, None).to_string(),
            "/etc/sockbroker/sockbroker.yaml: something is wrong; fix it"
        );
        assert_eq!(
            err(Some("a"), None, Some(3)).to_string(),
            "/etc/sockbroker/sockbroker.yaml:3:5: tenant \"a\": something is wrong; fix it"
        );
        assert_eq!(
            err(None, Some("defaults.mode"), None).to_string(),
            "/etc/sockbroker/sockbroker.yaml: field \"defaults.mode\": something is wrong; fix it"
        );
        let all = ConfigErrors(vec![err(None, None, None), err(Some("a"), None, Some(3))]);
        assert_eq!(all.to_string().lines().count(), 2);
    }

    #[test]
    fn unknown_field_messages() {
        let u = parse_unknown_field(
            "tenants.ci-runner: unknown field `guid`, expected one of `listen`, `uid`, `gid`",
        )
        .unwrap();
        assert_eq!(u.path.as_deref(), Some("tenants.ci-runner"));
        assert_eq!(u.key, "guid");
        assert_eq!(u.expected, ["listen", "uid", "gid"]);
        let u = parse_unknown_field("unknown field `x`, expected `uids` or `gids`").unwrap();
        assert_eq!(u.path, None);
        assert_eq!(u.expected, ["uids", "gids"]);
        let u = parse_unknown_field("unknown field `x`, there are no fields").unwrap();
        assert!(u.expected.is_empty());
        assert!(parse_unknown_field("invalid type: integer `5`").is_none());
    }

    #[test]
    fn typo_guesses() {
        let keys: Vec<String> = ["listen", "uid", "gid", "userns", "mode", "max_connections"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(closest("guid", &keys), ["uid", "gid"]);
        assert_eq!(closest("lisen", &keys), ["listen"]);
        assert_eq!(closest("max_connection", &keys), ["max_connections"]);
        assert_eq!(closest("Mode", &keys), ["mode"]);
        assert!(closest("completely_else", &keys).is_empty());
        let msg = unknown_key_message("guid", &keys, "");
        assert!(msg.contains("did you mean `uid` or `gid`?"), "{msg}");
        assert!(msg.contains("Valid keys here: listen, uid"), "{msg}");
    }
}
