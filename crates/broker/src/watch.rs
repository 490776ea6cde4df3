//! Noticing config file changes.
//!
//! We watch the file's **directory**, never the file itself: editors save by
//! writing a new file and renaming it over the old one, `sed -i` replaces the
//! inode, Kubernetes swaps a `..data` symlink, and the file may briefly not
//! exist. Any event there is only a hint; the daemon debounces, re-reads the
//! file through its path and skips the reload when the content is unchanged.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use notify::{PollWatcher, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// How file changes are noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchMode {
    /// inotify on the config file's directory (the default).
    Inotify,
    /// Poll the directory at this interval, for filesystems without inotify
    /// (some network and FUSE filesystems).
    Poll(Duration),
    /// No watching; reload on SIGHUP only.
    Off,
}

/// Keeps the watcher alive; dropping it stops watching.
pub enum WatchGuard {
    /// An inotify watcher.
    Inotify(RecommendedWatcher),
    /// A polling watcher.
    Poll(PollWatcher),
    /// Nothing is watched.
    Off,
}

/// The directories to watch: the config file's own, and, when the path is a
/// symlink, the directory of the file it resolves to (edits there matter too).
fn dirs_to_watch(config: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let parent = |p: &Path| {
        p.parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    };
    dirs.push(parent(config));
    if let Ok(real) = std::fs::canonicalize(config) {
        let d = parent(&real);
        if !dirs.contains(&d) && !d.starts_with(&dirs[0]) {
            dirs.push(d);
        }
    }
    dirs
}

/// Start watching; each event sends a (coalesced) hint on `tx`.
pub fn start(config: &Path, mode: WatchMode, tx: mpsc::Sender<()>) -> anyhow::Result<WatchGuard> {
    let handler = move |res: notify::Result<notify::Event>| match res {
        Ok(ev) if ev.kind.is_access() => {}
        Ok(_) => {
            // A full channel already holds a pending hint: nothing is lost.
            let _ = tx.try_send(());
        }
        Err(e) => {
            tracing::warn!(error = %e, "config watcher error");
            let _ = tx.try_send(());
        }
    };
    let dirs = dirs_to_watch(config);
    let mut guard = match mode {
        WatchMode::Off => return Ok(WatchGuard::Off),
        WatchMode::Inotify => WatchGuard::Inotify(
            notify::recommended_watcher(handler).context("cannot start the inotify watcher")?,
        ),
        WatchMode::Poll(every) => WatchGuard::Poll(
            PollWatcher::new(
                handler,
                notify::Config::default()
                    .with_poll_interval(every)
                    .with_compare_contents(true),
            )
            .context("cannot start the polling watcher")?,
        ),
    };
    for d in &dirs {
        let r = match &mut guard {
            WatchGuard::Inotify(w) => w.watch(d, RecursiveMode::NonRecursive),
            WatchGuard::Poll(w) => w.watch(d, RecursiveMode::Recursive),
            WatchGuard::Off => Ok(()),
        };
        r.with_context(|| {
            format!(
                "cannot watch {} for config changes (use --watch poll, or --watch off and SIGHUP)",
                d.display()
            )
        })?;
        tracing::debug!(dir = %d.display(), ?mode, "watching for config changes");
    }
    Ok(guard)
}
