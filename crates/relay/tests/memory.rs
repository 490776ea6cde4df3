//! Heap cost of relays, measured with an instrumented global allocator: no
//! buffer while a connection is merely open, none while its peers keep up
//! however busy it is (reads go through the thread's scratch buffer, without
//! an allocation per message), a buffer of the direction's own while it
//! writes into a full socket (kept while that goes on), none again once its
//! source has been quiet for `buffer_release`, and none for a direction that
//! ended.
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
    // Without splice: a direction whose reads fill the buffer would switch
    // to a pipe and free its buffer (tests/hostile.rs covers that), and this
    // test is about the copy path's buffers.
    let opts = RelayOptions {
        buffer_release: Some(RELEASE),
        splice: false,
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

    // Phase 2: one byte each way. Peers that keep up leave the relay
    // nothing to hold: no buffer of its own in either direction (reads go
    // through the thread's one scratch buffer).
    let region = Region::new(GLOBAL);
    round_trips(&mut apps, 1).await;
    settle().await;
    let held_per_conn = live_bytes(&region) / N as i64;
    assert!(
        held_per_conn < 1024,
        "a relay whose peers keep up holds {held_per_conn} bytes after a round trip"
    );

    // Phase 3: busy connections do not allocate per message.
    let region = Region::new(GLOBAL);
    round_trips(&mut apps, 20).await;
    settle().await;
    let allocs = region.change().allocations;
    assert!(
        allocs < N,
        "{allocs} allocations for {} messages: the relay allocates per message",
        N * 20 * 2
    );

    // Phase 4: the upstream stops reading while its client keeps sending.
    // The relay must keep what it read and could not write: a buffer of the
    // direction's own (which also proves the measurement sees relay buffers).
    let region = Region::new(GLOBAL);
    let (blocked, _) = apps.split_at_mut(BLOCKED);
    let mut sent = fill_until_stuck(blocked).await;
    let held_per_conn = live_bytes(&region) / BLOCKED as i64;
    assert!(
        held_per_conn >= DEFAULT_BUFFER_SIZE as i64 * 9 / 10,
        "relays writing into a full socket hold only {held_per_conn} bytes"
    );

    // ... and keep it while the upstream drains: no allocation per read.
    let region = Region::new(GLOBAL);
    drain(blocked, &sent).await;
    let allocs = region.change().allocations;
    assert!(
        allocs < BLOCKED * 2,
        "{allocs} allocations while {BLOCKED} relays moved {} bytes through their buffers",
        sent.iter().sum::<usize>()
    );

    // ... then give it back once the client has been quiet, between one
    // and two release periods after its last message.
    let region = Region::new(GLOBAL);
    let deadline = tokio::time::Instant::now() + RELEASE * 2 + Duration::from_secs(10);
    loop {
        let freed_per_conn = -live_bytes(&region) / BLOCKED as i64;
        if freed_per_conn >= DEFAULT_BUFFER_SIZE as i64 * 9 / 10 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "quiet relays freed only {freed_per_conn} bytes per connection"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Phase 5: the upstream is full again and the client half-closes. Once
    // the held bytes are delivered, the finished direction frees its buffer
    // at once (not after a release period), though the connection stays
    // open for the other direction.
    let region = Region::new(GLOBAL);
    let more = fill_until_stuck(blocked).await;
    let started = tokio::time::Instant::now();
    for (client, _) in blocked.iter_mut() {
        client.shutdown().await.unwrap();
    }
    for ((_, upstream), n) in blocked.iter_mut().zip(&more) {
        let mut rest = Vec::new();
        upstream.read_to_end(&mut rest).await.unwrap();
        assert_eq!(
            rest.len(),
            *n,
            "every byte sent before the half-close arrives"
        );
    }
    settle().await;
    let left_per_conn = live_bytes(&region) / BLOCKED as i64;
    assert!(
        left_per_conn < 1024,
        "half-closed relays still hold {left_per_conn} bytes per connection"
    );
    assert!(
        started.elapsed() < RELEASE,
        "too slow to tell the half-close from the release timer"
    );
    for (s, m) in sent.iter_mut().zip(&more) {
        *s += m;
    }

    // Close everything; all relays end normally.
    for (client, upstream) in apps.iter_mut().skip(BLOCKED) {
        client.shutdown().await.unwrap();
        let mut rest = Vec::new();
        upstream.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }
    for (client, upstream) in &mut apps {
        upstream.shutdown().await.unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
    }
    for r in relays {
        let out = r.await.unwrap();
        assert!(matches!(out.end, EndReason::ClientClosed), "{:?}", out.end);
    }
    let messages = N as u64 * (1 + 20);
    let bulk: usize = sent.iter().sum();
    assert_eq!(counters.upstream(), messages + bulk as u64);
    assert_eq!(counters.downstream(), messages);
}

/// Connections whose upstream stops reading in phases 4 and 5.
const BLOCKED: usize = 10;

/// Write from each client, without waiting, until its socket and the
/// relay's socket to the upstream (which reads nothing) are both full and
/// the relay is stuck holding what it read. Returns the bytes each sent.
async fn fill_until_stuck(apps: &mut [(UnixStream, UnixStream)]) -> Vec<usize> {
    let chunk = [7u8; 4096];
    let mut sent = vec![0; apps.len()];
    loop {
        let mut progress = false;
        for ((client, _), sent) in apps.iter_mut().zip(sent.iter_mut()) {
            while let Ok(n) = client.try_write(&chunk) {
                *sent += n;
                progress = true;
            }
        }
        if !progress {
            return sent;
        }
        // Let the relays move what they can.
        settle().await;
    }
}

/// The upstreams read what `fill_until_stuck` sent.
async fn drain(apps: &mut [(UnixStream, UnixStream)], sent: &[usize]) {
    for ((_, upstream), n) in apps.iter_mut().zip(sent) {
        let mut got = vec![0; *n];
        upstream.read_exact(&mut got).await.unwrap();
    }
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
