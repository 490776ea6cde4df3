//! Create bodies of a scoped tenant: the label stamped in, the objects named
//! listed for the broker to check.
//!
//! The engine decodes with Go's `encoding/json` (struct keys matched ignoring
//! case, with `ſ`/Kelvin folding; a repeated key decodes again into the same
//! field, into the same map for a map field). So a client could hide a second
//! `labels` or `Labels` next to the stamped one. [`stamp`] therefore
//!
//! * refuses a body with a repeated key in any object (no Docker client sends
//!   one; the engine and the broker could read it differently), and more
//!   than one key folding to `Labels` in the object stamped;
//! * parses the body once and serializes it again: the engine gets exactly
//!   the value that was checked, with one `Labels` member holding the label.
//!
//! [`references`] reads the stamped body the way the engine does, looking at
//! every member whose key folds to a field's name (also the top level as a
//! HostConfig, the deprecated embedded form).

use serde_json::{Map, Value};

use super::{predefined_network, CreateKind, Kind, LABEL};
use crate::inspect::{go_fold_eq, Json};

/// Why a create body cannot be stamped; answered with `400`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError(pub String);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BodyError {}

/// The body with `Labels[LABEL] = tenant` (and, for a container, the same in
/// every `Mounts[].VolumeOptions.Labels`: an implicitly created volume gets
/// those). An empty body is read as `{}`.
pub fn stamp(kind: CreateKind, body: &[u8], tenant: &str) -> Result<Vec<u8>, BodyError> {
    let what = match kind {
        CreateKind::Container => "container create",
        CreateKind::Volume => "volume create",
        CreateKind::Network => "network create",
        CreateKind::Commit => "commit",
    };
    let trimmed = body.iter().all(u8::is_ascii_whitespace);
    let body: &[u8] = if trimmed { b"{}" } else { body };
    // The tree that keeps repeated keys, to find them.
    let tree: Json = serde_json::from_slice(body)
        .map_err(|e| BodyError(format!("{what} body is not JSON: {e}")))?;
    if let Some(key) = repeated_key(&tree) {
        return Err(BodyError(format!(
            "{what} body repeats the key {key:?} in one object"
        )));
    }
    let mut value: Value = serde_json::from_slice(body)
        .map_err(|e| BodyError(format!("{what} body is not JSON: {e}")))?;
    let Value::Object(top) = &mut value else {
        return Err(BodyError(format!("{what} body is not a JSON object")));
    };
    if kind == CreateKind::Network
        && top
            .iter()
            .any(|(k, v)| go_fold_eq(k, "ConfigFrom") && !v.is_null())
    {
        // It names another network (a config-only one) by name, unchecked.
        return Err(BodyError(
            "scope own: a network create may not take its config from another network (ConfigFrom)"
                .into(),
        ));
    }
    stamp_object(top, tenant, what)?;
    if kind == CreateKind::Network {
        // Without it an engine before API 1.44 creates a second network with
        // a name another tenant uses, whose references by that name are then
        // "ambiguous" to the engine: one tenant would break another's.
        top.retain(|k, _| !go_fold_eq(k, "CheckDuplicate"));
        top.insert("CheckDuplicate".into(), Value::Bool(true));
    }
    if kind == CreateKind::Container {
        for (hk, hc) in top.iter_mut() {
            if !go_fold_eq(hk, "HostConfig") {
                continue;
            }
            let Value::Object(hc) = hc else { continue };
            for (mk, mounts) in hc.iter_mut() {
                if !go_fold_eq(mk, "Mounts") {
                    continue;
                }
                let Value::Array(mounts) = mounts else {
                    continue;
                };
                for m in mounts {
                    let Value::Object(m) = m else { continue };
                    for (ok, opts) in m.iter_mut() {
                        if !go_fold_eq(ok, "VolumeOptions") {
                            continue;
                        }
                        if let Value::Object(opts) = opts {
                            stamp_object(opts, tenant, "mount's VolumeOptions")?;
                        }
                    }
                }
            }
        }
    }
    Ok(serde_json::to_vec(&value).expect("a JSON value serializes"))
}

/// The `Name` a (volume) create body asks for, read as Go's `encoding/json`
/// reads it: from the key that matches `Name` ignoring case (`{"name": …}`
/// names the volume too). More than one such key is refused (Go would take
/// the last; no client sends two); a name that is not a string is `None`
/// (the engine refuses the body).
pub fn create_name(body: &[u8]) -> Result<Option<String>, BodyError> {
    let trimmed = body.iter().all(u8::is_ascii_whitespace);
    let body: &[u8] = if trimmed { b"{}" } else { body };
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| BodyError(format!("create body is not JSON: {e}")))?;
    let Value::Object(top) = value else {
        return Ok(None);
    };
    let names: Vec<(&String, &Value)> = top.iter().filter(|(k, _)| go_fold_eq(k, "Name")).collect();
    if names.len() > 1 {
        let keys: Vec<&str> = names.iter().map(|(k, _)| k.as_str()).collect();
        return Err(BodyError(format!(
            "create body has more than one Name key ({}); send one",
            keys.join(", ")
        )));
    }
    Ok(names
        .first()
        .and_then(|(_, v)| v.as_str())
        .map(str::to_string))
}

/// Put `Labels[LABEL] = tenant` into one object, which has at most one key
/// folding to `Labels`.
fn stamp_object(obj: &mut Map<String, Value>, tenant: &str, what: &str) -> Result<(), BodyError> {
    let keys: Vec<String> = obj
        .keys()
        .filter(|k| go_fold_eq(k, "Labels"))
        .cloned()
        .collect();
    if keys.len() > 1 {
        return Err(BodyError(format!(
            "{what} body has more than one Labels key ({}); send one",
            keys.join(", ")
        )));
    }
    let mut labels = match keys.first().and_then(|k| obj.remove(k)) {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(BodyError(format!(
                "{what} body: Labels must be an object of strings, not {}",
                type_name(&other)
            )))
        }
    };
    // Docker label keys are case-sensitive: `IO.SOCKBROKER.TENANT` is another
    // label and stays; only the exact key is the owner.
    labels.insert(LABEL.into(), Value::String(tenant.into()));
    obj.insert("Labels".into(), Value::Object(labels));
    Ok(())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The first key repeated (exactly) within one object, anywhere in the tree.
fn repeated_key(tree: &Json) -> Option<String> {
    match tree {
        Json::Object(members) => {
            let mut seen = std::collections::HashSet::new();
            for (k, v) in members {
                if !seen.insert(k.as_str()) {
                    return Some(k.clone());
                }
                if let Some(r) = repeated_key(v) {
                    return Some(r);
                }
            }
            None
        }
        Json::Array(items) => items.iter().find_map(repeated_key),
        _ => None,
    }
}

/// An object a create body names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reference {
    /// Its kind.
    pub kind: Kind,
    /// The name or ID as written.
    pub name: String,
    /// Where in the body, for logs (`HostConfig.VolumesFrom`).
    pub field: &'static str,
}

/// Every container, volume and network a container create body names:
/// `VolumesFrom`, `container:X` network/PID/IPC/cgroup modes, `Links` (also
/// in endpoint configs), named volumes in `Binds` and `Mounts`, a
/// user-defined `NetworkMode` and `NetworkingConfig.EndpointsConfig` keys.
/// Predefined networks are not listed. Deduplicated, in a stable order.
pub fn references(body: &[u8]) -> Result<Vec<Reference>, BodyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let tree: Json = serde_json::from_slice(body)
        .map_err(|e| BodyError(format!("container create body is not JSON: {e}")))?;
    let mut out = Vec::new();
    let mut add = |kind, name: &str, field| {
        let name = name.trim();
        if !name.is_empty() {
            out.push(Reference {
                kind,
                name: name.to_string(),
                field,
            });
        }
    };
    // The top level is read as a HostConfig too (deprecated embedded form).
    let host_configs: Vec<&Json> = std::iter::once(&tree)
        .chain(tree.fields("HostConfig"))
        .collect();
    for hc in &host_configs {
        for v in hc.fields("VolumesFrom").flat_map(Json::items) {
            if let Json::String(s) = v {
                // "name[:ro|rw]"
                let name = s.split(':').next().unwrap_or("");
                add(Kind::Container, name, "HostConfig.VolumesFrom");
            }
        }
        for (field, label) in [
            ("NetworkMode", "HostConfig.NetworkMode"),
            ("PidMode", "HostConfig.PidMode"),
            ("IpcMode", "HostConfig.IpcMode"),
            ("Cgroup", "HostConfig.Cgroup"),
            ("UTSMode", "HostConfig.UTSMode"),
            ("UsernsMode", "HostConfig.UsernsMode"),
        ] {
            for v in hc.fields(field) {
                let Json::String(s) = v else { continue };
                if let Some(c) = s.strip_prefix("container:") {
                    add(Kind::Container, c, label);
                } else if field == "NetworkMode" && !s.is_empty() && !predefined_network(s) {
                    add(Kind::Network, s, label);
                }
            }
        }
        for v in hc.fields("Links").flat_map(Json::items) {
            if let Json::String(s) = v {
                add(Kind::Container, link_target(s), "HostConfig.Links");
            }
        }
        for v in hc.fields("Binds").flat_map(Json::items) {
            if let Json::String(s) = v {
                if let Some(name) = bind_volume(s) {
                    add(Kind::Volume, name, "HostConfig.Binds");
                }
            }
        }
        for m in hc.fields("Mounts").flat_map(Json::items) {
            let is_volume = m.fields("Type").any(|t| match t {
                Json::String(t) => t.eq_ignore_ascii_case("volume"),
                _ => false,
            });
            if !is_volume {
                continue;
            }
            for s in m.fields("Source") {
                if let Json::String(s) = s {
                    add(Kind::Volume, s, "HostConfig.Mounts");
                }
            }
        }
    }
    for nc in tree.fields("NetworkingConfig") {
        for eps in nc.fields("EndpointsConfig") {
            let Json::Object(eps) = eps else { continue };
            for (net, ep) in eps {
                if !predefined_network(net) {
                    add(Kind::Network, net, "NetworkingConfig.EndpointsConfig");
                }
                for v in ep.fields("Links").flat_map(Json::items) {
                    if let Json::String(s) = v {
                        add(
                            Kind::Container,
                            link_target(s),
                            "NetworkingConfig.EndpointsConfig.Links",
                        );
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.kind == b.kind && a.name == b.name);
    Ok(out)
}

/// The container of a link `name[:alias]` (a leading `/` is the engine's
/// name form).
fn link_target(s: &str) -> &str {
    let name = s.split(':').next().unwrap_or("");
    name.strip_prefix('/').unwrap_or(name)
}

/// The named volume of a bind `src:dst[:opts]`, if its source is a name (not
/// an absolute host path) — the engine's rule on Linux.
fn bind_volume(s: &str) -> Option<&str> {
    let mut parts = s.splitn(3, ':');
    let src = parts.next()?;
    parts.next()?;
    if src.is_empty() || src.starts_with('/') {
        None
    } else {
        Some(src)
    }
}

/// The networks an endpoint names by `NetworkID`: in a container create
/// (`NetworkingConfig.EndpointsConfig.*.NetworkID`) or a network connect
/// (`EndpointConfig.NetworkID`). For a user-defined network the engine
/// attaches to the network with that ID (or name, or prefix), not to the one
/// named by the key or the path (moby's `getNetworkID`), so each must be
/// checked like a reference. No Docker client sends one.
pub fn endpoint_network_ids(body: &[u8]) -> Result<Vec<String>, BodyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let tree: Json =
        serde_json::from_slice(body).map_err(|e| BodyError(format!("body is not JSON: {e}")))?;
    let create = tree
        .fields("NetworkingConfig")
        .flat_map(|nc| nc.fields("EndpointsConfig"))
        .flat_map(|eps| match eps {
            Json::Object(eps) => eps.iter().map(|(_, ep)| ep).collect(),
            _ => Vec::new(),
        });
    let connect = tree.fields("EndpointConfig");
    let mut out: Vec<String> = create
        .chain(connect)
        .flat_map(|ep| ep.fields("NetworkID"))
        .filter_map(|v| match v {
            Json::String(s) if !s.is_empty() => Some(s.clone()),
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// The container a network connect/disconnect body names (`Container`).
pub fn attach_container(body: &[u8]) -> Result<Vec<String>, BodyError> {
    let tree: Json = serde_json::from_slice(body)
        .map_err(|e| BodyError(format!("network connect body is not JSON: {e}")))?;
    let names: Vec<String> = tree
        .fields("Container")
        .filter_map(|v| match v {
            Json::String(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    if names.is_empty() {
        return Err(BodyError("network connect body names no Container".into()));
    }
    Ok(names)
}

/// The containers a network connect body links to (`EndpointConfig.Links`).
pub fn attach_links(body: &[u8]) -> Result<Vec<String>, BodyError> {
    let tree: Json = serde_json::from_slice(body)
        .map_err(|e| BodyError(format!("network connect body is not JSON: {e}")))?;
    let mut out: Vec<String> = tree
        .fields("EndpointConfig")
        .flat_map(|ep| ep.fields("Links"))
        .flat_map(Json::items)
        .filter_map(|v| match v {
            Json::String(s) => Some(link_target(s).trim().to_string()),
            _ => None,
        })
        .filter(|s| !s.is_empty())
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// Replace the container in a network connect/disconnect body with its full
/// ID (the body is re-serialized; it has one `Container` key, checked by the
/// caller with [`attach_container`]).
pub fn attach_with_id(body: &[u8], id: &str) -> Result<Vec<u8>, BodyError> {
    let tree: Json = serde_json::from_slice(body)
        .map_err(|e| BodyError(format!("network connect body is not JSON: {e}")))?;
    if let Some(key) = repeated_key(&tree) {
        return Err(BodyError(format!(
            "network connect body repeats the key {key:?} in one object"
        )));
    }
    let mut value: Value = serde_json::from_slice(body)
        .map_err(|e| BodyError(format!("network connect body is not JSON: {e}")))?;
    let Value::Object(obj) = &mut value else {
        return Err(BodyError(
            "network connect body is not a JSON object".into(),
        ));
    };
    let keys: Vec<String> = obj
        .keys()
        .filter(|k| go_fold_eq(k, "Container"))
        .cloned()
        .collect();
    for k in keys {
        obj.remove(&k);
    }
    obj.insert("Container".into(), Value::String(id.into()));
    Ok(serde_json::to_vec(&value).expect("a JSON value serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamped(kind: CreateKind, body: &str) -> Value {
        serde_json::from_slice(&stamp(kind, body.as_bytes(), "a").unwrap()).unwrap()
    }

    #[test]
    fn stamps_every_create_kind() {
        for kind in [
            CreateKind::Container,
            CreateKind::Volume,
            CreateKind::Network,
            CreateKind::Commit,
        ] {
            for (body, want_other) in [
                ("", None),
                ("  ", None),
                ("{}", None),
                (r#"{"Labels":null}"#, None),
                (r#"{"Labels":{}}"#, None),
                (r#"{"Labels":{"k":"v"}}"#, Some("v")),
                (r#"{"labels":{"k":"v"}}"#, Some("v")),
                (r#"{"LABELS":{"k":"v"}}"#, Some("v")),
                (r#"{"Labelſ":{"k":"v"}}"#, Some("v")),
                (
                    r#"{"Labels":{"k":"v","io.sockbroker.tenant":"b"}}"#,
                    Some("v"),
                ),
                (r#"{"Labels":{"io.sockbroker.tenant":"a"}}"#, None),
            ] {
                let v = stamped(kind, body);
                let obj = v.as_object().unwrap();
                let label_keys: Vec<&String> =
                    obj.keys().filter(|k| go_fold_eq(k, "Labels")).collect();
                assert_eq!(label_keys, ["Labels"], "{body}");
                assert_eq!(v["Labels"][LABEL], "a", "{kind:?} {body}");
                assert_eq!(
                    v["Labels"].get("k").and_then(Value::as_str),
                    want_other,
                    "{body}"
                );
            }
        }
    }

    #[test]
    fn other_casings_of_the_label_key_are_other_labels() {
        let v = stamped(
            CreateKind::Container,
            r#"{"Labels":{"IO.SOCKBROKER.TENANT":"b","io.sockbroker.tenant ":"b"}}"#,
        );
        assert_eq!(v["Labels"][LABEL], "a");
        assert_eq!(v["Labels"]["IO.SOCKBROKER.TENANT"], "b");
    }

    #[test]
    fn spoofing_and_malformed_bodies_are_refused() {
        for (body, want) in [
            (
                r#"{"Labels":{"k":"v"},"labels":{"io.sockbroker.tenant":"b"}}"#,
                "more than one Labels",
            ),
            (
                r#"{"Labels":{},"Labels":{"io.sockbroker.tenant":"b"}}"#,
                "repeats the key \"Labels\"",
            ),
            (
                r#"{"Labels":{"io.sockbroker.tenant":"a","io.sockbroker.tenant":"b"}}"#,
                "repeats the key",
            ),
            (
                r#"{"HostConfig":{"Binds":[],"Binds":["v:/x"]}}"#,
                "repeats the key \"Binds\"",
            ),
            (r#"{"Labels":"x"}"#, "not a string"),
            (r#"{"Labels":["io.sockbroker.tenant=b"]}"#, "not a list"),
            (r#"{"Labels":1}"#, "not a number"),
            ("[]", "not a JSON object"),
            ("null", "not a JSON object"),
            ("{", "not JSON"),
            ("{} {}", "not JSON"),
            ("\u{0}", "not JSON"),
        ] {
            let e = stamp(CreateKind::Container, body.as_bytes(), "a").unwrap_err();
            assert!(e.0.contains(want), "{body}: {e}");
        }
    }

    #[test]
    fn endpoint_network_ids_are_listed() {
        for (body, want) in [
            (
                r#"{"NetworkingConfig":{"EndpointsConfig":{"a":{"NetworkID":"x"},"b":{"networkid":"y"},"c":{}}}}"#,
                vec!["x", "y"],
            ),
            (
                r#"{"Container":"c","EndpointConfig":{"NETWORKID":"z"}}"#,
                vec!["z"],
            ),
            (r#"{"EndpointConfig":{"NetworkID":""}}"#, vec![]),
            (r#"{"Image":"x"}"#, vec![]),
            ("", vec![]),
        ] {
            assert_eq!(
                endpoint_network_ids(body.as_bytes()).unwrap(),
                want,
                "{body}"
            );
        }
    }

    #[test]
    fn create_names_are_read_in_any_key_casing() {
        for (body, want) in [
            (r#"{"Name":"v"}"#, Some("v")),
            (r#"{"name":"v"}"#, Some("v")),
            (r#"{"NAME":"v"}"#, Some("v")),
            (r#"{"Names":"v"}"#, None),
            (r#"{"Name":1}"#, None),
            (r#"{}"#, None),
            ("", None),
        ] {
            assert_eq!(
                create_name(body.as_bytes()).unwrap().as_deref(),
                want,
                "{body}"
            );
        }
        assert!(create_name(br#"{"Name":"a","name":"b"}"#).is_err());
    }

    #[test]
    fn network_creates_always_check_duplicate_names() {
        for body in [
            r#"{"Name":"n"}"#,
            r#"{"Name":"n","CheckDuplicate":false}"#,
            r#"{"Name":"n","checkDuplicate":false}"#,
        ] {
            let v = stamped(CreateKind::Network, body);
            let keys: Vec<&String> = v
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| go_fold_eq(k, "CheckDuplicate"))
                .collect();
            assert_eq!(keys, ["CheckDuplicate"], "{body}");
            assert_eq!(v["CheckDuplicate"], true, "{body}");
        }
    }

    #[test]
    fn networks_from_other_networks_are_refused() {
        for body in [
            r#"{"Name":"n","ConfigFrom":{"Network":"x"}}"#,
            r#"{"configfrom":{}}"#,
        ] {
            let e = stamp(CreateKind::Network, body.as_bytes(), "a").unwrap_err();
            assert!(e.0.contains("ConfigFrom"), "{e}");
        }
        assert!(stamp(
            CreateKind::Network,
            br#"{"Name":"n","ConfigFrom":null}"#,
            "a"
        )
        .is_ok());
    }

    #[test]
    fn mount_volume_options_are_stamped() {
        let v = stamped(
            CreateKind::Container,
            r#"{"HostConfig":{"Mounts":[{"Type":"volume","Source":"v","VolumeOptions":{"Labels":{"io.sockbroker.tenant":"b"}}},{"Type":"volume","Source":"w","volumeoptions":{}}]}}"#,
        );
        assert_eq!(
            v["HostConfig"]["Mounts"][0]["VolumeOptions"]["Labels"][LABEL],
            "a"
        );
        assert_eq!(
            v["HostConfig"]["Mounts"][1]["volumeoptions"]["Labels"][LABEL],
            "a"
        );
        let e = stamp(
            CreateKind::Container,
            br#"{"HostConfig":{"Mounts":[{"VolumeOptions":{"Labels":{},"labels":{}}}]}}"#,
            "a",
        )
        .unwrap_err();
        assert!(e.0.contains("more than one Labels"), "{e}");
    }

    #[test]
    fn everything_else_is_kept() {
        let body = r#"{"Image":"x","Cmd":["sh","-c","echo"],"HostConfig":{"Memory":1048576,"NanoCpus":1.5e9,"hostconfig":1},"Env":null}"#;
        let v = stamped(CreateKind::Container, body);
        assert_eq!(v["Image"], "x");
        assert_eq!(v["Cmd"][2], "echo");
        assert_eq!(v["HostConfig"]["Memory"], 1048576);
        assert_eq!(v["HostConfig"]["hostconfig"], 1);
        assert!(v["Env"].is_null());
    }

    fn refs(body: &str) -> Vec<(Kind, String)> {
        references(body.as_bytes())
            .unwrap()
            .into_iter()
            .map(|r| (r.kind, r.name))
            .collect()
    }

    #[test]
    fn references_in_create_bodies() {
        use Kind::*;
        let c = |s: &str| (Container, s.to_string());
        let v = |s: &str| (Volume, s.to_string());
        let n = |s: &str| (Network, s.to_string());
        for (body, want) in [
            ("", vec![]),
            (r#"{"Image":"x"}"#, vec![]),
            (
                r#"{"HostConfig":{"VolumesFrom":["db:ro","web"]}}"#,
                vec![c("db"), c("web")],
            ),
            (
                r#"{"HostConfig":{"NetworkMode":"container:db"}}"#,
                vec![c("db")],
            ),
            (
                r#"{"HostConfig":{"PidMode":"container:p","IpcMode":"container:i","Cgroup":"container:g"}}"#,
                vec![c("g"), c("i"), c("p")],
            ),
            (
                r#"{"HostConfig":{"NetworkMode":"none","PidMode":"host","IpcMode":"private"}}"#,
                vec![],
            ),
            (
                r#"{"HostConfig":{"NetworkMode":"mynet"}}"#,
                vec![n("mynet")],
            ),
            (
                r#"{"HostConfig":{"Links":["/db:db","cache"]}}"#,
                vec![c("cache"), c("db")],
            ),
            (
                r#"{"HostConfig":{"Binds":["data:/data","/srv:/srv:ro","anon","c:/x:rw"]}}"#,
                vec![v("c"), v("data")],
            ),
            (
                r#"{"HostConfig":{"Mounts":[{"Type":"volume","Source":"m"},{"Type":"bind","Source":"/x"},{"Type":"volume"}]}}"#,
                vec![v("m")],
            ),
            (
                r#"{"NetworkingConfig":{"EndpointsConfig":{"none":{},"mynet":{"Links":["l:x"]}}}}"#,
                vec![c("l"), n("mynet")],
            ),
            // Go's key folding, the embedded HostConfig, and every copy are read.
            (
                r#"{"hostconfig":{"volumesfrom":["a"]},"VolumesFrom":["b"],"HostConfig":{"VolumesFrom":["c"]}}"#,
                vec![c("a"), c("b"), c("c")],
            ),
            (r#"{"HostConfig":{"Linkſ":["k"]}}"#, vec![c("k")]),
            (
                r#"{"HostConfig":{"VolumesFrom":["x"],"VolumesFrom":["x"]}}"#,
                vec![c("x")],
            ),
        ] {
            assert_eq!(refs(body), want, "{body}");
        }
        assert!(references(b"{").is_err());
    }

    #[test]
    fn network_attach_links() {
        assert_eq!(
            attach_links(
                br#"{"Container":"a","EndpointConfig":{"Links":["/db:db","x"],"links":["y:z"]}}"#
            )
            .unwrap(),
            ["db", "x", "y"]
        );
        assert!(attach_links(br#"{"Container":"a"}"#).unwrap().is_empty());
    }

    #[test]
    fn network_attach_bodies() {
        assert_eq!(
            attach_container(br#"{"Container":"web"}"#).unwrap(),
            ["web"]
        );
        assert_eq!(
            attach_container(br#"{"container":"a","Container":"b"}"#).unwrap(),
            ["a", "b"]
        );
        assert!(attach_container(b"{}").is_err());
        let out = attach_with_id(br#"{"container":"web","EndpointConfig":{}}"#, "abc").unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["Container"], "abc");
        assert!(v.get("container").is_none());
    }
}
