//! The units in miniature, without systemd: the broker with only CAP_CHOWN
//! and CAP_FOWNER, as root and as a dedicated user.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use nix::sys::signal::Signal;
use sockbroker_e2e::output_text as text;
use sockbroker_e2e::*;

use super::*;

/// A uid with no passwd entry for the broker, and a group standing in for `docker`.
const BROKER_UID: u32 = 46_801;
const DOCKER_GID: u32 = 46_802;

/// How the two systemd units run the broker.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Identity {
    /// sockbroker-user.service: a non-root uid with the docker-like group as a
    /// supplementary group and CAP_CHOWN + CAP_FOWNER as ambient capabilities.
    ServiceUser,
    /// sockbroker.service: root whose capability bounding set is CAP_CHOWN +
    /// CAP_FOWNER (so its exec gets those two and nothing else).
    BoundedRoot,
}

impl Identity {
    fn uid(self) -> u32 {
        match self {
            Identity::ServiceUser => BROKER_UID,
            Identity::BoundedRoot => 0,
        }
    }

    /// `setpriv … sockbroker run --config CONFIG` as this identity.
    fn command(self, config: &Path) -> Command {
        let mut c = Command::new("setpriv");
        if self == Identity::ServiceUser {
            c.arg(format!("--reuid={BROKER_UID}"))
                .arg(format!("--regid={BROKER_UID}"))
                .arg(format!("--groups={DOCKER_GID}"))
                .arg("--ambient-caps=-all,+chown,+fowner");
        }
        c.args([
            "--inh-caps=-all,+chown,+fowner",
            "--bounding-set=-all,+chown,+fowner",
            "--",
        ])
        .arg(broker_bin())
        .args(["run", "--retry-interval", "200ms", "--config"])
        .arg(config);
        c
    }
}

fn proc_status(pid: u32, key: &str) -> String {
    read(Path::new(&format!("/proc/{pid}/status")))
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{key}:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default()
}

/// Give `path` owner `uid:gid` and permission bits `mode`.
fn own(path: &Path, uid: u32, gid: u32, mode: u32) {
    nix::unistd::chown(
        path,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The systemd units in miniature (without systemd): the broker with only
/// CAP_CHOWN and CAP_FOWNER, the upstream `root:docker 0660`, the socket
/// directory owned by the broker's uid (RuntimeDirectory=). The tenant socket
/// belongs to 231072 (chown needs CAP_CHOWN, the chmod after it CAP_FOWNER),
/// relays for a client of that uid, is re-owned in place on reload, and is
/// removed on SIGTERM.
fn run_with_only_chown_and_fowner(who: Identity) {
    if skip_unless_root("chown to other uids, setpriv")
        || !have("setpriv", "--version", "apt-get install util-linux")
    {
        return;
    }
    let s = Scene::new();
    // The upstream, like /var/run/docker.sock: root:docker 0660.
    own(&s.upstream.path, 0, DOCKER_GID, 0o660);
    // /run/sockbroker as RuntimeDirectory= makes it: owned by the unit's user, 0755.
    let run_dir = s.dir.path().join("run");
    std::fs::create_dir(&run_dir).unwrap();
    own(&run_dir, who.uid(), who.uid(), 0o755);
    // A root-owned directory: the service user may not create tenant directories there.
    let root_dir = s.dir.path().join("rootonly");
    std::fs::create_dir(&root_dir).unwrap();
    std::fs::set_permissions(&root_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = run_dir.join("ci/docker.sock");
    let other = root_dir.join("other/docker.sock");
    let yaml = |uid: u32, mode: &str| {
        format!(
            "defaults:\n  upstream: {}\n  drain_timeout: 2s\ntenants:\n  ci:\n    listen: {}\n    uid: {uid}\n    gid: {uid}\n    mode: \"{mode}\"\n  other:\n    listen: {}\n    uid: {ROOTMAP}\n    gid: {ROOTMAP}\n",
            s.upstream.path.display(),
            sock.display(),
            other.display()
        )
    };
    write_config(&s.config(), &yaml(ROOTMAP, "0660"));
    let mut b = Broker::spawn(who.command(&s.config()));
    wait_socket(&sock);
    let pid = b.child.id();
    assert_eq!(
        proc_status(pid, "Uid").split_whitespace().next(),
        Some(who.uid().to_string().as_str()),
        "the broker's uid"
    );
    // CAP_CHOWN = bit 0, CAP_FOWNER = bit 3.
    let ambient = if who == Identity::ServiceUser {
        0b1001
    } else {
        0
    };
    for (key, want) in [
        ("CapEff", 0b1001),
        ("CapPrm", 0b1001),
        ("CapBnd", 0b1001),
        ("CapAmb", ambient),
    ] {
        assert_eq!(
            u64::from_str_radix(&proc_status(pid, key), 16).unwrap(),
            want,
            "{key}"
        );
    }
    let (uid, gid, mode, ino) = socket_meta(&sock);
    assert_eq!((uid, gid, mode), (ROOTMAP, ROOTMAP, 0o660));
    let dir_meta = std::fs::metadata(sock.parent().unwrap()).unwrap();
    assert_eq!(
        (dir_meta.uid(), dir_meta.mode() & 0o7777),
        (who.uid(), 0o755),
        "the tenant directory the broker created"
    );
    // Relays for the tenant uid, through the upstream (group or owner access).
    let input = payload(256 << 10, 7);
    let out = run_client(&sock, &input, As::Ids(ROOTMAP, ROOTMAP));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(out.stdout, input);
    match who {
        // The service user cannot write into root's directory: down, saying why.
        Identity::ServiceUser => {
            b.wait_log("cannot create parent directory");
            assert!(!other.exists());
        }
        // Root owns it: no CAP_DAC_OVERRIDE needed.
        Identity::BoundedRoot => wait_socket(&other),
    }
    // Owner and mode changed in place: CAP_CHOWN + CAP_FOWNER on a socket that
    // belongs to someone else; same inode.
    write_config(&s.config(), &yaml(ROOTMAP + 1, "0640"));
    wait_until("socket re-owned in place", DEADLINE, || {
        socket_meta(&sock) == (ROOTMAP + 1, ROOTMAP + 1, 0o640, ino)
    });
    // SIGTERM removes the socket (the directory is the broker's) and exits 0.
    b.signal(Signal::SIGTERM);
    assert!(b.wait_exit(DEADLINE).success(), "{}", b.logs());
    assert!(!sock.exists(), "socket left behind after SIGTERM");
    assert!(!other.exists(), "socket left behind after SIGTERM");
    assert!(
        sock.parent().unwrap().is_dir(),
        "the tenant directory stays"
    );
}

/// sockbroker-user.service: uid 46801, supplementary group "docker", ambient
/// CAP_CHOWN + CAP_FOWNER. A tenant under a root-owned directory is down with the reason.
#[test]
fn runs_as_service_user_with_only_chown_and_fowner() {
    run_with_only_chown_and_fowner(Identity::ServiceUser);
}

/// sockbroker.service: root with the bounding set CAP_CHOWN + CAP_FOWNER.
#[test]
fn runs_as_root_with_only_chown_and_fowner() {
    run_with_only_chown_and_fowner(Identity::BoundedRoot);
}

/// A crashed broker leaves its sockets behind, owned by the tenants (`0660`).
/// A broker with only CAP_CHOWN + CAP_FOWNER may not connect to them to see
/// whether they are stale (EACCES), so it asks the kernel which sockets listen
/// (sock_diag): the leftover is replaced and the tenant comes up, while a live
/// socket it cannot connect to either is left alone and the tenant is down.
#[test]
fn replaces_a_leftover_socket_it_may_not_connect_to() {
    if skip_unless_root("chown to other uids, setpriv")
        || !have("setpriv", "--version", "apt-get install util-linux")
    {
        return;
    }
    let who = Identity::ServiceUser;
    let s = Scene::new();
    let run_dir = s.dir.path().join("run");
    for d in [run_dir.clone(), run_dir.join("stale"), run_dir.join("live")] {
        std::fs::create_dir(&d).unwrap();
        own(&d, who.uid(), who.uid(), 0o755);
    }
    let tenant_owned = |p: &Path| own(p, ROOTMAP, ROOTMAP, 0o660);
    // What a crash leaves: the file, nobody listening.
    let stale = run_dir.join("stale/docker.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    tenant_owned(&stale);
    let stale_ino = std::fs::metadata(&stale).unwrap().ino();
    // Someone else's live socket, also out of the broker's reach.
    let live = run_dir.join("live/docker.sock");
    let _live_listener = std::os::unix::net::UnixListener::bind(&live).unwrap();
    tenant_owned(&live);
    let live_ino = std::fs::metadata(&live).unwrap().ino();
    write_config(
        &s.config(),
        &format!(
            "defaults:\n  upstream: {}\ntenants:\n  stale:\n    listen: {}\n    uid: {ROOTMAP}\n    gid: {ROOTMAP}\n  live:\n    listen: {}\n    uid: {ROOTMAP}\n    gid: {ROOTMAP}\n",
            s.upstream.path.display(),
            stale.display(),
            live.display()
        ),
    );
    let mut b = Broker::spawn(who.command(&s.config()));
    b.wait_log("a live socket someone is listening on");
    wait_until("the leftover socket replaced", DEADLINE, || {
        std::fs::metadata(&stale).is_ok_and(|m| m.ino() != stale_ino)
    });
    let out = run_client(&stale, b"ping", As::Ids(ROOTMAP, ROOTMAP));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(out.stdout, b"ping");
    assert_eq!(
        std::fs::metadata(&live).unwrap().ino(),
        live_ino,
        "a live socket was replaced"
    );
    assert!(!b.logs().contains("could not be probed"), "{}", b.logs());
    b.signal(Signal::SIGTERM);
    assert!(b.wait_exit(DEADLINE).success(), "{}", b.logs());
}
