//! The relay under pressure, over both kinds of stream (tokio's `UnixStream`,
//! and `ReadRegistered`, registered for reading only with a write
//! registration made the first time a write finds the socket full): both
//! directions blocked on writes at once through tiny socket buffers, bulk
//! (splice) into a slow reader after a half-close, a buffer given back and
//! then bulk again, and many connections through a `Listener`. Every byte
//! is checked; every test runs under a deadline, so a lost wake-up fails.

use std::future::Future;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::{setsockopt, sockopt};
use sockbroker_relay::{
    relay, Counters, EndReason, Listener, Outcome, ReadRegistered, RelayOptions,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::task::JoinHandle;

const DEADLINE: Duration = Duration::from_secs(60);

async fn with_deadline<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: deadline exceeded (lost wake-up?)"))
}

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

/// Smallest send and receive buffers the kernel allows (it doubles and
/// clamps the value), so that writes find the socket full after a few KiB.
fn tiny_buffers(s: &UnixStream) {
    setsockopt(&s.as_fd(), sockopt::SndBuf, &1).unwrap();
    setsockopt(&s.as_fd(), sockopt::RcvBuf, &1).unwrap();
}

/// Relay the relay's ends of two socket pairs as `read_registered` says.
fn spawn_relay(
    read_registered: bool,
    client_relay: UnixStream,
    upstream_relay: UnixStream,
    opts: RelayOptions,
    counters: Arc<Counters>,
) -> JoinHandle<Outcome> {
    tokio::spawn(async move {
        if read_registered {
            let reg = |s: UnixStream| ReadRegistered::new(s.into_std().unwrap()).unwrap();
            relay(reg(client_relay), reg(upstream_relay), &opts, &*counters).await
        } else {
            relay(client_relay, upstream_relay, &opts, &*counters).await
        }
    })
}

/// Read `len` bytes in small pieces, yielding (and now and then sleeping)
/// between them, so that the writer keeps finding the socket full.
async fn read_slowly(r: &mut (impl AsyncRead + Unpin), len: usize) -> Vec<u8> {
    let mut got = Vec::with_capacity(len);
    let mut piece = [0u8; 3000];
    let mut i = 0u32;
    while got.len() < len {
        let want = piece.len().min(len - got.len());
        let n = r.read(&mut piece[..want]).await.unwrap();
        assert!(n > 0, "EOF after {} of {len} bytes", got.len());
        got.extend_from_slice(&piece[..n]);
        i += 1;
        if i.is_multiple_of(64) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
    got
}

fn check(what: &str, got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "{what}: length differs");
    assert!(got == want, "{what}: content differs");
}

/// Every combination of stream kind, splice and buffer size used below.
fn variants() -> Vec<(bool, bool, usize)> {
    let mut v = Vec::new();
    for read_registered in [false, true] {
        for splice in [false, true] {
            for buffer_size in [1000, sockbroker_relay::DEFAULT_BUFFER_SIZE] {
                v.push((read_registered, splice, buffer_size));
            }
        }
    }
    v
}

/// Both applications write a few MiB at once and read slowly, through the
/// smallest socket buffers: both directions of the relay keep blocking on
/// writes at the same time, each on its own write registration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_directions_blocked_at_once_through_tiny_buffers() {
    for (read_registered, splice, buffer_size) in variants() {
        let what =
            format!("read_registered {read_registered}, splice {splice}, buffer {buffer_size}");
        let (client, client_relay) = UnixStream::pair().unwrap();
        let (upstream_relay, upstream) = UnixStream::pair().unwrap();
        for s in [&client, &client_relay, &upstream_relay, &upstream] {
            tiny_buffers(s);
        }
        let counters = Arc::new(Counters::default());
        let opts = RelayOptions {
            splice,
            buffer_size,
            ..RelayOptions::default()
        };
        let relayed = spawn_relay(
            read_registered,
            client_relay,
            upstream_relay,
            opts,
            counters.clone(),
        );
        let up = payload(1, 3 << 20);
        let down = payload(2, 3 << 20);
        let (mut cr, mut cw) = client.into_split();
        let (mut ur, mut uw) = upstream.into_split();
        let (up2, down2) = (up.clone(), down.clone());
        let client_writes = tokio::spawn(async move {
            cw.write_all(&up2).await.unwrap();
            cw.shutdown().await.unwrap();
            cw
        });
        let upstream_writes = tokio::spawn(async move {
            uw.write_all(&down2).await.unwrap();
            uw.shutdown().await.unwrap();
            uw
        });
        let (got_up, got_down) = with_deadline(&what, async {
            tokio::join!(
                read_slowly(&mut ur, up.len()),
                read_slowly(&mut cr, down.len())
            )
        })
        .await;
        check(&what, &got_up, &up);
        check(&what, &got_down, &down);
        let mut rest = Vec::new();
        assert_eq!(
            with_deadline(&what, cr.read_to_end(&mut rest))
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            with_deadline(&what, ur.read_to_end(&mut rest))
                .await
                .unwrap(),
            0
        );
        let _ = (client_writes.await.unwrap(), upstream_writes.await.unwrap());
        let out = with_deadline(&what, relayed).await.unwrap();
        assert!(!out.end.is_error(), "{what}: {:?}", out.end);
        assert_eq!(
            (out.bytes_upstream, out.bytes_downstream),
            (up.len() as u64, down.len() as u64),
            "{what}"
        );
    }
}

/// `docker run -i`: the client sends its input and shuts down writing; the
/// upstream answers with bulk output (the relay switches to splice) and
/// closes altogether at once, while the client reads slowly. The client gets
/// every byte, then EOF: neither the client's half-close nor the upstream's
/// hang-up may end the relay before the output is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_closed_client_gets_all_output_of_a_hung_up_upstream() {
    for (read_registered, splice, buffer_size) in variants() {
        let what =
            format!("read_registered {read_registered}, splice {splice}, buffer {buffer_size}");
        let (mut client, client_relay) = UnixStream::pair().unwrap();
        let (upstream_relay, mut upstream) = UnixStream::pair().unwrap();
        tiny_buffers(&client);
        tiny_buffers(&client_relay);
        let counters = Arc::new(Counters::default());
        let opts = RelayOptions {
            splice,
            buffer_size,
            ..RelayOptions::default()
        };
        let relayed = spawn_relay(
            read_registered,
            client_relay,
            upstream_relay,
            opts,
            counters.clone(),
        );
        let input = payload(3, 50_000);
        let output = payload(4, 8 << 20);
        let output2 = output.clone();
        let input2 = input.clone();
        let engine = tokio::spawn(async move {
            let mut got = Vec::new();
            upstream.read_to_end(&mut got).await.unwrap();
            check("input", &got, &input2);
            upstream.write_all(&output2).await.unwrap();
            // Closed altogether (a hang-up), with output still in flight.
            drop(upstream);
        });
        client.write_all(&input).await.unwrap();
        client.shutdown().await.unwrap();
        let got = with_deadline(&what, read_slowly(&mut client, output.len())).await;
        check(&what, &got, &output);
        let mut rest = Vec::new();
        assert_eq!(
            with_deadline(&what, client.read_to_end(&mut rest))
                .await
                .unwrap(),
            0
        );
        engine.await.unwrap();
        let out = with_deadline(&what, relayed).await.unwrap();
        assert!(
            matches!(out.end, EndReason::ClientClosed),
            "{what}: {:?}",
            out.end
        );
        assert_eq!(
            (out.bytes_upstream, out.bytes_downstream),
            (input.len() as u64, output.len() as u64),
            "{what}"
        );
    }
}

/// A direction moves bulk data into a slow reader, goes quiet long enough to
/// give its buffer back, then moves bulk data again: every round arrives
/// whole (the second round needs no new write registration, the first may).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_after_the_buffer_was_given_back() {
    for (read_registered, splice, buffer_size) in variants() {
        let what =
            format!("read_registered {read_registered}, splice {splice}, buffer {buffer_size}");
        let (mut client, client_relay) = UnixStream::pair().unwrap();
        let (upstream_relay, mut upstream) = UnixStream::pair().unwrap();
        tiny_buffers(&client);
        let counters = Arc::new(Counters::default());
        let opts = RelayOptions {
            splice,
            buffer_size,
            buffer_release: Some(Duration::from_millis(20)),
            ..RelayOptions::default()
        };
        let relayed = spawn_relay(
            read_registered,
            client_relay,
            upstream_relay,
            opts,
            counters.clone(),
        );
        let mut total = 0;
        for round in 0..3u64 {
            let chunk = payload(10 + round, 600_000);
            let sent = chunk.clone();
            let (mut ur, mut uw) = upstream.into_split();
            let w = tokio::spawn(async move {
                uw.write_all(&sent).await.unwrap();
                uw
            });
            let got = with_deadline(&what, read_slowly(&mut client, chunk.len())).await;
            check(&format!("{what}, round {round}"), &got, &chunk);
            // And a small message back, through the other direction.
            client.write_all(b"ok").await.unwrap();
            let mut ack = [0u8; 2];
            with_deadline(&what, ur.read_exact(&mut ack)).await.unwrap();
            assert_eq!(&ack, b"ok");
            upstream = ur.reunite(w.await.unwrap()).unwrap();
            total += chunk.len() as u64;
            // Quiet for several release periods.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(upstream);
        let mut rest = Vec::new();
        assert_eq!(
            with_deadline(&what, client.read_to_end(&mut rest))
                .await
                .unwrap(),
            0
        );
        let out = with_deadline(&what, relayed).await.unwrap();
        assert!(!out.end.is_error(), "{what}: {:?}", out.end);
        assert_eq!(out.bytes_downstream, total, "{what}");
        assert_eq!(out.bytes_upstream, 6, "{what}");
    }
}

/// Many clients connect through a `Listener` at once; a third of them close
/// at once without a byte, the others send a request, half-close and read
/// the echoed answer slowly through tiny buffers. Every accepted connection
/// is relayed (as the broker does: `ReadRegistered` on both sides) to an
/// echo upstream; every answer arrives whole and every relay ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_through_a_listener() {
    const N: u64 = 150;
    let dir = tempfile::tempdir().unwrap();
    let front = dir.path().join("front.sock");
    let back = dir.path().join("back.sock");
    let echo = tokio::net::UnixListener::bind(&back).unwrap();
    let echo_server = tokio::spawn(async move {
        loop {
            let (mut conn, _) = echo.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut r, mut w) = conn.split();
                if tokio::io::copy(&mut r, &mut w).await.is_ok() {
                    let _ = w.shutdown().await;
                }
            });
        }
    });
    let listener = Listener::new(std::os::unix::net::UnixListener::bind(&front).unwrap()).unwrap();
    let back2 = back.clone();
    let broker = tokio::spawn(async move {
        let mut relays = Vec::new();
        for _ in 0..N {
            let client = listener.accept().await.unwrap();
            // The relay's writes towards the client find it full at once.
            setsockopt(&client.as_fd(), sockopt::SndBuf, &1).unwrap();
            let upstream = std::os::unix::net::UnixStream::connect(&back2).unwrap();
            upstream.set_nonblocking(true).unwrap();
            relays.push(tokio::spawn(async move {
                let client = ReadRegistered::new(client).unwrap();
                let upstream = ReadRegistered::new(upstream).unwrap();
                relay(
                    client,
                    upstream,
                    &RelayOptions::default(),
                    &Counters::default(),
                )
                .await
            }));
        }
        let mut ends = Vec::new();
        for r in relays {
            ends.push(r.await.unwrap());
        }
        ends
    });

    let mut clients = Vec::new();
    for i in 0..N {
        let front = front.clone();
        clients.push(tokio::spawn(async move {
            let mut c = UnixStream::connect(&front).await.unwrap();
            if i.is_multiple_of(3) {
                return;
            }
            tiny_buffers(&c);
            let data = payload(100 + i, 1 + (i as usize * 7919) % (200 << 10));
            let (mut r, mut w) = c.split();
            let send = async {
                w.write_all(&data).await.unwrap();
                w.shutdown().await.unwrap();
            };
            let (_, echoed) = tokio::join!(send, read_slowly(&mut r, data.len()));
            check(&format!("client {i}"), &echoed, &data);
            let mut rest = Vec::new();
            assert_eq!(r.read_to_end(&mut rest).await.unwrap(), 0);
        }));
    }
    with_deadline("clients", async {
        for c in clients {
            c.await.unwrap();
        }
    })
    .await;
    let ends = with_deadline("relays", broker).await.unwrap();
    for out in ends {
        assert!(!out.end.is_error(), "{:?}", out.end);
    }
    echo_server.abort();
}
