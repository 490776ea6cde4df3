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
    let tree: Json<'_> = serde_json::from_slice(body)
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
fn repeated_key(tree: &Json<'_>) -> Option<String> {
    match tree {
        Json::Object(members) => {
            let mut seen = std::collections::HashSet::new();
            for (k, v) in members {
                if !seen.insert(k.as_ref()) {
                    return Some(k.to_string());
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
    let tree: Json<'_> = serde_json::from_slice(body)
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
    let host_configs: Vec<&Json<'_>> = std::iter::once(&tree)
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

/// The body with every container it names ([`references`], and the links of
/// a network connect's `EndpointConfig`) replaced by the full ID the broker
/// resolved: `ids` maps a reference as listed to its ID. The engine resolves
/// a name, then an ID prefix, at its own time: a tenant that renamed its own
/// container away in between could otherwise make the name resolve, as a
/// prefix, to another tenant's container. Links keep their alias.
pub fn with_container_ids(
    body: &[u8],
    ids: &std::collections::HashMap<String, String>,
) -> Result<Vec<u8>, BodyError> {
    if ids.is_empty() {
        return Ok(body.to_vec());
    }
    let mut value: Value =
        serde_json::from_slice(body).map_err(|e| BodyError(format!("body is not JSON: {e}")))?;
    let id_of = |name: &str| ids.get(name.trim()).cloned();
    let Value::Object(top) = &mut value else {
        return Ok(body.to_vec());
    };
    // The top level is read as a HostConfig too (deprecated embedded form).
    host_config_ids(top, &id_of);
    for (k, v) in top.iter_mut() {
        let Value::Object(obj) = v else { continue };
        if go_fold_eq(k, "HostConfig") {
            host_config_ids(obj, &id_of);
        } else if go_fold_eq(k, "EndpointConfig") {
            links_ids(obj, &id_of);
        } else if go_fold_eq(k, "NetworkingConfig") {
            for (ek, eps) in obj.iter_mut() {
                let (true, Value::Object(eps)) = (go_fold_eq(ek, "EndpointsConfig"), eps) else {
                    continue;
                };
                for ep in eps.values_mut() {
                    if let Value::Object(ep) = ep {
                        links_ids(ep, &id_of);
                    }
                }
            }
        }
    }
    Ok(serde_json::to_vec(&value).expect("a JSON value serializes"))
}

fn host_config_ids(hc: &mut Map<String, Value>, id_of: &dyn Fn(&str) -> Option<String>) {
    for (k, v) in hc.iter_mut() {
        if go_fold_eq(k, "VolumesFrom") {
            let Value::Array(items) = v else { continue };
            for item in items {
                let Value::String(s) = item else { continue };
                let (name, rest) = match s.split_once(':') {
                    Some((n, r)) => (n, Some(r)),
                    None => (s.as_str(), None),
                };
                if let Some(id) = id_of(name) {
                    *s = match rest {
                        Some(r) => format!("{id}:{r}"),
                        None => id,
                    };
                }
            }
        } else if [
            "NetworkMode",
            "PidMode",
            "IpcMode",
            "Cgroup",
            "UTSMode",
            "UsernsMode",
        ]
        .iter()
        .any(|f| go_fold_eq(k, f))
        {
            let Value::String(s) = v else { continue };
            if let Some(id) = s.strip_prefix("container:").and_then(id_of) {
                *s = format!("container:{id}");
            }
        }
    }
    links_ids(hc, id_of);
}

/// `Links` entries `name[:alias]` → `ID:alias`, the alias the engine would
/// have read (its `ParseLink`: no alias means the name; `/name:/parent/alias`
/// means `alias`).
fn links_ids(obj: &mut Map<String, Value>, id_of: &dyn Fn(&str) -> Option<String>) {
    for (k, v) in obj.iter_mut() {
        if !go_fold_eq(k, "Links") {
            continue;
        }
        let Value::Array(items) = v else { continue };
        for item in items {
            let Value::String(s) = item else { continue };
            let parts: Vec<&str> = s.split(':').collect();
            let alias = match parts.as_slice() {
                [one] => one.to_string(),
                [name, alias] if name.starts_with('/') => {
                    alias.rsplit('/').next().unwrap_or(alias).to_string()
                }
                [_, alias] => alias.to_string(),
                _ => continue, // the engine refuses it
            };
            if let Some(id) = id_of(link_target(s)) {
                *s = format!("{id}:{alias}");
            }
        }
    }
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
    let tree: Json<'_> =
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
            Json::String(s) if !s.is_empty() => Some(s.to_string()),
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// The container a network connect/disconnect body names (`Container`).
pub fn attach_container(body: &[u8]) -> Result<Vec<String>, BodyError> {
    let tree: Json<'_> = serde_json::from_slice(body)
        .map_err(|e| BodyError(format!("network connect body is not JSON: {e}")))?;
    let names: Vec<String> = tree
        .fields("Container")
        .filter_map(|v| match v {
            Json::String(s) => Some(s.to_string()),
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
    let tree: Json<'_> = serde_json::from_slice(body)
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
    let tree: Json<'_> = serde_json::from_slice(body)
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
#[path = "body_tests.rs"]
mod tests;
