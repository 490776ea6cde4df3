//! `Listener` hands out connections that are non-blocking, close-on-exec and
//! not registered with the runtime, so that they become `ReadRegistered`
//! (registered for reading only) and relay like any other stream.

use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use sockbroker_relay::{relay, Counters, EndReason, Listener, ReadRegistered, RelayOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

#[tokio::test]
async fn accepted_connections_are_unregistered_nonblocking_and_relay() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    listener.set_nonblocking(true).unwrap();
    let listener = Listener::new(listener).unwrap();
    let (upstream_relay, mut upstream) = UnixStream::pair().unwrap();

    let test = async {
        let mut client = UnixStream::connect(&path).await.unwrap();
        let accepted = listener.accept().await.unwrap();
        let fl = OFlag::from_bits_truncate(fcntl(&accepted, FcntlArg::F_GETFL).unwrap());
        assert!(
            fl.contains(OFlag::O_NONBLOCK),
            "accepted socket is blocking"
        );
        let fd = FdFlag::from_bits_truncate(fcntl(&accepted, FcntlArg::F_GETFD).unwrap());
        assert!(
            fd.contains(FdFlag::FD_CLOEXEC),
            "accepted socket lacks close-on-exec"
        );

        // Registering it again would fail (EEXIST) had `accept` registered it.
        let client_relay = ReadRegistered::new(accepted).unwrap();
        let upstream_relay = ReadRegistered::new(upstream_relay.into_std().unwrap()).unwrap();
        let relayed = tokio::spawn(async move {
            let c = Counters::default();
            relay(client_relay, upstream_relay, &RelayOptions::default(), &c).await
        });

        client.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        upstream.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        upstream.write_all(b"pong").await.unwrap();
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
        drop(client);
        let out = relayed.await.unwrap();
        assert!(matches!(out.end, EndReason::ClientClosed), "{:?}", out.end);
        assert_eq!((out.bytes_upstream, out.bytes_downstream), (4, 4));
    };
    tokio::time::timeout(Duration::from_secs(30), test)
        .await
        .expect("test deadline exceeded");
}
