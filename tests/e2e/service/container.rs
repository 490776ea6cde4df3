//! The container image in deploy/container, built and run on a network-less engine.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use sockbroker_e2e::*;
use sockbroker_e2e::{output_text as text, run_cmd as run, run_ok as ok};

use super::*;

/// A static sockbroker: `$SB_STATIC_BIN`, else built here with
/// `+crt-static` for the host's glibc target into target/static.
fn static_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SB_STATIC_BIN") {
        return p.into();
    }
    let rustc = Command::new("rustc").arg("-vV").output().unwrap();
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .unwrap();
    let target_dir = workspace().join("target/static");
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace())
        .args(["build", "--locked", "-p", "sockbroker", "--target", &host])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static");
    ok(c, Duration::from_secs(1200));
    target_dir.join(&host).join("debug/sockbroker")
}

/// deploy/container/Dockerfile's final stage is Dockerfile.prebuilt's, so
/// building the latter tests the former's image.
#[test]
fn dockerfiles_share_the_final_stage() {
    let tail = |f: &str| {
        let t = read(&deploy("container").join(f));
        let i = t.find("# ---- final stage").expect("final stage marker");
        t[i..]
            .lines()
            .skip(1)
            .filter(|l| !l.starts_with("COPY "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(tail("Dockerfile"), tail("Dockerfile.prebuilt"));
    let full = read(&deploy("container/Dockerfile"));
    assert!(full.contains("FROM scratch") && full.contains("+crt-static"));
    assert!(full.contains("COPY --from=build /sockbroker /usr/local/bin/sockbroker"));
    assert!(read(&deploy("container/Dockerfile.prebuilt"))
        .contains("COPY sockbroker /usr/local/bin/sockbroker"));
}

/// Build deploy/container/Dockerfile.prebuilt with a static binary on a
/// network-less engine (`--network none`, no registry), check the image is just
/// the binary, run `--version` and `check` in it, then run the broker from it
/// as the docs say (host user namespace, only CHOWN + FOWNER, read-only root,
/// no network): its tenant socket appears on the host owned by 231072, relays
/// to an upstream on the host, and is removed by `docker stop`.
#[test]
fn container_image_builds_and_runs_without_network() {
    if skip_unless_root("chown to other uids, setpriv")
        || !have("dockerd", "--version", "apt-get install docker.io")
    {
        return;
    }
    let bin = static_binary();
    let ldd = Command::new("ldd").arg(&bin).output().unwrap();
    assert!(
        !ldd.status.success() || String::from_utf8_lossy(&ldd.stdout).contains("statically"),
        "{} is not static:\n{}",
        bin.display(),
        String::from_utf8_lossy(&ldd.stdout)
    );
    let engine = match DockerEngine::start(3, "dockremap") {
        Ok(e) => e,
        Err(e) => panic!("{e}"),
    };
    let d = |args: &[&str]| {
        let mut c = engine.docker();
        c.args(args);
        c
    };
    let image = format!("sockbroker-e2e:{}", std::process::id());

    // Build context: the binary only.
    let ctx = scratch();
    std::fs::copy(&bin, ctx.path().join("sockbroker")).unwrap();
    let mut c = d(&["build", "--network", "none", "-q", "-t", &image, "-f"]);
    c.arg(deploy("container/Dockerfile.prebuilt"))
        .arg(ctx.path())
        .env("DOCKER_BUILDKIT", "0");
    ok(c, Duration::from_secs(300));
    let cleanup = Cleanup(vec![d(&["rmi", "-f", &image])]);
    let size: u64 = ok(
        d(&["image", "inspect", "-f", "{{.Size}}", &image]),
        DEADLINE,
    )
    .trim()
    .parse()
    .unwrap();
    assert!(
        size <= std::fs::metadata(&bin).unwrap().len() + (1 << 20),
        "the image ({size} bytes) should hold little but the binary"
    );

    let version = ok(
        d(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--pull",
            "never",
            &image,
            "--version",
        ]),
        DEADLINE,
    );
    assert!(version.starts_with("sockbroker "), "{version}");

    // The broker's scene on the host: a config directory, the socket directory, an upstream.
    let s = Scene::new();
    let etc = s.dir.path().join("etc");
    let run_dir = s.dir.path().join("run");
    std::fs::create_dir(&etc).unwrap();
    std::fs::create_dir(&run_dir).unwrap();
    for p in [&etc, &run_dir] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let sock = run_dir.join("ci/docker.sock");
    std::fs::write(
        etc.join("sockbroker.yaml"),
        format!(
            "defaults:\n  upstream: /upstream/upstream.sock\n  drain_timeout: 2s\ntenants:\n  ci:\n    listen: {}\n    uid: {ROOTMAP}\n    gid: {ROOTMAP}\n    mode: \"0660\"\n",
            sock.display()
        ),
    )
    .unwrap();
    let vols = [
        format!("{}:/etc/sockbroker:ro", etc.display()),
        format!("{}:{}", run_dir.display(), run_dir.display()),
        format!("{}:/upstream", s.dir.path().display()),
    ];
    let base = |extra: &[&str]| {
        let mut c = d(&[
            "run",
            "--network",
            "none",
            "--pull",
            "never",
            "--userns",
            "host",
        ]);
        for v in &vols {
            c.arg("-v").arg(v);
        }
        c.args(extra);
        c
    };

    // `check` as an unprivileged user, no capabilities at all.
    let mut c = base(&["--rm", "--user", "65534:65534", "--cap-drop", "ALL"]);
    c.args([&image, "check"]);
    let out = ok(c, DEADLINE);
    assert!(out.contains("valid, 1 tenant(s)"), "{out}");

    // `run` as documented.
    let name = format!("sbe2e-{}-broker", std::process::id());
    let mut c = base(&[
        "-d",
        "--name",
        &name,
        "--read-only",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "CHOWN",
        "--cap-add",
        "FOWNER",
        "--security-opt",
        "no-new-privileges",
        "--stop-timeout",
        "20",
    ]);
    c.arg(&image);
    ok(c, DEADLINE);
    let cleanup = cleanup.and(d(&["rm", "-f", &name]));
    wait_until("the container's tenant socket", DEADLINE, || {
        UnixStream::connect(&sock).is_ok()
    });
    let (uid, gid, mode, _) = socket_meta(&sock);
    assert_eq!((uid, gid, mode), (ROOTMAP, ROOTMAP, 0o660));
    let input = payload(128 << 10, 11);
    let out = run_client(&sock, &input, As::Ids(ROOTMAP, ROOTMAP));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(out.stdout, input);
    ok(d(&["stop", &name]), Duration::from_secs(60));
    let code = ok(
        d(&["inspect", "-f", "{{.State.ExitCode}}", &name]),
        DEADLINE,
    );
    let logs = run(d(&["logs", &name]), DEADLINE);
    assert_eq!(
        code.trim(),
        "0",
        "broker in the container:\n{}",
        text(&logs)
    );
    assert!(!sock.exists(), "docker stop must remove the tenant socket");
    drop(cleanup);
    drop(engine);
}

/// Commands run at drop (best effort), e.g. removing images and containers.
struct Cleanup(Vec<Command>);

impl Cleanup {
    fn and(mut self, c: Command) -> Cleanup {
        self.0.push(c);
        self
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in self.0.iter_mut().rev() {
            let _ = c
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
