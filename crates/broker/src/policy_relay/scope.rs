//! `scope: own` in the rewrite step: what a scoped tenant's request becomes
//! before it is forwarded (docs/security.md, "Tenant isolation").
//!
//! [`sockbroker_policy::scope::classify`] names the route; here the broker
//! asks the engine who owns the objects named ([`lookup`](super::lookup)),
//! answers `404` exactly like the engine for anything not the tenant's,
//! forwards the rest by full ID, merges the tenant's label into list/prune/
//! events filters, stamps it into creates and filters `system df`.

use serde_json::json;

use super::lookup::{Engine, Owner};
use super::rewrite::{side_request, Outgoing};
use super::synthetic::Synthetic;
use crate::config::TenantSpec;
use crate::policy::scope::{
    self, body, query, response, Action, CreateKind, Kind, ObjectRoute, Route, LABEL,
};
use crate::policy::Target;

/// Whether the request's body must be read whole first (bounded like an
/// inspected body): creates (stamped) and network connect/disconnect (the
/// container named is checked).
pub(super) fn wants_body(method: &str, target: &Target<'_>) -> bool {
    match scope::classify(method, &target.path) {
        Route::Create(_) => true,
        Route::Object(o) => {
            o.action == Action::NetworkAttach || (o.kind == Kind::Container && o.suffix == "/start")
        }
        _ => false,
    }
}

/// Rewrite `out` for a scoped tenant, or answer it.
pub(super) async fn before_forward(
    spec: &TenantSpec,
    out: &mut Outgoing<'_>,
) -> Result<(), Synthetic> {
    let tenant = spec.name.as_str();
    let method = out.method().to_string();
    let target = out.target().clone();
    let path: &str = &target.path;
    let denied = |reason: &str| Synthetic::denied(tenant, &method, path, reason);
    let cts = out.header_values("content-type");
    let cts: Vec<&[u8]> = cts.iter().map(Vec::as_slice).collect();
    if scope::form_body(&method, &cts) {
        return Err(denied(
            "scope own: form-encoded request bodies are not accepted (their values would override the query)",
        ));
    }
    let engine = Engine {
        upstream: &spec.upstream,
        connect_timeout: spec.connect_timeout,
    };
    let lookup_failed = |e: String| Synthetic::lookup_failed(&spec.upstream, &e);
    let invalid = |e: &dyn std::fmt::Display| Synthetic::invalid(e.to_string());
    let route = scope::classify(&method, path);
    let imports = matches!(route, Route::Create(CreateKind::Commit))
        || (method == "POST" && path == "/images/create");
    if imports && query::changes_forge_label(target.query.as_deref()) {
        return Err(denied(
            "scope own: changes may not set the io.sockbroker.tenant label",
        ));
    }
    match route {
        Route::Pass => Ok(()),
        Route::Refuse(why) => Err(denied(why)),
        Route::Filter => {
            let q = query::with_label_filter(target.query.as_deref(), tenant)
                .map_err(|e| invalid(&e))?;
            out.set_target(path, Some(&q));
            Ok(())
        }
        Route::Build => {
            let q = query::for_build(target.query.as_deref(), tenant).map_err(|e| invalid(&e))?;
            out.set_target(path, Some(&q));
            Ok(())
        }
        Route::SystemDf => {
            let t = tenant.to_string();
            let upstream = spec.upstream.clone();
            out.filter_response(Box::new(move |status, body| {
                if status != 200 {
                    return Ok(body);
                }
                response::system_df(&body, &t).ok_or_else(|| {
                    Synthetic::bad_upstream(
                        &upstream,
                        "system df answer is not the JSON object expected",
                    )
                })
            }));
            Ok(())
        }
        Route::Info => {
            // The engine-wide counts would tell how busy the others are.
            let q = query::with_label_filter(Some("all=1"), tenant).map_err(|e| invalid(&e))?;
            let (status, own) = side_request(
                &spec.upstream,
                spec.connect_timeout,
                super::lookup::deadline(spec.connect_timeout),
                "GET",
                &format!("/containers/json?{q}"),
                None,
                super::rewrite::FILTER_LIMIT,
            )
            .await
            .map_err(lookup_failed)?;
            if status != 200 {
                return Err(lookup_failed(format!(
                    "the engine answered {status} to a container list"
                )));
            }
            let upstream = spec.upstream.clone();
            out.filter_response(Box::new(move |status, body| {
                if status != 200 {
                    return Ok(body);
                }
                response::info(&body, &own).ok_or_else(|| {
                    Synthetic::bad_upstream(
                        &upstream,
                        "info answer is not the JSON object expected",
                    )
                })
            }));
            Ok(())
        }
        Route::Create(kind) => create(&engine, tenant, kind, out)
            .await
            .map_err(|e| match e {
                Refusal::Answer(s) => s,
                Refusal::Lookup(e) => lookup_failed(e),
            }),
        Route::Object(o) => object(&engine, tenant, &o, out).await.map_err(|e| match e {
            Refusal::Answer(s) => s,
            Refusal::Lookup(e) => lookup_failed(e),
        }),
    }
}

enum Refusal {
    /// Answer the client with this.
    Answer(Synthetic),
    /// A lookup failed: `502`.
    Lookup(String),
}

impl From<String> for Refusal {
    fn from(e: String) -> Self {
        Refusal::Lookup(e)
    }
}

fn missing(kind: Kind, reference: &str) -> Refusal {
    Refusal::Answer(Synthetic::not_owned(kind.not_found(reference)))
}

async fn object(
    engine: &Engine<'_>,
    tenant: &str,
    o: &ObjectRoute,
    out: &mut Outgoing<'_>,
) -> Result<(), Refusal> {
    let owner = engine.owner(o.kind, &o.reference, tenant).await?;
    let id = match &owner {
        Owner::Own(id) | Owner::Shared(id) => id.clone(),
        Owner::Foreign | Owner::Absent => return Err(missing(o.kind, &o.reference)),
    };
    match o.action {
        Action::RemoveImage => {
            if !matches!(owner, Owner::Own(_)) {
                return Err(Refusal::Answer(Synthetic::not_yours(format!(
                    "sockbroker: tenant {tenant} may not remove image {}: images are shared, and a tenant removes only the images labelled {LABEL}={tenant} (the ones it built or committed)",
                    o.reference
                ))));
            }
            // By the name the client gave: removing a tag is not removing
            // the image (see docs/security.md on this race).
            return Ok(());
        }
        Action::NetworkAttach => {
            let b = out.body().unwrap_or_default().to_vec();
            let names =
                body::attach_container(&b).map_err(|e| Refusal::Answer(Synthetic::invalid(e.0)))?;
            let mut container_id = None;
            for name in &names {
                // Name, full ID or ID prefix, as the engine resolves it (the
                // body goes on with the full ID).
                match engine.owner(Kind::Container, name, tenant).await? {
                    Owner::Own(cid) => container_id = Some(cid),
                    _ => return Err(missing(Kind::Container, name)),
                }
            }
            let mut ids = std::collections::HashMap::new();
            for link in
                body::attach_links(&b).map_err(|e| Refusal::Answer(Synthetic::invalid(e.0)))?
            {
                match engine.owner(Kind::Container, &link, tenant).await? {
                    Owner::Own(id) => ids.insert(link, id),
                    _ => return Err(missing(Kind::Container, &link)),
                };
            }
            endpoint_networks(engine, tenant, &b).await?;
            if let Some(cid) = container_id {
                let nb = body::attach_with_id(&b, &cid)
                    .and_then(|nb| body::with_container_ids(&nb, &ids))
                    .map_err(|e| Refusal::Answer(Synthetic::invalid(e.0)))?;
                out.set_json_body(nb);
            }
        }
        Action::InspectNetwork => {
            if matches!(owner, Owner::Shared(_)) {
                out.filter_response(Box::new(|status, b| {
                    if status != 200 {
                        return Ok(b);
                    }
                    Ok(response::shared_network(&b).unwrap_or_else(|| b"{}".to_vec()))
                }));
            }
        }
        Action::Plain => {
            let has_body = out
                .body()
                .is_some_and(|b| !b.iter().all(u8::is_ascii_whitespace));
            if o.kind == Kind::Container && o.suffix == "/start" && has_body {
                // API < 1.24 applies a HostConfig given at start, with the
                // references a create body may carry; no client sends one now.
                return Err(Refusal::Answer(Synthetic::denied(
                    tenant,
                    "POST",
                    &format!("/containers/{}/start", o.reference),
                    "scope own: a start with a HostConfig body (API < 1.24) is not accepted; put the settings in the create",
                )));
            }
            if o.kind == Kind::Container && o.suffix == "/rename" {
                scrub_conflicts(out);
            }
        }
    }
    let q = out.target().query.clone();
    out.set_target(&o.path_for(&id), q.as_deref());
    Ok(())
}

async fn create(
    engine: &Engine<'_>,
    tenant: &str,
    kind: CreateKind,
    out: &mut Outgoing<'_>,
) -> Result<(), Refusal> {
    let invalid = |e: &dyn std::fmt::Display| Refusal::Answer(Synthetic::invalid(e.to_string()));
    let mut stamped =
        body::stamp(kind, out.body().unwrap_or_default(), tenant).map_err(|e| invalid(&e))?;
    match kind {
        CreateKind::Container => {
            let name = query::first(out.target().query.as_deref(), "name").unwrap_or_default();
            let name = name.trim_start_matches('/');
            if !name.is_empty() {
                match engine.name_holder(Kind::Container, name, tenant).await? {
                    Owner::Foreign | Owner::Shared(_) => {
                        return Err(Refusal::Answer(Synthetic::conflict(format!(
                            "Conflict. The container name \"/{name}\" is already in use by a container of another tenant. Choose another name."
                        ))))
                    }
                    Owner::Own(_) | Owner::Absent => {}
                }
            }
            scrub_conflicts(out);
            // Containers are forwarded by the ID checked here (a name can
            // resolve to another container by the time the engine reads it).
            let mut ids = std::collections::HashMap::new();
            for r in body::references(&stamped).map_err(|e| invalid(&e))? {
                match (r.kind, engine.owner(r.kind, &r.name, tenant).await?) {
                    (Kind::Container, Owner::Own(id)) => {
                        ids.insert(r.name, id);
                    }
                    (_, Owner::Own(_) | Owner::Shared(_)) => {}
                    (Kind::Volume, Owner::Absent) => create_volume(engine, tenant, &r.name).await?,
                    (k, _) => return Err(missing(k, &r.name)),
                }
            }
            endpoint_networks(engine, tenant, &stamped).await?;
            stamped = body::with_container_ids(&stamped, &ids).map_err(|e| invalid(&e))?;
        }
        CreateKind::Volume => {
            // The engine reads `name`, `NAME`, … as `Name` too.
            let name = body::create_name(&stamped).map_err(|e| invalid(&e))?;
            let name = name.as_deref().unwrap_or("");
            if !name.is_empty() {
                if let Owner::Foreign = engine.name_holder(Kind::Volume, name, tenant).await? {
                    return Err(Refusal::Answer(Synthetic::conflict(format!(
                        "volume name {name} is already in use by another tenant; choose another name"
                    ))));
                }
            }
            // A name taken by another tenant after that check: the engine's
            // create is idempotent and answers with the existing volume.
            let (t, name) = (tenant.to_string(), name.to_string());
            out.filter_response(Box::new(move |status, b| {
                if !(200..300).contains(&status) {
                    return Ok(b);
                }
                let v: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
                if response::owned_by(&v, &t) {
                    return Ok(b);
                }
                Err(Synthetic::conflict(format!(
                    "volume name {name} is already in use by another tenant; choose another name"
                )))
            }));
        }
        CreateKind::Commit => {
            let q = out.target().query.clone();
            let container = query::first(q.as_deref(), "container").unwrap_or_default();
            let id = match engine.owner(Kind::Container, &container, tenant).await? {
                Owner::Own(id) => id,
                _ => return Err(missing(Kind::Container, &container)),
            };
            let path = out.target().path.clone();
            out.set_target(&path, Some(&query::replace(q.as_deref(), "container", &id)));
        }
        CreateKind::Network => {}
    }
    out.set_json_body(stamped);
    Ok(())
}

/// An endpoint's `NetworkID` chooses the network the engine attaches to
/// (over the name the request gives): it must be the tenant's own network.
async fn endpoint_networks(engine: &Engine<'_>, tenant: &str, b: &[u8]) -> Result<(), Refusal> {
    let ids =
        body::endpoint_network_ids(b).map_err(|e| Refusal::Answer(Synthetic::invalid(e.0)))?;
    for id in ids {
        if !matches!(
            engine.owner(Kind::Network, &id, tenant).await?,
            Owner::Own(_)
        ) {
            return Err(missing(Kind::Network, &id));
        }
    }
    Ok(())
}

/// A named volume a container create mounts but that does not exist yet:
/// created here with the tenant's label, so that it is the tenant's (the
/// engine would create it unlabelled).
async fn create_volume(engine: &Engine<'_>, tenant: &str, name: &str) -> Result<(), Refusal> {
    let body = json!({"Name": name, "Labels": {LABEL: tenant}}).to_string();
    let (status, v) = engine
        .call("POST", "/volumes/create", Some(body.into_bytes()))
        .await?;
    if status == 201 || status == 200 {
        if crate::policy::scope::response::owned_by(&v, tenant) {
            return Ok(());
        }
        // Someone else created it first.
        return Err(missing(Kind::Volume, name));
    }
    Err(Refusal::Answer(Synthetic::invalid(format!(
        "creating volume {name}: {}",
        v.get("message")
            .and_then(|m| m.as_str())
            .unwrap_or("the engine refused")
    ))))
}

/// A `409` for a name taken (create, rename) names the holder's full ID;
/// the ID is cut from the message (the name was checked before forwarding,
/// this covers a name taken in between).
fn scrub_conflicts(out: &mut Outgoing<'_>) {
    out.filter_response(Box::new(|status, b| {
        if status != 409 {
            return Ok(b);
        }
        Ok(response::conflict_message(&b).unwrap_or(b))
    }));
}
