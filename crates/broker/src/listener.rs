//! Listeners: one accept loop per tenant socket (and one more per worker
//! while the socket is busy: `spread`), and what happens to each accepted
//! connection (peer credentials → `allow` → `max_connections` → upstream
//! connect → relay → one log line).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::os::unix::net::UnixStream as StdUnixStream;

use sockbroker_relay::{relay, EndReason, Listener, Outcome, ReadRegistered, RelayOptions};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backoff::{is_resource_exhaustion, ACCEPT_BACKOFF};
use crate::config::TenantSpec;
use crate::metrics::Reject;
use crate::socket::SocketFile;
use crate::tenant::{Peer, TenantShared};
use crate::workers::{self, Workers};

/// One bound socket with its accept loop and the connections it accepted.
/// Retiring it (removal, move, shutdown) stops accepting, unlinks the socket
/// and drains exactly the connections that came in through it.
pub struct ListenerHandle {
    /// The socket file we created, to unlink on retirement (only if still ours).
    pub socket: SocketFile,
    /// Cancelled to stop the accept loop.
    stop_accept: CancellationToken,
    /// Fired at the drain deadline: every relay of this listener ends.
    kill: Arc<Kill>,
    /// The connections of this listener, to wait for during a drain.
    conns: TaskTracker,
    /// The listening socket, shared with the accept loop: its descriptor is
    /// lent for an upgrade's hand-over and the descriptor store, without a
    /// duplicate (one descriptor per tenant, not two: 10,000 tenants fit in
    /// 20,000 descriptors).
    listener: Arc<Listener>,
}

impl ListenerHandle {
    /// Start accepting on `listener` for `tenant`.
    pub fn start(
        tenant: Arc<TenantShared>,
        listener: std::os::unix::net::UnixListener,
        socket: SocketFile,
    ) -> io::Result<Self> {
        // Registered for readability only, and its connections arrive
        // unregistered: the byte relay registers them for reading only
        // (`ReadRegistered`: no wake-up each time a peer drains what the
        // relay wrote, docs/performance.md); the policy relay hands them
        // to tokio as usual.
        // With the data-path workers installed (`sockbroker run`), the
        // listener is registered with one worker's runtime and its accept
        // loop runs there; in-process tests use the caller's runtime.
        let worker = crate::workers::installed().map(|w| {
            let (index, handle) = w.for_listener();
            (w, index, handle.clone())
        });
        let listener = {
            let _in_worker = worker.as_ref().map(|(_, _, h)| h.enter());
            Arc::new(Listener::new(listener)?)
        };
        let h = ListenerHandle {
            socket,
            stop_accept: CancellationToken::new(),
            kill: Arc::new(Kill::default()),
            conns: TaskTracker::new(),
            listener: listener.clone(),
        };
        // The first generation is made here, on the control plane's thread,
        // not by the first connection on the worker: it lives as long as the
        // listener, and made on the worker in the middle of a burst of
        // short-lived allocations it pinned their pages after the burst
        // (10,000 tenants each taking one connection: 7.4–7.9 MB of each
        // worker's heap resident for 1.5 MB in use, 55–72 MiB in all;
        // docs/performance.md, session 8).
        let first = Arc::new(Generation::new(&tenant, &h.kill));
        let accepting = Accepting {
            tenant,
            kill: h.kill.clone(),
            conns: h.conns.clone(),
        };
        let stop = h.stop_accept.clone();
        match worker {
            Some((workers, index, handle)) => {
                handle.spawn(accept_loop(
                    accepting,
                    listener,
                    stop,
                    Some(OnWorker {
                        workers,
                        here: index,
                        first: true,
                    }),
                    None,
                    first,
                ));
            }
            None => {
                tokio::spawn(accept_loop(accepting, listener, stop, None, None, first));
            }
        }
        Ok(h)
    }

    /// Stop accepting and unlink the socket now; return a future that lets open
    /// connections finish for up to `drain_timeout`, then closes them.
    pub fn retire(self, drain_timeout: Duration) -> impl std::future::Future<Output = ()> {
        self.retire_with(drain_timeout, true)
    }

    /// [`ListenerHandle::retire`], but with `unlink: false` the socket file
    /// stays: another process (after an upgrade) or the service manager's
    /// descriptor store (across a restart) keeps serving that inode.
    pub fn retire_with(
        self,
        drain_timeout: Duration,
        unlink: bool,
    ) -> impl std::future::Future<Output = ()> {
        self.stop_accept.cancel();
        // The accept loop drops its share as it stops; the drain below does
        // not keep the socket open.
        drop(self.listener);
        if unlink {
            self.socket.remove();
        }
        self.conns.close();
        async move {
            if tokio::time::timeout(drain_timeout, self.conns.wait())
                .await
                .is_err()
            {
                tracing::info!(
                    path = %self.socket.path.display(),
                    open = self.conns.len(),
                    "drain timeout reached; closing remaining connections"
                );
                self.kill.fire();
                self.conns.wait().await;
            }
        }
    }

    /// The listening socket's descriptor (lent: for an upgrade's hand-over
    /// and the service manager's descriptor store).
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.listener.get_ref().as_fd()
    }

    /// Connections of this listener still open.
    pub fn open_connections(&self) -> usize {
        self.conns.len()
    }
}

/// The drain deadline of one listener, as its connections see it.
#[derive(Default)]
struct Kill {
    /// Cancelled at the deadline: upstream connects and policy relays end.
    token: CancellationToken,
    /// The byte relays' token ([`Generation::relay`]'s `cancel`) for the
    /// tenant's current [`byte_relays`](crate::tenant::Settings::byte_relays)
    /// token and its epoch: a child of that token, cancelled with `token`
    /// too. Tokens of earlier epochs were cancelled with their parent, so
    /// this one is the only one that can still be live.
    relays: Mutex<Option<(u64, CancellationToken)>>,
}

impl Kill {
    /// The deadline: end every connection of this listener.
    fn fire(&self) {
        self.token.cancel();
        let relays = self.relays.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, t)) = relays.as_ref() {
            t.cancel();
        }
    }

    /// The token for byte relays of this listener under `byte_relays` of
    /// `epoch`: cancelled when the tenant gets a policy or at the deadline.
    fn relay_token(&self, epoch: u64, byte_relays: &CancellationToken) -> CancellationToken {
        let mut relays = self.relays.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((e, t)) = relays.as_ref() {
            if *e == epoch {
                return t.clone();
            }
        }
        let t = byte_relays.child_token();
        // `fire` cancels `token` before it takes the lock: either it sees
        // this token below, or we see `token` cancelled here.
        if self.token.is_cancelled() {
            t.cancel();
        }
        *relays = Some((epoch, t.clone()));
        t
    }
}

/// What the connections one listener accepts under one version of its
/// tenant's settings share, so that a connection clones one `Arc` and
/// creates, subscribes to and registers with nothing of its own (each of
/// those took a lock or two per connection, docs/performance.md).
struct Generation {
    tenant: Arc<TenantShared>,
    /// The settings version this was made for.
    version: u64,
    spec: Arc<TenantSpec>,
    /// The tenant's token for byte relays: cancelled means the tenant has
    /// an access policy now.
    byte_relays: CancellationToken,
    /// The listener's drain deadline, for upstream connects and policy
    /// relays.
    kill: CancellationToken,
    /// The byte relay's options; `cancel` fires on either of the above.
    relay: RelayOptions,
}

impl Generation {
    fn new(tenant: &Arc<TenantShared>, kill: &Kill) -> Self {
        let settings = tenant.settings();
        let cancel = kill.relay_token(settings.byte_relays_epoch, &settings.byte_relays);
        Generation {
            tenant: tenant.clone(),
            version: settings.version,
            relay: RelayOptions {
                idle_timeout: settings.spec.idle_timeout,
                cancel,
                ..RelayOptions::default()
            },
            spec: settings.spec,
            byte_relays: settings.byte_relays,
            kill: kill.token.clone(),
        }
    }
}

/// What an accept loop serves its connections with.
#[derive(Clone)]
struct Accepting {
    tenant: Arc<TenantShared>,
    kill: Arc<Kill>,
    conns: TaskTracker,
}

/// A listener's accept loops on more than one worker: made when it first
/// [`spread`]s (most listeners never do, and pay nothing for it), then
/// shared by its loops.
struct Spread {
    /// What a loop added on another worker serves its connections with.
    accepting: Accepting,
    /// Whether the listener has accept loops on more than one worker now.
    active: AtomicBool,
    /// While it has: connections its loops accepted in a row with the
    /// listener calm.
    calm: AtomicU32,
    loops: Mutex<Loops>,
}

#[derive(Default)]
struct Loops {
    /// Which workers have an accept loop for this listener.
    on: Vec<bool>,
    /// Stops the loops added by [`spread`]: a child of the listener's own
    /// stop token.
    stop: Option<CancellationToken>,
}

impl Spread {
    fn new(accepting: &Accepting) -> Arc<Spread> {
        Arc::new(Spread {
            accepting: accepting.clone(),
            active: AtomicBool::new(false),
            calm: AtomicU32::new(0),
            loops: Mutex::default(),
        })
    }
}

/// An accept loop's place among the data-path workers.
#[derive(Clone, Copy)]
struct OnWorker {
    workers: &'static Workers,
    /// The worker this loop runs on.
    here: usize,
    /// Whether this is the listener's first loop (not one [`spread`] added).
    first: bool,
}

/// After an accept loop handed this many connections to other workers, the
/// listener gets an accept loop on one more worker ([`spread`]): that
/// worker then accepts its own share, and no connection is handed to it (a
/// remote spawn and a wake-up of the other thread each). A busy listener
/// spreads one worker at a time, as far as its load needs, not to every
/// core at once: each worker it is registered with wakes for each of its
/// connections (docs/decisions.md "Threads").
const SPREAD_AFTER: u32 = 32;

/// A spread listener goes back to its first loop alone once its loops
/// accepted this many connections in a row with at most [`CALM`] of the
/// listener's connections open: a client that opens one connection after
/// another gains nothing from it, and the other workers' wake-ups for each
/// connection cost CPU.
const UNSPREAD_AFTER: u32 = 64;
const CALM: usize = 2;

/// Give the listener an accept loop on the least busy worker that has none
/// yet, with its own duplicate of the listening descriptor registered with
/// that worker's event loop. It ends with the listener's other loops or
/// when the listener is calm again ([`unspread`]). Does nothing once every
/// worker has one, or when called by a loop that [`unspread`] stopped.
fn spread(
    spread: &Arc<Spread>,
    listener: &Listener,
    stop: &CancellationToken,
    from: OnWorker,
    generation: &Arc<Generation>,
) {
    let workers = from.workers;
    let (index, stop_added) = {
        let mut loops = spread.loops.lock().unwrap_or_else(|e| e.into_inner());
        // A loop that `unspread` stopped (its token is gone) adds none.
        let stop_added = match (&loops.stop, from.first) {
            (Some(t), _) => t.clone(),
            (None, true) => {
                // Only the listener's own worker accepts so far.
                loops.on = vec![false; workers.count()];
                loops.on[from.here] = true;
                loops.stop.insert(stop.child_token()).clone()
            }
            (None, false) => return,
        };
        let Some(index) = (0..workers.count())
            .filter(|&i| !loops.on[i])
            .min_by_key(|&i| workers.load(i))
        else {
            return;
        };
        loops.on[index] = true;
        spread.active.store(true, Ordering::Relaxed);
        (index, stop_added)
    };
    let handle = workers.handle(index);
    let registered = listener.get_ref().try_clone().and_then(|dup| {
        let _in_worker = handle.enter();
        Listener::new(dup)
    });
    match registered {
        Ok(dup) => {
            tracing::debug!(tenant = %spread.accepting.tenant.name(), worker = index,
                "busy listener: accepting on one more worker");
            handle.spawn(accept_loop(
                spread.accepting.clone(),
                Arc::new(dup),
                stop_added,
                Some(OnWorker {
                    workers,
                    here: index,
                    first: false,
                }),
                Some(spread.clone()),
                generation.clone(),
            ));
        }
        // Out of descriptors: connections keep being handed over, which works.
        Err(e) => {
            tracing::debug!(tenant = %spread.accepting.tenant.name(), error = %e,
                "cannot accept on one more worker");
            let mut loops = spread.loops.lock().unwrap_or_else(|e| e.into_inner());
            // (Unless the listener was made calm meanwhile.)
            if let Some(slot) = loops.on.get_mut(index) {
                *slot = false;
            }
        }
    }
}

/// Stop the accept loops [`spread`] added: the listener's first loop
/// accepts alone again.
fn unspread(spread: &Spread) {
    let mut loops = spread.loops.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(stop) = loops.stop.take() {
        stop.cancel();
    }
    loops.on = Vec::new();
    spread.active.store(false, Ordering::Relaxed);
    spread.calm.store(0, Ordering::Relaxed);
    tracing::debug!(tenant = %spread.accepting.tenant.name(), "calm listener: accepting on one worker again");
}

async fn accept_loop(
    accepting: Accepting,
    listener: Arc<Listener>,
    stop: CancellationToken,
    worker: Option<OnWorker>,
    mut spreading: Option<Arc<Spread>>,
    generation: Arc<Generation>,
) {
    let Accepting {
        tenant,
        kill,
        conns,
    } = &accepting;
    let mut backoff = ACCEPT_BACKOFF;
    // Made once: a waiter registered and removed per accepted connection
    // cost two locks each time.
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    let mut current = generation;
    // Connections this loop handed to another worker since it last tried
    // to spread the listener.
    let mut handed_over = 0u32;
    loop {
        // `poll_accept` keeps the waker in the socket's reader slot;
        // `accept()` made a future per connection that, while pending,
        // joined the socket's waiter list under its lock.
        let accepted = std::future::poll_fn(|cx| {
            if std::future::Future::poll(stopped.as_mut(), cx).is_ready() {
                return std::task::Poll::Ready(None);
            }
            listener.poll_accept(cx).map(Some)
        })
        .await;
        let Some(accepted) = accepted else { return };
        match accepted {
            Ok(stream) => {
                backoff.reset();
                let version = tenant.version();
                if current.version != version {
                    current = Arc::new(Generation::new(tenant, kill));
                }
                let generation = current.clone();
                // Boxed: the connection's future (the relay's or the policy
                // relay's state, a few KiB) is otherwise copied whole each
                // time tokio moves it into its task and each time the task
                // changes stage (five copies per connection: a fifth of the
                // broker's instructions in the connection-rate bench,
                // docs/performance.md). A box is moved as a pointer.
                let mut connection = Box::pin(serve(generation, stream));
                match worker {
                    // Served on this worker unless it is clearly busier
                    // than another (`Workers::place`).
                    Some(on) => {
                        let OnWorker { workers, here, .. } = on;
                        let (placed, handle) = workers.place(here);
                        if !placed.is_on(here) {
                            handed_over += 1;
                            if handed_over >= SPREAD_AFTER {
                                handed_over = 0;
                                let s = spreading.get_or_insert_with(|| Spread::new(&accepting));
                                spread(s, &listener, &stop, on, &current);
                            }
                        }
                        if let Some(s) = spreading.as_deref() {
                            if s.active.load(Ordering::Relaxed) {
                                if conns.len() <= CALM {
                                    if s.calm.fetch_add(1, Ordering::Relaxed) + 1 >= UNSPREAD_AFTER
                                    {
                                        unspread(s);
                                    }
                                } else if s.calm.load(Ordering::Relaxed) != 0 {
                                    s.calm.store(0, Ordering::Relaxed);
                                }
                            }
                        }
                        // Staying here on a worker with a backlog: its first
                        // steps (peer credentials, the engine connection,
                        // registering both sockets) run now, before this
                        // loop accepts the next one, as tokio's
                        // work-stealing scheduler did by running a task
                        // just spawned first. Spawned only, it waited behind
                        // every accept loop woken with it, and a burst kept
                        // thousands of connections half set up (10,000
                        // tenants: 17,700 descriptors open at the peak
                        // instead of 12,000). Not without a backlog: a
                        // wake-up for it before its task first polled it
                        // would wake this loop (then its task polls it and
                        // follows).
                        if placed.is_on(here) && workers.load(here) >= workers::BACKLOG {
                            let first = std::future::poll_fn(|cx| {
                                std::task::Poll::Ready(std::future::Future::poll(
                                    connection.as_mut(),
                                    cx,
                                ))
                            })
                            .await;
                            if first.is_ready() {
                                continue;
                            }
                        }
                        conns.spawn_on(
                            async move {
                                let _placed = placed;
                                connection.await
                            },
                            handle,
                        );
                    }
                    None => {
                        conns.spawn(connection);
                    }
                }
            }
            Err(e) if is_resource_exhaustion(&e) => {
                let pause = backoff.next_pause();
                tracing::warn!(tenant = %tenant.name(), error = %e, backoff_ms = pause.as_millis() as u64,
                    "accept failed: out of resources; backing off");
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
            Err(e) => {
                // ECONNABORTED and friends concern one connection, not the listener.
                tracing::debug!(tenant = %tenant.name(), error = %e, "accept failed");
            }
        }
    }
}

async fn serve(generation: Arc<Generation>, client: StdUnixStream) {
    let started = Instant::now();
    let Generation {
        tenant, spec, kill, ..
    } = &*generation;
    let m = tenant.metrics();
    m.accepted();
    let peer = match nix::sys::socket::getsockopt(
        &client,
        nix::sys::socket::sockopt::PeerCredentials,
    ) {
        Ok(c) => Peer {
            pid: c.pid(),
            uid: c.uid(),
            gid: c.gid(),
        },
        Err(e) => {
            tracing::warn!(tenant = %tenant.name(), error = %e, "cannot read peer credentials; closing");
            m.rejected(Reject::PeerNotAllowed);
            return;
        }
    };
    let Peer { pid, uid, gid } = peer;
    if let Some(allow) = &spec.allow {
        if !allow.permits(uid, gid) {
            m.rejected(Reject::PeerNotAllowed);
            tracing::warn!(tenant = %tenant.name(), pid, uid, gid, reason = "peer_not_allowed",
                "connection refused: peer uid/gid not in the tenant's allow list");
            return;
        }
    }
    let Some(_guard) = tenant.open(spec.max_connections) else {
        m.rejected(Reject::Limit);
        tracing::warn!(tenant = %tenant.name(), pid, uid, gid, reason = "limit", max_connections = spec.max_connections,
            "connection refused: max_connections reached");
        if spec.access.policy().is_some() {
            let Some(client) = register(tenant, client) else {
                return;
            };
            // An HTTP client is told why (429); the byte relay just closes.
            Box::pin(crate::policy_relay::refuse_over_limit(
                tenant,
                client,
                peer,
                kill.clone(),
            ))
            .await;
        }
        return;
    };
    if spec.access.policy().is_some() {
        let Some(client) = register(tenant, client) else {
            return;
        };
        // Boxed: the policy relay's state is several times the byte relay's,
        // and inline it would size every byte-relay connection's task too.
        Box::pin(crate::policy_relay::serve(
            tenant,
            client,
            peer,
            kill.clone(),
            started,
        ))
        .await;
        return;
    }
    let upstream = tokio::select! {
        // Connect first: it usually completes at once, and then the drain
        // token is never polled (registering a waiter on it and removing it
        // again costs two locks per connection).
        biased;
        r = crate::upstream::connect_std(tenant, spec, peer) => r,
        _ = kill.cancelled() => return,
    };
    let Ok(upstream) = upstream else { return };
    let (client, upstream) = match (ReadRegistered::new(client), ReadRegistered::new(upstream)) {
        (Ok(c), Ok(u)) => (c, u),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(tenant = %tenant.name(), pid, uid, gid, error = %e,
                "cannot register the connection with the runtime; closing");
            return;
        }
    };
    // The relay's `cancel` fires at the drain deadline and when the tenant
    // moves from `full` to a policy: its byte-relay connections close, so
    // that clients reconnect under the policy (the byte relay cannot start
    // checking in the middle of a stream).
    let outcome = relay(client, upstream, &generation.relay, &**m).await;
    if matches!(outcome.end, EndReason::Cancelled) && generation.byte_relays.is_cancelled() {
        tracing::info!(tenant = %tenant.name(), pid, uid, gid,
            "closing a byte-relay connection: the tenant now has an access policy");
    }
    let lived = started.elapsed();
    m.connection_ended(lived);
    log_closed(tenant, peer, lived, &outcome);
}

/// `client` registered with the runtime for reading only, for the policy
/// relay; `None` (logged) if the runtime refuses it.
fn register(tenant: &TenantShared, client: StdUnixStream) -> Option<ReadRegistered> {
    ReadRegistered::new(client)
        .inspect_err(|e| {
            tracing::warn!(tenant = %tenant.name(), error = %e,
                "cannot register the connection with the runtime; closing");
        })
        .ok()
}

/// The one log line of a byte-relay connection.
fn log_closed(tenant: &TenantShared, peer: Peer, lived: Duration, outcome: &Outcome) {
    // The message as a `&str`, fixed unless the relay failed: formatting
    // `outcome.end` into it cost ~250 of the line's instructions
    // (docs/performance.md). `message` first, where the macro puts a format
    // string's message: the line is the same.
    let failed;
    let message = match closed_message(&outcome.end) {
        Some(fixed) => fixed,
        None => {
            failed = format!("connection closed: {}", outcome.end);
            failed.as_str()
        }
    };
    tracing::info!(
        message,
        tenant = %tenant.name(), pid = peer.pid, uid = peer.uid, gid = peer.gid,
        bytes_upstream = outcome.bytes_upstream,
        bytes_downstream = outcome.bytes_downstream,
        duration_s = lived.as_secs_f64(),
        end = outcome.end.as_str(),
    );
}

/// `connection closed: {end}` where `end` has no error text to show.
fn closed_message(end: &EndReason) -> Option<&'static str> {
    Some(match end {
        EndReason::ClientClosed => "connection closed: client_closed",
        EndReason::UpstreamClosed => "connection closed: upstream_closed",
        EndReason::Idle => "connection closed: idle",
        EndReason::Cancelled => "connection closed: cancelled",
        EndReason::Error { .. } => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_messages_as_the_end_displays() {
        for end in [
            EndReason::ClientClosed,
            EndReason::UpstreamClosed,
            EndReason::Idle,
            EndReason::Cancelled,
        ] {
            assert_eq!(
                closed_message(&end),
                Some(&*format!("connection closed: {end}"))
            );
        }
        let error = EndReason::Error {
            side: sockbroker_relay::Side::Upstream,
            error: io::Error::from(io::ErrorKind::BrokenPipe),
        };
        assert_eq!(closed_message(&error), None);
    }
}
