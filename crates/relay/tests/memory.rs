//! Heap cost of idle relays, measured with an instrumented global allocator:
//! no buffer while a connection is merely open, a buffer per direction while
//! it is busy (without an allocation per message), none again once it has
//! been quiet for `buffer_release`, and none for a direction that ended.
//!
//! Lives in its own test binary (with a single test) because the allocator is
//! process-wide: other tests running in parallel would pollute the numbers.

use std::alloc::System;
use std::sync::Arc;
use std::time::Duration;

use sockbroker_relay::{
    relay, Counters, EndReason, Outcome, RelayOptions, DEFAULT_BUFFER_RELEASE, DEFAULT_BUFFER_SIZE,
};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::task::JoinHandle;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const N: usize = 100;
/// Quiet time before a buffer is given back, in this test: long enough that the
/// phases between one round trip and the half-close never reach it.
const RELEASE: Duration = Duration::from_secs(2);

/// Bytes allocated and not yet freed since `region` started.
fn live_bytes(region: &Region<'_, System>) -> i64 {
    let s = region.change();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

/// Let every relay task run until it waits on its sockets.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[test]
fn relays_hold_buffers_only_while_busy() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), run()).await })
        .expect("test deadline exceeded");
}

async fn run() {
    // Everything except the relays themselves is allocated up front.
    assert!(
        DEFAULT_BUFFER_RELEASE < RELEASE,
        "the test's release time is the longer one"
    );
    let opts = RelayOptions {
        buffer_release: Some(RELEASE),
        ..RelayOptions::default()
    };
    let counters = Arc::new(Counters::default());
    let mut apps: Vec<(UnixStream, UnixStream)> = Vec::with_capacity(N);
    let mut ends = Vec::with_capacity(N);
    for _ in 0..N {
        let (client, client_relay) = UnixStream::pair().unwrap();
        let (upstream_relay, upstream) = UnixStream::pair().unwrap();
        apps.push((client, upstream));
        ends.push((client_relay, upstream_relay));
    }
    let mut relays: Vec<JoinHandle<Outcome>> = Vec::with_capacity(N);
    settle().await;

    // Phase 1: open but silent connections.
    let region = Region::new(GLOBAL);
    for (client_relay, upstream_relay) in ends {
        let opts = opts.clone();
        let sink = counters.clone();
        relays.push(tokio::spawn(async move {
            relay(client_relay, upstream_relay, &opts, &*sink).await
        }));
    }
    settle().await;
    let idle_per_conn = live_bytes(&region) / N as i64;
    println!("idle relay: {idle_per_conn} heap bytes per connection");
    assert!(
        idle_per_conn < 4096,
        "idle relay holds {idle_per_conn} bytes (buffers allocated eagerly?)"
    );

    // Phase 2: one byte each way. Both directions must now have allocated a
    // buffer; this also proves the measurement sees relay buffers at all.
    let region = Region::new(GLOBAL);
    for (client, upstream) in &mut apps {
        let mut b = [0u8; 1];
        client.write_all(b"x").await.unwrap();
        upstream.read_exact(&mut b).await.unwrap();
        upstream.write_all(b"y").await.unwrap();
        client.read_exact(&mut b).await.unwrap();
    }
    settle().await;
    let allocated = region.change().bytes_allocated;
    assert!(
        allocated >= N * 2 * DEFAULT_BUFFER_SIZE,
        "only {allocated} bytes allocated for {N} active relays"
    );

    // Phase 3: busy connections keep their buffers: many more messages each
    // way, and far fewer allocations than messages.
    let region = Region::new(GLOBAL);
    round_trips(&mut apps, 20).await;
    settle().await;
    let allocs = region.change().allocations;
    assert!(
        allocs < N,
        "{allocs} allocations for {} messages: the relay allocates per message",
        N * 20 * 2
    );

    // Phase 4: quiet connections give their buffers back (both directions),
    // between one and two release periods after their last message.
    let region = Region::new(GLOBAL);
    let deadline = tokio::time::Instant::now() + RELEASE * 2 + Duration::from_secs(10);
    loop {
        let freed_per_conn = -live_bytes(&region) / N as i64;
        if freed_per_conn >= 2 * DEFAULT_BUFFER_SIZE as i64 * 9 / 10 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "quiet relays freed only {freed_per_conn} bytes per connection"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ... and take a buffer again for the next message.
    let region = Region::new(GLOBAL);
    round_trips(&mut apps, 1).await;
    settle().await;
    let allocated = region.change().bytes_allocated;
    assert!(
        allocated >= N * 2 * DEFAULT_BUFFER_SIZE,
        "only {allocated} bytes allocated for {N} relays active again"
    );

    // Phase 5: the client half-closes. The finished direction must release
    // its buffer although the connection stays open.
    let region = Region::new(GLOBAL);
    for (client, upstream) in &mut apps {
        client.shutdown().await.unwrap();
        let mut rest = Vec::new();
        upstream.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }
    settle().await;
    let freed_per_conn = -live_bytes(&region) / N as i64;
    assert!(
        freed_per_conn >= DEFAULT_BUFFER_SIZE as i64 * 9 / 10,
        "half-closed relay freed only {freed_per_conn} bytes per connection"
    );

    // Close everything; all relays end normally.
    for (client, upstream) in &mut apps {
        upstream.shutdown().await.unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
    }
    for r in relays {
        let out = r.await.unwrap();
        assert!(matches!(out.end, EndReason::ClientClosed), "{:?}", out.end);
    }
    let messages = N as u64 * (1 + 20 + 1);
    assert_eq!(counters.upstream(), messages);
    assert_eq!(counters.downstream(), messages);
}

/// `n` one-byte round trips on every connection, client → upstream → client.
async fn round_trips(apps: &mut [(UnixStream, UnixStream)], n: usize) {
    for _ in 0..n {
        for (client, upstream) in apps.iter_mut() {
            let mut b = [0u8; 1];
            client.write_all(b"x").await.unwrap();
            upstream.read_exact(&mut b).await.unwrap();
            upstream.write_all(b"y").await.unwrap();
            client.read_exact(&mut b).await.unwrap();
        }
    }
}
