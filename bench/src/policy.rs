//! The policy group: HTTP/1.1 requests to a Docker-like upstream through the
//! byte relay, the policy relay's access modes and HAProxy.

use crate::clients::{create_request, http_requests, HttpClient, CREATE_BODY, PING_REQUEST};
use crate::groups::{run_alternating, Scenario};
use crate::opts::Opts;
use crate::table::Row;
use crate::target::{log_path, spawn_broker, tenant_path, wait_accepting, Kind, Target};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::procs::Proc;

/// The policy group's broker tenants: name (also the socket's directory),
/// the column it fills, and its `access` mapping. One line per access mode; a
/// new mode (e.g. a scoped tenant, `scope: own`) is a new entry and a `Kind`.
const POLICY_TENANTS: [(&str, Kind, &str); 3] = [
    ("full", Kind::Broker, "access: full"),
    ("read-only", Kind::ReadOnly, "access: read-only"),
    ("userns-safe", Kind::UsernsSafe, "access: userns-safe"),
];

/// The policy group's broker config: one tenant per entry of
/// [`POLICY_TENANTS`], all relaying to the Docker-like upstream; otherwise as
/// `broker_config` (no metrics section).
pub(crate) fn policy_config(dir: &Path, upstream: &Path) -> String {
    let mut y = format!(
        "defaults:\n  upstream: {}\n  mode: \"0660\"\n  max_connections: 100000\n  drain_timeout: 2s\ntenants:\n",
        upstream.display()
    );
    for (name, _, access) in POLICY_TENANTS {
        let _ = write!(
            y,
            "  {name}:\n    listen: {}\n    uid: 0\n    gid: 0\n",
            tenant_path(dir, name).display()
        );
        for line in access.lines() {
            let _ = writeln!(y, "    {line}");
        }
    }
    y
}

/// bench/haproxy.cfg: HAProxy set up as docker-socket-proxy sets it up.
const HAPROXY_CFG: &str = include_str!("../haproxy.cfg");

/// `haproxy -v`'s first line, e.g. "HAProxy version 2.6.12-1+deb12u4 2026/10/17".
pub(crate) fn haproxy_version(bin: &str) -> Option<String> {
    let out = Command::new(bin).arg("-v").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next()?.trim();
    let line = line.split(" - ").next().unwrap_or(line);
    (out.status.success() && !line.is_empty()).then(|| line.to_owned())
}

/// HAProxy in front of `upstream`, listening on a socket in `dir`; `None`
/// (with a note) when it cannot be started.
fn start_haproxy(bin: &str, dir: &Path, upstream: &Path) -> Option<Target> {
    haproxy_version(bin).or_else(|| {
        eprintln!(
            "  {bin} -v failed: no HAProxy column (install Debian's haproxy, or --haproxy PATH)"
        );
        None
    })?;
    let hdir = dir.join("haproxy");
    std::fs::create_dir_all(&hdir).ok()?;
    let listen = hdir.join("docker.sock");
    let cfg = HAPROXY_CFG
        .replace("@LISTEN@", &listen.display().to_string())
        .replace("@UPSTREAM@", &upstream.display().to_string())
        .replace("@PIDFILE@", &hdir.join("haproxy.pid").display().to_string());
    let cfg_path = hdir.join("haproxy.cfg");
    std::fs::write(&cfg_path, cfg).ok()?;
    let log = std::fs::File::create(log_path(&hdir)).ok()?;
    let proc = Proc::spawn(
        "haproxy",
        Command::new(bin)
            .arg("-f")
            .arg(&cfg_path)
            // Foreground: the pid the bench ends is HAProxy's.
            .arg("-db")
            .stdout(log.try_clone().ok()?)
            .stderr(log),
    );
    wait_accepting(&listen, "haproxy", Duration::from_secs(20));
    Some(Target {
        kind: Kind::Haproxy,
        socat: false,
        path: listen,
        proc: Some(Rc::new(proc)),
    })
}

/// Keep-alive HTTP requests: direct, byte relay (`access: full`), `read-only`
/// and `userns-safe` tenants of one broker process, and HAProxy, in
/// alternating rounds.
pub(crate) fn policy_group(opts: &Opts, dir: &Path, upstream: &Path) -> Vec<Row> {
    let tdir = dir.join("broker-policy");
    std::fs::create_dir_all(&tdir).unwrap();
    let config = tdir.join("sockbroker.yaml");
    std::fs::write(&config, policy_config(&tdir, upstream)).unwrap();
    let proc = Rc::new(spawn_broker(opts, &config, &log_path(&tdir)));
    let tenants: Vec<Target> = POLICY_TENANTS
        .iter()
        .map(|&(name, kind, _)| {
            let path = tenant_path(&tdir, name);
            wait_accepting(&path, "sockbroker", Duration::from_secs(20));
            Target {
                kind,
                socat: false,
                path,
                proc: Some(proc.clone()),
            }
        })
        .collect();
    let tenant = |kind: Kind| tenants.iter().find(|t| t.kind == kind).expect("tenant");
    let direct = Target {
        kind: Kind::Direct,
        socat: false,
        path: upstream.to_owned(),
        proc: None,
    };
    let haproxy = opts
        .haproxy
        .as_deref()
        .and_then(|bin| start_haproxy(bin, dir, upstream));

    let ping: Arc<[u8]> = PING_REQUEST.into();
    let create = create_request(CREATE_BODY);
    // The policies are in force: read-only refuses any create, userns-safe a
    // privileged one, HAProxy a section it does not allow.
    let privileged = create_request(r#"{"Image":"x","HostConfig":{"Privileged":true}}"#);
    HttpClient::connect(&tenant(Kind::ReadOnly).path).exchange(&create, 403);
    HttpClient::connect(&tenant(Kind::UsernsSafe).path).exchange(&privileged, 403);
    HttpClient::connect(&tenant(Kind::UsernsSafe).path).exchange(&create, 201);
    eprintln!("  read-only refuses container create, userns-safe a privileged one (403); userns-safe admits the bench's create");
    if let Some(h) = &haproxy {
        HttpClient::connect(&h.path).exchange(SECRETS_REQUEST, 403);
        HttpClient::connect(&h.path).exchange(&create, 201);
        eprintln!("  haproxy refuses GET /secrets (403), admits the bench's create");
    }

    let dur = opts.duration;
    let mut sc: Vec<Scenario<'_>> = Vec::new();
    for c in [1usize, 8] {
        let s = if c == 1 { "conn" } else { "conns" };
        let req = ping.clone();
        sc.push((
            "lat",
            format!("GET /_ping, {c} keep-alive {s}"),
            "req/s",
            true,
            Box::new(move |p| http_requests(p, c, dur, req.clone(), 200)),
        ));
    }
    let mut all: Vec<&Target> = vec![&direct];
    all.extend(tenants.iter());
    all.extend(haproxy.as_ref());
    let mut rows = run_alternating(opts, &all, sc);
    // read-only refuses container create (403): it has no column here.
    let mut create_sc: Vec<Scenario<'_>> = Vec::new();
    create_sc.push((
        "lat",
        format!(
            "POST /containers/create ({} B JSON body), 1 keep-alive conn",
            CREATE_BODY.len()
        ),
        "req/s",
        true,
        Box::new(move |p| http_requests(p, 1, dur, create.clone(), 201)),
    ));
    all.retain(|t| t.kind != Kind::ReadOnly);
    rows.extend(run_alternating(opts, &all, create_sc));
    rows
}

/// A request for an API section the HAProxy config does not allow.
const SECRETS_REQUEST: &[u8] =
    b"GET /v1.41/secrets HTTP/1.1\r\nHost: api.moby.localhost\r\nUser-Agent: Docker-Client/20.10.24 (linux)\r\n\r\n";
