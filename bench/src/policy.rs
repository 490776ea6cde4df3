//! The policy group: HTTP/1.1 requests to a Docker-like upstream through the
//! byte relay, the policy relay's access modes and HAProxy.

use crate::clients::{create_request, http_requests, HttpClient, CREATE_BODY, PING_REQUEST};
use crate::groups::{run_alternating, Scenario};
use crate::opts::Opts;
use crate::table::Row;
use crate::target::{log_path, spawn_broker, tenant_path, wait_accepting, Kind, Target};
use std::fmt::Write as _;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// The policy group's broker config: one tenant per access mode, all relaying
/// to the Docker-like upstream; otherwise as `broker_config` (no metrics section).
pub(crate) fn policy_config(dir: &Path, upstream: &Path) -> String {
    let mut y = format!(
        "defaults:\n  upstream: {}\n  mode: \"0660\"\n  max_connections: 100000\n  drain_timeout: 2s\ntenants:\n",
        upstream.display()
    );
    for access in ["full", "read-only", "userns-safe"] {
        let _ = writeln!(
            y,
            "  {access}:\n    listen: {}\n    uid: 0\n    gid: 0\n    access: {access}",
            tenant_path(dir, access).display()
        );
    }
    y
}

/// Keep-alive HTTP requests: direct, byte relay (`access: full`), `read-only`
/// and `userns-safe` tenants of one broker process, in alternating rounds.
pub(crate) fn policy_group(opts: &Opts, dir: &Path, upstream: &Path) -> Vec<Row> {
    let tdir = dir.join("broker-policy");
    std::fs::create_dir_all(&tdir).unwrap();
    let config = tdir.join("sockbroker.yaml");
    std::fs::write(&config, policy_config(&tdir, upstream)).unwrap();
    let proc = Rc::new(spawn_broker(opts, &config, &log_path(&tdir)));
    let tenant = |kind: Kind, name: &str| {
        let path = tenant_path(&tdir, name);
        wait_accepting(&path, "sockbroker", Duration::from_secs(20));
        Target {
            kind,
            socat: false,
            path,
            proc: Some(proc.clone()),
        }
    };
    let direct = Target {
        kind: Kind::Direct,
        socat: false,
        path: upstream.to_owned(),
        proc: None,
    };
    let full = tenant(Kind::Broker, "full");
    let read_only = tenant(Kind::ReadOnly, "read-only");
    let userns_safe = tenant(Kind::UsernsSafe, "userns-safe");

    let ping: Arc<[u8]> = PING_REQUEST.into();
    let create = create_request(CREATE_BODY);
    // The policies are in force: read-only refuses any create, userns-safe a privileged one.
    let privileged = create_request(r#"{"Image":"x","HostConfig":{"Privileged":true}}"#);
    HttpClient::connect(&read_only.path).exchange(&create, 403);
    HttpClient::connect(&userns_safe.path).exchange(&privileged, 403);
    HttpClient::connect(&userns_safe.path).exchange(&create, 201);
    eprintln!("  read-only refuses container create, userns-safe a privileged one (403); userns-safe admits the bench's create");

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
    let mut rows = run_alternating(opts, &[&direct, &full, &read_only, &userns_safe], sc);
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
    rows.extend(run_alternating(
        opts,
        &[&direct, &full, &userns_safe],
        create_sc,
    ));
    rows
}
