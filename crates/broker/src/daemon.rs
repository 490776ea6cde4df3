//! `sockbroker run`: load, apply, then follow triggers until one asks to stop.
//!
//! One task owns the [`Supervisor`]; every trigger (file watcher, SIGHUP,
//! SIGUSR2, SIGTERM/SIGINT, retry timer) arrives as a [`Trigger`] on one
//! channel, so reloads never overlap and many edits in a burst converge to
//! the file's last content. [`run`] wires the real signals, watcher and timer
//! to that channel; [`Daemon::run`] takes any channel, so tests drive the
//! same loop in-process (as mini-redis's server takes its shutdown future).
//!
//! Restarts and upgrades without a gap (docs/operations.md "Restarts,
//! crashes and upgrades"): listeners handed over (`LISTEN_FDS`) are taken
//! over instead of bound, every listener is kept in the service manager's
//! descriptor store, and SIGUSR2 starts the binary at the path this process
//! was started from with every listener (the `upgrade` submodule).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;

use crate::config::{self, ConfigErrors, SubIdFiles};
use crate::handover::{self, Inherited};
use crate::http::HttpServer;
use crate::metrics::Metrics;
use crate::notify;
use crate::supervisor::{ApplySummary, Stop, Supervisor};
use crate::watch::{self, WatchMode};

mod upgrade;

pub use upgrade::StartCommand;

/// Everything `run` needs besides the config file's content.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The config file (followed through symlinks on every read).
    pub config: PathBuf,
    /// How file changes are noticed.
    pub watch: WatchMode,
    /// How often tenants that are down are tried again.
    pub retry_interval: Duration,
    /// Quiet time after a file event before re-reading (editors write in steps).
    pub debounce: Duration,
    /// Where `userns:` names are resolved.
    pub subids: SubIdFiles,
}

/// Something the daemon loop acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP: re-read the file, always answered with RELOADING=1 … READY=1.
    Reload,
    /// The watcher saw the file change (already debounced).
    FileChanged,
    /// Periodic: retry tenants that are down, look at the upstreams.
    Retry,
    /// SIGUSR2: upgrade in place.
    Upgrade,
    /// SIGTERM / SIGINT: stop; a second one exits at once.
    Shutdown(Stop),
}

/// How the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every connection ended (or its drain timed out): exit 0.
    Clean,
    /// A second stop signal: exit 1 now (after removing what we created).
    Immediate,
}

/// Why a reload changed nothing that runs.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file could not be read (missing, a directory, too large, not UTF-8).
    #[error("{0}")]
    Read(ConfigErrors),
    /// The file was read but is not a valid configuration.
    #[error("{0}")]
    Invalid(ConfigErrors),
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// Same content as the running configuration.
    Unchanged,
    /// Same content as the running configuration, after a failed attempt:
    /// file and running configuration agree again.
    Recovered,
    /// New content, applied.
    Applied(ApplySummary),
    /// A file event, but the content is what the last attempt rejected:
    /// not tried again (that error was logged and counted once). A SIGHUP
    /// always tries again.
    StillRejected,
}

/// Content hash of the config text last applied successfully.
fn content_hash(text: &str) -> u64 {
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// Raise the soft open-files limit to the hard limit: every tenant holds a
/// listening socket and every connection two descriptors.
fn raise_nofile_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(soft, hard, error = %e, "could not raise the open-files limit");
            } else {
                tracing::debug!(from = soft, to = hard, "raised the open-files limit");
            }
        }
        _ => {}
    }
}

/// What SIGTERM means here: under a descriptor store, the socket files stay
/// (systemd keeps their inodes for the next start: unlinking them would
/// orphan what it hands back); otherwise, like SIGINT, they are removed.
pub fn sigterm_stop() -> Stop {
    if notify::fd_store_enabled() {
        Stop::KeepSockets
    } else {
        Stop::RemoveSockets
    }
}

/// Run the broker until SIGTERM/SIGINT (or until an upgrade handed over and
/// the old connections ended). An invalid config at startup is an error
/// before any socket is created.
pub async fn run(opts: RunOptions) -> anyhow::Result<()> {
    // Where we were started from, before anything else (docs/operations.md "Upgrade").
    let start = StartCommand::of_this_process();
    let handed = handover::take().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "ignoring handed-over sockets (LISTEN_FDS)");
        Inherited::default()
    });
    let (tx, rx) = mpsc::channel::<Trigger>(64);
    // Signal handlers first: a SIGTERM that arrives while sockets are being
    // created must still lead to a clean shutdown that unlinks them.
    forward_signals(tx.clone())?;
    // Watch before the first read: an edit made while we start up must
    // trigger a reload rather than be mistaken for the baseline.
    let (ftx, frx) = mpsc::channel::<()>(1);
    let _watcher = watch::start(&opts.config, opts.watch, ftx)?;
    tokio::spawn(debounce(frx, opts.debounce, tx.clone()));
    let daemon = Daemon::start(opts.clone(), handed, start).await?;
    tokio::spawn(tick(opts.retry_interval, tx));
    match daemon.run(rx).await {
        Exit::Clean => Ok(()),
        Exit::Immediate => {
            crate::logging::flush();
            std::process::exit(1)
        }
    }
}

/// SIGHUP, SIGUSR2, SIGTERM and SIGINT as triggers.
fn forward_signals(tx: mpsc::Sender<Trigger>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        loop {
            let t = tokio::select! {
                _ = hup.recv() => { tracing::info!("SIGHUP: reloading"); Trigger::Reload }
                _ = usr2.recv() => { tracing::info!("SIGUSR2: upgrading in place"); Trigger::Upgrade }
                _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); Trigger::Shutdown(sigterm_stop()) }
                _ = int.recv() => { tracing::info!("SIGINT: shutting down"); Trigger::Shutdown(Stop::RemoveSockets) }
            };
            if tx.send(t).await.is_err() {
                return;
            }
        }
    });
    Ok(())
}

/// File events → one [`Trigger::FileChanged`] per burst: let the writer
/// finish, and fold the burst into one reload.
async fn debounce(mut rx: mpsc::Receiver<()>, quiet: Duration, tx: mpsc::Sender<Trigger>) {
    while rx.recv().await.is_some() {
        tokio::time::sleep(quiet).await;
        while rx.try_recv().is_ok() {}
        if tx.send(Trigger::FileChanged).await.is_err() {
            return;
        }
    }
}

/// The retry timer; a tick is dropped while the loop is busy with others.
async fn tick(every: Duration, tx: mpsc::Sender<Trigger>) {
    let mut retry = tokio::time::interval(every);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    retry.tick().await;
    loop {
        retry.tick().await;
        match tx.try_send(Trigger::Retry) {
            Err(mpsc::error::TrySendError::Closed(_)) => return,
            _ => continue,
        }
    }
}

/// The running broker: supervisor, metrics server, and what the last
/// reload left behind.
pub struct Daemon {
    opts: RunOptions,
    sup: Supervisor,
    metrics: Metrics,
    http: Option<HttpServer>,
    /// The metrics section served until the next restart.
    served_metrics: Option<config::MetricsConfig>,
    /// Hash of the config text last applied.
    applied_hash: u64,
    /// Whether the last reload attempt succeeded (for "matches again").
    last_reload_ok: bool,
    /// Hash of the config text the last attempt rejected, while it stands.
    rejected_hash: Option<u64>,
    /// The last `STATUS=` sent.
    status: String,
    /// How to start our successor on SIGUSR2.
    start: StartCommand,
    /// How long a successor may take to say it is ready.
    upgrade_timeout: Duration,
}

impl Daemon {
    /// Read and apply the config, take over handed-over listeners, serve
    /// metrics, and tell whoever waits (service manager, previous broker)
    /// that we are ready.
    pub async fn start(
        opts: RunOptions,
        mut handed: Inherited,
        start: StartCommand,
    ) -> anyhow::Result<Daemon> {
        let ready_pipe = handed.ready.take();
        if ready_pipe.is_some() {
            // Until we are ready, the previous process is the service.
            notify::hold();
        }
        let handed_names: Vec<String> = handed.sockets.keys().cloned().collect();
        let text = config::read(&opts.config).map_err(|e| {
            anyhow::anyhow!(
                "cannot read the configuration, nothing started:\n{e}\nfix it and start again"
            )
        })?;
        let cfg = config::parse(&text, &opts.config, &opts.subids).map_err(|e| {
            anyhow::anyhow!(
                "invalid configuration, nothing started:\n{e}\nfix the file and start again (`sockbroker check --config {}` validates it)",
                opts.config.display()
            )
        })?;
        raise_nofile_limit();
        // Sockets are created 0600-ish until chmodded to their configured mode
        // (under a temporary name), never wider than we intend.
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));

        let metrics = Metrics::new();
        metrics.record_reload(true);
        let mut sup = Supervisor::with_handed_over(metrics.clone(), handed);
        let summary = sup.apply(&cfg.tenants);
        tracing::info!(config = %opts.config.display(), tenants = cfg.tenants.len(), down = summary.down,
            "sockbroker started");
        give_back_memory("start-up");
        let served_metrics = cfg.metrics;
        // An upgrade's successor must never remove the sockets it was handed:
        // the previous process still serves them.
        let on_failure = if ready_pipe.is_some() {
            Stop::KeepSockets
        } else {
            sigterm_stop()
        };
        let http = match &served_metrics {
            Some(m) => {
                let r = crate::http::serve(
                    m.listen.clone(),
                    metrics.clone(),
                    sup.registry(),
                    sup.handed_mut(),
                )
                .await;
                match r {
                    Ok(h) => Some(h),
                    Err(e) => {
                        // Exiting: take the tenant sockets down with us, as a
                        // shutdown would (connections get a second at most).
                        let _ =
                            tokio::time::timeout(Duration::from_secs(1), sup.shutdown(on_failure))
                                .await;
                        return Err(e).with_context(|| "cannot start the metrics/health server");
                    }
                }
            }
            None => None,
        };
        if ready_pipe.is_some() {
            // Ready means serving every tenant the previous process served.
            let down = sup.down_tenants();
            let lost: Vec<&String> = handed_names.iter().filter(|n| down.contains(n)).collect();
            if !lost.is_empty() {
                if let Some(h) = http {
                    h.stop_keeping_socket();
                }
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), sup.shutdown(Stop::KeepSockets))
                        .await;
                anyhow::bail!(
                    "upgrade: cannot take over tenant(s) {} (see above); the previous process keeps serving",
                    lost.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                );
            }
        }
        sup.close_unclaimed();
        // After close_unclaimed: it drops unclaimed descriptors from the
        // store by name, which would take ours along.
        if let Some(h) = &http {
            notify::store_fd("metrics", h.listener_fd());
        }
        let mut d = Daemon {
            opts,
            sup,
            metrics,
            http,
            served_metrics,
            applied_hash: content_hash(&text),
            last_reload_ok: true,
            rejected_hash: None,
            status: String::new(),
            start,
            upgrade_timeout: upgrade::READY_TIMEOUT,
        };
        d.status = d.status_line();
        if let Some(pipe) = ready_pipe {
            upgrade::tell_ready(pipe);
            d.metrics.record_upgrade(true);
            notify::release();
            let pid = std::process::id();
            tracing::info!(
                pid,
                "upgrade: serving every tenant; told the previous process"
            );
            notify::send(&[
                sd_notify::NotifyState::MainPid(pid),
                sd_notify::NotifyState::Ready,
                sd_notify::NotifyState::Status(&d.status),
            ]);
        } else {
            notify::send(&[
                sd_notify::NotifyState::Ready,
                sd_notify::NotifyState::Status(&d.status),
            ]);
        }
        Ok(d)
    }

    /// Replace how a successor is started and how long it may take (tests).
    pub fn set_upgrade(&mut self, start: StartCommand, ready_timeout: Duration) {
        self.start = start;
        self.upgrade_timeout = ready_timeout;
    }

    /// The supervisor (tests look at its registry).
    pub fn supervisor(&self) -> &Supervisor {
        &self.sup
    }

    /// `STATUS=` text, e.g. "2/2 tenants up, 0 connections" (`systemctl status` shows it).
    fn status_line(&self) -> String {
        let total = self.sup.applied().len();
        format!(
            "{}/{} tenants up, {} connections",
            total - self.sup.down_count(),
            total,
            self.sup.active_connections()
        )
    }

    /// Follow `triggers` until a stop, or an upgrade that handed over, and
    /// the drain after it. Ends when the channel closes, too (as a stop that
    /// removes the sockets).
    pub async fn run(mut self, mut triggers: mpsc::Receiver<Trigger>) -> Exit {
        let how = loop {
            let Some(trigger) = triggers.recv().await else {
                break Stop::RemoveSockets;
            };
            match trigger {
                Trigger::Retry => {
                    self.sup.retry();
                    // Also keeps the connection count in `systemctl status` current.
                    self.send_status_if_changed();
                }
                Trigger::Reload | Trigger::FileChanged => {
                    let forced = trigger == Trigger::Reload;
                    // A SIGHUP is always answered with RELOADING=1 … READY=1, even
                    // when the file did not change or cannot be read:
                    // `systemctl reload` under Type=notify-reload waits for that pair.
                    if forced {
                        notify::reloading();
                    }
                    let announced = match self.reload(forced) {
                        Ok(ReloadOutcome::Applied(_)) | Err(ReloadError::Invalid(_)) => true,
                        Ok(
                            ReloadOutcome::Unchanged
                            | ReloadOutcome::Recovered
                            | ReloadOutcome::StillRejected,
                        )
                        | Err(ReloadError::Read(_)) => forced,
                    };
                    self.status = self.status_line();
                    if announced {
                        notify::send(&[
                            sd_notify::NotifyState::Ready,
                            sd_notify::NotifyState::Status(&self.status),
                        ]);
                    } else {
                        notify::send(&[sd_notify::NotifyState::Status(&self.status)]);
                    }
                }
                Trigger::Upgrade => match self.upgrade().await {
                    Ok(pid) => {
                        // Counted by the new process, which is the one scraped from now on.
                        tracing::info!(new_pid = pid, max_drain = ?self.sup.max_drain(),
                            "upgrade: handed over to the new process; serving open connections until they end");
                        return self.drain(Stop::KeepSockets, triggers, true).await;
                    }
                    Err(e) => {
                        self.metrics.record_upgrade(false);
                        tracing::error!(error = %e, "upgrade failed; this process keeps serving");
                    }
                },
                Trigger::Shutdown(how) => break how,
            }
        };
        notify::send(&[
            sd_notify::NotifyState::Stopping,
            sd_notify::NotifyState::Status(&format!(
                "stopping: draining {} connections",
                self.sup.active_connections()
            )),
        ]);
        tracing::info!(
            max_drain = ?self.sup.max_drain(),
            sockets = if how == Stop::KeepSockets { "kept for the next start (descriptor store)" } else { "removed" },
            "stopped accepting; draining open connections (a second signal exits at once)"
        );
        self.drain(how, triggers, false).await
    }

    /// Stop accepting (`how` says what happens to the socket files), let open
    /// connections end, and clean up. A second stop trigger cuts it short.
    async fn drain(
        self,
        how: Stop,
        mut triggers: mpsc::Receiver<Trigger>,
        handed_over: bool,
    ) -> Exit {
        let Daemon { sup, mut http, .. } = self;
        if handed_over {
            // The new process answers /metrics now, on the same listener: if
            // both accepted, scrapes would alternate between two processes'
            // counters. The socket file stays (the new process serves it).
            if let Some(h) = http.take() {
                h.stop_keeping_socket();
            }
        }
        let drain = sup.shutdown(how);
        tokio::pin!(drain);
        // After a handover nobody asked us to stop yet: the first stop signal
        // (`systemctl stop` signals every process of the service) asks for
        // what is already happening; only a second one cuts the drain short.
        let mut stops = u8::from(!handed_over);
        let exit = loop {
            tokio::select! {
                _ = &mut drain => {
                    tracing::info!("all connections closed; bye");
                    break Exit::Clean;
                }
                t = triggers.recv() => match t {
                    Some(Trigger::Shutdown(_)) if stops == 0 => {
                        stops = 1;
                        tracing::info!(
                            "stop signal: already stopping (handed over to the new process); open connections may finish (a second signal exits at once)");
                    }
                    Some(Trigger::Shutdown(_)) => {
                        tracing::warn!("second signal: exiting now");
                        break Exit::Immediate;
                    }
                    // Nothing else matters any more (and a closed channel
                    // just means nobody can ask us to hurry).
                    Some(_) => {}
                    None => {
                        drain.as_mut().await;
                        break Exit::Clean;
                    }
                }
            }
        };
        // Remove what we created unless another process serves it now.
        if let Some(h) = http {
            if how == Stop::KeepSockets {
                h.stop_keeping_socket();
            } else {
                notify::remove_stored("metrics");
                drop(h);
            }
        }
        if !handed_over {
            notify::flush(Duration::from_secs(1));
        }
        exit
    }

    fn send_status_if_changed(&mut self) {
        let now = self.status_line();
        if now != self.status {
            self.status = now;
            notify::send(&[sd_notify::NotifyState::Status(&self.status)]);
        }
    }

    /// Re-read the file and apply it. A bad file changes nothing that runs.
    /// Sends `RELOADING=1` before applying new content unless `forced` (the
    /// caller already did).
    pub fn reload(&mut self, forced: bool) -> Result<ReloadOutcome, ReloadError> {
        let r = self.try_reload(forced);
        match &r {
            Ok(ReloadOutcome::Unchanged) => {}
            Ok(ReloadOutcome::StillRejected) => {
                tracing::debug!("config file event, content still the rejected one; nothing to do");
                return r;
            }
            Ok(ReloadOutcome::Recovered) => {
                tracing::info!("config file matches the running configuration again");
                self.metrics.record_reload(true);
            }
            Ok(ReloadOutcome::Applied(_)) => self.metrics.record_reload(true),
            Err(ReloadError::Read(e)) => {
                self.metrics.record_reload(false);
                tracing::error!("reload failed, running tenants unchanged:\n{e}");
            }
            Err(ReloadError::Invalid(e)) => {
                self.metrics.record_reload(false);
                tracing::error!("reload rejected, running tenants unchanged:\n{e}");
            }
        }
        self.last_reload_ok = r.is_ok();
        r
    }

    fn try_reload(&mut self, forced: bool) -> Result<ReloadOutcome, ReloadError> {
        let read = config::read(&self.opts.config);
        if read.is_err() {
            self.rejected_hash = None;
        }
        let text = read.map_err(ReloadError::Read)?;
        let hash = content_hash(&text);
        if !forced && self.rejected_hash == Some(hash) {
            return Ok(ReloadOutcome::StillRejected);
        }
        self.rejected_hash = None;
        if hash == self.applied_hash {
            tracing::debug!("config content unchanged; nothing to do");
            if forced {
                self.sup.retry_down();
            }
            return Ok(if self.last_reload_ok {
                ReloadOutcome::Unchanged
            } else {
                ReloadOutcome::Recovered
            });
        }
        let started = std::time::Instant::now();
        if !forced {
            notify::reloading();
        }
        let cfg = config::parse(&text, &self.opts.config, &self.opts.subids).map_err(|e| {
            self.rejected_hash = Some(hash);
            ReloadError::Invalid(e)
        })?;
        if cfg.metrics != self.served_metrics {
            tracing::warn!(
                "the metrics section differs from what is served; it takes effect at the next restart"
            );
        }
        self.sup.retry_down();
        let s = self.sup.apply(&cfg.tenants);
        self.applied_hash = hash;
        tracing::info!(
            added = s.added,
            changed = s.changed,
            removed = s.removed,
            down = s.down,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "configuration reloaded"
        );
        give_back_memory("reload");
        Ok(ReloadOutcome::Applied(s))
    }

    /// Start our successor with every listener and wait until it says it is
    /// ready. Returns its pid; on any failure it is stopped and we go on.
    async fn upgrade(&mut self) -> Result<u32, String> {
        let mut fds = self.sup.listener_fds();
        if let Some(h) = &self.http {
            fds.push(("metrics".to_owned(), h.listener_fd()));
        }
        let pid = upgrade::start_successor(&self.start, &fds, self.upgrade_timeout).await?;
        notify::send(&[sd_notify::NotifyState::MainPid(pid)]);
        notify::silence();
        Ok(pid)
    }
}

/// Give the heap a configuration's parse and apply left free back to the
/// system ([`crate::alloc_trim`]): reading 10,000 tenants leaves a few MiB
/// that nothing reuses (RSS 51 → 46 MiB right after start-up,
/// docs/performance.md, session 8). Start-up and reloads are rare, and the
/// call takes well under a millisecond at that size.
fn give_back_memory(after: &str) {
    let started = std::time::Instant::now();
    let purged = crate::alloc_trim::trim();
    tracing::debug!(
        after,
        purged,
        elapsed_us = started.elapsed().as_micros() as u64,
        "gave free heap memory back"
    );
}
