//! Running out of file descriptors (`EMFILE`): a relay that already has its
//! two sockets keeps relaying, and the `Listener` reports the error, backs
//! off (the broker's accept loop) and then accepts the waiting connection.
//!
//! `ReadRegistered` needs a descriptor the first time a write finds the
//! socket full (a duplicate registered for writability); a broker at its
//! descriptor limit must not drop a `docker pull` or `docker cp` halfway for
//! want of it, as tokio's `UnixStream`, which needs none, never did.
//!
//! Lives in its own test binary (with a single test) because the descriptor
//! limit is process-wide: other tests running in parallel would fail, and
//! open descriptors of their own.

use std::fs::File;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use sockbroker_relay::{relay, Counters, Listener, ReadRegistered, RelayOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Opens `/dev/null` until the process is out of descriptors (under a soft
/// limit lowered for the purpose); dropping it gives them back.
struct Exhausted {
    held: Vec<File>,
    old_soft: u64,
    hard: u64,
}

impl Exhausted {
    fn now() -> Exhausted {
        let (old_soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
        // Room for what is open now, but far fewer than the usual limit.
        setrlimit(Resource::RLIMIT_NOFILE, open + 64, hard).unwrap();
        let mut held = Vec::new();
        loop {
            match File::open("/dev/null") {
                Ok(f) => held.push(f),
                Err(e) if e.raw_os_error() == Some(libc::EMFILE) => break,
                Err(e) => panic!("opening /dev/null: {e}"),
            }
        }
        assert!(!held.is_empty());
        Exhausted {
            held,
            old_soft,
            hard,
        }
    }

    /// Give one descriptor back.
    fn release_one(&mut self) {
        self.held.pop();
    }
}

impl Drop for Exhausted {
    fn drop(&mut self) {
        self.held.clear();
        let _ = setrlimit(Resource::RLIMIT_NOFILE, self.old_soft, self.hard);
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn out_of_descriptors() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), async {
            blocked_write_without_a_spare_descriptor().await;
            accept_under_emfile_recovers().await;
        })
        .await
        .expect("test deadline exceeded (hung?)")
    });
}

/// A relay whose write towards a client that does not read yet finds the
/// socket full while no descriptor is left: it waits, and delivers every byte
/// once the client reads.
async fn blocked_write_without_a_spare_descriptor() {
    for splice in [false, true] {
        let (mut client, client_relay) = UnixStream::pair().unwrap();
        let (upstream_relay, mut upstream) = UnixStream::pair().unwrap();
        let reg = |s: UnixStream| ReadRegistered::new(s.into_std().unwrap()).unwrap();
        let (client_relay, upstream_relay) = (reg(client_relay), reg(upstream_relay));
        let counters = Arc::new(Counters::default());
        let sink = counters.clone();
        let opts = RelayOptions {
            splice,
            ..RelayOptions::default()
        };
        let relayed =
            tokio::spawn(async move { relay(client_relay, upstream_relay, &opts, &*sink).await });

        let mut exhausted = Exhausted::now();
        let reply = payload(4 << 20);
        let sent = reply.clone();
        let writer = tokio::spawn(async move {
            upstream.write_all(&sent).await.unwrap();
            upstream.shutdown().await.unwrap();
            upstream
        });
        // Until the relay is stuck writing to the client (which does not
        // read): the downstream count stops moving.
        let mut last = u64::MAX;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = counters.downstream();
            if now > 0 && now == last {
                break;
            }
            last = now;
        }
        assert!(
            !relayed.is_finished(),
            "splice {splice}: the relay ended while its write waited: {:?}",
            relayed.await.unwrap().end
        );
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), reply.len(), "splice {splice}: reply cut short");
        assert!(got == reply, "splice {splice}: reply differs");
        exhausted.release_one();
        drop(exhausted);
        drop(client);
        drop(writer.await.unwrap());
        let out = relayed.await.unwrap();
        assert!(!out.end.is_error(), "splice {splice}: {:?}", out.end);
        assert_eq!(out.bytes_downstream, reply.len() as u64);
    }
}

/// `accept` under `EMFILE` fails with that error (which the broker's accept
/// loop backs off on) without losing the connection: once a descriptor is
/// free, the same connection is accepted, and one that closed while waiting
/// is accepted too (and reads EOF).
async fn accept_under_emfile_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sock");
    let listener = Listener::new(std::os::unix::net::UnixListener::bind(&path).unwrap()).unwrap();
    let mut waiting = std::os::unix::net::UnixStream::connect(&path).unwrap();
    drop(std::os::unix::net::UnixStream::connect(&path).unwrap());

    let mut exhausted = Exhausted::now();
    for _ in 0..3 {
        let err = listener
            .accept()
            .await
            .expect_err("accepted without a free descriptor");
        assert_eq!(err.raw_os_error(), Some(libc::EMFILE), "{err}");
    }
    exhausted.release_one();
    let accepted = listener.accept().await.expect("accept after EMFILE");
    waiting.write_all(b"hello").unwrap();
    let mut accepted = UnixStream::from_std(accepted).unwrap();
    let mut got = [0u8; 5];
    accepted.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"hello");
    drop(accepted);

    exhausted.release_one();
    let closed = listener.accept().await.expect("accept the closed one");
    let mut closed = UnixStream::from_std(closed).unwrap();
    let mut rest = Vec::new();
    closed.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    drop(exhausted);

    // Idle again: accept waits (no spurious connection).
    assert!(
        tokio::time::timeout(Duration::from_millis(100), listener.accept())
            .await
            .is_err(),
        "accept returned with nobody connecting"
    );
    // And wakes for the next one.
    let _next = std::os::unix::net::UnixStream::connect(&path).unwrap();
    listener.accept().await.expect("accept the next one");
}
