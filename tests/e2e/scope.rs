//! `access: {scope: own}` for real: two scoped tenants and one unscoped on one
//! remapped, network-less Docker engine (tests/docker/setup.sh, engine 4),
//! driven by the real docker CLI and Debian's docker-compose 1.29 through the
//! real broker binary. Every cross-tenant attempt must be answered exactly
//! like a missing object and leave the object untouched (checked through the
//! unscoped tenant). Needs root; waits for the engine lock.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use sockbroker_e2e::*;

const IMAGE: &str = "tenant:local";
const DEADLINE: Duration = Duration::from_secs(90);

struct Tenant {
    name: &'static str,
    sock: PathBuf,
}

impl Tenant {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .args(args);
        c
    }

    fn out(&self, args: &[&str]) -> Output {
        run_cmd(self.cmd(args), DEADLINE)
    }

    /// Run; panic unless it succeeds; stdout.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.out(args);
        assert!(
            o.status.success(),
            "tenant {}: docker {} failed:\n{}",
            self.name,
            args.join(" "),
            output_text(&o)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Run; it must fail with exactly the error a missing object gives:
    /// `want` in stderr (`rm -f` of a missing container prints it and
    /// exits 0, as the CLI does for a missing one).
    fn missing(&self, args: &[&str], want: &str) {
        let o = self.out(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(want),
            "tenant {}: docker {} should fail with {want:?}, got:\n{}",
            self.name,
            args.join(" "),
            output_text(&o)
        );
        assert!(
            !err.contains("sockbroker"),
            "tenant {}: docker {}: the answer must be the engine's, not the broker's:\n{err}",
            self.name,
            args.join(" ")
        );
    }

    /// Lines of stdout, sorted.
    fn lines(&self, args: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = self
            .ok(args)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        v.sort();
        v
    }
}

fn run_args(name: &str, extra: &[&str], cmd: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "run",
        "-d",
        "--network",
        "none",
        "--pull",
        "never",
        "--name",
        name,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v.push(IMAGE.into());
    v.extend(cmd.iter().map(|s| s.to_string()));
    v
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn scoped_tenants_share_one_engine() {
    if skip_unless_root("a Docker engine") {
        return;
    }
    let engine = DockerEngine::start(4, "dockremap").unwrap_or_else(|e| panic!("{e}"));
    let dir = scratch();
    let sock = |n: &str| dir.path().join(n).join("docker.sock");
    let config = dir.path().join("sockbroker.yaml");
    let tenant = |n: &str, access: &str| {
        format!(
            "  {n}:\n    listen: {}\n    uid: 0\n    gid: 0\n    mode: \"0600\"\n    upstream: {}\n    access: {access}\n",
            sock(n).display(),
            engine.sock.display()
        )
    };
    for n in ["a", "b", "ops"] {
        std::fs::create_dir_all(dir.path().join(n)).unwrap();
    }
    let metrics = format!("127.0.0.1:{}", free_port());
    write_config(
        &config,
        &format!(
            "metrics:\n  listen: {metrics}\ntenants:\n{}{}{}",
            tenant("a", "{preset: userns-safe, scope: own}"),
            tenant("b", "{preset: userns-safe, scope: own}"),
            tenant("ops", "{preset: full}"),
        ),
    );
    let broker = Broker::start(&config, &[], &[]);
    for n in ["a", "b", "ops"] {
        wait_socket(&sock(n));
    }
    let a = Tenant {
        name: "a",
        sock: sock("a"),
    };
    let b = Tenant {
        name: "b",
        sock: sock("b"),
    };
    let ops = Tenant {
        name: "ops",
        sock: sock("ops"),
    };
    let since = ops.ok(&["version", "-f", "{{.Server.Os}}"]);
    assert_eq!(since.trim(), "linux");
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();

    // Each tenant runs its own containers.
    let id_a = a
        .ok(&strs(&run_args("web-a", &[], &["sleep", "300"])))
        .trim()
        .to_string();
    let id_b = b
        .ok(&strs(&run_args("web-b", &[], &["sleep", "300"])))
        .trim()
        .to_string();
    b.ok(&strs(&run_args("dead-b", &[], &["true"])));
    a.ok(&strs(&run_args("dead-a", &[], &["true"])));
    let pa = &id_a[..12];
    let pb = &id_b[..12];
    for (t, own) in [(&a, "a"), (&b, "b")] {
        let label = ops.ok(&[
            "container",
            "inspect",
            "-f",
            "{{index .Config.Labels \"io.sockbroker.tenant\"}}",
            &format!("web-{own}"),
        ]);
        assert_eq!(label.trim(), own, "web-{own} is labelled for its tenant");
        let _ = t;
    }

    // Lists: each sees its own, ops sees all.
    assert_eq!(
        a.lines(&["ps", "-a", "--format", "{{.Names}}"]),
        ["dead-a", "web-a"]
    );
    assert_eq!(
        b.lines(&["ps", "-a", "--format", "{{.Names}}"]),
        ["dead-b", "web-b"]
    );
    let all = ops.lines(&["ps", "-a", "--format", "{{.Names}}"]);
    for n in ["dead-a", "dead-b", "web-a", "web-b"] {
        assert!(all.contains(&n.to_string()), "ops sees {n}: {all:?}");
    }
    assert_eq!(
        a.lines(&["ps", "-a", "--filter", "name=web", "--format", "{{.Names}}"]),
        ["web-a"]
    );
    assert!(a
        .lines(&["ps", "-a", "--filter", "label=io.sockbroker.tenant=b", "-q"])
        .is_empty());
    assert_eq!(
        a.lines(&[
            "ps",
            "-a",
            "--filter",
            "label=io.sockbroker.tenant=a",
            "--format",
            "{{.Names}}"
        ]),
        ["dead-a", "web-a"]
    );
    assert!(a
        .lines(&["ps", "-a", "--filter", &format!("id={id_b}"), "-q"])
        .is_empty());
    assert!(a
        .lines(&["ps", "-a", "--filter", "name=web-b", "-q"])
        .is_empty());
    assert_eq!(
        a.lines(&[
            "ps",
            "-a",
            "--filter",
            &format!("id={pa}"),
            "--format",
            "{{.Names}}"
        ]),
        ["web-a"]
    );

    // Inspect by name, ID and prefix: own yes, the other's like a missing one.
    for r in ["web-a", id_a.as_str(), pa] {
        let got = a.ok(&["container", "inspect", "-f", "{{.Name}}", r]);
        assert_eq!(got.trim(), "/web-a", "{r}");
    }
    for r in ["web-b", id_b.as_str(), pb, "no-such-container"] {
        a.missing(
            &["container", "inspect", r],
            &format!("No such container: {r}"),
        );
    }

    // The broker's "missing" answers are word for word the engine's own
    // (the unscoped tenant gets the engine's).
    let ghost = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    for args in [
        vec!["container", "inspect", "ghost"],
        vec!["volume", "inspect", "ghost"],
        vec!["network", "inspect", "ghost"],
        vec!["image", "rm", "ghost:1"],
        vec!["logs", "ghost"],
    ] {
        let (mine, engine) = (a.out(&args), ops.out(&args));
        assert!(!mine.status.success(), "{args:?}");
        assert_eq!(output_text(&mine), output_text(&engine), "{args:?}");
    }
    for path in [
        format!("/exec/{ghost}/json"),
        format!("/containers/{ghost}/json"),
        "/volumes/ghost".to_string(),
    ] {
        // Same status and message (the engine's JSON encoder adds a newline).
        let ((s1, b1), (s2, b2)) = (
            api(&a.sock, "GET", &path, ""),
            api(&ops.sock, "GET", &path, ""),
        );
        assert_eq!((s1, b1.trim()), (s2, b2.trim()), "{path}");
    }

    // Every verb on the other tenant's container is "No such container".
    let cross: Vec<Vec<&str>> = vec![
        vec!["logs", "web-b"],
        vec!["exec", "web-b", "true"],
        vec!["stop", "-t", "1", "web-b"],
        vec!["kill", "web-b"],
        vec!["restart", "web-b"],
        vec!["pause", "web-b"],
        vec!["rename", "web-b", "stolen"],
        vec!["rm", "-f", "web-b"],
        vec!["top", "web-b"],
        vec!["port", "web-b"],
        vec!["update", "--cpu-shares", "512", "web-b"],
        vec!["export", "-o", "/tmp/sockbroker-scope-export.tar", "web-b"],
        vec!["commit", "web-b", "stolen:x"],
        vec!["cp", "web-b:/etc/hostname", "-"],
        vec!["diff", "web-b"],
        vec!["wait", pb],
        vec!["start", "dead-b"],
        vec!["network", "connect", "none", "web-b"],
        vec!["network", "disconnect", "none", "web-b"],
        vec!["rm", "dead-b"],
    ];
    for args in &cross {
        let name = args
            .iter()
            .find(|s| s.contains("-b") || s.starts_with(pb))
            .unwrap()
            .trim_end_matches(":/etc/hostname");
        a.missing(args, &format!("No such container: {name}"));
    }
    // References to the other tenant's objects in a create body.
    for extra in [
        vec!["--volumes-from", "web-b"],
        vec!["--pid", "container:web-b"],
        vec!["--ipc", "container:web-b"],
    ] {
        a.missing(
            &strs(&run_args("sneak", &extra, &["true"])),
            "No such container: web-b",
        );
    }
    let mut c = a.cmd(&[
        "run",
        "--rm",
        "--pull",
        "never",
        "--network",
        "container:web-b",
        IMAGE,
        "true",
    ]);
    c.env("X", "1");
    let o = run_cmd(c, DEADLINE);
    assert!(
        !o.status.success() && output_text(&o).contains("No such container: web-b"),
        "{}",
        output_text(&o)
    );
    // b's containers are untouched.
    let state = ops.ok(&[
        "container",
        "inspect",
        "-f",
        "{{.Name}} {{.State.Status}}",
        "web-b",
        "dead-b",
    ]);
    assert_eq!(
        state.lines().collect::<Vec<_>>(),
        ["/web-b running", "/dead-b exited"]
    );

    // Attached runs: output, stdin, exit code (attach, wait and remove by ID).
    let out = a.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--pull",
        "never",
        IMAGE,
        "echo",
        "attached",
    ]);
    assert_eq!(out.trim(), "attached");
    let mut c = a.cmd(&[
        "run",
        "--rm",
        "-i",
        "--network",
        "none",
        "--pull",
        "never",
        IMAGE,
        "wc",
        "-l",
    ]);
    c.stdin(std::process::Stdio::piped());
    let mut child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        for i in 0..1000 {
            writeln!(stdin, "{i}").unwrap();
        }
    }
    let o = wait_output(child, DEADLINE);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "1000",
        "{}",
        output_text(&o)
    );
    let o = a.out(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--pull",
        "never",
        IMAGE,
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", output_text(&o));

    // Own containers: logs, exec, cp, export, rename, stop/start, rm.
    a.ok(&["exec", "web-a", "sh", "-c", "echo hello > /tmp/x"]);
    assert_eq!(a.ok(&["exec", "web-a", "cat", "/tmp/x"]).trim(), "hello");
    let copied = dir.path().join("x");
    a.ok(&["cp", "web-a:/tmp/x", copied.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&copied).unwrap().trim(), "hello");
    // And into it (HEAD then PUT .../archive, the body streamed).
    let big = dir.path().join("big");
    std::fs::write(&big, payload(3 << 20, 7)).unwrap();
    a.ok(&["cp", big.to_str().unwrap(), "web-a:/tmp/big"]);
    assert_eq!(
        a.ok(&["exec", "web-a", "wc", "-c", "/tmp/big"])
            .split_whitespace()
            .next(),
        Some("3145728")
    );
    a.missing(
        &["cp", big.to_str().unwrap(), "web-b:/tmp/big"],
        "No such container: web-b",
    );
    let tar = dir.path().join("a.tar");
    a.ok(&["export", "-o", tar.to_str().unwrap(), pa]);
    assert!(std::fs::metadata(&tar).unwrap().len() > 1000);
    a.ok(&["logs", "web-a"]);
    a.ok(&["rename", "web-a", "web-a2"]);
    a.ok(&["stop", "-t", "1", "web-a2"]);
    a.ok(&["start", &id_a]);
    assert_eq!(a.lines(&["ps", "--format", "{{.Names}}"]), ["web-a2"]);

    // Names are one namespace on the engine: a taken name is a conflict,
    // but the holder's ID is not told.
    for args in [
        vec!["rename", "web-a2", "web-b"],
        vec!["create", "--network", "none", "--name", "web-b", IMAGE],
    ] {
        let o = a.out(&args);
        let t = output_text(&o);
        assert!(!o.status.success() && t.contains("already in use"), "{t}");
        assert!(!t.contains(&id_b[..12]), "{t}");
    }
    // A shared network's inspect lists no one's containers.
    let members = a.ok(&["network", "inspect", "-f", "{{len .Containers}}", "none"]);
    assert_eq!(members.trim(), "0");
    assert_ne!(
        ops.ok(&["network", "inspect", "-f", "{{len .Containers}}", "none"])
            .trim(),
        "0"
    );

    // Volumes.
    a.ok(&["volume", "create", "va"]);
    b.ok(&["volume", "create", "vb"]);
    assert_eq!(a.lines(&["volume", "ls", "-q"]), ["va"]);
    assert_eq!(b.lines(&["volume", "ls", "-q"]), ["vb"]);
    a.missing(&["volume", "inspect", "vb"], "no such volume");
    a.missing(&["volume", "rm", "vb"], "no such volume");
    a.missing(
        &strs(&run_args("sneak2", &["-v", "vb:/data"], &["true"])),
        "no such volume",
    );
    // A named volume that does not exist yet is created for the tenant.
    a.ok(&strs(&run_args(
        "with-vol",
        &["-v", "fresh-a:/data"],
        &["true"],
    )));
    let label = ops.ok(&[
        "volume",
        "inspect",
        "-f",
        "{{index .Labels \"io.sockbroker.tenant\"}}",
        "fresh-a",
    ]);
    assert_eq!(label.trim(), "a");
    a.ok(&["volume", "rm", "va"]);
    assert!(ops
        .lines(&["volume", "ls", "-q"])
        .contains(&"vb".to_string()));

    // Prunes act on the tenant's own objects only.
    a.ok(&["container", "prune", "-f"]);
    let names = ops.lines(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(names.contains(&"dead-b".to_string()), "{names:?}");
    assert!(!names.contains(&"dead-a".to_string()), "{names:?}");
    a.ok(&["volume", "prune", "-f"]);
    let vols = ops.lines(&["volume", "ls", "-q"]);
    assert!(vols.contains(&"vb".to_string()), "{vols:?}");
    assert!(!vols.contains(&"fresh-a".to_string()), "{vols:?}");

    // Events and system df show the tenant's own objects only.
    let now = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1)
    .to_string();
    let ev = a.ok(&[
        "events",
        "--since",
        &t0,
        "--until",
        &now,
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.ID}} {{.Actor.Attributes.name}}",
    ]);
    assert!(
        ev.contains("container start") && ev.contains("web-a"),
        "{ev}"
    );
    for other in ["web-b", "dead-b", "vb", &id_b[..12]] {
        assert!(!ev.contains(other), "a's events show b's {other}:\n{ev}");
    }
    // Volume and network events carry no labels (Docker 20.10): not even the
    // tenant's own show (docs/security.md).
    assert!(!ev.lines().any(|l| l.starts_with("volume ")), "{ev}");
    let df = a.ok(&["system", "df", "-v"]);
    assert!(df.contains("web-a2"), "{df}");
    assert!(!df.contains("web-b") && !df.contains("vb"), "{df}");

    // Exec instances belong to their container's tenant.
    let (status, created) = api(
        &b.sock,
        "POST",
        "/containers/web-b/exec",
        r#"{"Cmd":["true"]}"#,
    );
    assert_eq!(status, 201, "{created}");
    let exec: serde_json::Value = serde_json::from_str(&created).unwrap();
    let exec = exec["Id"].as_str().unwrap();
    for (method, path) in [
        ("GET", format!("/exec/{exec}/json")),
        ("POST", format!("/exec/{exec}/resize?h=1&w=1")),
    ] {
        let (status, body) = api(&a.sock, method, &path, "");
        assert_eq!(
            (status, body.trim()),
            (
                404,
                format!("{{\"message\":\"No such exec instance: {exec}\"}}").as_str()
            ),
            "{method} {path}"
        );
    }
    assert_eq!(
        api(&b.sock, "GET", &format!("/exec/{exec}/json"), "").0,
        200
    );

    // docker info counts the tenant's own containers only.
    let own = a.lines(&["ps", "-aq"]).len().to_string();
    assert_eq!(a.ok(&["info", "-f", "{{.Containers}}"]).trim(), own);
    assert_ne!(ops.ok(&["info", "-f", "{{.Containers}}"]).trim(), own);

    // Images are shared; a tenant removes only its own.
    a.ok(&["image", "inspect", IMAGE]);
    let o = a.out(&["rmi", IMAGE]);
    assert!(
        !o.status.success() && output_text(&o).contains("images are shared"),
        "{}",
        output_text(&o)
    );
    a.ok(&["commit", "web-a2", "a-img:1"]);
    a.ok(&["rmi", "a-img:1"]);
    // A build is labelled for its tenant: its own to remove, not the other's.
    let ctx = dir.path().join("build");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {IMAGE}\nLABEL io.sockbroker.tenant=b\nRUN echo built > /built\n"),
    )
    .unwrap();
    let mut c = a.cmd(&[
        "build",
        "-q",
        "--network",
        "none",
        "-t",
        "a-built:1",
        ctx.to_str().unwrap(),
    ]);
    c.env("DOCKER_BUILDKIT", "0");
    let o = run_cmd(c, Duration::from_secs(180));
    assert!(o.status.success(), "{}", output_text(&o));
    let label = ops.ok(&[
        "image",
        "inspect",
        "-f",
        "{{index .Config.Labels \"io.sockbroker.tenant\"}}",
        "a-built:1",
    ]);
    assert_eq!(
        label.trim(),
        "a",
        "the build's labels override the Dockerfile's"
    );
    let o = b.out(&["rmi", "a-built:1"]);
    assert!(
        !o.status.success() && output_text(&o).contains("images are shared"),
        "{}",
        output_text(&o)
    );
    a.ok(&["rmi", "a-built:1"]);
    let o = a.out(&[
        "commit",
        "--change",
        "LABEL io.sockbroker.tenant=b",
        "web-a2",
        "forged:1",
    ]);
    assert!(
        !o.status.success()
            && output_text(&o).contains("may not set the io.sockbroker.tenant label"),
        "{}",
        output_text(&o)
    );

    // Swarm is refused; the unscoped tenant still sees and acts on everything.
    let o = a.out(&["node", "ls"]);
    assert!(!o.status.success(), "{}", output_text(&o));
    assert_eq!(
        ops.ok(&["container", "inspect", "-f", "{{.State.Status}}", "web-b"])
            .trim(),
        "running"
    );

    compose(&a, &b, &ops, dir.path());

    let logs = broker.logs();
    assert!(
        logs.contains("not owned"),
        "the audit lines name the refusals"
    );
    // Isolation at work, apart from policy denials, in the metrics.
    let (status, exposition) = http_get(&metrics, "/metrics").unwrap();
    assert_eq!(status, 200);
    let series = |t: &str, reason: &str| {
        metric_value(
            &exposition,
            &format!("sockbroker_requests_total{{reason=\"{reason}\",tenant=\"{t}\",verdict=\"denied\"}}"),
        )
        .unwrap_or(0.0)
    };
    assert!(series("a", "not_owned") >= 30.0, "{exposition}");
    assert!(series("b", "not_owned") >= 1.0, "{exposition}");
    // Own containers are removed through the scoped tenant itself.
    a.ok(&["rm", "-f", "web-a2"]);
    assert!(a.lines(&["ps", "-aq"]).is_empty());
    for n in ["web-b", "dead-b"] {
        let _ = ops.out(&["rm", "-f", n]);
    }
    drop(engine);
}

/// docker-compose 1.29 through a scoped tenant: up, ps, logs, down -v.
fn compose(a: &Tenant, b: &Tenant, ops: &Tenant, dir: &Path) {
    if !have("docker-compose", "version", "docker-compose") {
        return;
    }
    let project = dir.join("proj");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("docker-compose.yml"),
        format!(
            "version: \"3.7\"\nservices:\n  app:\n    image: {IMAGE}\n    network_mode: none\n    command: [\"sh\", \"-c\", \"echo compose-says-hi; sleep 300\"]\n    volumes: [\"data:/data\"]\n  side:\n    image: {IMAGE}\n    network_mode: none\n    command: [\"sleep\", \"300\"]\nvolumes:\n  data: {{}}\n"
        ),
    )
    .unwrap();
    let dc = |args: &[&str]| {
        let mut c = Command::new("docker-compose");
        c.current_dir(&project)
            .env("DOCKER_HOST", format!("unix://{}", a.sock.display()))
            .env("COMPOSE_PROJECT_NAME", "scoped")
            .args(args);
        run_ok(c, Duration::from_secs(180))
    };
    dc(&["up", "-d"]);
    let ps = dc(&["ps"]);
    assert!(
        ps.contains("scoped_app_1") && ps.contains("scoped_side_1"),
        "{ps}"
    );
    wait_until("compose logs", Duration::from_secs(30), || {
        dc(&["logs", "app"]).contains("compose-says-hi")
    });
    for (kind, name, field) in [
        ("container", "scoped_app_1", ".Config.Labels"),
        ("volume", "scoped_data", ".Labels"),
    ] {
        let format = format!("{{{{index {field} \"io.sockbroker.tenant\"}}}}");
        let label = ops.ok(&[kind, "inspect", "-f", &format, name]);
        assert_eq!(label.trim(), "a", "{kind} {name}");
    }
    assert!(b
        .lines(&["ps", "-a", "-q", "--filter", "name=scoped"])
        .is_empty());
    b.missing(
        &["container", "inspect", "scoped_app_1"],
        "No such container: scoped_app_1",
    );
    assert!(b
        .lines(&["volume", "ls", "-q"])
        .iter()
        .all(|v| v != "scoped_data"));
    dc(&["down", "-v"]);
    assert!(ops
        .lines(&["ps", "-a", "-q", "--filter", "name=scoped"])
        .is_empty());
    assert!(ops
        .lines(&["volume", "ls", "-q"])
        .iter()
        .all(|v| v != "scoped_data"));
    assert!(
        ops.lines(&["network", "ls", "--format", "{{.Name}}"])
            .iter()
            .all(|n| !n.starts_with("scoped")),
        "compose created no network"
    );
}

/// One raw API request (HTTP/1.0: the answer ends with the connection);
/// (status, body).
fn api(sock: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}
