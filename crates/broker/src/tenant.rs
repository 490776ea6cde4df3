//! What a tenant's listeners and connections share: its current settings, the
//! count of open connections (for `max_connections`), its metric handles and
//! whether its socket is up. The fields are private; the supervisor, the
//! listener, the policy relay and the HTTP endpoints go through the methods.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio_util::sync::CancellationToken;

use crate::config::TenantSpec;
use crate::metrics::TenantMetrics;

/// Whether a tenant's socket is listening, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantState {
    /// Listening on its socket.
    Up,
    /// Not listening; the reason says what to fix. Retried periodically.
    Down(String),
    /// Listening, but not as configured (an owner/mode change failed); the
    /// reason says what. Retried periodically.
    Degraded(String),
}

/// The peer's credentials (`SO_PEERCRED`), for checks and log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Process id (0 if unknown).
    pub pid: i32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// A tenant's settings as of one [`TenantShared::update`].
#[derive(Clone)]
pub struct Settings {
    /// The spec.
    pub spec: Arc<TenantSpec>,
    /// Counts updates: a new value with each one.
    pub version: u64,
    /// Cancelled once the tenant has an access policy: its byte-relay
    /// connections close then, so that clients reconnect under the policy
    /// (the byte relay cannot start checking in the middle of a stream).
    /// One token for all of them (listeners derive their relays' token
    /// from it), so a connection registers nothing of its own; a new one
    /// only when the tenant goes back to `full`.
    pub byte_relays: CancellationToken,
    /// Counts new [`byte_relays`](Self::byte_relays) tokens: a token derived
    /// from an earlier one was cancelled with it.
    pub byte_relays_epoch: u64,
}

/// What a tenant's listeners and connections share. Lives as long as the tenant
/// is configured (across moves and setting changes) plus its final drain.
pub struct TenantShared {
    /// The tenant's name (metric label, log field).
    name: String,
    /// Current spec. A new connection reads it once for its upstream and
    /// limits; the policy relay reads it again for each request, so a changed
    /// policy applies to the next request of an open connection
    /// (docs/configuration.md "access").
    settings: RwLock<Settings>,
    /// [`Settings::version`], readable without the lock: an accept loop
    /// compares it with the settings it has at hand for each connection.
    version: AtomicU64,
    /// Connections open right now, across all of this tenant's listeners; the
    /// `max_connections` check compares against it.
    active: AtomicUsize,
    /// Metric handles, resolved once.
    metrics: TenantMetrics,
    /// Up or down with a reason, for `/readyz` and `/tenants`.
    state: Mutex<TenantState>,
}

impl TenantShared {
    /// A tenant with `spec` as its settings, initially down ("not set up yet").
    pub fn new(spec: Arc<TenantSpec>, metrics: TenantMetrics) -> Arc<Self> {
        metrics.set_up(false);
        if spec.access.policy().is_some() {
            metrics.policy_mode();
        }
        let byte_relays = CancellationToken::new();
        if spec.access.policy().is_some() {
            byte_relays.cancel();
        }
        Arc::new(TenantShared {
            name: spec.name.clone(),
            settings: RwLock::new(Settings {
                spec,
                version: 0,
                byte_relays,
                byte_relays_epoch: 0,
            }),
            version: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            metrics,
            state: Mutex::new(TenantState::Down("not set up yet".into())),
        })
    }

    /// The tenant's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tenant's metric handles.
    pub fn metrics(&self) -> &TenantMetrics {
        &self.metrics
    }

    /// New settings: connections accepted from now on use them, and open
    /// policy-mode connections check their next request against them. With
    /// an access policy, open byte-relay connections close
    /// ([`Settings::byte_relays`]).
    pub fn update(&self, spec: Arc<TenantSpec>) {
        let policy = spec.access.policy().is_some();
        if policy {
            self.metrics.policy_mode();
        }
        let mut s = self.settings.write().unwrap_or_else(|e| e.into_inner());
        if policy {
            s.byte_relays.cancel();
        } else if s.byte_relays.is_cancelled() {
            s.byte_relays = CancellationToken::new();
            s.byte_relays_epoch += 1;
        }
        s.spec = spec;
        s.version += 1;
        self.version.store(s.version, Ordering::Release);
    }

    /// The current spec.
    pub fn spec(&self) -> Arc<TenantSpec> {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .spec
            .clone()
    }

    /// The current settings.
    pub fn settings(&self) -> Settings {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The current [`Settings::version`], without taking the lock.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Record up/down (state, gauge and, when down, a log line).
    pub fn set_state(&self, state: TenantState) {
        self.metrics.set_up(!matches!(state, TenantState::Down(_)));
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }

    /// Current up/down state.
    pub fn state(&self) -> TenantState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Connections open right now.
    pub fn active_connections(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Count one more open connection unless `max` are open already. The
    /// returned guard counts it until dropped; `None`: over the limit (not
    /// counted).
    pub fn open(&self, max: usize) -> Option<ActiveGuard<'_>> {
        let n = self.active.fetch_add(1, Ordering::Relaxed) + 1;
        if n > max {
            self.active.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        self.metrics.opened();
        Some(ActiveGuard(self))
    }
}

/// One open connection of a tenant; dropping it ends the count however the
/// connection ends.
pub struct ActiveGuard<'a>(&'a TenantShared);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
        self.0.metrics.closed();
    }
}
