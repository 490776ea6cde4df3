//! `sockbroker check`: validate the file, print the resolved tenants, and warn
//! about every socket that is root-equivalent only because `access` was left
//! out (docs/security.md: full access to the Docker API is root on the host).

use std::path::Path;
use std::process::ExitCode;

use serde_yaml::Value;

use crate::config::{self, AccessPolicy, Config, SubIdFiles};

/// The tenants (sorted by name) that get `access: full` only by default:
/// neither the tenant nor `defaults` writes `access`. `text` is the file that
/// `config` was parsed from (valid, so it parses as YAML).
pub fn defaulted_full_access(text: &str, config: &Config) -> Vec<String> {
    let Ok(doc) = serde_yaml::from_str::<Value>(text) else {
        return Vec::new();
    };
    let has_access = |v: Option<&Value>| v.and_then(|m| m.get("access")).is_some();
    if has_access(doc.get("defaults")) {
        return Vec::new();
    }
    config
        .tenants
        .values()
        .filter(|t| matches!(t.access, AccessPolicy::Full))
        .filter(|t| !has_access(doc.get("tenants").and_then(|ts| ts.get(t.name.as_str()))))
        .map(|t| t.name.clone())
        .collect()
}

/// The warning for one such tenant: what is wrong, why it matters, how to
/// silence it (or fix it).
pub fn warning(file: &Path, tenant: &str) -> String {
    format!(
        "warning: {}: tenant {tenant:?} gets `access: full` by default: its socket is \
         root-equivalent on this host (any Docker API call, e.g. `docker run --privileged \
         -v /:/host`) and nobody chose that. Write `access: full` under the tenant (or in \
         `defaults`) to keep it and silence this warning, or choose `access: userns-safe` / \
         `read-only` (docs/security.md)",
        file.display()
    )
}

/// The tenants (sorted by name) with `scope: own` whose creates are not
/// inspected (`preset: full`, or allow rules without a preset): scope
/// confines the objects they name, not what their containers reach on the
/// host, so a privileged container or a bind mount of the engine's data root
/// would still reach every other tenant (docs/security.md).
pub fn unchecked_scope(config: &Config) -> Vec<String> {
    use crate::policy::Preset;
    config
        .tenants
        .values()
        .filter(|t| match &t.access {
            AccessPolicy::Scoped(p) => matches!(p.preset, None | Some(Preset::Full)),
            _ => false,
        })
        .map(|t| t.name.clone())
        .collect()
}

/// The warning for one such tenant.
pub fn scope_warning(file: &Path, tenant: &str) -> String {
    format!(
        "warning: {}: tenant {tenant:?} has `scope: own` without `preset: userns-safe` or          `read-only`: its container creates are not inspected, so a privileged container or          a bind mount of the engine's data root still reaches every other tenant's objects.          Add `preset: userns-safe` (docs/security.md, \"Scope is not a sandbox by itself\")",
        file.display()
    )
}

/// Run `sockbroker check --config PATH`: exit 0 when valid (warnings go to
/// stderr and do not change that), 1 with every error when not.
pub fn run(path: &Path) -> ExitCode {
    let parsed = config::read(path)
        .and_then(|text| Ok((config::parse(&text, path, &SubIdFiles::from_env())?, text)));
    match parsed {
        Ok((cfg, text)) => {
            print!("{}", config::format_table(&cfg));
            let defaulted = defaulted_full_access(&text, &cfg);
            for name in &defaulted {
                eprintln!("{}", warning(path, name));
            }
            let unchecked = unchecked_scope(&cfg);
            for name in &unchecked {
                eprintln!("{}", scope_warning(path, name));
            }
            let warned = match defaulted.len() + unchecked.len() {
                0 => String::new(),
                n => format!(", {n} warning(s)"),
            };
            println!(
                "{}: valid, {} tenant(s){warned}",
                path.display(),
                cfg.tenants.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "{}: invalid ({} error(s)); nothing would be started",
                path.display(),
                errors.0.len()
            );
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaulted(text: &str) -> Vec<String> {
        let cfg = config::parse(text, Path::new("t.yaml"), &SubIdFiles::from_env()).unwrap();
        defaulted_full_access(text, &cfg)
    }

    const TENANTS: &str = "tenants:\n  a:\n    listen: /run/x/a.sock\n    uid: 1\n    gid: 1\n  \
        b:\n    listen: /run/x/b.sock\n    uid: 1\n    gid: 1\n    access: full\n  \
        c:\n    listen: /run/x/c.sock\n    uid: 1\n    gid: 1\n    access: read-only\n";

    #[test]
    fn only_tenants_that_never_chose_full_access_are_named() {
        assert_eq!(defaulted(TENANTS), ["a"]);
        assert!(defaulted("tenants: {}\n").is_empty());
    }

    #[test]
    fn access_in_defaults_counts_as_a_choice() {
        let full = format!("defaults:\n  access: full\n{TENANTS}");
        assert!(defaulted(&full).is_empty());
        // A default policy that tenant `b` overrides with full: b chose it.
        let ro = format!("defaults:\n  access: read-only\n{TENANTS}");
        assert!(defaulted(&ro).is_empty());
    }

    #[test]
    fn scoped_tenants_without_body_checks_are_named() {
        let text = format!(
            "{TENANTS}  d:\n    listen: /run/x/d.sock\n    uid: 1\n    gid: 1\n    \
             access: {{preset: full, scope: own}}\n  \
             e:\n    listen: /run/x/e.sock\n    uid: 1\n    gid: 1\n    \
             access: {{preset: userns-safe, scope: own}}\n  \
             f:\n    listen: /run/x/f.sock\n    uid: 1\n    gid: 1\n    \
             access: {{allow: ['GET /**'], scope: own}}\n"
        );
        let cfg = config::parse(&text, Path::new("t.yaml"), &SubIdFiles::from_env()).unwrap();
        assert_eq!(unchecked_scope(&cfg), ["d", "f"]);
        let w = scope_warning(Path::new("t.yaml"), "d");
        assert!(
            w.contains("tenant \"d\"") && w.contains("preset: userns-safe"),
            "{w}"
        );
    }

    #[test]
    fn the_warning_says_how_to_silence_it() {
        let w = warning(Path::new("/etc/sockbroker/sockbroker.yaml"), "ci");
        assert!(w.starts_with("warning: /etc/sockbroker/sockbroker.yaml: tenant \"ci\""));
        assert!(w.contains("root-equivalent") && w.contains("Write `access: full`"));
    }
}
