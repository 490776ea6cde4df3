//! The data path's threads: one single-threaded tokio runtime per core.
//!
//! Each tenant listener's accept loop lives on one of them (round-robin), and
//! a connection it accepts is served on the same thread unless that thread
//! already serves clearly more connections than another one. So a connection
//! usually never crosses threads: its sockets are registered with the
//! thread's own event loop, its wake-ups run there, and nothing is stolen by
//! or handed to another worker, as in the floor relay
//! (docs/performance.md "How close any relay gets"). The control plane
//! (config, reload, metrics, health) keeps the main runtime.
//!
//! `SOCKBROKER_PIN_WORKERS=1` pins each worker to a CPU of its own
//! ([`pin_plan`]): back-to-back round trips on one connection then run
//! 1.25–1.35× as fast, but a request arriving at an idle broker waits for
//! its worker's CPU to wake (on this VM 92 against 44 µs), so the default
//! leaves placement to the kernel (docs/decisions.md "Threads").
//!
//! `sockbroker run` starts the workers ([`Workers::start`]) and installs them
//! for the process ([`install`]); without them (tests that run listeners
//! in-process) listeners and their connections run on the caller's runtime.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// How many more connections a worker serves than the least busy one before
/// the next connection it accepts goes there instead. Above one, so that a
/// client that closes a connection and at once opens the next (both seen in
/// one wake-up, the old one still counted) stays on its thread.
const IMBALANCE: usize = 2;

/// A worker serving this many connections has a backlog: the accept loop
/// sets up each connection it keeps before accepting the next
/// (`listener::accept_loop`).
pub const BACKLOG: usize = 32;

/// After this many connections, the next quiet moment gives free heap
/// memory back to the system ([`crate::alloc_trim`]).
const TRIM_AFTER: usize = 1000;

/// A quiet moment: no connection began or ended on any worker for this long.
const QUIET: std::time::Duration = std::time::Duration::from_millis(50);

/// The data-path workers: their runtimes and how many connections each serves.
pub struct Workers {
    workers: Vec<Worker>,
    /// The worker the next listener goes to.
    next_listener: AtomicUsize,
    stop: CancellationToken,
    threads: std::sync::Mutex<Vec<JoinHandle<()>>>,
    /// Connections placed since memory was last given back.
    since_trim: AtomicUsize,
    /// Connections begun and ended, to notice a quiet moment.
    churn: AtomicUsize,
    /// A task waits for a quiet moment to give memory back.
    trim_pending: AtomicBool,
}

struct Worker {
    handle: Handle,
    /// Connections being served on this worker.
    load: AtomicUsize,
}

/// One worker's share of a connection: counted while it is served.
pub struct Placed {
    workers: &'static Workers,
    index: usize,
}

impl Placed {
    /// Whether the connection is served on worker `index`.
    pub fn is_on(&self, index: usize) -> bool {
        self.index == index
    }
}

impl Drop for Placed {
    fn drop(&mut self) {
        let workers = self.workers;
        let worker = &workers.workers[self.index];
        worker.load.fetch_sub(1, Ordering::Relaxed);
        workers.churn.fetch_add(1, Ordering::Relaxed);
        // Connections end after many began: once none begins or ends for a
        // moment, the burst's memory goes back. (Not "once this worker is
        // idle": one long-lived connection would keep it from ever being.)
        if workers.since_trim.load(Ordering::Relaxed) >= TRIM_AFTER
            && !workers.trim_pending.swap(true, Ordering::Relaxed)
        {
            // On the worker's own handle: a connection dropped while its
            // runtime shuts down spawns nothing.
            worker.handle.spawn(workers.trim_when_quiet());
        }
    }
}

static WORKERS: OnceLock<&'static Workers> = OnceLock::new();

/// The process's data-path workers, once [`install`]ed.
pub fn installed() -> Option<&'static Workers> {
    WORKERS.get().copied()
}

/// Make `workers` the process's data path (once; later calls are ignored).
pub fn install(workers: Workers) -> &'static Workers {
    WORKERS.get_or_init(|| Box::leak(Box::new(workers)))
}

/// How many workers `sockbroker run` starts: `TOKIO_WORKER_THREADS` when set
/// (as tokio's own runtimes read it), else one per core.
pub fn default_count() -> usize {
    std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The CPU each worker is pinned to, in worker order, or `None` to leave
/// placement to the kernel (the default): pinned only when
/// `SOCKBROKER_PIN_WORKERS` is `1` and there are exactly as many workers as
/// CPUs in `allowed` (the process's affinity mask, which cpusets and
/// systemd's `CPUAffinity=` narrow). A worker count set otherwise
/// (`TOKIO_WORKER_THREADS`, or a CPU quota that `available_parallelism`
/// counts) leaves them unpinned: which CPUs to crowd or leave out is then
/// not ours to guess.
pub fn pin_plan(count: usize, allowed: &[usize], setting: Option<&str>) -> Option<Vec<usize>> {
    if setting.map(str::trim) != Some("1") || count != allowed.len() || count == 0 {
        return None;
    }
    Some(allowed.to_vec())
}

/// The CPUs this process may run on, in ascending order.
fn allowed_cpus() -> Vec<usize> {
    match nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        Ok(set) => (0..nix::sched::CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Pin the calling thread to `cpu`; a failure (a CPU taken away since the
/// plan was made) leaves the thread where the kernel puts it.
fn pin_this_thread(worker: usize, cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    let pinned = set
        .set(cpu)
        .and_then(|()| nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set));
    match pinned {
        Ok(()) => tracing::debug!(worker, cpu, "data-path worker pinned to its CPU"),
        Err(e) => tracing::warn!(
            worker,
            cpu,
            error = %e,
            "cannot pin a data-path worker to its CPU; it runs unpinned"
        ),
    }
}

impl Workers {
    /// Start `count` worker threads, each running a single-threaded runtime
    /// until [`Workers::stop`], pinned to CPUs as [`pin_plan`] says.
    pub fn start(count: usize) -> io::Result<Workers> {
        let setting = std::env::var("SOCKBROKER_PIN_WORKERS").ok();
        Self::start_pinned(count, setting.as_deref())
    }

    /// [`Workers::start`] with the `SOCKBROKER_PIN_WORKERS` setting given.
    fn start_pinned(count: usize, setting: Option<&str>) -> io::Result<Workers> {
        let allowed = allowed_cpus();
        let pins = pin_plan(count.max(1), &allowed, setting);
        // Asked for and not done, or a value that means nothing: say so
        // rather than run unpinned silently.
        match setting.map(str::trim) {
            None | Some("0") => {}
            Some("1") if pins.is_some() => {}
            Some("1") => tracing::warn!(
                workers = count.max(1),
                cpus = allowed.len(),
                "SOCKBROKER_PIN_WORKERS=1 pins workers only when there is one per CPU the \
                 process may run on (TOKIO_WORKER_THREADS unset, no CPU quota); they run unpinned"
            ),
            Some(other) => tracing::warn!(
                value = other,
                "SOCKBROKER_PIN_WORKERS takes 0 or 1; the workers run unpinned"
            ),
        }
        let stop = CancellationToken::new();
        // Threads already started end if a later one cannot start.
        let stop_on_error = stop.clone().drop_guard();
        let mut workers = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        for i in 0..count.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            workers.push(Worker {
                handle: rt.handle().clone(),
                load: AtomicUsize::new(0),
            });
            let stop = stop.clone();
            let cpu = pins.as_ref().map(|p| p[i]);
            let thread = std::thread::Builder::new()
                .name(format!("sockbroker-w{i}"))
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        pin_this_thread(i, cpu);
                    }
                    rt.block_on(stop.cancelled());
                    // Dropping the runtime drops what is still spawned on it.
                })?;
            threads.push(thread);
        }
        stop_on_error.disarm();
        Ok(Workers {
            workers,
            next_listener: AtomicUsize::new(0),
            stop,
            threads: std::sync::Mutex::new(threads),
            since_trim: AtomicUsize::new(0),
            churn: AtomicUsize::new(0),
            trim_pending: AtomicBool::new(false),
        })
    }

    /// Wait until no connection began or ended for [`QUIET`] (long-lived
    /// ones may stay open), then give free heap memory back (at most once
    /// per [`TRIM_AFTER`] connections).
    async fn trim_when_quiet(&'static self) {
        loop {
            let seen = self.churn.load(Ordering::Relaxed);
            tokio::time::sleep(QUIET).await;
            if self.churn.load(Ordering::Relaxed) == seen {
                break;
            }
        }
        self.since_trim.store(0, Ordering::Relaxed);
        let purged = crate::alloc_trim::trim();
        tracing::debug!(
            purged,
            "gave free heap memory back after a burst of connections"
        );
        self.trim_pending.store(false, Ordering::Relaxed);
    }

    /// Stop every worker and wait for its thread. Connections still open
    /// are dropped (closed); the daemon drains them before it calls this.
    pub fn stop(&self) {
        self.stop.cancel();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }

    /// Connections being served on worker `index`.
    pub fn load(&self, index: usize) -> usize {
        self.workers[index].load.load(Ordering::Relaxed)
    }

    /// How many workers there are (at least one).
    pub fn count(&self) -> usize {
        self.workers.len()
    }

    /// Worker `index`'s runtime.
    pub fn handle(&self, index: usize) -> &Handle {
        &self.workers[index].handle
    }

    /// The worker for a new listener (round-robin) and its runtime.
    pub fn for_listener(&self) -> (usize, &Handle) {
        let i = self.next_listener.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        (i, &self.workers[i].handle)
    }

    /// Where a connection accepted on worker `here` is served: `here`
    /// unless it serves [`IMBALANCE`] or more connections above the least
    /// busy worker. The returned share counts the connection until dropped.
    pub fn place(&'static self, here: usize) -> (Placed, &'static Handle) {
        let load = |i: usize| self.workers[i].load.load(Ordering::Relaxed);
        let mut index = here;
        let mine = load(here);
        if mine >= IMBALANCE {
            let (least, least_load) = (0..self.workers.len())
                .map(|i| (i, load(i)))
                .min_by_key(|&(_, l)| l)
                .unwrap_or((here, mine));
            if mine >= least_load + IMBALANCE {
                index = least;
            }
        }
        self.workers[index].load.fetch_add(1, Ordering::Relaxed);
        self.since_trim.fetch_add(1, Ordering::Relaxed);
        self.churn.fetch_add(1, Ordering::Relaxed);
        (
            Placed {
                workers: self,
                index,
            },
            &self.workers[index].handle,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loads(w: &Workers) -> Vec<usize> {
        w.workers
            .iter()
            .map(|w| w.load.load(Ordering::Relaxed))
            .collect()
    }

    #[test]
    fn a_connection_stays_on_its_worker_until_that_one_is_clearly_busier() {
        let w: &'static Workers = Box::leak(Box::new(Workers::start(3).unwrap()));
        let on = |p: &Placed| p.index;
        // Worker 1 accepts: the first two stay there (one closing while the
        // next arrives must not move the next).
        let a = w.place(1).0;
        let b = w.place(1).0;
        assert_eq!((on(&a), on(&b)), (1, 1));
        assert_eq!(loads(w), [0, 2, 0]);
        // Two above the least busy: the next goes to the least busy (the
        // first of equals), the one after that too, then back to 1.
        let c = w.place(1).0;
        assert_eq!(on(&c), 0);
        let d = w.place(1).0;
        assert_eq!(on(&d), 2);
        let e = w.place(1).0;
        assert_eq!(on(&e), 1);
        assert_eq!(loads(w), [1, 3, 1]);
        // Ending connections give their share back.
        drop((a, b, e));
        assert_eq!(loads(w), [1, 0, 1]);
        let f = w.place(1).0;
        assert_eq!(on(&f), 1);
        drop((c, d, f));
        assert_eq!(loads(w), [0, 0, 0]);
        w.stop();
    }

    #[test]
    fn workers_are_pinned_one_per_allowed_cpu_only_when_they_match() {
        /// Workers, allowed CPUs, `SOCKBROKER_PIN_WORKERS`, and the pins.
        type Case = (
            usize,
            &'static [usize],
            Option<&'static str>,
            Option<&'static [usize]>,
        );
        let cases: &[Case] = &[
            (2, &[0, 1], Some("1"), Some(&[0, 1])),
            (2, &[0, 1], Some(" 1\n"), Some(&[0, 1])),
            // A cpuset or CPUAffinity= narrowed the mask: its CPUs, in order.
            (2, &[3, 5], Some("1"), Some(&[3, 5])),
            (1, &[7], Some("1"), Some(&[7])),
            // Not asked for (the default), or turned off.
            (2, &[0, 1], None, None),
            (2, &[0, 1], Some("0"), None),
            (2, &[0, 1], Some("yes"), None),
            // A count set by hand (TOKIO_WORKER_THREADS) or a CPU quota.
            (3, &[0, 1], Some("1"), None),
            (1, &[0, 1], Some("1"), None),
            // The mask could not be read.
            (2, &[], Some("1"), None),
        ];
        for &(count, allowed, setting, want) in cases {
            assert_eq!(
                pin_plan(count, allowed, setting).as_deref(),
                want,
                "{count} workers, CPUs {allowed:?}, setting {setting:?}"
            );
        }
    }

    #[test]
    fn a_started_worker_runs_on_its_planned_cpu_only() {
        let allowed = allowed_cpus();
        let Some(pins) = pin_plan(allowed.len(), &allowed, Some("1")) else {
            panic!("no CPUs in this process's affinity mask: {allowed:?}");
        };
        let w = Workers::start_pinned(allowed.len(), Some("1")).unwrap();
        for (i, cpu) in pins.iter().enumerate() {
            let (tx, rx) = std::sync::mpsc::channel();
            w.handle(i).spawn(async move {
                tx.send(allowed_cpus()).unwrap();
            });
            let on = rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
            assert_eq!(on, vec![*cpu], "worker {i}");
        }
        w.stop();
    }

    #[test]
    fn memory_is_given_back_once_a_burst_is_over() {
        let w: &'static Workers = Box::leak(Box::new(Workers::start(1).unwrap()));
        let pending = || w.trim_pending.load(Ordering::Relaxed);
        // A long-lived connection stays open throughout.
        let events = w.place(0).0;
        // Fewer than TRIM_AFTER connections: their ends start nothing.
        let few: Vec<Placed> = (0..10).map(|_| w.place(0).0).collect();
        drop(few);
        assert!(!pending());
        assert_eq!(w.since_trim.load(Ordering::Relaxed), 11);
        // A burst: the first one to end starts the wait for a quiet moment,
        // which the worker ends by giving memory back and starting over.
        let burst: Vec<Placed> = (0..TRIM_AFTER).map(|_| w.place(0).0).collect();
        drop(burst);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while pending() || w.since_trim.load(Ordering::Relaxed) != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "no trim after the burst"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(loads(w), [1]);
        drop(events);
        w.stop();
    }

    #[test]
    fn listeners_go_round_robin_and_workers_run_tasks_until_stopped() {
        let w = Workers::start(2).unwrap();
        let picks: Vec<usize> = (0..5).map(|_| w.for_listener().0).collect();
        assert_eq!(picks, [0, 1, 0, 1, 0]);
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 0..2 {
            let tx = tx.clone();
            w.workers[i].handle.spawn(async move {
                tx.send(std::thread::current().name().map(str::to_owned))
                    .unwrap();
            });
        }
        let mut names: Vec<_> = (0..2)
            .map(|_| rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                Some("sockbroker-w0".to_owned()),
                Some("sockbroker-w1".to_owned())
            ]
        );
        w.stop();
        assert!(w.threads.lock().unwrap().is_empty());
    }
}
