//! Applying a [`Plan`] to the running tenants.
//!
//! The supervisor owns the running state: for each tenant its shared settings
//! and, while it is up, its one current listener. It is driven by a single task
//! (the daemon loop), so applying needs no locks of its own; what the HTTP side
//! reads is published through [`Supervisor::registry`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio_util::task::TaskTracker;

use crate::config::TenantSpec;
use crate::listener::ListenerHandle;
use crate::metrics::Metrics;
use crate::plan::{plan, Plan};
use crate::socket;
use crate::tenant::{TenantShared, TenantState};

/// Tenants by name, readable from other tasks (HTTP status, sd_notify).
/// Never hold an entry across an `.await`.
pub type Registry = Arc<DashMap<String, Arc<TenantShared>>>;

/// One configured tenant as it runs.
struct Running {
    /// Settings, state and metrics shared with listeners and connections.
    shared: Arc<TenantShared>,
    /// The listener while the tenant is up; `None` while it is down.
    listener: Option<ListenerHandle>,
}

/// What one apply did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplySummary {
    /// Tenants added.
    pub added: usize,
    /// Tenants removed (now draining).
    pub removed: usize,
    /// Tenants changed in any way.
    pub changed: usize,
    /// Tenants down after the apply.
    pub down: usize,
}

/// Owns every running tenant and turns desired state into running state.
pub struct Supervisor {
    /// Running tenants; only the daemon task touches this.
    tenants: BTreeMap<String, Running>,
    /// The specs last applied, the "running config" the next plan diffs against.
    /// The same `Arc`s new connections read (`TenantShared::settings`): one copy
    /// of each spec, however many tenants there are.
    applied: BTreeMap<String, Arc<TenantSpec>>,
    /// Published view of the tenants for HTTP/status readers.
    registry: Registry,
    /// Metric families; per-tenant handles come from here.
    metrics: Metrics,
    /// Drains in progress (removed tenants, moved-away listeners); shutdown waits on them.
    drains: TaskTracker,
}

impl Supervisor {
    /// An empty supervisor: no tenants yet.
    pub fn new(metrics: Metrics) -> Self {
        Supervisor {
            tenants: BTreeMap::new(),
            applied: BTreeMap::new(),
            registry: Arc::new(DashMap::new()),
            metrics,
            drains: TaskTracker::new(),
        }
    }

    /// The published tenant view.
    pub fn registry(&self) -> Registry {
        self.registry.clone()
    }

    /// Specs currently applied.
    pub fn applied(&self) -> &BTreeMap<String, Arc<TenantSpec>> {
        &self.applied
    }

    /// Number of tenants that are down.
    pub fn down_count(&self) -> usize {
        self.tenants
            .values()
            .filter(|t| t.listener.is_none())
            .count()
    }

    /// Bring the running tenants to `desired`. Only what differs is touched.
    pub fn apply(&mut self, desired: &BTreeMap<String, TenantSpec>) -> ApplySummary {
        let p = plan(&self.applied, desired);
        let summary = ApplySummary {
            added: p.to_add.len(),
            removed: p.to_remove.len(),
            changed: p.to_change.len(),
            down: 0,
        };
        self.apply_plan(p);
        self.metrics.tenants.set(self.tenants.len() as i64);
        ApplySummary {
            down: self.down_count(),
            ..summary
        }
    }

    fn apply_plan(&mut self, p: Plan) {
        for name in p.to_remove {
            self.remove(&name);
        }
        for change in p.to_change {
            let name = change.spec.name.clone();
            let Some(t) = self.tenants.get_mut(&name) else {
                continue;
            };
            let spec = Arc::new(change.spec);
            if change.moved {
                // Bind the new path first; only then retire the old listener.
                t.shared.update(spec.clone());
                match bind_listener(&t.shared, &spec) {
                    Ok(h) => {
                        if let Some(old) = t.listener.replace(h) {
                            let drain = spec.drain_timeout;
                            self.drains.spawn(old.retire(drain));
                        }
                        t.shared.set_state(TenantState::Up);
                    }
                    Err(reason) => {
                        // The new path cannot be served: the tenant is down at its
                        // configured path, so the old socket goes too.
                        if let Some(old) = t.listener.take() {
                            self.drains.spawn(old.retire(spec.drain_timeout));
                        }
                        mark_down(&t.shared, reason);
                    }
                }
            } else {
                if change.permissions {
                    if let Some(l) = &t.listener {
                        match l.socket.set_owner_mode(spec.uid, spec.gid, spec.mode) {
                            Ok(()) => {
                                tracing::info!(tenant = %name, uid = spec.uid, gid = spec.gid,
                                mode = %format!("{:04o}", spec.mode), "socket owner/mode changed in place")
                            }
                            Err(e) => {
                                tracing::error!(tenant = %name, error = %e, "cannot change socket owner/mode");
                            }
                        }
                    }
                }
                t.shared.update(spec.clone());
            }
            self.applied.insert(name, spec);
        }
        for spec in p.to_add {
            let spec = Arc::new(spec);
            let shared = TenantShared::new(spec.clone(), self.metrics.tenant(&spec.name));
            let listener = match bind_listener(&shared, &spec) {
                Ok(h) => {
                    shared.set_state(TenantState::Up);
                    Some(h)
                }
                Err(reason) => {
                    mark_down(&shared, reason);
                    None
                }
            };
            self.registry.insert(spec.name.clone(), shared.clone());
            self.tenants
                .insert(spec.name.clone(), Running { shared, listener });
            self.applied.insert(spec.name.clone(), spec);
        }
    }

    fn remove(&mut self, name: &str) {
        self.applied.remove(name);
        self.registry.remove(name);
        let Some(t) = self.tenants.remove(name) else {
            return;
        };
        tracing::info!(tenant = %name, "tenant removed; socket unlinked, draining");
        let drain = t.shared.spec().drain_timeout;
        let metrics = self.metrics.clone();
        let registry = self.registry.clone();
        let name = name.to_owned();
        let listener = t.listener.map(|l| l.retire(drain));
        self.drains.spawn(async move {
            if let Some(l) = listener {
                l.await;
            }
            // Drop the tenant's series once its connections are gone, unless a
            // tenant of the same name has been added since.
            if !registry.contains_key(&name) {
                metrics.remove_tenant(&name);
            }
        });
    }

    /// Try again to set up every tenant that is down. Returns how many came up.
    pub fn retry_down(&mut self) -> usize {
        let mut up = 0;
        for t in self.tenants.values_mut().filter(|t| t.listener.is_none()) {
            let spec = t.shared.spec();
            match bind_listener(&t.shared, &spec) {
                Ok(h) => {
                    tracing::info!(tenant = %t.shared.name(), listen = %spec.listen.display(), "tenant is up");
                    t.listener = Some(h);
                    t.shared.set_state(TenantState::Up);
                    up += 1;
                }
                // Keep the reason current (the obstacle may have changed) but
                // log only changes, not every retry.
                Err(reason) if t.shared.state() != TenantState::Down(reason.clone()) => {
                    mark_down(&t.shared, reason)
                }
                Err(_) => {}
            }
        }
        up
    }

    /// Graceful shutdown: every socket is unlinked at once, then open
    /// connections get up to their tenant's `drain_timeout`.
    pub async fn shutdown(mut self) {
        let names: Vec<String> = self.tenants.keys().cloned().collect();
        for name in names {
            self.remove(&name);
        }
        self.drains.close();
        self.drains.wait().await;
    }

    /// Connections open across all tenants.
    pub fn active_connections(&self) -> usize {
        self.tenants
            .values()
            .map(|t| t.shared.active_connections())
            .sum()
    }

    /// How long drains may still take at most (for logs).
    pub fn max_drain(&self) -> Duration {
        self.applied
            .values()
            .map(|s| s.drain_timeout)
            .max()
            .unwrap_or_default()
    }
}

fn bind_listener(shared: &Arc<TenantShared>, spec: &TenantSpec) -> Result<ListenerHandle, String> {
    let (l, file) =
        socket::bind(&spec.listen, spec.uid, spec.gid, spec.mode).map_err(|e| e.to_string())?;
    let path = file.path.clone();
    match ListenerHandle::start(shared.clone(), l, file.clone()) {
        Ok(h) => {
            tracing::info!(tenant = %spec.name, listen = %path.display(), uid = spec.uid, gid = spec.gid,
                mode = %format!("{:04o}", spec.mode), upstream = %spec.upstream.display(), "listening");
            Ok(h)
        }
        Err(e) => {
            file.remove();
            Err(format!(
                "cannot register {} with the runtime: {e}",
                path.display()
            ))
        }
    }
}

fn mark_down(shared: &TenantShared, reason: String) {
    tracing::error!(tenant = %shared.name(), reason = %reason, "tenant is down; will retry");
    shared.set_state(TenantState::Down(reason));
}
