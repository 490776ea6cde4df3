//! `sockbroker-floor-relay`: the least a relay in the data path can do, as a
//! yardstick for the real broker: the `floor` column of `sockbroker-bench`'s
//! round-trip and connection-rate groups (`--floor PATH`, default this binary
//! next to the bench).
//!
//! It answers one question: on this machine, how close to a direct connection
//! can *any* user-space relay get in the request/response and connection-rate
//! scenarios? It has none of the broker's duties — no log line, no metrics, no
//! connection limit, no peer-credential check, no idle timer, no drain, no
//! half-close (the first EOF closes both sides), no splice — and none of tokio:
//! one plain edge-triggered epoll loop per core (pinned to it with
//! `SOCKBROKER_PIN_WORKERS=1`, as the broker's workers then are), sockets
//! registered for
//! `EPOLLIN` only (so a peer draining our writes never wakes us), connections
//! kept on the thread that accepted them, and closed without deregistering
//! (`close(2)` removes them from epoll). It is a measuring stick for small
//! messages, not a relay to use: a full destination blocks its whole thread,
//! so the bench measures it in the `rr` and `connrate` groups only (the
//! throughput and idle groups would stall on it until the bench's watchdog
//! ends the run).
//!
//! Invoked like the broker (`run --config FILE`), it serves the first tenant of
//! that config: `listen` → `upstream` (the tenant's, else `defaults.upstream`).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

/// Token of the listening socket; connection tokens are `fd` numbers.
const LISTENER: u64 = u64::MAX;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let config = match args.as_slice() {
        [_, run, flag, path] if run == "run" && flag == "--config" => PathBuf::from(path),
        _ => {
            eprintln!("usage: sockbroker-floor-relay run --config FILE");
            std::process::exit(2);
        }
    };
    let (listen, upstream) = match first_tenant(&config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("sockbroker-floor-relay: {}: {e}", config.display());
            std::process::exit(2);
        }
    };
    if let Some(dir) = listen.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::remove_file(&listen);
    let listener = UnixListener::bind(&listen).unwrap_or_else(|e| {
        eprintln!("sockbroker-floor-relay: bind {}: {e}", listen.display());
        std::process::exit(1);
    });
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let listener = Arc::new(listener);
    let upstream = Arc::new(upstream);

    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // With SOCKBROKER_PIN_WORKERS=1 (which the bench passes on to both),
    // each thread pinned to a CPU of its own as the broker's workers then
    // are (its `workers::pin_plan`): the floor must stay the limit for a
    // relay placed the same way.
    let cpus = allowed_cpus();
    let pin = std::env::var("SOCKBROKER_PIN_WORKERS").is_ok_and(|v| v.trim() == "1");
    let pins = (pin && cpus.len() == threads).then_some(cpus);
    let workers: Vec<_> = (0..threads)
        .map(|i| {
            let (l, u) = (listener.clone(), upstream.clone());
            let cpu = pins.as_ref().map(|p| p[i]);
            std::thread::spawn(move || {
                if let Some(cpu) = cpu {
                    let mut set = nix::sched::CpuSet::new();
                    let pinned = set.set(cpu).and_then(|()| {
                        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
                    });
                    if let Err(e) = pinned {
                        eprintln!("sockbroker-floor-relay: cannot pin a thread to CPU {cpu}: {e}");
                    }
                }
                if let Err(e) = event_loop(&l, &u) {
                    eprintln!("sockbroker-floor-relay: {e}");
                    std::process::exit(1);
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}

/// `listen` and `upstream` of the config's first tenant.
fn first_tenant(config: &std::path::Path) -> Result<(PathBuf, PathBuf), String> {
    let text = std::fs::read_to_string(config).map_err(|e| e.to_string())?;
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| e.to_string())?;
    let tenant = doc
        .get("tenants")
        .and_then(|t| t.as_mapping())
        .and_then(|m| m.values().next())
        .ok_or("no tenants")?;
    let listen = tenant
        .get("listen")
        .and_then(|v| v.as_str())
        .ok_or("first tenant has no listen")?;
    let upstream = tenant
        .get("upstream")
        .or_else(|| doc.get("defaults").and_then(|d| d.get("upstream")))
        .and_then(|v| v.as_str())
        .ok_or("no upstream")?;
    Ok((listen.into(), upstream.into()))
}

/// The CPUs this process may run on, in ascending order.
fn allowed_cpus() -> Vec<usize> {
    match nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        Ok(set) => (0..nix::sched::CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// One thread's loop: accept (the listener is shared, `EPOLLEXCLUSIVE` wakes
/// one thread per connection), connect upstream, then copy whatever arrives
/// to the other side until either side ends.
fn event_loop(listener: &UnixListener, upstream: &PathBuf) -> io::Result<()> {
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    epoll.add(
        listener,
        EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE, LISTENER),
    )?;
    // fd → (its stream, the peer's fd). Both halves of a pair are entries.
    let mut conns: HashMap<u64, (UnixStream, u64)> = HashMap::new();
    let mut events = vec![EpollEvent::empty(); 256];
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match epoll.wait(&mut events, EpollTimeout::NONE) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        for ev in &events[..n] {
            let token = ev.data();
            if token == LISTENER {
                accept_all(listener, upstream, &epoll, &mut conns)?;
                continue;
            }
            let done = match conns.get(&token) {
                Some((src, peer)) => match conns.get(peer) {
                    Some((dst, _)) => copy_available(src, dst, &mut buf),
                    None => true,
                },
                None => false,
            };
            if done {
                if let Some((_, peer)) = conns.remove(&token) {
                    conns.remove(&peer);
                }
            }
        }
    }
}

fn accept_all(
    listener: &UnixListener,
    upstream: &PathBuf,
    epoll: &Epoll,
    conns: &mut HashMap<u64, (UnixStream, u64)>,
) -> io::Result<()> {
    loop {
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let Ok(up) = UnixStream::connect(upstream) else {
            continue; // client dropped: closed
        };
        client.set_nonblocking(true)?;
        up.set_nonblocking(true)?;
        let (c, u) = (client.as_raw_fd() as u64, up.as_raw_fd() as u64);
        let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLET;
        epoll.add(client.as_fd(), EpollEvent::new(flags, c))?;
        epoll.add(up.as_fd(), EpollEvent::new(flags, u))?;
        conns.insert(c, (client, u));
        conns.insert(u, (up, c));
    }
}

/// Move everything `src` has to `dst`. True when the pair is finished (EOF or
/// an error on either side).
fn copy_available(mut src: &UnixStream, dst: &UnixStream, buf: &mut [u8]) -> bool {
    loop {
        match src.read(buf) {
            Ok(0) => return true,
            Ok(n) => {
                if write_all(dst, &buf[..n]).is_err() {
                    return true;
                }
                if n < buf.len() {
                    return false; // short read: drained (edge-triggered)
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

/// Write all of `data`, waiting in `poll(2)` if `dst` is full (blocks this
/// thread: fine for the small messages this yardstick is for).
fn write_all(mut dst: &UnixStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match dst.write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let mut fds = [PollFd::new(dst.as_fd(), PollFlags::POLLOUT)];
                poll(&mut fds, PollTimeout::NONE)?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
