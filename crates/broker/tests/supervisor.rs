//! The supervisor in-process (as mini-redis's `tests/server.rs` runs its
//! server in the test process): apply, change in place, retire and drain,
//! retry of tenants that are down, failed owner/mode changes, upstream
//! probes. Tempdirs and the current uid; no root needed except where said.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sockbroker::config::{self, SubIdFiles, TenantSpec};
use sockbroker::http::tenant_statuses;
use sockbroker::metrics::Metrics;
use sockbroker::supervisor::{Stop, Supervisor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

fn ids() -> (u32, u32) {
    (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    )
}

/// Tenants from YAML, as the daemon gets them (`extra` per tenant).
fn tenants(dir: &Path, list: &[(&str, &str)]) -> BTreeMap<String, TenantSpec> {
    let (uid, gid) = ids();
    let mut y = format!(
        "defaults:\n  upstream: {}\n  drain_timeout: 300ms\ntenants:\n",
        dir.join("upstream.sock").display()
    );
    for (name, extra) in list {
        y.push_str(&format!(
            "  {name}:\n    listen: {}\n    uid: {uid}\n    gid: {gid}\n",
            sock(dir, name).display()
        ));
        for l in extra.lines() {
            y.push_str(&format!("    {l}\n"));
        }
    }
    config::parse(&y, &dir.join("t.yaml"), &SubIdFiles::default())
        .unwrap_or_else(|e| panic!("{e}\n{y}"))
        .tenants
}

fn sock(dir: &Path, name: &str) -> PathBuf {
    dir.join(name).join("docker.sock")
}

/// An echo upstream in this process.
fn echo_upstream(dir: &Path) -> tokio::task::JoinHandle<()> {
    let path = dir.join("upstream.sock");
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    })
}

async fn round_trip(c: &mut UnixStream, msg: &[u8]) {
    c.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(10), c.read_exact(&mut back))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(back, msg);
}

async fn echo(path: &Path, msg: &[u8]) -> UnixStream {
    let mut c = UnixStream::connect(path).await.unwrap();
    round_trip(&mut c, msg).await;
    c
}

fn state(sup: &Supervisor, name: &str) -> (String, Option<String>, u32) {
    let t = tenant_statuses(&sup.registry())
        .into_iter()
        .find(|t| t.name == name)
        .expect("tenant listed");
    (t.state, t.reason, t.uid)
}

#[tokio::test]
async fn apply_adds_changes_in_place_and_removes() {
    let dir = tempfile::tempdir().unwrap();
    let _up = echo_upstream(dir.path());
    let mut sup = Supervisor::new(Metrics::new());
    let s = sup.apply(&tenants(dir.path(), &[("a", ""), ("b", "")]));
    assert_eq!((s.added, s.down), (2, 0));
    echo(&sock(dir.path(), "a"), b"a\n").await;
    let ino = std::fs::metadata(sock(dir.path(), "a")).unwrap().ino();

    // Mode change: same inode, new mode; b removed: socket gone at once.
    let s = sup.apply(&tenants(dir.path(), &[("a", "mode: \"0600\"")]));
    assert_eq!((s.changed, s.removed), (1, 1));
    let m = std::fs::metadata(sock(dir.path(), "a")).unwrap();
    assert_eq!((m.ino(), m.mode() & 0o777), (ino, 0o600));
    assert!(!sock(dir.path(), "b").exists());
    echo(&sock(dir.path(), "a"), b"still a\n").await;
    sup.shutdown(Stop::RemoveSockets).await;
    assert!(!sock(dir.path(), "a").exists());
}

#[tokio::test]
async fn a_removed_tenant_drains_its_connections_until_drain_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let _up = echo_upstream(dir.path());
    let mut sup = Supervisor::new(Metrics::new());
    sup.apply(&tenants(dir.path(), &[("a", "")]));
    let mut open = echo(&sock(dir.path(), "a"), b"open\n").await;
    sup.apply(&BTreeMap::new());
    assert!(!sock(dir.path(), "a").exists());
    // Within the drain the open connection still relays ...
    round_trip(&mut open, b"draining\n").await;
    // ... and the drain timeout (300ms) closes it.
    let mut b = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(10), open.read(&mut b))
        .await
        .expect("closed by the drain timeout");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    tokio::time::timeout(Duration::from_secs(10), sup.shutdown(Stop::RemoveSockets))
        .await
        .unwrap();
}

#[tokio::test]
async fn keep_sockets_stops_accepting_but_leaves_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let _up = echo_upstream(dir.path());
    let mut sup = Supervisor::new(Metrics::new());
    sup.apply(&tenants(dir.path(), &[("a", "")]));
    let fds: Vec<_> = sup
        .listener_fds()
        .into_iter()
        .map(|(n, fd)| (n, fd.try_clone_to_owned().unwrap()))
        .collect();
    sup.shutdown(Stop::KeepSockets).await;
    assert!(sock(dir.path(), "a").exists());
    // The file is still that listener: a copy of it (as the descriptor
    // store keeps) still queues connections.
    assert_eq!(fds[0].0, "a");
    UnixStream::connect(sock(dir.path(), "a")).await.unwrap();
}

#[tokio::test]
async fn a_down_tenant_comes_up_on_retry() {
    let dir = tempfile::tempdir().unwrap();
    let _up = echo_upstream(dir.path());
    std::fs::create_dir(dir.path().join("a")).unwrap();
    std::fs::write(sock(dir.path(), "a"), b"in the way").unwrap();
    let mut sup = Supervisor::new(Metrics::new());
    let s = sup.apply(&tenants(dir.path(), &[("a", "")]));
    assert_eq!(s.down, 1);
    let (st, reason, _) = state(&sup, "a");
    assert_eq!(st, "down");
    assert!(reason.unwrap().contains("regular file"));
    assert_eq!(sup.retry(), 0);
    std::fs::remove_file(sock(dir.path(), "a")).unwrap();
    assert_eq!(sup.retry(), 1);
    assert_eq!(state(&sup, "a").0, "up");
    echo(&sock(dir.path(), "a"), b"up\n").await;
    sup.shutdown(Stop::RemoveSockets).await;
}

#[tokio::test]
async fn upstream_state_follows_the_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let mut sup = Supervisor::new(Metrics::new());
    sup.apply(&tenants(dir.path(), &[("a", "")]));
    let upstream = |sup: &Supervisor| tenant_statuses(&sup.registry())[0].upstream_state.clone();
    assert_eq!(upstream(&sup), "down");
    let _up = echo_upstream(dir.path());
    sup.retry();
    assert_eq!(upstream(&sup), "up");
    sup.shutdown(Stop::RemoveSockets).await;
}

/// A failed in-place owner change: the tenant is degraded with the reason,
/// the registry shows the socket's real owner, and the change is retried.
/// As root, the failure comes from this thread giving up CAP_CHOWN and
/// CAP_FOWNER (setfsuid to a non-zero uid drops them for this thread only,
/// and the current-thread runtime applies on this thread).
#[tokio::test]
async fn a_failed_owner_change_is_degraded_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let _up = echo_upstream(dir.path());
    let (uid, gid) = ids();
    let root = uid == 0;
    let mut sup = Supervisor::new(Metrics::new());
    sup.apply(&tenants(dir.path(), &[("a", "")]));
    let other = uid + 1;
    let mut desired = tenants(dir.path(), &[("a", "")]);
    desired.get_mut("a").unwrap().uid = other;
    let was = if root {
        nix::unistd::setfsuid(nix::unistd::Uid::from_raw(65534))
    } else {
        nix::unistd::Uid::from_raw(uid)
    };
    sup.apply(&desired);
    let (st, reason, shown) = state(&sup, "a");
    assert_eq!(st, "degraded");
    assert!(reason
        .unwrap()
        .contains(&format!("should be {other}:{gid}")));
    assert_eq!(shown, uid, "the registry shows the socket's real owner");
    assert_eq!(sup.applied()["a"].uid, uid);
    // Still serving meanwhile.
    echo(&sock(dir.path(), "a"), b"degraded\n").await;
    sup.retry();
    assert_eq!(state(&sup, "a").0, "degraded");
    if root {
        nix::unistd::setfsuid(was);
        sup.retry();
        assert_eq!(state(&sup, "a"), ("up".into(), None, other));
        assert_eq!(
            std::fs::metadata(sock(dir.path(), "a")).unwrap().uid(),
            other
        );
    } else {
        // The config gives up the change: up again, as it is.
        sup.apply(&tenants(dir.path(), &[("a", "")]));
        assert_eq!(state(&sup, "a"), ("up".into(), None, uid));
    }
    sup.shutdown(Stop::RemoveSockets).await;
}
