//! Applying a [`Plan`] to the running tenants.
//!
//! The supervisor owns the running state: for each tenant its shared settings
//! and, while it is up, its one current listener. It is driven by a single task
//! (the daemon loop), so applying needs no locks of its own; what the HTTP side
//! reads is published through [`Supervisor::registry`].
//!
//! A listener is taken over from the previous process when one was handed
//! over for the tenant ([`crate::handover`], [`crate::socket::adopt`]), else
//! bound anew; either way a copy goes to the service manager's descriptor
//! store ([`crate::notify`]) and is handed to the next process on an upgrade
//! ([`Supervisor::listener_fds`]). Stopping either removes the socket files or
//! leaves them to whoever serves them next ([`Stop`]).

use std::collections::BTreeMap;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio_util::task::TaskTracker;

use crate::config::TenantSpec;
use crate::handover::Inherited;
use crate::listener::ListenerHandle;
use crate::metrics::Metrics;
use crate::notify;
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
    listener: Option<Live>,
    /// Owner, group and mode the config asks for but the socket does not have
    /// (an in-place change failed); retried until it succeeds or the config
    /// changes again. The applied spec records what the socket really has.
    wanted_permissions: Option<(u32, u32, u32)>,
}

/// A bound listener; its handle lends the descriptor (to hand to the next
/// process on an upgrade, and to the service manager's descriptor store).
struct Live {
    handle: ListenerHandle,
}

/// What happens to the socket files when the supervisor stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Unlink every socket file and drop it from the descriptor store.
    RemoveSockets,
    /// Stop accepting but leave the files (and the store) as they are: the
    /// next process serves the same inodes (an upgrade, or a restart under
    /// a descriptor store).
    KeepSockets,
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
    /// Listeners handed to this process, taken over by the first apply.
    handed: Inherited,
    /// Last known state of each upstream path (for logging changes only).
    upstreams: BTreeMap<PathBuf, bool>,
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
            handed: Inherited::default(),
            upstreams: BTreeMap::new(),
        }
    }

    /// A supervisor that takes over the listeners in `handed` (by tenant
    /// name) where they match the config, instead of binding new sockets.
    pub fn with_handed_over(metrics: Metrics, handed: Inherited) -> Self {
        Supervisor {
            handed,
            ..Supervisor::new(metrics)
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

    /// Every listening socket by tenant name (to hand to the next process).
    pub fn listener_fds(&self) -> Vec<(String, BorrowedFd<'_>)> {
        self.tenants
            .iter()
            .filter_map(|(name, t)| Some((name.clone(), t.listener.as_ref()?.handle.as_fd())))
            .collect()
    }

    /// Names of the tenants that are down.
    pub fn down_tenants(&self) -> Vec<String> {
        self.tenants
            .iter()
            .filter(|(_, t)| t.listener.is_none())
            .map(|(name, _)| name.clone())
            .collect()
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
        // A failed owner/mode change the config no longer asks for.
        for (name, t) in self.tenants.iter_mut() {
            if let (Some(_), Some(d)) = (t.wanted_permissions, desired.get(name)) {
                let a = &self.applied[name];
                if (a.uid, a.gid, a.mode) == (d.uid, d.gid, d.mode) {
                    t.wanted_permissions = None;
                    t.shared.set_state(TenantState::Up);
                }
            }
        }
        self.probe_upstreams();
        self.metrics.tenants.set(self.tenants.len() as i64);
        ApplySummary {
            down: self.down_count(),
            ..summary
        }
    }

    fn apply_plan(&mut self, p: Plan) {
        for name in p.to_remove {
            self.remove(&name, Stop::RemoveSockets);
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
                t.wanted_permissions = None;
                match bind_listener(&t.shared, &spec, &mut self.handed) {
                    Ok(h) => {
                        if let Some(old) = t.listener.replace(h) {
                            let drain = spec.drain_timeout;
                            self.drains.spawn(old.handle.retire(drain));
                        }
                        t.shared.set_state(TenantState::Up);
                    }
                    Err(reason) => {
                        // The new path cannot be served: the tenant is down at its
                        // configured path, so the old socket goes too.
                        if let Some(old) = t.listener.take() {
                            self.drains.spawn(old.handle.retire(spec.drain_timeout));
                        }
                        notify::remove_stored(&name);
                        mark_down(&t.shared, reason);
                    }
                }
                self.applied.insert(name, spec);
            } else {
                let mut recorded = spec;
                t.wanted_permissions = None;
                if change.permissions {
                    if let Some(socket) = t.listener.as_ref().map(|l| l.handle.socket.clone()) {
                        recorded = change_permissions(&name, t, &socket, recorded);
                    }
                }
                t.shared.update(recorded.clone());
                self.applied.insert(name, recorded);
            }
        }
        for spec in p.to_add {
            let spec = Arc::new(spec);
            let shared = TenantShared::new(spec.clone(), self.metrics.tenant(&spec.name));
            let listener = match bind_listener(&shared, &spec, &mut self.handed) {
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
            self.tenants.insert(
                spec.name.clone(),
                Running {
                    shared,
                    listener,
                    wanted_permissions: None,
                },
            );
            self.applied.insert(spec.name.clone(), spec);
        }
    }

    fn remove(&mut self, name: &str, how: Stop) {
        self.applied.remove(name);
        self.registry.remove(name);
        let Some(t) = self.tenants.remove(name) else {
            return;
        };
        let unlink = how == Stop::RemoveSockets;
        if unlink {
            notify::remove_stored(name);
            tracing::info!(tenant = %name, "tenant removed; socket unlinked, draining");
        }
        let drain = t.shared.spec().drain_timeout;
        let metrics = self.metrics.clone();
        let registry = self.registry.clone();
        let name = name.to_owned();
        let listener = t.listener.map(|l| l.handle.retire_with(drain, unlink));
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

    /// The periodic retry: tenants that are down, owner/mode changes that
    /// failed, and a look at every upstream. Returns how many tenants came up.
    pub fn retry(&mut self) -> usize {
        let up = self.retry_down();
        self.retry_permissions();
        self.probe_upstreams();
        up
    }

    /// Try again the owner/mode changes that failed.
    fn retry_permissions(&mut self) {
        for (name, t) in self.tenants.iter_mut() {
            let (Some((uid, gid, mode)), Some(l)) = (t.wanted_permissions, &t.listener) else {
                continue;
            };
            let mut wanted = (*self.applied[name]).clone();
            (wanted.uid, wanted.gid, wanted.mode) = (uid, gid, mode);
            let socket = l.handle.socket.clone();
            let recorded = change_permissions(name, t, &socket, Arc::new(wanted));
            t.shared.update(recorded.clone());
            self.applied.insert(name.clone(), recorded);
        }
    }

    /// Try again to set up every tenant that is down. Returns how many came up.
    pub fn retry_down(&mut self) -> usize {
        let mut up = 0;
        for t in self.tenants.values_mut().filter(|t| t.listener.is_none()) {
            let spec = t.shared.spec();
            match bind_listener(&t.shared, &spec, &mut self.handed) {
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

    /// Graceful shutdown: stop accepting everywhere at once (unlinking the
    /// socket files with [`Stop::RemoveSockets`]), then open connections get
    /// up to their tenant's `drain_timeout`.
    pub fn shutdown(mut self, how: Stop) -> impl std::future::Future<Output = ()> {
        let names: Vec<String> = self.tenants.keys().cloned().collect();
        for name in names {
            self.remove(&name, how);
        }
        self.drains.close();
        async move { self.drains.wait().await }
    }

    /// The handed-over listeners no tenant has taken (yet): the metrics
    /// server takes its own from here.
    pub fn handed_mut(&mut self) -> &mut Inherited {
        &mut self.handed
    }

    /// Close handed-over listeners nobody took, with a log line each, and
    /// drop them from the descriptor store. Called once everything that may
    /// take one (tenants, metrics server) has been set up.
    pub fn close_unclaimed(&mut self) {
        for (name, fds) in std::mem::take(&mut self.handed.sockets) {
            tracing::warn!(name = %name, count = fds.len(),
                "closing handed-over socket(s) that match no configured tenant's path");
            drop(fds);
            notify::remove_stored(&name);
            // The store held them by name: store ours again if we serve that name.
            if let Some(l) = self.tenants.get(&name).and_then(|t| t.listener.as_ref()) {
                notify::store_fd(&name, l.handle.as_fd());
            }
        }
    }

    /// Ask every distinct upstream whether it accepts connections (a connect
    /// that is closed at once) and record the answer per tenant
    /// (`sockbroker_upstream_up`, `/tenants`). Logs only changes.
    pub fn probe_upstreams(&mut self) {
        let mut results: BTreeMap<PathBuf, bool> = BTreeMap::new();
        for t in self.tenants.values() {
            let upstream = t.shared.spec().upstream.clone();
            let up = match results.get(&upstream) {
                Some(up) => *up,
                None => {
                    let r = socket::connect_nonblocking(&upstream);
                    let up = matches!(r, Ok(_) | Err(nix::errno::Errno::EAGAIN));
                    if self.upstreams.get(&upstream) != Some(&up) {
                        match r {
                            Ok(_) | Err(nix::errno::Errno::EAGAIN) => tracing::info!(
                                upstream = %upstream.display(), "upstream accepts connections"),
                            Err(e) => tracing::warn!(upstream = %upstream.display(), error = %e,
                                "upstream unavailable (is the engine running?); clients get closed connections until it is back"),
                        }
                    }
                    results.insert(upstream, up);
                    up
                }
            };
            t.shared.metrics().set_upstream(up);
        }
        self.upstreams = results;
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

/// Try an owner/mode change in place towards `spec`; return the spec as it
/// really is afterwards (the socket's actual owner and mode when the change
/// failed, with the tenant degraded and the change retried).
fn change_permissions(
    name: &str,
    t: &mut Running,
    socket: &socket::SocketFile,
    spec: Arc<TenantSpec>,
) -> Arc<TenantSpec> {
    let (uid, gid, mode) = (spec.uid, spec.gid, spec.mode);
    match socket.set_owner_mode(uid, gid, mode) {
        Ok(()) => {
            tracing::info!(tenant = %name, uid, gid, mode = %format!("{mode:04o}"),
                "socket owner/mode changed in place");
            if t.wanted_permissions.take().is_some() || t.shared.state() != TenantState::Up {
                t.shared.set_state(TenantState::Up);
            }
            spec
        }
        Err(e) => {
            let reason = format!(
                "socket owner/mode should be {uid}:{gid} {mode:04o} but changing it failed: {e}; retrying"
            );
            if t.shared.state() != TenantState::Degraded(reason.clone()) {
                tracing::error!(tenant = %name, reason = %reason, "tenant is degraded");
                t.shared.set_state(TenantState::Degraded(reason));
            }
            t.wanted_permissions = Some((uid, gid, mode));
            let mut real = (*spec).clone();
            if let Some((u, g, m)) = socket.owner_mode() {
                (real.uid, real.gid, real.mode) = (u, g, m);
            }
            Arc::new(real)
        }
    }
}

/// Take over a handed-over listener for `spec` if one matches, else bind a
/// new socket; start accepting; keep it in the descriptor store.
fn bind_listener(
    shared: &Arc<TenantShared>,
    spec: &TenantSpec,
    handed: &mut Inherited,
) -> Result<Live, String> {
    let mut adopted = None;
    let mut refused = Vec::new();
    for fd in handed.take_named(&spec.name) {
        if adopted.is_some() {
            refused.push(fd);
            continue;
        }
        match socket::adopt(fd, &spec.listen, spec.uid, spec.gid, spec.mode) {
            Ok(l) => adopted = Some(l),
            Err((fd, why)) => {
                tracing::info!(tenant = %spec.name, listen = %spec.listen.display(), reason = %why,
                    "a handed-over socket of this name does not match the tenant; not taking it");
                refused.push(fd);
            }
        }
    }
    if !refused.is_empty() {
        handed.sockets.insert(spec.name.clone(), refused);
    }
    let fresh = adopted.is_none();
    let (l, file) = match adopted {
        Some(l) => l,
        None => {
            socket::bind(&spec.listen, spec.uid, spec.gid, spec.mode).map_err(|e| e.to_string())?
        }
    };
    let path = file.path.clone();
    match ListenerHandle::start(shared.clone(), l, file.clone()) {
        Ok(handle) => {
            if fresh {
                // A socket of that name stored before is not this one.
                notify::remove_stored(&spec.name);
            }
            notify::store_fd(&spec.name, handle.as_fd());
            tracing::info!(tenant = %spec.name, listen = %path.display(), uid = spec.uid, gid = spec.gid,
                mode = %format!("{:04o}", spec.mode), upstream = %spec.upstream.display(),
                adopted = !fresh, "listening");
            Ok(Live { handle })
        }
        Err(e) => {
            if fresh {
                file.remove();
            }
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
