//! Relay micro-benchmarks: the relay alone, between socket pairs, in one
//! process (no broker, no metrics, no logging), so regressions of the data
//! path show up on their own. The end-to-end comparison with a direct
//! connection and socat is `bench/run.sh` (docs/performance.md).
//!
//! Run: `cargo bench -p sockbroker-relay` (about a minute). Each group is kept
//! short on purpose; pass criterion's options after `--` for longer runs, e.g.
//! `cargo bench -p sockbroker-relay -- --measurement-time 10 throughput`.
//!
//! - `throughput/{copy,splice}`: 8 MiB client → upstream through one relay, with
//!   the plain read/write copy and with splice(2) (the default on Linux).
//! - `round_trip`: one 64-byte request and its 64-byte response through a relay.
//! - `connection`: a whole relayed connection: start the relay, one 64-byte
//!   round trip, close both ends, wait for the relay to finish.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sockbroker_relay::{relay, Counters, EndReason, RelayOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::runtime::Runtime;

const MSG: usize = 64;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A relay between two socket pairs; returns the application ends.
fn start(opts: RelayOptions) -> (UnixStream, UnixStream, tokio::task::JoinHandle<EndReason>) {
    let (client, client_relay) = UnixStream::pair().unwrap();
    let (upstream_relay, upstream) = UnixStream::pair().unwrap();
    let task = tokio::spawn(async move {
        let counters = Counters::default();
        relay(client_relay, upstream_relay, &opts, &counters)
            .await
            .end
    });
    (client, upstream, task)
}

fn throughput(c: &mut Criterion) {
    const TOTAL: usize = 8 << 20;
    let rt = runtime();
    let mut g = c.benchmark_group("throughput");
    g.throughput(Throughput::Bytes(TOTAL as u64))
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    for (name, splice) in [("copy", false), ("splice", true)] {
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut elapsed = Duration::ZERO;
                    for _ in 0..iters {
                        let (mut client, mut upstream, task) = start(RelayOptions {
                            splice,
                            ..RelayOptions::default()
                        });
                        let chunk = vec![0x5au8; 64 * 1024];
                        let t = Instant::now();
                        let writer = tokio::spawn(async move {
                            let mut sent = 0;
                            while sent < TOTAL {
                                client.write_all(&chunk).await.unwrap();
                                sent += chunk.len();
                            }
                            client.shutdown().await.unwrap();
                            client
                        });
                        let mut buf = vec![0u8; 64 * 1024];
                        let mut got = 0;
                        loop {
                            let n = upstream.read(&mut buf).await.unwrap();
                            if n == 0 {
                                break;
                            }
                            got += n;
                        }
                        elapsed += t.elapsed();
                        assert_eq!(got, TOTAL);
                        drop(upstream);
                        drop(writer.await.unwrap());
                        task.await.unwrap();
                    }
                    elapsed
                })
            })
        });
    }
    g.finish();
}

fn round_trip(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("round_trip");
    g.throughput(Throughput::Elements(1))
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    g.bench_function("64B", |b| {
        let (mut client, upstream, task) = rt.block_on(async { start(RelayOptions::default()) });
        // An echo server on the upstream end.
        let echo = rt.spawn(async move {
            let mut upstream = upstream;
            let mut buf = [0u8; MSG];
            while upstream.read_exact(&mut buf).await.is_ok() {
                if upstream.write_all(&buf).await.is_err() {
                    break;
                }
            }
        });
        b.iter_custom(|iters| {
            rt.block_on(async {
                let out = [7u8; MSG];
                let mut back = [0u8; MSG];
                let t = Instant::now();
                for _ in 0..iters {
                    client.write_all(&out).await.unwrap();
                    client.read_exact(&mut back).await.unwrap();
                }
                t.elapsed()
            })
        });
        rt.block_on(async {
            drop(client);
            echo.await.unwrap();
            task.await.unwrap();
        });
    });
    g.finish();
}

fn connection(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("connection");
    g.throughput(Throughput::Elements(1))
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    g.bench_function("start_round_trip_close", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    let (mut client, mut upstream, task) = start(RelayOptions::default());
                    let mut buf = [0u8; MSG];
                    client.write_all(&[1u8; MSG]).await.unwrap();
                    upstream.read_exact(&mut buf).await.unwrap();
                    upstream.write_all(&buf).await.unwrap();
                    client.read_exact(&mut buf).await.unwrap();
                    drop(client);
                    drop(upstream);
                    task.await.unwrap();
                }
                t.elapsed()
            })
        })
    });
    g.finish();
}

criterion_group!(benches, throughput, round_trip, connection);
criterion_main!(benches);
