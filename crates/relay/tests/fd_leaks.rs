//! Relays give back every descriptor and every reactor registration they made: the write registration's
//! duplicate (`ReadRegistered`), splice pipes, and both sockets, however the
//! relay ends (both closed, a hang-up, cancellation while a write waits, an
//! error, the idle timeout).
//!
//! Lives in its own test binary (with a single test) because it counts the
//! process's open descriptors, which other tests running in parallel change.

use std::sync::Arc;
use std::time::Duration;

use sockbroker_relay::{relay, Counters, EndReason, ReadRegistered, RelayOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Descriptors registered with the process's epoll instances (the runtime's
/// reactor): one `tfd:` line each in the epoll descriptor's fdinfo.
fn registrations() -> usize {
    let mut n = 0;
    for e in std::fs::read_dir("/proc/self/fd").unwrap() {
        let e = e.unwrap();
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        if target.to_str() == Some("anon_inode:[eventpoll]") {
            let name = e.file_name();
            let info =
                std::fs::read_to_string(format!("/proc/self/fdinfo/{}", name.to_str().unwrap()))
                    .unwrap_or_default();
            n += info.lines().filter(|l| l.starts_with("tfd:")).count();
        }
    }
    n
}

#[derive(Clone, Copy, Debug)]
enum Ending {
    BothClose,
    ClientHangsUp,
    CancelledWhileBlocked,
    UpstreamResets,
    Idle,
}

/// One relay over `ReadRegistered` streams whose writes towards the client
/// find the socket full (so it makes its write registration, and with
/// `splice` a pipe), ended as `ending` says.
async fn one(splice: bool, ending: Ending) {
    let (mut client, client_relay) = UnixStream::pair().unwrap();
    let (upstream_relay, upstream) = UnixStream::pair().unwrap();
    let cancel = CancellationToken::new();
    let opts = RelayOptions {
        splice,
        cancel: cancel.clone(),
        idle_timeout: matches!(ending, Ending::Idle).then_some(Duration::from_millis(200)),
        ..RelayOptions::default()
    };
    let counters = Arc::new(Counters::default());
    let sink = counters.clone();
    let reg = |s: UnixStream| ReadRegistered::new(s.into_std().unwrap()).unwrap();
    let (c, u) = (reg(client_relay), reg(upstream_relay));
    let relayed = tokio::spawn(async move { relay(c, u, &opts, &*sink).await });

    // More than the client's socket holds, and the client does not read
    // yet: the relay's write waits on its write registration.
    let bulk = vec![7u8; 2 << 20];
    let (mut ur, mut uw) = upstream.into_split();
    let writer = tokio::spawn(async move {
        let _ = uw.write_all(&bulk).await;
        uw
    });
    let mut last = u64::MAX;
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = counters.downstream();
        if now > 0 && now == last {
            break;
        }
        last = now;
    }
    let end = match ending {
        Ending::CancelledWhileBlocked => {
            cancel.cancel();
            drop(client);
            let _ = writer.await;
            relayed.await.unwrap().end
        }
        Ending::UpstreamResets => {
            // Closed with unread data in its queue: a reset.
            client.write_all(b"unread").await.unwrap();
            let mut b = [0u8; 6];
            ur.read_exact(&mut b).await.unwrap();
            client.write_all(b"unread").await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            // The writer is blocked (the relay is): its end goes with it.
            writer.abort();
            let _ = writer.await;
            drop(ur);
            let mut sink = Vec::new();
            let _ = client.read_to_end(&mut sink).await;
            relayed.await.unwrap().end
        }
        Ending::ClientHangsUp => {
            let mut got = vec![0u8; 1 << 20];
            client.read_exact(&mut got).await.unwrap();
            drop(client);
            let _ = writer.await;
            relayed.await.unwrap().end
        }
        Ending::BothClose | Ending::Idle => {
            let mut got = vec![0u8; 2 << 20];
            client.read_exact(&mut got).await.unwrap();
            let mut uw = writer.await.unwrap();
            if matches!(ending, Ending::BothClose) {
                uw.shutdown().await.unwrap();
                client.shutdown().await.unwrap();
            }
            let out = relayed.await.unwrap().end;
            drop((client, ur, uw));
            out
        }
    };
    match ending {
        Ending::CancelledWhileBlocked => assert!(matches!(end, EndReason::Cancelled), "{end:?}"),
        Ending::Idle => assert!(matches!(end, EndReason::Idle), "{end:?}"),
        Ending::BothClose => assert!(!end.is_error(), "{end:?}"),
        _ => {}
    }
}

#[test]
fn relays_close_every_descriptor_they_made() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), async {
            // Warm up whatever the runtime opens lazily.
            one(true, Ending::BothClose).await;
            let before = open_fds();
            let registered = registrations();
            for round in 0..3 {
                for splice in [false, true] {
                    for ending in [
                        Ending::BothClose,
                        Ending::ClientHangsUp,
                        Ending::CancelledWhileBlocked,
                        Ending::UpstreamResets,
                        Ending::Idle,
                    ] {
                        one(splice, ending).await;
                        let now = registrations();
                        assert_eq!(
                            now,
                            registered,
                            "round {round}, splice {splice}, {ending:?}: {} registrations left",
                            now as i64 - registered as i64
                        );
                        let now = open_fds();
                        assert_eq!(
                            now,
                            before,
                            "round {round}, splice {splice}, {ending:?}: {} descriptors leaked",
                            now as i64 - before as i64
                        );
                    }
                }
            }
        })
        .await
        .expect("test deadline exceeded (hung?)")
    });
}
