//! A minimal Unix-socket client run as a separate process (often as another
//! uid or inside a user namespace): stdin → socket, then shutdown(Write),
//! socket → stdout until EOF. Exit 2 when the connect fails, with the error.
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;

/// With `--userns`: enter a new user namespace, wait for the parent to write
/// our uid/gid maps (it signals with a line on stdin), then become the
/// namespace's root — the way a container's root process is made. No exec
/// happens in between, so the capabilities in the new namespace are kept.
fn become_userns_root() {
    use nix::sched::{unshare, CloneFlags};
    use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
    unshare(CloneFlags::CLONE_NEWUSER).expect("unshare(CLONE_NEWUSER)");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .expect("wait for maps");
    setgroups(&[]).expect("setgroups");
    let root = Gid::from_raw(0);
    setresgid(root, root, root).expect("setresgid(0)");
    let root = Uid::from_raw(0);
    setresuid(root, root, root).expect("setresuid(0)");
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--userns") {
        args.remove(0);
        become_userns_root();
    }
    let path = args
        .first()
        .cloned()
        .expect("usage: sb-client [--userns] SOCKET");
    let s = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("connect {path}: {e}");
            std::process::exit(2);
        }
    };
    let mut w = s.try_clone().expect("clone socket");
    let writer = std::thread::spawn(move || {
        let mut input = std::io::stdin().lock();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match input.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if w.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = w.shutdown(Shutdown::Write);
    });
    let mut r = s;
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.write_all(&buf[..n]).expect("stdout"),
            Err(e) => {
                eprintln!("read: {e}");
                break;
            }
        }
    }
    out.flush().expect("stdout");
    drop(writer); // do not wait for stdin: the server may have closed first
}
