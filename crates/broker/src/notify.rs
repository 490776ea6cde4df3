//! Telling the service manager what the daemon is doing (sd_notify(3)):
//! READY, RELOADING with MONOTONIC_USEC, STATUS, STOPPING, MAINPID after an
//! upgrade in place, and the file-descriptor store (FDSTORE=1 with the
//! listener attached, FDSTOREREMOVE=1) so that a restart or a crash hands the
//! same sockets back (docs/operations.md "Restarts, crashes and upgrades").
//!
//! The sd-notify crate sends blocking, and the NOTIFY_SOCKET queue holds only
//! `net.unix.max_dgram_qlen` (10) datagrams: a manager that stops reading (or
//! a stale NOTIFY_SOCKET inherited from elsewhere) would block the daemon loop
//! within a few reloads — no more reloads, signals or drains. So messages are
//! sent from a thread of their own, and dropped (with a warning) when even its
//! queue is full.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Where notifications go: the sending thread's queue, or `None` without a
/// service manager (NOTIFY_SOCKET unset).
static NOTIFIER: OnceLock<Option<SyncSender<Notice>>> = OnceLock::new();

/// What the sd_notify thread is asked to do.
enum Notice {
    /// Send this datagram, with these descriptors attached (SCM_RIGHTS).
    Send(String, Vec<OwnedFd>),
    /// Say so once everything queued before has been sent.
    Flushed(std::sync::mpsc::Sender<()>),
}

/// Set once another process is the service's main process (after an upgrade
/// in place): from then on this one says nothing (a STOPPING=1 from it would
/// stop the service).
static SILENT: AtomicBool = AtomicBool::new(false);

/// Tell the service manager something, if there is one (NOTIFY_SOCKET set).
/// Never blocks.
pub fn send(states: &[sd_notify::NotifyState<'_>]) {
    send_fds(states, Vec::new());
}

/// Messages held back while an upgrade's successor is not ready yet (see
/// [`hold`]); `None` when sending normally.
static HELD: Mutex<Option<Vec<Datagram>>> = Mutex::new(None);

/// One message and the descriptors sent with it.
type Datagram = (String, Vec<OwnedFd>);

/// Hold every message back until [`release`]: a successor that fails before
/// it is ready must not have touched the service manager's view (or its
/// descriptor store) of the process that keeps serving.
pub fn hold() {
    *HELD.lock().unwrap_or_else(|e| e.into_inner()) = Some(Vec::new());
}

/// Send what [`hold`] held back, and from now on send directly.
pub fn release() {
    let held = HELD.lock().unwrap_or_else(|e| e.into_inner()).take();
    for (msg, fds) in held.into_iter().flatten() {
        enqueue(msg, fds);
    }
}

/// [`send`] with descriptors attached.
fn send_fds(states: &[sd_notify::NotifyState<'_>], fds: Vec<OwnedFd>) {
    if SILENT.load(Ordering::Relaxed) {
        return;
    }
    // One datagram, one `KEY=VALUE` line per state, as sd_notify(3) sends it.
    let msg = states
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    if let Some(held) = HELD.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        held.push((msg, fds));
        return;
    }
    enqueue(msg, fds);
}

/// Queue one datagram for the sending thread.
fn enqueue(msg: String, fds: Vec<OwnedFd>) {
    let queue = NOTIFIER.get_or_init(|| {
        std::env::var_os("NOTIFY_SOCKET")?;
        let (tx, rx) = sync_channel::<Notice>(32);
        let spawned = std::thread::Builder::new()
            .name("sd-notify".into())
            .spawn(move || {
                for notice in rx {
                    match notice {
                        Notice::Send(msg, fds) if fds.is_empty() => {
                            let state = sd_notify::NotifyState::Custom(&msg);
                            if let Err(e) = sd_notify::notify(false, &[state]) {
                                tracing::debug!(error = %e, "sd_notify failed");
                            }
                        }
                        Notice::Send(msg, fds) => {
                            if let Err(e) = send_with_fds(&msg, &fds) {
                                tracing::warn!(error = %e, "cannot hand a socket to the service manager's descriptor store");
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
    if let Err(TrySendError::Full(_)) = tx.try_send(Notice::Send(msg, fds)) {
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

/// Whether listeners go to the service manager's file-descriptor store: under
/// a manager (NOTIFY_SOCKET) whose unit has one. systemd >= 254 says so in
/// `$FDSTORE` (the unit's FileDescriptorStoreMax=); on older systemd the
/// shipped units set `FDSTORE=` themselves, to the same number.
pub fn fd_store_enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| {
        std::env::var_os("NOTIFY_SOCKET").is_some()
            && std::env::var("FDSTORE")
                .ok()
                .and_then(|v| v.parse::<u32>().ok())
                .is_some_and(|n| n > 0)
    })
}

/// Keep a copy of listener `fd` in the descriptor store under `name` (a
/// tenant, or `metrics`). Identical sockets are stored once by systemd, so
/// storing an adopted one again is harmless.
pub fn store_fd(name: &str, fd: BorrowedFd<'_>) {
    if !fd_store_enabled() {
        return;
    }
    match fd.try_clone_to_owned() {
        Ok(copy) => send_fds(
            &[
                sd_notify::NotifyState::Custom("FDSTORE=1"),
                sd_notify::NotifyState::Custom(&format!("FDNAME={name}")),
            ],
            vec![copy],
        ),
        Err(e) => {
            tracing::warn!(name, error = %e, "cannot duplicate a listener for the descriptor store")
        }
    }
}

/// Drop every descriptor stored under `name` (its tenant was removed, or
/// its socket re-created).
pub fn remove_stored(name: &str) {
    if fd_store_enabled() {
        send(&[
            sd_notify::NotifyState::Custom("FDSTOREREMOVE=1"),
            sd_notify::NotifyState::Custom(&format!("FDNAME={name}")),
        ]);
    }
}

/// After an upgrade in place: another process is the main one now. What is
/// queued still goes out (up to a second); nothing is sent after this.
pub fn silence() {
    flush(Duration::from_secs(1));
    SILENT.store(true, Ordering::Relaxed);
}

/// One datagram with descriptors to NOTIFY_SOCKET (a path, or `@name` in the
/// abstract namespace), as sd_pid_notify_with_fds(3) sends it.
fn send_with_fds(msg: &str, fds: &[OwnedFd]) -> std::io::Result<()> {
    use nix::sys::socket::{
        sendmsg, socket, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr,
    };
    use std::os::unix::ffi::OsStrExt;
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let addr = match path.as_bytes().strip_prefix(b"@") {
        Some(name) => UnixAddr::new_abstract(name)?,
        None => UnixAddr::new(path.as_os_str())?,
    };
    let sock = socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let raw: Vec<i32> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let iov = [std::io::IoSlice::new(msg.as_bytes())];
    sendmsg(
        sock.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&raw)],
        MsgFlags::empty(),
        Some(&addr),
    )?;
    Ok(())
}
