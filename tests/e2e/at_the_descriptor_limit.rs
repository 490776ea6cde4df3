//! The real broker at its descriptor limit keeps the connections it has: a
//! bulk transfer in both directions, whose writes keep finding the sockets
//! full (a slow client, an upstream that stops reading while its answers
//! are not read), completes byte for byte although the broker cannot open a
//! single descriptor more. The byte relay's sockets are registered for
//! reading only and need a descriptor the first time a write waits
//! (`sockbroker_relay::ReadRegistered`); without one the relay used to end
//! the connection with `EMFILE` halfway.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use sockbroker_e2e::*;

/// The descriptor number the broker would get next: the lowest one not open.
fn next_fd(pid: u32) -> u64 {
    let open: std::collections::BTreeSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect();
    (0..).find(|n| !open.contains(n)).unwrap()
}

fn set_nofile(pid: u32, limit: u64) {
    let st = std::process::Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        // The soft limit only: raising the hard one back needs a capability.
        .arg(format!("--nofile={limit}:"))
        .output()
        .unwrap();
    assert!(st.status.success(), "prlimit: {}", output_text(&st));
}

#[test]
fn bulk_transfer_completes_with_no_descriptor_left() {
    let scene = Scene::new();
    let b = scene.start(&[("a", own_ids())], &[]);
    wait_socket(&scene.sock("a"));
    b.wait_log("connection closed: ");

    // The connection exists (client and upstream sockets) before the limit.
    let mut c = echo_conn(&scene.sock("a"), b"hello");
    let pid = b.child.id();
    set_nofile(pid, next_fd(pid));
    assert!(
        UnixStream::connect(scene.sock("a")).is_ok(),
        "connecting still works (the backlog)"
    );
    b.wait_log("out of resources");

    let data = payload(16 << 20, 7);
    let mut w = c.try_clone().unwrap();
    let sent = data.clone();
    let writer = std::thread::spawn(move || {
        let r = w.write_all(&sent);
        r.map_err(|e| e.to_string())
    });
    // Read the echo slowly: the relay's writes to the client, then the
    // echo's writes to the relay, then the relay's to the echo, wait.
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut got = Vec::with_capacity(data.len());
    let mut piece = vec![0u8; 16 << 10];
    while got.len() < data.len() {
        let n = c
            .read(&mut piece)
            .unwrap_or_else(|e| panic!("after {} bytes: {e}\n{}", got.len(), b.logs()));
        assert!(
            n > 0,
            "connection ended after {} of {} bytes\n{}",
            got.len(),
            data.len(),
            b.logs()
        );
        got.extend_from_slice(&piece[..n]);
        if got.len() % (1 << 20) < piece.len() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert!(got == data, "the echo differs");
    writer.join().unwrap().unwrap();
    // Still open, and still relaying.
    echo_again(&mut c, b"still here");
}

/// A client accepted with the broker's last descriptor, whose upstream
/// connect then finds none, waits for one (up to `connect_timeout`) instead of
/// being refused as `upstream_unavailable`: once a connection closes, it is
/// served. Meanwhile the accept loop backs off, and once the limit is raised
/// the client queued behind it is served too.
#[test]
fn upstream_connect_waits_for_a_descriptor_instead_of_refusing() {
    let scene = Scene::new();
    let b = scene.start(
        &[("a", &format!("{}\nconnect_timeout: 1h", own_ids()))],
        &[],
    );
    wait_socket(&scene.sock("a"));
    b.wait_log("connection closed: ");

    // Holds two of the broker's descriptors; closing it frees them.
    let held = echo_conn(&scene.sock("a"), b"held");
    let pid = b.child.id();
    // One descriptor left: the next accept takes it, its connect finds none.
    let limit = next_fd(pid) + 1;
    set_nofile(pid, limit);
    let mut waiting = UnixStream::connect(scene.sock("a")).unwrap();
    waiting.set_read_timeout(Some(DEADLINE)).unwrap();
    waiting.write_all(b"waited").unwrap();
    b.wait_log("upstream connect: out of resources; waiting");
    // The one behind it finds no descriptor to be accepted with.
    let mut queued = UnixStream::connect(scene.sock("a")).unwrap();
    queued.set_read_timeout(Some(DEADLINE)).unwrap();
    queued.write_all(b"queued").unwrap();
    b.wait_log("accept failed: out of resources; backing off");

    drop(held);
    let mut buf = [0u8; 6];
    waiting
        .read_exact(&mut buf)
        .unwrap_or_else(|e| panic!("the waiting client: {e}\n{}", b.logs()));
    assert_eq!(&buf, b"waited");
    assert!(
        !b.logs().contains("upstream unavailable"),
        "refused instead of waiting:\n{}",
        b.logs()
    );

    set_nofile(pid, limit + 16);
    queued
        .read_exact(&mut buf)
        .unwrap_or_else(|e| panic!("the queued client: {e}\n{}", b.logs()));
    assert_eq!(&buf, b"queued");
    echo_again(&mut waiting, b"both served");
}
