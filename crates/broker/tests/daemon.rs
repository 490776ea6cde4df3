//! The daemon loop in-process: its triggers come from a channel the test
//! holds (as mini-redis's server takes its shutdown future), so reload,
//! upgrade and shutdown paths run without signals or a second process.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sockbroker::config::SubIdFiles;
use sockbroker::daemon::{
    Daemon, Exit, ReloadError, ReloadOutcome, RunOptions, StartCommand, Trigger,
};
use sockbroker::handover::Inherited;
use sockbroker::supervisor::Stop;
use sockbroker::watch::WatchMode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

struct Scene {
    dir: tempfile::TempDir,
}

impl Scene {
    fn new() -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upstream.sock");
        let l = UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        Scene { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("sockbroker.yaml")
    }

    fn sock(&self, name: &str) -> PathBuf {
        self.dir.path().join(name).join("docker.sock")
    }

    fn metrics_sock(&self) -> PathBuf {
        self.dir.path().join("metrics.sock")
    }

    /// Write a config with `names` as tenants (and a unix: metrics listener).
    fn write(&self, names: &[&str], drain: &str) {
        let mut y = format!(
            "metrics:\n  listen: unix:{}\ndefaults:\n  upstream: {}\n  drain_timeout: {drain}\ntenants:\n",
            self.metrics_sock().display(),
            self.dir.path().join("upstream.sock").display(),
        );
        if names.is_empty() {
            y = y.replace("tenants:\n", "tenants: {}\n");
        }
        for n in names {
            y.push_str(&format!(
                "  {n}:\n    listen: {}\n    uid: {}\n    gid: {}\n",
                self.sock(n).display(),
                nix::unistd::geteuid(),
                nix::unistd::getegid(),
            ));
        }
        let tmp = self.config().with_extension("tmp");
        std::fs::write(&tmp, y).unwrap();
        std::fs::rename(tmp, self.config()).unwrap();
    }

    fn options(&self) -> RunOptions {
        RunOptions {
            config: self.config(),
            watch: WatchMode::Off,
            retry_interval: Duration::from_secs(3600),
            debounce: Duration::from_millis(10),
            subids: SubIdFiles::default(),
        }
    }

    async fn start(&self) -> Daemon {
        let start = StartCommand {
            exe: "/bin/false".into(),
            args: vec!["false".into()],
        };
        Daemon::start(self.options(), Inherited::default(), start)
            .await
            .unwrap()
    }
}

/// Add tenant `b` to the file, tell the loop, and wait until `b` accepts:
/// proof that the loop is running and handled the triggers sent before.
async fn add_b_and_wait(s: &Scene, tx: &mpsc::Sender<Trigger>, what: &str) {
    s.write(&["a", "b"], "1s");
    tx.send(Trigger::FileChanged).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), async {
        while UnixStream::connect(s.sock("b")).await.is_err() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect(what);
}

async fn echo(path: &Path, msg: &[u8]) -> UnixStream {
    let mut c = UnixStream::connect(path).await.unwrap();
    c.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(10), c.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, msg);
    c
}

#[tokio::test]
async fn reloads_report_what_they_did() {
    let s = Scene::new();
    s.write(&["a"], "1s");
    let mut d = s.start().await;
    assert!(matches!(d.reload(false), Ok(ReloadOutcome::Unchanged)));
    s.write(&["a", "b"], "1s");
    match d.reload(false) {
        Ok(ReloadOutcome::Applied(sum)) => assert_eq!(sum.added, 1),
        other => panic!("{other:?}"),
    }
    echo(&s.sock("b"), b"b\n").await;
    std::fs::write(s.config(), "tenants: [").unwrap();
    assert!(matches!(d.reload(false), Err(ReloadError::Invalid(_))));
    std::fs::remove_file(s.config()).unwrap();
    let e = d.reload(false).unwrap_err();
    assert!(matches!(e, ReloadError::Read(_)));
    assert!(e.to_string().contains("does not exist"), "{e}");
    // The same text as running again: recovered, then unchanged.
    s.write(&["a", "b"], "1s");
    assert!(matches!(d.reload(false), Ok(ReloadOutcome::Recovered)));
    assert!(matches!(d.reload(false), Ok(ReloadOutcome::Unchanged)));
    // An oversized file gets config::load's message (check and run agree).
    std::fs::write(s.config(), vec![b'#'; 17 * 1024 * 1024]).unwrap();
    let e = d.reload(false).unwrap_err();
    assert!(e.to_string().contains("larger than 16 MiB"), "{e}");
}

/// A file event with the rejected content unchanged is no new attempt: no
/// second error line, no second failure counted. (A log file written next
/// to the config turned every logged rejection into a directory event, and
/// the broker logged the same error in a loop every debounce interval.) A
/// SIGHUP still tries again and says why it failed.
#[tokio::test]
async fn the_same_rejected_file_is_not_rejected_again() {
    let s = Scene::new();
    s.write(&["a"], "1s");
    let mut d = s.start().await;
    std::fs::write(s.config(), "tenants: [").unwrap();
    assert!(matches!(d.reload(false), Err(ReloadError::Invalid(_))));
    for _ in 0..3 {
        assert!(
            matches!(d.reload(false), Ok(ReloadOutcome::StillRejected)),
            "a file event on the same rejected content is a new attempt"
        );
    }
    assert!(matches!(d.reload(true), Err(ReloadError::Invalid(_))));
    let body = http_get_unix(&s.metrics_sock(), "/metrics").await;
    assert!(
        body.contains("sockbroker_config_reloads_total{result=\"failure\"} 2"),
        "{body}"
    );
    assert!(
        body.contains("sockbroker_config_last_reload_successful 0"),
        "{body}"
    );
    // A different bad text is a new attempt; the good one recovers.
    std::fs::write(s.config(), "tenants: {").unwrap();
    assert!(matches!(d.reload(false), Err(ReloadError::Invalid(_))));
    s.write(&["a"], "1s");
    assert!(matches!(d.reload(false), Ok(ReloadOutcome::Recovered)));
}

#[tokio::test]
async fn triggers_drive_reload_and_shutdown() {
    let s = Scene::new();
    s.write(&["a"], "1s");
    let d = s.start().await;
    let (tx, rx) = mpsc::channel(8);
    let run = tokio::spawn(d.run(rx));
    add_b_and_wait(&s, &tx, "b comes up after the trigger").await;
    tx.send(Trigger::Shutdown(Stop::RemoveSockets))
        .await
        .unwrap();
    assert_eq!(run.await.unwrap(), Exit::Clean);
    assert!(!s.sock("a").exists() && !s.sock("b").exists());
    assert!(!s.metrics_sock().exists());
}

#[tokio::test]
async fn a_stop_that_keeps_sockets_leaves_every_file() {
    let s = Scene::new();
    s.write(&["a"], "1s");
    let d = s.start().await;
    let (tx, rx) = mpsc::channel(8);
    tx.send(Trigger::Shutdown(Stop::KeepSockets)).await.unwrap();
    assert_eq!(d.run(rx).await, Exit::Clean);
    assert!(s.sock("a").exists());
    assert!(s.metrics_sock().exists());
}

/// Bug: a second signal exited without the HTTP server's cleanup, leaving
/// the `unix:` metrics socket behind.
#[tokio::test]
async fn a_second_stop_exits_at_once_and_removes_the_metrics_socket() {
    let s = Scene::new();
    s.write(&["a"], "60s");
    let d = s.start().await;
    let _open = echo(&s.sock("a"), b"hold\n").await;
    let (tx, rx) = mpsc::channel(8);
    let run = tokio::spawn(d.run(rx));
    tx.send(Trigger::Shutdown(Stop::RemoveSockets))
        .await
        .unwrap();
    tx.send(Trigger::Shutdown(Stop::RemoveSockets))
        .await
        .unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("at once, not after the 60s drain")
        .unwrap();
    assert_eq!(exit, Exit::Immediate);
    assert!(!s.metrics_sock().exists());
    assert!(!s.sock("a").exists());
}

#[tokio::test]
async fn a_failed_upgrade_keeps_serving() {
    let s = Scene::new();
    s.write(&["a"], "1s");
    let mut d = s.start().await;
    d.set_upgrade(
        StartCommand {
            exe: "/bin/sh".into(),
            args: vec!["sh".into(), "-c".into(), "exit 3".into()],
        },
        Duration::from_secs(10),
    );
    let (tx, rx) = mpsc::channel(8);
    let run = tokio::spawn(d.run(rx));
    tx.send(Trigger::Upgrade).await.unwrap();
    // The loop handles triggers in order: once this reload is answered the
    // upgrade attempt is over.
    add_b_and_wait(&s, &tx, "still running its loop after the failed upgrade").await;
    echo(&s.sock("a"), b"still served\n").await;
    let body = http_get_unix(&s.metrics_sock(), "/metrics").await;
    assert!(
        body.contains("sockbroker_upgrades_total{result=\"failure\"} 1"),
        "{body}"
    );
    tx.send(Trigger::Shutdown(Stop::RemoveSockets))
        .await
        .unwrap();
    assert_eq!(run.await.unwrap(), Exit::Clean);
}

async fn http_get_unix(path: &Path, what: &str) -> String {
    let mut c = UnixStream::connect(path).await.unwrap();
    c.write_all(format!("GET {what} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), c.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

/// A successor that says it is ready takes over: the loop hands over, keeps
/// the socket files (the successor serves them now) and ends once the old
/// connections have drained.
#[tokio::test]
async fn a_ready_successor_takes_over_and_the_old_loop_drains() {
    let s = Scene::new();
    s.write(&["a"], "1s");
    let mut d = s.start().await;
    // Stands in for the new broker: checks what it was handed, says READY.
    let check = r#"[ "$LISTEN_PID" = "$$" ] && [ "$LISTEN_FDNAMES" = "a:metrics" ] \
        && [ -S /proc/self/fd/3 ] || exit 9; printf 'READY\n' >&"$SOCKBROKER_READY_FD""#;
    d.set_upgrade(
        StartCommand {
            exe: "/bin/sh".into(),
            args: vec!["sh".into(), "-c".into(), check.into()],
        },
        Duration::from_secs(10),
    );
    let open = echo(&s.sock("a"), b"before\n").await;
    let (tx, rx) = mpsc::channel(8);
    let run = tokio::spawn(d.run(rx));
    tx.send(Trigger::Upgrade).await.unwrap();
    // Handed over: the old loop now only drains; the files stay.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !run.is_finished(),
        "an open connection keeps the old process"
    );
    drop(open);
    let exit = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("drained")
        .unwrap();
    assert_eq!(exit, Exit::Clean);
    assert!(s.sock("a").exists());
    assert!(s.metrics_sock().exists());
}

/// After a handover the old process is already stopping: the first stop
/// signal (`systemctl stop` signals every process of the service) lets its
/// open connections finish; it used to be taken for a "second signal" and
/// cut them at once (exit 1). A second one still does.
#[tokio::test]
async fn after_a_handover_only_a_second_stop_cuts_the_drain() {
    for signals in [1, 2] {
        let s = Scene::new();
        s.write(&["a"], "30s");
        let mut d = s.start().await;
        d.set_upgrade(
            StartCommand {
                exe: "/bin/sh".into(),
                args: vec![
                    "sh".into(),
                    "-c".into(),
                    r#"printf 'READY\n' >&"$SOCKBROKER_READY_FD""#.into(),
                ],
            },
            Duration::from_secs(10),
        );
        let mut open = echo(&s.sock("a"), b"before\n").await;
        let (tx, rx) = mpsc::channel(8);
        let run = tokio::spawn(d.run(rx));
        tx.send(Trigger::Upgrade).await.unwrap();
        for _ in 0..signals {
            tx.send(Trigger::Shutdown(Stop::KeepSockets)).await.unwrap();
        }
        if signals == 2 {
            let exit = tokio::time::timeout(Duration::from_secs(10), run)
                .await
                .expect("a second signal exits at once")
                .unwrap();
            assert_eq!(exit, Exit::Immediate);
            continue;
        }
        // The channel is read in order: once the trigger after the stop is
        // taken, the stop was handled (the channel has room for both).
        tx.send(Trigger::Retry).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tx.capacity() < tx.max_capacity() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!run.is_finished(), "one stop signal cut the drain short");
        open.write_all(b"still\n").await.unwrap();
        let mut buf = [0u8; 6];
        open.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"still\n");
        drop(open);
        let exit = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("drained")
            .unwrap();
        assert_eq!(exit, Exit::Clean);
    }
}

/// A successor that never says it is ready is stopped after the bounded
/// wait, and the old loop goes on serving.
#[tokio::test]
async fn a_successor_that_is_never_ready_is_stopped() {
    let s = Scene::new();
    s.write(&["a"], "1s");
    let mut d = s.start().await;
    let pidfile = s.dir.path().join("successor.pid");
    let script = format!("echo $$ > {}; exec sleep 60", pidfile.display());
    d.set_upgrade(
        StartCommand {
            exe: "/bin/sh".into(),
            args: vec!["sh".into(), "-c".into(), script.into()],
        },
        Duration::from_millis(1500),
    );
    let (tx, rx) = mpsc::channel(8);
    let run = tokio::spawn(d.run(rx));
    tx.send(Trigger::Upgrade).await.unwrap();
    add_b_and_wait(&s, &tx, "the loop goes on after the failed upgrade").await;
    // The successor was killed (and reaped): its pid is gone. (On a very
    // busy machine it may not even have written its pid in 1.5 s.)
    if let Ok(pid) = std::fs::read_to_string(&pidfile) {
        assert!(
            !Path::new(&format!("/proc/{}", pid.trim())).exists(),
            "successor {pid} still runs"
        );
    }
    echo(&s.sock("a"), b"still served\n").await;
    let body = http_get_unix(&s.metrics_sock(), "/metrics").await;
    assert!(
        body.contains("sockbroker_upgrades_total{result=\"failure\"} 1"),
        "{body}"
    );
    tx.send(Trigger::Shutdown(Stop::RemoveSockets))
        .await
        .unwrap();
    assert_eq!(run.await.unwrap(), Exit::Clean);
}
