//! serde_yaml's syntax and schema errors as [`ConfigError`]s: positions kept,
//! the value's path made relative to its tenant, unknown keys with a
//! did-you-mean.

use std::path::Path;

use crate::config::error::{parse_unknown_field, unknown_key_message};
use crate::config::locate::Locator;
use crate::config::ConfigError;

/// A serde_yaml error (syntax or schema) as one friendly [`ConfigError`].
pub(super) fn serde_error(
    e: &serde_yaml::Error,
    text: &str,
    source: &Path,
    syntax: bool,
) -> ConfigError {
    let location = e.location().map(|l| (l.line(), l.column()));
    let mut msg = e.to_string();
    if let Some((line, column)) = location {
        let suffix = format!(" at line {line} column {column}");
        if let Some(i) = msg.find(&suffix) {
            msg.replace_range(i..i + suffix.len(), "");
        }
    }
    let locator = Locator::new(text);
    let tenant = location.and_then(|(line, _)| locator.tenant_at_line(line));
    let mut error = ConfigError {
        file: source.to_path_buf(),
        tenant: tenant.clone(),
        field: None,
        line: location.map(|l| l.0),
        column: location.map(|l| l.1),
        message: String::new(),
    };
    if syntax {
        error.tenant = None;
        if msg.contains("more than one document") {
            error.message = "the file holds more than one YAML document (separated by `---`); \
                 keep a single document"
                .to_string();
            return error;
        }
        error.message = format!(
            "invalid YAML: {msg}; fix the syntax here (indent with spaces, not tabs; \
             quote values that contain `: ` or ` #` or start with a special character)"
        );
        return error;
    }
    // serde_yaml prefixes the path of the value: `tenants.ci-runner.allow: ...`.
    let (path, body) = split_path(&msg);
    let tenant_prefix = tenant.as_ref().map(|t| format!("tenants.{t}"));
    let relative: Option<String> = match (path, &tenant_prefix) {
        (Some(p), Some(prefix)) if p == prefix || p == "tenants" => None,
        (Some(p), Some(prefix)) if p.starts_with(&format!("{prefix}.")) => {
            Some(p[prefix.len() + 1..].to_string())
        }
        (Some(p), _) => Some(p.to_string()),
        (None, _) => None,
    };
    if let Some(u) = parse_unknown_field(body) {
        let place = match (&relative, &tenant) {
            (None, None) => " at the top level".to_string(),
            (None, Some(_)) => String::new(),
            (Some(r), _) => format!(" in {r}"),
        };
        error.field = Some(match &relative {
            Some(r) => format!("{r}.{}", u.key),
            None => u.key.clone(),
        });
        error.message = unknown_key_message(&u.key, &u.expected, &place);
        return error;
    }
    error.field = relative;
    error.message = if let Some(rest) = body.strip_prefix("duplicate field `") {
        let key = rest.split('`').next().unwrap_or_default();
        format!("key `{key}` is given twice; keep only one")
    } else {
        body.to_string()
    };
    error
}

/// Split serde_yaml's `path: message` (the path only for a few known roots).
fn split_path(msg: &str) -> (Option<&str>, &str) {
    for root in ["tenants", "defaults", "metrics"] {
        if let Some(rest) = msg.strip_prefix(root) {
            if rest.starts_with(['.', ':', '[']) {
                if let Some(i) = msg.find(": ") {
                    return (Some(&msg[..i]), &msg[i + 2..]);
                }
            }
        }
    }
    (None, msg)
}
