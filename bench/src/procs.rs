//! Processes: every child is registered by pid and ended by pid.

use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) static PIDS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Direct children of `pid` (scans /proc; socat's forked per-connection children).
pub(crate) fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
            // pid (comm) state ppid ...; comm may contain spaces and parentheses.
            if let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) {
                let mut f = rest.split_whitespace();
                f.next();
                if f.next().and_then(|x| x.parse::<i32>().ok()) == Some(pid) {
                    out.push(p);
                }
            }
        }
    }
    out
}

pub(crate) fn kill_pid(pid: i32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
}

/// End every registered process (and socat's children) by pid. Used by the
/// watchdog and the signal handler; normal teardown goes through `Proc::drop`.
pub(crate) fn kill_all_registered() {
    let pids = PIDS.lock().map(|p| p.clone()).unwrap_or_default();
    for pid in pids {
        for c in children_of(pid) {
            kill_pid(c, nix::sys::signal::Signal::SIGKILL);
        }
        kill_pid(pid, nix::sys::signal::Signal::SIGKILL);
    }
}

/// A child process the bench started; dropping it ends it (SIGTERM, then SIGKILL).
pub(crate) struct Proc {
    pub(crate) child: Child,
    pub(crate) name: &'static str,
}

impl Proc {
    pub(crate) fn spawn(name: &'static str, cmd: &mut Command) -> Proc {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        PIDS.lock().unwrap().push(child.id() as i32);
        Proc { child, name }
    }

    pub(crate) fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Also ends forked children (socat).
    pub(crate) fn stop(&mut self, grace: Duration) {
        let pid = self.pid();
        if self.child.try_wait().ok().flatten().is_none() {
            let kids = children_of(pid);
            kill_pid(pid, nix::sys::signal::Signal::SIGTERM);
            let end = Instant::now() + grace;
            while Instant::now() < end && self.child.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(5));
            }
            if self.child.try_wait().ok().flatten().is_none() {
                eprintln!(
                    "  ({} pid {pid} did not stop in {grace:?}: SIGKILL)",
                    self.name
                );
                kill_pid(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = self.child.wait();
            }
            for k in kids {
                kill_pid(k, nix::sys::signal::Signal::SIGKILL);
            }
        }
        PIDS.lock().unwrap().retain(|p| *p != pid);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

pub(crate) fn raise_nofile() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((1024, 1024));
    // Root may raise the hard limit too; children (socat, the broker) inherit it.
    for want in [1 << 20, 262_144, 65_536, hard] {
        let want = want.max(hard);
        if setrlimit(Resource::RLIMIT_NOFILE, want, want).is_ok() {
            return want;
        }
    }
    hard
}

// ---------------------------------------------------------------------------
// /proc memory readings

pub(crate) fn status_kib(pid: i32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    kib_field(&s, field)
}

pub(crate) fn kib_field(text: &str, field: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub(crate) fn pss_kib(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    kib_field(&s, "Pss")
}

/// (RSS, PSS) in KiB of `pid` plus all its direct children.
pub(crate) fn tree_mem_kib(pid: i32) -> (u64, u64) {
    let mut pids = vec![pid];
    pids.extend(children_of(pid));
    pids.iter().fold((0, 0), |(r, p), &x| {
        (r + status_kib(x, "VmRSS"), p + pss_kib(x))
    })
}
