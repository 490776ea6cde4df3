//! Telling the service manager what the daemon is doing (sd_notify(3)):
//! READY, RELOADING with MONOTONIC_USEC, STATUS, STOPPING.
//!
//! The sd-notify crate sends blocking, and the NOTIFY_SOCKET queue holds only
//! `net.unix.max_dgram_qlen` (10) datagrams: a manager that stops reading (or
//! a stale NOTIFY_SOCKET inherited from elsewhere) would block the daemon loop
//! within a few reloads — no more reloads, signals or drains. So messages are
//! sent from a thread of their own, and dropped (with a warning) when even its
//! queue is full.

use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::Duration;

/// Where notifications go: the sending thread's queue, or `None` without a
/// service manager (NOTIFY_SOCKET unset).
static NOTIFIER: OnceLock<Option<SyncSender<Notice>>> = OnceLock::new();

/// What the sd_notify thread is asked to do.
enum Notice {
    /// Send this datagram.
    Send(String),
    /// Say so once everything queued before has been sent.
    Flushed(std::sync::mpsc::Sender<()>),
}

/// Tell the service manager something, if there is one (NOTIFY_SOCKET set).
/// Never blocks.
pub fn send(states: &[sd_notify::NotifyState<'_>]) {
    let queue = NOTIFIER.get_or_init(|| {
        std::env::var_os("NOTIFY_SOCKET")?;
        let (tx, rx) = sync_channel::<Notice>(32);
        let spawned = std::thread::Builder::new()
            .name("sd-notify".into())
            .spawn(move || {
                for notice in rx {
                    match notice {
                        Notice::Send(msg) => {
                            let state = sd_notify::NotifyState::Custom(&msg);
                            if let Err(e) = sd_notify::notify(false, &[state]) {
                                tracing::debug!(error = %e, "sd_notify failed");
                            }
                        }
                        Notice::Flushed(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            });
        match spawned {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the sd_notify thread; not notifying the service manager");
                None
            }
        }
    });
    let Some(tx) = queue else { return };
    // One datagram, one `KEY=VALUE` line per state, as sd_notify(3) sends it.
    let msg = states
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    if let Err(TrySendError::Full(_)) = tx.try_send(Notice::Send(msg)) {
        tracing::warn!("the service manager is not reading NOTIFY_SOCKET; dropping a notification");
    }
}

/// Before exiting: give what is queued (STOPPING=1) up to `limit` to go out.
pub fn flush(limit: Duration) {
    let Some(Some(tx)) = NOTIFIER.get() else {
        return;
    };
    let (done, flushed) = std::sync::mpsc::channel();
    if tx.try_send(Notice::Flushed(done)).is_ok() && flushed.recv_timeout(limit).is_err() {
        tracing::warn!("the service manager did not take our last notifications; exiting anyway");
    }
}

/// `RELOADING=1` with `MONOTONIC_USEC=` (what `Type=notify-reload` waits for).
pub fn reloading() {
    let mut reloading = vec![sd_notify::NotifyState::Reloading];
    if let Ok(now) = sd_notify::NotifyState::monotonic_usec_now() {
        reloading.push(now);
    }
    send(&reloading);
}
