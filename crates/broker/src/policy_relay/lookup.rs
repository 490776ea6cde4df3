//! Who owns an object: the broker's own inspect requests to the engine, for
//! tenants with `scope: own` (docs/security.md, "Tenant isolation").
//!
//! A reference (name, full ID or ID prefix) is resolved the way the engine
//! resolves it — by asking the engine to inspect it — and the owner read from
//! the answer's `io.sockbroker.tenant` label. A prefix the engine finds
//! ambiguous counts as missing. Only what cannot change is cached: the owner
//! label of a full container, network or exec ID (labels are fixed at create,
//! IDs are never reused), bounded; names and volumes (whose ID is their name,
//! free again after a remove) are looked up every time.
//!
//! A lookup that fails or does not finish within [`deadline`] (twice the
//! tenant's `connect_timeout` plus one second, connecting included) is an
//! error: the request is answered `502` and never forwarded. Lookups (`GET`)
//! reuse a few idle engine connections per upstream; the broker's other side
//! requests (a volume pre-create) use a new one.

use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

use dashmap::DashMap;
use serde_json::Value;

use super::rewrite::side_request;
use crate::policy::scope::{encode_segment, predefined_network, response, Kind};

/// How long one lookup may take, connecting included: twice the tenant's
/// `connect_timeout` plus one second (11 s with the default 5 s).
pub fn deadline(connect_timeout: Duration) -> Duration {
    connect_timeout * 2 + Duration::from_secs(1)
}
/// Largest inspect answer read (a container's with a big environment).
const ANSWER_LIMIT: usize = 4 * 1024 * 1024;
/// Most owner labels cached; the cache is emptied when it is full.
const CACHE_LIMIT: usize = 16 * 1024;

/// `(upstream, kind, full ID)` → the owner label (`None`: unlabelled).
static OWNERS: LazyLock<DashMap<(String, Kind, String), Option<String>>> =
    LazyLock::new(DashMap::new);

/// What a reference names, as far as one tenant may know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// The tenant's own object, by its full ID (a volume: its name).
    Own(String),
    /// A shared object (a predefined network, an image not labelled for the
    /// tenant), by its full ID.
    Shared(String),
    /// Another tenant's object, or an unlabelled one.
    Foreign,
    /// No such object (or an ambiguous prefix).
    Absent,
}

impl Owner {
    /// Whether the tenant may name it (own or shared).
    pub fn visible(&self) -> bool {
        matches!(self, Owner::Own(_) | Owner::Shared(_))
    }
}

/// The engine a tenant's lookups go to.
pub struct Engine<'a> {
    /// The tenant's upstream socket.
    pub upstream: &'a Path,
    /// The tenant's `connect_timeout`.
    pub connect_timeout: Duration,
}

impl Engine<'_> {
    /// One request of the broker's own; `Err` is the reason for a `502`.
    pub async fn call(
        &self,
        method: &str,
        target: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Value), String> {
        let (status, bytes) = if method == "GET" && body.is_none() {
            pooled_get(self.upstream, self.connect_timeout, target).await?
        } else {
            side_request(
                self.upstream,
                self.connect_timeout,
                deadline(self.connect_timeout),
                method,
                target,
                body,
                ANSWER_LIMIT,
            )
            .await?
        };
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|e| format!("the engine's answer to {method} {target} is not JSON: {e}"))?
        };
        Ok((status, v))
    }

    /// Inspect `reference` of `kind`: `Ok(None)` if the engine has no such
    /// object (or the prefix is ambiguous).
    async fn inspect(&self, kind: Kind, reference: &str) -> Result<Option<Value>, String> {
        let target = kind.inspect_path(&encode_segment(reference));
        let (status, v) = self.call("GET", &target, None).await?;
        match status {
            200 => Ok(Some(v)),
            // Missing, or a prefix that matches several objects (400 for
            // networks, 500 "Multiple IDs found" for containers): both are
            // "no such object" to a scoped tenant.
            400..=499 => Ok(None),
            500..=599 if ambiguous(&v) => Ok(None),
            _ => Err(format!(
                "the engine answered {status} to GET {target}: {}",
                v.get("message").and_then(Value::as_str).unwrap_or("")
            )),
        }
    }

    /// Who owns `reference` of `kind`, for `tenant`.
    pub async fn owner(&self, kind: Kind, reference: &str, tenant: &str) -> Result<Owner, String> {
        if matches!(kind, Kind::Container | Kind::Network) && is_full_id(reference) {
            if let Some(label) = cached(self.upstream, kind, reference) {
                return Ok(judge(kind, reference, label.as_deref(), tenant, false));
            }
        }
        if kind == Kind::Exec {
            return self.exec_owner(reference, tenant).await;
        }
        let Some(v) = self.inspect(kind, reference).await? else {
            return Ok(Owner::Absent);
        };
        let id = match kind {
            Kind::Volume => v.get("Name"),
            _ => v.get("Id"),
        }
        .and_then(Value::as_str)
        .ok_or_else(|| format!("the engine's {kind} inspect has no ID"))?
        .to_string();
        let label = response::label_of(&v).map(str::to_string);
        if matches!(kind, Kind::Container | Kind::Network) {
            remember(self.upstream, kind, &id, label.clone());
        }
        let predefined = kind == Kind::Network
            && v.get("Name")
                .and_then(Value::as_str)
                .is_some_and(predefined_network);
        Ok(judge(kind, &id, label.as_deref(), tenant, predefined))
    }

    /// Who holds the *name* `name` of `kind` (not an ID or a prefix that
    /// happens to look like it), for `tenant`: for a create's name check.
    pub async fn name_holder(&self, kind: Kind, name: &str, tenant: &str) -> Result<Owner, String> {
        let Some(v) = self.inspect(kind, name).await? else {
            return Ok(Owner::Absent);
        };
        let held = v
            .get("Name")
            .and_then(Value::as_str)
            .is_some_and(|n| n.trim_start_matches('/') == name);
        if !held {
            return Ok(Owner::Absent);
        }
        let id = v
            .get("Id")
            .or_else(|| v.get("Name"))
            .and_then(Value::as_str)
            .unwrap_or(name);
        Ok(judge(kind, id, response::label_of(&v), tenant, false))
    }

    /// An exec belongs to the owner of its container.
    async fn exec_owner(&self, id: &str, tenant: &str) -> Result<Owner, String> {
        if let Some(label) = cached(self.upstream, Kind::Exec, id) {
            return Ok(judge(Kind::Exec, id, label.as_deref(), tenant, false));
        }
        let Some(v) = self.inspect(Kind::Exec, id).await? else {
            return Ok(Owner::Absent);
        };
        let exec_id = v
            .get("ID")
            .and_then(Value::as_str)
            .ok_or("the engine's exec inspect has no ID")?
            .to_string();
        let container = v
            .get("ContainerID")
            .and_then(Value::as_str)
            .ok_or("the engine's exec inspect has no ContainerID")?;
        let label = match Box::pin(self.owner(Kind::Container, container, tenant)).await? {
            Owner::Own(_) => Some(tenant.to_string()),
            Owner::Absent => return Ok(Owner::Absent),
            _ => cached(self.upstream, Kind::Container, container).flatten(),
        };
        remember(self.upstream, Kind::Exec, &exec_id, label.clone());
        Ok(judge(Kind::Exec, &exec_id, label.as_deref(), tenant, false))
    }
}

/// Idle engine connections kept for lookups, per upstream: a lookup on a
/// kept connection saves the connect and handshake (docs/performance.md).
static IDLE: LazyLock<std::sync::Mutex<std::collections::HashMap<String, Vec<Sender>>>> =
    LazyLock::new(Default::default);
/// Most idle lookup connections kept per upstream.
const IDLE_PER_UPSTREAM: usize = 4;

type Sender = hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>;

/// A lookup (`GET`, no body) on a kept connection if there is one, else a new
/// one; a kept connection the engine closed meanwhile is replaced once (a
/// `GET` is safe to send again). Bounded by [`deadline`] as a whole.
async fn pooled_get(
    upstream: &Path,
    connect_timeout: Duration,
    target: &str,
) -> Result<(u16, bytes::Bytes), String> {
    use http_body_util::{BodyExt, Full, Limited};
    let key = upstream.display().to_string();
    let take = || IDLE.lock().unwrap().get_mut(&key).and_then(Vec::pop);
    let work = async {
        let mut kept = take();
        loop {
            let reused = kept.is_some();
            let mut send = match kept.take() {
                Some(s) => s,
                None => {
                    let stream = crate::upstream::connect_upstream(upstream, connect_timeout)
                        .await
                        .map_err(|e| e.to_string())?;
                    let (send, conn) =
                        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                            .await
                            .map_err(|e| e.to_string())?;
                    tokio::spawn(conn);
                    send
                }
            };
            let req = hyper::Request::builder()
                .method("GET")
                .uri(target)
                .header(hyper::header::HOST, "docker")
                .body(Full::new(bytes::Bytes::new()))
                .map_err(|e| e.to_string())?;
            let sent = match send.ready().await {
                Ok(()) => send.send_request(req).await,
                Err(e) => Err(e),
            };
            let resp = match sent {
                Ok(r) => r,
                Err(_) if reused => {
                    kept = take();
                    continue;
                }
                Err(e) => return Err(e.to_string()),
            };
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), ANSWER_LIMIT)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            let mut idle = IDLE.lock().unwrap();
            let list = idle.entry(key.clone()).or_default();
            if list.len() < IDLE_PER_UPSTREAM && !send.is_closed() {
                list.push(send);
            }
            return Ok((status, body));
        }
    };
    let limit = deadline(connect_timeout);
    match tokio::time::timeout(limit, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}

fn judge(kind: Kind, id: &str, label: Option<&str>, tenant: &str, predefined: bool) -> Owner {
    if label == Some(tenant) {
        Owner::Own(id.to_string())
    } else if predefined || kind == Kind::Image {
        Owner::Shared(id.to_string())
    } else {
        Owner::Foreign
    }
}

/// The engine's words for a prefix matching several objects.
fn ambiguous(v: &Value) -> bool {
    let msg = v
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_lowercase();
    msg.contains("multiple") || msg.contains("ambiguous")
}

/// A full engine ID: 64 lowercase hex digits.
pub fn is_full_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn key(upstream: &Path, kind: Kind, id: &str) -> (String, Kind, String) {
    (upstream.display().to_string(), kind, id.to_string())
}

fn cached(upstream: &Path, kind: Kind, id: &str) -> Option<Option<String>> {
    OWNERS
        .get(&key(upstream, kind, id))
        .map(|e| e.value().clone())
}

fn remember(upstream: &Path, kind: Kind, id: &str, label: Option<String>) {
    if !is_full_id(id) {
        return;
    }
    if OWNERS.len() >= CACHE_LIMIT {
        OWNERS.clear();
    }
    OWNERS.insert(key(upstream, kind, id), label);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners() {
        let id = "a".repeat(64);
        assert_eq!(
            judge(Kind::Container, &id, Some("t"), "t", false),
            Owner::Own(id.clone())
        );
        assert_eq!(
            judge(Kind::Container, &id, Some("u"), "t", false),
            Owner::Foreign
        );
        assert_eq!(
            judge(Kind::Container, &id, None, "t", false),
            Owner::Foreign
        );
        assert_eq!(
            judge(Kind::Network, &id, None, "t", true),
            Owner::Shared(id.clone())
        );
        assert_eq!(
            judge(Kind::Image, &id, Some("u"), "t", false),
            Owner::Shared(id.clone())
        );
        assert!(is_full_id(&id));
        assert!(!is_full_id("abc"));
        assert!(!is_full_id(&"A".repeat(64)));
        assert!(ambiguous(
            &serde_json::json!({"message": "Multiple IDs found with provided prefix: ab"})
        ));
        assert!(ambiguous(
            &serde_json::json!({"message": "network ab is ambiguous (2 matches found based on ID prefix)"})
        ));
        assert!(!ambiguous(&serde_json::json!({"message": "boom"})));
    }

    #[test]
    fn the_cache_is_bounded_and_keyed_by_upstream() {
        let p = Path::new("/tmp/lookup-test-a");
        let q = Path::new("/tmp/lookup-test-b");
        let id = "b".repeat(64);
        remember(p, Kind::Container, &id, Some("t".into()));
        assert_eq!(cached(p, Kind::Container, &id), Some(Some("t".into())));
        assert_eq!(cached(q, Kind::Container, &id), None);
        assert_eq!(cached(p, Kind::Network, &id), None);
        remember(p, Kind::Container, "web", Some("t".into()));
        assert_eq!(
            cached(p, Kind::Container, "web"),
            None,
            "names are never cached"
        );
        for i in 0..CACHE_LIMIT + 10 {
            remember(q, Kind::Exec, &format!("{i:064x}"), None);
        }
        assert!(OWNERS.len() <= CACHE_LIMIT);
    }
}
