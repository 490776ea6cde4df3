// End-to-end tests of `relay` over real Unix sockets (socket pairs and a real
// listener in a temporary directory). Every test runs under a deadline so a
// hang fails instead of blocking CI. Included by `tests/relay.rs` (tokio's
// `UnixStream`) and `tests/relay_read_registered.rs` (`ReadRegistered`, as
// the broker's byte relay uses), which set `READ_REGISTERED`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sockbroker_relay::{
    relay, ByteSink, Counters, EndReason, Outcome, ReadRegistered, RelayOptions, Side,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Upper bound for any single test; generous for a loaded 2-core CI machine.
const DEADLINE: Duration = Duration::from_secs(30);

async fn with_deadline<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(DEADLINE, f)
        .await
        .expect("test deadline exceeded (relay hung?)")
}

/// Deterministic pseudo-random bytes (xorshift64*), distinct per seed.
fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// The two application ends of a running relay, plus its live counters.
struct Harness {
    /// What the client application (docker CLI) holds.
    client: UnixStream,
    /// What the upstream application (dockerd) holds.
    upstream: UnixStream,
    counters: Arc<Counters>,
    relay: JoinHandle<Outcome>,
}

/// Relay the relay's ends of two socket pairs, as the suite's kind of stream.
async fn run_relay(
    client: UnixStream,
    upstream: UnixStream,
    opts: &RelayOptions,
    sink: &dyn ByteSink,
) -> Outcome {
    if READ_REGISTERED {
        let reg = |s: UnixStream| ReadRegistered::new(s.into_std().unwrap()).unwrap();
        relay(reg(client), reg(upstream), opts, sink).await
    } else {
        relay(client, upstream, opts, sink).await
    }
}

fn start(opts: RelayOptions) -> Harness {
    let (client, client_relay) = UnixStream::pair().unwrap();
    let (upstream_relay, upstream) = UnixStream::pair().unwrap();
    let counters = Arc::new(Counters::default());
    let sink = counters.clone();
    let relay =
        tokio::spawn(async move { run_relay(client_relay, upstream_relay, &opts, &*sink).await });
    Harness {
        client,
        upstream,
        counters,
        relay,
    }
}

/// Poll until `cond` holds; panics (via the test deadline) otherwise.
async fn wait_until(mut cond: impl FnMut() -> bool) {
    while !cond() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn read_to_end(s: &mut UnixStream) -> Vec<u8> {
    let mut v = Vec::new();
    s.read_to_end(&mut v).await.unwrap();
    v
}

fn assert_same(got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "length differs");
    assert!(got == want, "content differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_both_ways_with_live_counters() {
    with_deadline(async {
        let Harness {
            mut client,
            mut upstream,
            counters,
            relay,
        } = start(RelayOptions::default());

        let request = payload(1, 4 << 20);
        let response = payload(2, (3 << 20) / 2);

        let (mut client_r, mut client_w) = client.split();
        let send = async {
            client_w.write_all(&request).await.unwrap();
        };
        let observe = async {
            // Read only the first 256 KiB, then check the counters show
            // progress although most of the request is still in flight and
            // the client has not closed anything.
            let mut got = vec![0; 256 << 10];
            upstream.read_exact(&mut got).await.unwrap();
            wait_until(|| counters.upstream() >= 256 << 10).await;
            let mid = counters.upstream();
            assert!(mid < request.len() as u64, "counter jumped to {mid}");
            assert!(!relay.is_finished());

            let mut rest = vec![0; request.len() - got.len()];
            upstream.read_exact(&mut rest).await.unwrap();
            got.extend_from_slice(&rest);
            assert_same(&got, &request);
            wait_until(|| counters.upstream() == request.len() as u64).await;

            upstream.write_all(&response).await.unwrap();
        };
        let receive = async {
            let mut got = vec![0; response.len()];
            client_r.read_exact(&mut got).await.unwrap();
            assert_same(&got, &response);
        };
        tokio::join!(send, observe, receive);
        wait_until(|| counters.downstream() == response.len() as u64).await;
        assert!(!relay.is_finished(), "relay ended while both sides open");

        // Orderly close: client first, then upstream.
        client.shutdown().await.unwrap();
        assert!(read_to_end(&mut upstream).await.is_empty());
        upstream.shutdown().await.unwrap();
        assert!(read_to_end(&mut client).await.is_empty());

        let out = relay.await.unwrap();
        assert!(matches!(out.end, EndReason::ClientClosed), "{:?}", out.end);
        assert_eq!(out.bytes_upstream, request.len() as u64);
        assert_eq!(out.bytes_downstream, response.len() as u64);
        assert_eq!(counters.upstream(), out.bytes_upstream);
        assert_eq!(counters.downstream(), out.bytes_downstream);
    })
    .await;
}

/// `docker run -i` / HTTP: the client sends its input, closes its write side,
/// and must still receive the whole (large) reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_half_close_still_receives_reply() {
    with_deadline(async {
        let Harness {
            mut client,
            mut upstream,
            relay,
            ..
        } = start(RelayOptions::default());

        let request = payload(3, 100 << 10);
        let reply = payload(4, 4 << 20);

        let client_side = async {
            client.write_all(&request).await.unwrap();
            client.shutdown().await.unwrap();
            read_to_end(&mut client).await
        };
        let upstream_side = async {
            // Only answers after seeing EOF: fails (deadline) if the relay
            // does not propagate the half-close.
            let got = read_to_end(&mut upstream).await;
            assert_same(&got, &request);
            upstream.write_all(&reply).await.unwrap();
            drop(upstream);
        };
        let (got, ()) = tokio::join!(client_side, upstream_side);
        assert_same(&got, &reply);

        let out = relay.await.unwrap();
        assert!(matches!(out.end, EndReason::ClientClosed), "{:?}", out.end);
        assert_eq!(out.bytes_upstream, request.len() as u64);
        assert_eq!(out.bytes_downstream, reply.len() as u64);
    })
    .await;
}

/// The opposite half-close: the upstream finishes sending first and the
/// client keeps sending afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_half_close_still_receives_client_data() {
    with_deadline(async {
        let Harness {
            mut client,
            mut upstream,
            relay,
            counters,
        } = start(RelayOptions::default());

        let greeting = payload(5, 1 << 20);
        let data = payload(6, 2 << 20);

        let upstream_side = async {
            upstream.write_all(&greeting).await.unwrap();
            upstream.shutdown().await.unwrap();
            read_to_end(&mut upstream).await
        };
        let client_side = async {
            // Wait for the upstream's EOF before sending anything.
            let got = read_to_end(&mut client).await;
            assert_same(&got, &greeting);
            assert_eq!(counters.upstream(), 0);
            client.write_all(&data).await.unwrap();
            client.shutdown().await.unwrap();
        };
        let (got, ()) = tokio::join!(upstream_side, client_side);
        assert_same(&got, &data);

        let out = relay.await.unwrap();
        assert!(
            matches!(out.end, EndReason::UpstreamClosed),
            "{:?}",
            out.end
        );
        assert_eq!(out.bytes_upstream, data.len() as u64);
        assert_eq!(out.bytes_downstream, greeting.len() as u64);
    })
    .await;
}

/// The upstream closes completely first; the shutdown the relay then sends
/// towards it must not count as an error.
#[tokio::test]
async fn upstream_full_close_then_client_close_is_clean() {
    with_deadline(async {
        let Harness {
            mut client,
            upstream,
            relay,
            ..
        } = start(RelayOptions::default());
        drop(upstream);
        assert!(read_to_end(&mut client).await.is_empty());
        drop(client);
        let out = relay.await.unwrap();
        assert!(
            matches!(out.end, EndReason::UpstreamClosed),
            "{:?}",
            out.end
        );
        assert_eq!((out.bytes_upstream, out.bytes_downstream), (0, 0));
    })
    .await;
}

/// How long a relay may take to end once a side hung up: far below
/// `DEADLINE`, so the old behaviour (waiting for the other side's EOF) fails
/// quickly.
const PROMPT: Duration = Duration::from_secs(5);

/// One side sends its last bytes and closes its socket altogether (not a
/// half-close): nothing can reach it any more, so the relay delivers what it
/// sent, ends, and closes the other side (which reads those bytes, then EOF)
/// without waiting for that side's own EOF; the other side's next write fails.
async fn hang_up_ends_relay_at_once(hangs_up: Side) {
    let Harness {
        client,
        upstream,
        relay,
        ..
    } = start(RelayOptions::default());
    let (mut gone, mut stays) = match hangs_up {
        Side::Client => (client, upstream),
        Side::Upstream => (upstream, client),
    };
    gone.write_all(b"last words").await.unwrap();
    drop(gone);
    assert_eq!(read_to_end(&mut stays).await, b"last words");
    let out = tokio::time::timeout(PROMPT, relay)
        .await
        .unwrap_or_else(|_| panic!("relay still waits after the {hangs_up:?} hung up"))
        .unwrap();
    let (end, moved) = match hangs_up {
        Side::Client => (EndReason::ClientClosed, (10, 0)),
        Side::Upstream => (EndReason::UpstreamClosed, (0, 10)),
    };
    assert_eq!(out.end.as_str(), end.as_str(), "{:?}", out.end);
    assert_eq!((out.bytes_upstream, out.bytes_downstream), moved);
    // The relay closed its end (not merely shut down writing): writes fail.
    let err = stays
        .write_all(b"late reply")
        .await
        .expect_err("the other side could still write after the relay ended");
    assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_hang_up_ends_relay_without_waiting_for_upstream() {
    with_deadline(hang_up_ends_relay_at_once(Side::Client)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_hang_up_ends_relay_without_waiting_for_client() {
    with_deadline(hang_up_ends_relay_at_once(Side::Upstream)).await;
}

/// Once a side hung up, the relay closes the side still connected at once and
/// lets what else is ready on its thread run before it closes the other and
/// returns (on a busy worker, a new connection's accept goes before an ended
/// one's teardown and audit line). Here the ready work is a task woken by the
/// relay's close of the live side: it runs before the relay has returned.
#[tokio::test]
async fn a_hang_up_closes_the_live_side_and_lets_ready_work_run_first() {
    use std::sync::atomic::{AtomicBool, Ordering};
    for hangs_up in [Side::Client, Side::Upstream] {
        let (client, client_relay) = UnixStream::pair().unwrap();
        let (upstream_relay, upstream) = UnixStream::pair().unwrap();
        let (gone, mut stays) = match hangs_up {
            Side::Client => (client, upstream),
            Side::Upstream => (upstream, client),
        };
        let returned = Arc::new(AtomicBool::new(false));
        let r = returned.clone();
        let relay = tokio::spawn(async move {
            let sink = Counters::default();
            let out = run_relay(client_relay, upstream_relay, &RelayOptions::default(), &sink).await;
            r.store(true, Ordering::SeqCst);
            out
        });
        let witness = tokio::spawn(async move {
            let mut b = [0u8; 1];
            let n = stays.read(&mut b).await.unwrap();
            (n, returned.load(Ordering::SeqCst))
        });
        drop(gone);
        let (n, relay_had_returned) = with_deadline(witness).await.unwrap();
        assert_eq!(n, 0, "the live side reads EOF");
        assert!(
            !relay_had_returned,
            "the relay returned before the task its close woke could run ({hangs_up:?} hung up)"
        );
        let out = with_deadline(relay).await.unwrap();
        assert!(
            matches!(out.end, EndReason::ClientClosed | EndReason::UpstreamClosed),
            "{:?}",
            out.end
        );
    }
}

/// Idle is measured from the last byte in either direction.
#[tokio::test]
async fn idle_timeout_ends_relay() {
    with_deadline(async {
        let idle = Duration::from_millis(300);
        let Harness {
            mut client,
            mut upstream,
            relay,
            ..
        } = start(RelayOptions {
            idle_timeout: Some(idle),
            ..Default::default()
        });

        // Keep traffic going, alternating directions, for well over the
        // timeout: the relay must stay up.
        let started = Instant::now();
        let mut byte = [0u8; 1];
        let mut i = 0u8;
        while started.elapsed() < idle * 3 {
            tokio::time::sleep(Duration::from_millis(40)).await;
            let from_client = i & 1 == 0;
            if from_client {
                client.write_all(&[i]).await.unwrap();
                upstream.read_exact(&mut byte).await.unwrap();
            } else {
                upstream.write_all(&[i]).await.unwrap();
                client.read_exact(&mut byte).await.unwrap();
            }
            assert_eq!(byte[0], i);
            i = i.wrapping_add(1);
            assert!(!relay.is_finished(), "relay ended despite traffic");
        }

        let last_byte = Instant::now();
        let out = relay.await.unwrap();
        let waited = last_byte.elapsed();
        assert!(matches!(out.end, EndReason::Idle), "{:?}", out.end);
        assert!(
            waited >= idle - Duration::from_millis(5),
            "ended after {waited:?}"
        );
        assert!(
            waited < idle + Duration::from_secs(2),
            "ended after {waited:?}"
        );
        assert_eq!(out.bytes_upstream + out.bytes_downstream, u64::from(i));
        // Both ends see the connection closed.
        assert!(read_to_end(&mut client).await.is_empty());
        assert!(read_to_end(&mut upstream).await.is_empty());
    })
    .await;
}

/// Cancellation ends an open, quiet relay promptly and both applications
/// see a clean EOF.
#[tokio::test]
async fn cancellation_ends_promptly_with_eof() {
    with_deadline(async {
        let cancel = CancellationToken::new();
        let Harness {
            mut client,
            mut upstream,
            relay,
            ..
        } = start(RelayOptions {
            cancel: cancel.clone(),
            ..Default::default()
        });

        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        upstream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        upstream.write_all(b"pong").await.unwrap();
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!relay.is_finished());

        let cancelled_at = Instant::now();
        cancel.cancel();
        let out = relay.await.unwrap();
        let took = cancelled_at.elapsed();
        assert!(took < Duration::from_millis(500), "took {took:?}");
        assert!(matches!(out.end, EndReason::Cancelled), "{:?}", out.end);
        assert_eq!((out.bytes_upstream, out.bytes_downstream), (4, 4));

        assert!(read_to_end(&mut client).await.is_empty());
        assert!(read_to_end(&mut upstream).await.is_empty());
    })
    .await;
}

/// Cancellation reaches a relay whose future was first polled by one waker
/// and then moved to a task with another (the relay keeps its own waker on
/// the token and must pass the wake-up on to whoever polls it now).
#[tokio::test]
async fn cancellation_reaches_a_relay_polled_by_a_new_waker() {
    with_deadline(async {
        let cancel = CancellationToken::new();
        let (client, client_relay) = UnixStream::pair().unwrap();
        let (upstream_relay, upstream) = UnixStream::pair().unwrap();
        let opts = RelayOptions {
            cancel: cancel.clone(),
            ..Default::default()
        };
        let mut fut = Box::pin(async move {
            let counters = Counters::default();
            run_relay(client_relay, upstream_relay, &opts, &counters).await
        });
        let noop = std::task::Waker::noop();
        let first = fut.as_mut().poll(&mut std::task::Context::from_waker(noop));
        assert!(first.is_pending());
        let relay = tokio::spawn(fut);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!relay.is_finished());
        cancel.cancel();
        let out = relay.await.unwrap();
        assert!(matches!(out.end, EndReason::Cancelled), "{:?}", out.end);
        drop((client, upstream));
    })
    .await;
}

/// Cancellation also ends the relay promptly while a direction is blocked
/// writing to a peer that does not read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_interrupts_blocked_write() {
    with_deadline(async {
        let cancel = CancellationToken::new();
        let Harness {
            client,
            mut upstream,
            relay,
            counters,
        } = start(RelayOptions {
            cancel: cancel.clone(),
            ..Default::default()
        });

        // Upstream does not read; the client floods until the relay is stuck
        // in a write.
        let (mut client_r, mut client_w) = client.into_split();
        let flood = tokio::spawn(async move {
            let chunk = payload(7, 64 << 10);
            loop {
                if client_w.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        });
        let mut last = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = counters.upstream();
            if now > 0 && now == last {
                break;
            }
            last = now;
        }
        assert!(!relay.is_finished());

        let cancelled_at = Instant::now();
        cancel.cancel();
        let out = relay.await.unwrap();
        let took = cancelled_at.elapsed();
        assert!(took < Duration::from_millis(500), "took {took:?}");
        assert!(matches!(out.end, EndReason::Cancelled), "{:?}", out.end);

        // The relay closed the client's connection with unread data in it, so
        // the client sees EOF or a reset, and its writer stops.
        let mut rest = Vec::new();
        match client_r.read_to_end(&mut rest).await {
            Ok(n) => assert_eq!(n, 0),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
        }
        flood.await.unwrap();
        // Upstream gets exactly what was counted, then EOF.
        let got = read_to_end(&mut upstream).await;
        assert_eq!(got.len() as u64, out.bytes_upstream);
    })
    .await;
}

/// The upstream vanishes (closing with unread data, i.e. a reset) while the
/// client is still writing: an upstream error, no hang, no panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_vanishes_while_client_writes() {
    with_deadline(async {
        let Harness {
            client,
            mut upstream,
            counters,
            relay,
        } = start(RelayOptions::default());

        let (mut client_r, mut client_w) = client.into_split();
        let writer = tokio::spawn(async move {
            let chunk = payload(8, 64 << 10);
            let mut sent = 0usize;
            while sent < 256 << 20 {
                if client_w.write_all(&chunk).await.is_err() {
                    return true;
                }
                sent += chunk.len();
            }
            false
        });

        let mut buf = vec![0; 64 << 10];
        upstream.read_exact(&mut buf).await.unwrap();
        // Close with unread data (a reset), not a plain hang-up: wait until
        // the relay has queued more than was read. Under load it may not
        // have yet, and a plain hang-up ends the relay as `upstream_closed`.
        wait_until(|| counters.upstream() > 128 << 10).await;
        drop(upstream);

        let out = relay.await.unwrap();
        assert!(
            matches!(
                out.end,
                EndReason::Error {
                    side: Side::Upstream,
                    ..
                }
            ),
            "{:?}",
            out.end
        );
        assert_eq!(out.end.as_str(), "upstream_error");
        assert!(writer.await.unwrap(), "client writes never failed");
        // Reading reports EOF or a reset, but returns.
        let mut rest = Vec::new();
        let _ = client_r.read_to_end(&mut rest).await;
    })
    .await;
}

/// The client vanishes while the upstream streams output (`logs -f`): no
/// hang. Whichever the relay notices first ends it: the failed write towards
/// the client (a client error) or the client's hang-up (client closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_vanishes_while_upstream_streams() {
    with_deadline(async {
        let Harness {
            mut client,
            upstream,
            relay,
            ..
        } = start(RelayOptions::default());

        let (_upstream_r, mut upstream_w) = upstream.into_split();
        let writer = tokio::spawn(async move {
            let chunk = payload(9, 64 << 10);
            loop {
                if upstream_w.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        });

        let mut buf = vec![0; 64 << 10];
        client.read_exact(&mut buf).await.unwrap();
        drop(client);

        let out = relay.await.unwrap();
        assert!(
            matches!(
                out.end,
                EndReason::Error {
                    side: Side::Client,
                    ..
                } | EndReason::ClientClosed
            ),
            "{:?}",
            out.end
        );
        writer.await.unwrap();
    })
    .await;
}

/// Tiny (and zero, clamped to one byte) buffers exercise the partial
/// read/write paths.
#[tokio::test]
async fn small_buffers_relay_exactly() {
    with_deadline(async {
        for buffer_size in [0, 1, 7, 4096] {
            let Harness {
                mut client,
                mut upstream,
                relay,
                ..
            } = start(RelayOptions {
                buffer_size,
                ..Default::default()
            });
            let up = payload(10 + buffer_size as u64, 50_000);
            let down = payload(20 + buffer_size as u64, 70_000);
            let c = async {
                client.write_all(&up).await.unwrap();
                client.shutdown().await.unwrap();
                read_to_end(&mut client).await
            };
            let u = async {
                let got = read_to_end(&mut upstream).await;
                upstream.write_all(&down).await.unwrap();
                upstream.shutdown().await.unwrap();
                got
            };
            let (got_down, got_up) = tokio::join!(c, u);
            assert_same(&got_up, &up);
            assert_same(&got_down, &down);
            let out = relay.await.unwrap();
            assert!(matches!(out.end, EndReason::ClientClosed), "{:?}", out.end);
            assert_eq!(out.bytes_upstream, up.len() as u64);
            assert_eq!(out.bytes_downstream, down.len() as u64);
        }
    })
    .await;
}

/// Relays on one thread share its scratch buffer (every read goes through
/// it): interleaved on a single-threaded runtime, with half of the upstreams
/// reading slowly so that their relays keep the rest of a read in a buffer
/// of their own, every upstream receives exactly its own client's bytes,
/// never a byte another relay read before it.
#[tokio::test]
async fn relays_on_one_thread_never_pass_on_each_others_bytes() {
    with_deadline(async {
        let mut runs = Vec::new();
        for i in 0..8u64 {
            let Harness {
                mut client,
                mut upstream,
                relay,
                ..
            } = start(RelayOptions {
                // The copy path throughout (a full read would switch to splice).
                splice: false,
                ..Default::default()
            });
            let up = payload(100 + i, 300_000);
            let want = up.clone();
            let writer = tokio::spawn(async move {
                // In uneven pieces, so reads of different relays interleave.
                for piece in up.chunks(1_000 + 777 * i as usize) {
                    client.write_all(piece).await.unwrap();
                    tokio::task::yield_now().await;
                }
                client.shutdown().await.unwrap();
                read_to_end(&mut client).await
            });
            let slow = i % 2 == 0;
            let reader = tokio::spawn(async move {
                let mut got = Vec::new();
                let mut chunk = vec![0u8; if slow { 700 } else { 64 * 1024 }];
                loop {
                    let n = upstream.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&chunk[..n]);
                    if slow {
                        tokio::task::yield_now().await;
                    }
                }
                upstream.shutdown().await.unwrap();
                got
            });
            runs.push((want, writer, reader, relay));
        }
        for (want, writer, reader, relay) in runs {
            assert_same(&reader.await.unwrap(), &want);
            assert!(writer.await.unwrap().is_empty());
            let out = relay.await.unwrap();
            assert_eq!(out.bytes_upstream, want.len() as u64);
        }
    })
    .await;
}

/// Many concurrent relays to a real listening upstream (an echo server on a
/// socket path in a temporary directory), each with its own payload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_relays_to_listener() {
    with_deadline(async {
        const N: u64 = 200;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upstream.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let (mut r, mut w) = conn.split();
                    tokio::io::copy(&mut r, &mut w).await.unwrap();
                    w.shutdown().await.unwrap();
                });
            }
        });

        let mut conns = Vec::new();
        for i in 0..N {
            let path = path.clone();
            conns.push(tokio::spawn(async move {
                let (mut client, client_relay) = UnixStream::pair().unwrap();
                let upstream = UnixStream::connect(&path).await.unwrap();
                let relay = tokio::spawn(async move {
                    let counters = Counters::default();
                    let out =
                        run_relay(client_relay, upstream, &RelayOptions::default(), &counters)
                            .await;
                    assert_eq!(counters.upstream(), out.bytes_upstream);
                    assert_eq!(counters.downstream(), out.bytes_downstream);
                    out
                });

                let len = 1 + (i as usize * 7919) % (256 << 10);
                let data = payload(100 + i, len);
                let (mut r, mut w) = client.split();
                let send = async {
                    w.write_all(&data).await.unwrap();
                    w.shutdown().await.unwrap();
                };
                let recv = async {
                    let mut v = Vec::new();
                    r.read_to_end(&mut v).await.unwrap();
                    v
                };
                let ((), echoed) = tokio::join!(send, recv);
                assert_same(&echoed, &data);

                let out = relay.await.unwrap();
                assert!(matches!(out.end, EndReason::ClientClosed), "{:?}", out.end);
                assert_eq!(out.bytes_upstream, len as u64);
                assert_eq!(out.bytes_downstream, len as u64);
            }));
        }
        for c in conns {
            c.await.unwrap();
        }
        server.abort();
    })
    .await;
}
