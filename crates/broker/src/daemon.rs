//! `sockbroker run`: load, apply, then follow reload triggers until a signal
//! asks for shutdown. One task owns the [`Supervisor`]; every trigger (file
//! watcher, SIGHUP, retry timer) is an event on this loop, so reloads never
//! overlap and many edits in a burst converge to the file's last content.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::config::{self, SubIdFiles};
use crate::metrics::Metrics;
use crate::notify;
use crate::supervisor::Supervisor;
use crate::watch::{self, WatchMode};

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

/// `STATUS=` text, e.g. "2/2 tenants up, 0 connections" (`systemctl status` shows it).
fn status_line(sup: &Supervisor) -> String {
    let total = sup.applied().len();
    format!(
        "{}/{} tenants up, {} connections",
        total - sup.down_count(),
        total,
        sup.active_connections()
    )
}

/// Run the broker until SIGTERM/SIGINT. An invalid config at startup is an error
/// before any socket is created.
pub async fn run(opts: RunOptions) -> anyhow::Result<()> {
    // Watch before the first read: an edit made while we start up must
    // trigger a reload rather than be mistaken for the baseline.
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let _watcher = watch::start(&opts.config, opts.watch, tx)?;
    let text = read_config(&opts)?;
    let cfg = config::parse(&text, &opts.config, &opts.subids).map_err(|e| {
        anyhow::anyhow!(
            "invalid configuration, nothing started:\n{e}\nfix the file and start again (`sockbroker check --config {}` validates it)",
            opts.config.display()
        )
    })?;
    // Signal handlers first: a SIGTERM that arrives while sockets are being
    // created must still lead to a clean shutdown that unlinks them.
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    raise_nofile_limit();
    // Sockets are created 0600-ish until chmodded to their configured mode
    // (under a temporary name), never wider than we intend.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));

    let metrics = Metrics::new();
    metrics.record_reload(true);
    let mut sup = Supervisor::new(metrics.clone());
    let summary = sup.apply(&cfg.tenants);
    tracing::info!(config = %opts.config.display(), tenants = cfg.tenants.len(), down = summary.down,
        "sockbroker started");
    let mut applied_hash = content_hash(&text);
    // Only the metrics section is kept (the supervisor holds the tenants, one
    // shared copy of each spec): the address served until the next restart.
    let served_metrics = cfg.metrics;

    let http = match &served_metrics {
        Some(m) => {
            match crate::http::serve(m.listen.clone(), metrics.clone(), sup.registry()).await {
                Ok(h) => Some(h),
                Err(e) => {
                    // Exiting: take the tenant sockets down with us, as a
                    // shutdown would, instead of leaving them behind (they
                    // are unlinked at once; connections get a second at most).
                    let _ = tokio::time::timeout(Duration::from_secs(1), sup.shutdown()).await;
                    return Err(e).with_context(|| "cannot start the metrics/health server");
                }
            }
        }
        None => None,
    };

    let mut retry = tokio::time::interval(opts.retry_interval);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    retry.tick().await;

    let mut status = status_line(&sup);
    notify::send(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
    ]);

    loop {
        let force = tokio::select! {
            _ = hup.recv() => { tracing::info!("SIGHUP: reloading"); true }
            Some(()) = rx.recv() => {
                // Debounce: let the writer finish, and fold the burst into one reload.
                tokio::time::sleep(opts.debounce).await;
                while rx.try_recv().is_ok() {}
                false
            }
            _ = retry.tick() => {
                if sup.down_count() > 0 {
                    sup.retry_down();
                }
                // Also keeps the connection count in `systemctl status` current.
                let now = status_line(&sup);
                if now != status {
                    status = now;
                    notify::send(&[sd_notify::NotifyState::Status(&status)]);
                }
                continue;
            }
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break; }
        };
        // A SIGHUP is always answered with RELOADING=1 … READY=1, even when the
        // file did not change or cannot be read: `systemctl reload` under
        // Type=notify-reload waits for exactly that pair.
        if force {
            notify::reloading();
        }
        let announced = reload(
            &opts,
            &mut sup,
            &metrics,
            &mut applied_hash,
            &served_metrics,
            force,
        ) || force;
        status = status_line(&sup);
        if announced {
            notify::send(&[
                sd_notify::NotifyState::Ready,
                sd_notify::NotifyState::Status(&status),
            ]);
        } else {
            notify::send(&[sd_notify::NotifyState::Status(&status)]);
        }
    }

    notify::send(&[
        sd_notify::NotifyState::Stopping,
        sd_notify::NotifyState::Status(&format!(
            "stopping: removing sockets, draining {} connections",
            sup.active_connections()
        )),
    ]);
    tracing::info!(
        max_drain = ?sup.max_drain(),
        "sockets removed; draining open connections (a second signal exits at once)"
    );
    let drain = sup.shutdown();
    tokio::select! {
        _ = drain => tracing::info!("all connections closed; bye"),
        _ = term.recv() => { tracing::warn!("second signal: exiting now"); crate::logging::flush(); std::process::exit(1) }
        _ = int.recv() => { tracing::warn!("second signal: exiting now"); crate::logging::flush(); std::process::exit(1) }
    }
    drop(http);
    notify::flush(Duration::from_secs(1));
    Ok(())
}

/// Read the config file through its path (and any symlinks) afresh.
fn read_config(opts: &RunOptions) -> anyhow::Result<String> {
    let p = &opts.config;
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => anyhow::bail!(
            "{}: is a directory, not a config file; point --config at the YAML file",
            p.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "{}: no such file; create it or pass --config PATH (or set SOCKBROKER_CONFIG)",
            p.display()
        ),
        _ => {}
    }
    std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
}

/// Re-read the file and apply it. A bad file changes nothing that runs.
/// Returns whether it sent `RELOADING=1` (the caller then sends `READY=1`); a
/// forced reload (SIGHUP) has already sent it.
fn reload(
    opts: &RunOptions,
    sup: &mut Supervisor,
    metrics: &Metrics,
    applied_hash: &mut u64,
    served_metrics: &Option<config::MetricsConfig>,
    force: bool,
) -> bool {
    let text = match read_config(opts) {
        Ok(t) => t,
        Err(e) => {
            metrics.record_reload(false);
            tracing::error!(error = %e, "reload failed; running tenants unchanged");
            return false;
        }
    };
    let hash = content_hash(&text);
    if hash == *applied_hash {
        tracing::debug!("config content unchanged; nothing to do");
        if force {
            sup.retry_down();
        }
        if metrics.config_last_reload_successful.get() == 0 {
            // A failed edit was undone (or the file came back unchanged): the
            // file and the running configuration agree again.
            tracing::info!("config file matches the running configuration again");
            metrics.record_reload(true);
        }
        return false;
    }
    let started = std::time::Instant::now();
    if !force {
        notify::reloading();
    }
    match config::parse(&text, &opts.config, &opts.subids) {
        Ok(cfg) => {
            if cfg.metrics != *served_metrics {
                tracing::warn!(
                    "the metrics section differs from what is served; it takes effect at the next restart"
                );
            }
            sup.retry_down();
            let s = sup.apply(&cfg.tenants);
            *applied_hash = hash;
            metrics.record_reload(true);
            tracing::info!(
                added = s.added,
                changed = s.changed,
                removed = s.removed,
                down = s.down,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "configuration reloaded"
            );
        }
        Err(e) => {
            metrics.record_reload(false);
            tracing::error!("reload rejected, running tenants unchanged:\n{e}");
        }
    }
    true
}
