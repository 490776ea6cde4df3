//! The `/tenants` endpoint's wire format: one JSON object per tenant. The
//! server ([`http`](crate::http)) serializes it and `sockbroker status`
//! ([`status`](crate::status)) deserializes it, so both use this one type.

use serde::{Deserialize, Serialize};

/// One tenant as `/tenants` reports it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct TenantStatus {
    /// Tenant name.
    pub name: String,
    /// Listening socket path.
    pub listen: String,
    /// Socket owner uid.
    pub uid: u32,
    /// Socket owner gid.
    pub gid: u32,
    /// How the owner was given (ids, or the userns it came from).
    pub owner: String,
    /// Socket mode, octal string.
    pub mode: String,
    /// Upstream socket path.
    pub upstream: String,
    /// "up", "down" or "degraded" (listening, but not with the configured
    /// owner or mode).
    pub state: String,
    /// Why it is down or degraded (absent when up).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    /// Connections open right now.
    pub active_connections: usize,
    /// Whether the upstream answered the last connection or probe: "up",
    /// "down" (refused or missing: is the engine running?) or "unknown".
    #[serde(default)]
    pub upstream_state: String,
}
