//! The Kubernetes manifests in deploy/kubernetes: consistent with each other
//! and the embedded config, and valid against the Kubernetes schemas.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sockbroker_e2e::*;
use sockbroker_e2e::{output_text as text, run_cmd as run, run_ok as ok};

use super::*;

type Yaml = serde_yaml::Value;

fn y<'a>(v: &'a Yaml, path: &str) -> &'a Yaml {
    let mut cur = v;
    for k in path.split('.') {
        cur = match k.parse::<usize>() {
            Ok(i) => cur.get(i),
            Err(_) => cur.get(k),
        }
        .unwrap_or_else(|| panic!("no {path} (at {k}) in {v:?}"));
    }
    cur
}

fn ys<'a>(v: &'a Yaml, path: &str) -> &'a str {
    y(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string"))
}

fn yseq<'a>(v: &'a Yaml, path: &str) -> &'a Vec<Yaml> {
    y(v, path)
        .as_sequence()
        .unwrap_or_else(|| panic!("{path} is not a list"))
}

/// Every document of every manifest in deploy/kubernetes (kustomization excluded), by kind.
fn manifests() -> BTreeMap<String, Yaml> {
    let dir = deploy("kubernetes");
    let kust: Yaml = serde_yaml::from_str(&read(&dir.join("kustomization.yaml"))).unwrap();
    let listed: BTreeSet<String> = yseq(&kust, "resources")
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let mut files = BTreeSet::new();
    let mut by_kind = BTreeMap::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if !name.ends_with(".yaml") || name == "kustomization.yaml" {
            continue;
        }
        files.insert(name.clone());
        let text = read(&dir.join(&name));
        // Documents are separated by `---` lines.
        let mut docs = vec![String::new()];
        for l in text.lines() {
            if l.trim_end() == "---" {
                docs.push(String::new());
            } else {
                docs.last_mut().unwrap().push_str(&format!("{l}\n"));
            }
        }
        for doc in docs.iter().filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        }) {
            let v: Yaml = serde_yaml::from_str(doc).unwrap_or_else(|e| panic!("{name}: {e}"));
            let kind = ys(&v, "kind").to_string();
            assert!(
                by_kind.insert(kind.clone(), v).is_none(),
                "two {kind}s in deploy/kubernetes"
            );
        }
    }
    assert_eq!(files, listed, "kustomization.yaml must list every manifest");
    by_kind
}

/// The port of `metrics.listen` (`HOST:PORT`) in a broker config.
fn metrics_port(cfg: &Yaml) -> (String, u16) {
    let listen = ys(cfg, "metrics.listen");
    let (host, port) = listen.rsplit_once(':').unwrap();
    (host.to_string(), port.parse().unwrap())
}

/// The essentials of the DaemonSet, ConfigMap and metrics Service, checked
/// against each other and against the embedded config, which `sockbroker check`
/// must accept: probes on /readyz and /healthz at metrics.listen's port, the
/// ConfigMap mounted as a directory (no subPath: it would never update) where
/// --config points, the socket directory a hostPath at the same path as every
/// tenant's listen, the upstream mounted, requests set, capabilities minimal,
/// a grace period above the drain timeout, and a Service selecting the pods.
#[test]
fn kubernetes_manifests_fit_together() {
    let m = manifests();
    for (kind, api) in [
        ("Namespace", "v1"),
        ("ConfigMap", "v1"),
        ("DaemonSet", "apps/v1"),
        ("Service", "v1"),
    ] {
        let v = m.get(kind).unwrap_or_else(|| panic!("no {kind}"));
        assert_eq!(ys(v, "apiVersion"), api, "{kind}");
    }
    let ns = ys(&m["Namespace"], "metadata.name");
    for kind in ["ConfigMap", "DaemonSet", "Service"] {
        assert_eq!(ys(&m[kind], "metadata.namespace"), ns, "{kind} namespace");
    }

    // The embedded config is valid for the real binary.
    let cm = &m["ConfigMap"];
    let data = y(cm, "data").as_mapping().unwrap();
    assert_eq!(data.len(), 1, "one config file in the ConfigMap");
    let (key, cfg_text) = data.iter().next().unwrap();
    let key = key.as_str().unwrap();
    let cfg_text = cfg_text.as_str().unwrap();
    let dir = scratch();
    let cfg_path = dir.path().join(key);
    std::fs::write(&cfg_path, cfg_text).unwrap();
    let mut c = Command::new(broker_bin());
    c.arg("check").arg("--config").arg(&cfg_path);
    ok(c, DEADLINE);
    let cfg: Yaml = serde_yaml::from_str(cfg_text).unwrap();
    let (host, port) = metrics_port(&cfg);
    assert!(
        host == "0.0.0.0" || host == "[::]",
        "metrics.listen {host}: the kubelet probes the pod IP, not loopback"
    );

    let ds = &m["DaemonSet"];
    let labels = y(ds, "spec.template.metadata.labels");
    assert_eq!(y(ds, "spec.selector.matchLabels"), labels);
    let pod = y(ds, "spec.template.spec");
    let containers = yseq(pod, "containers");
    assert_eq!(containers.len(), 1);
    let ctr = &containers[0];
    let volumes = yseq(pod, "volumes");
    let volume = |name: &str| {
        volumes
            .iter()
            .find(|v| ys(v, "name") == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
    };
    let mounts = yseq(ctr, "volumeMounts");

    // --config points into the ConfigMap volume, mounted as a directory.
    let args: Vec<&str> = yseq(ctr, "args")
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "run");
    let at = args
        .iter()
        .position(|a| *a == "--config")
        .expect("--config");
    let config_arg = Path::new(args[at + 1]);
    let cfg_mount = mounts
        .iter()
        .find(|mt| {
            y(volume(ys(mt, "name")), "configMap")
                .get("name")
                .and_then(|n| n.as_str())
                == Some(ys(cm, "metadata.name"))
        })
        .expect("the ConfigMap is mounted");
    assert!(
        cfg_mount.get("subPath").is_none(),
        "subPath mounts never see ConfigMap updates"
    );
    assert_eq!(
        config_arg.parent().unwrap(),
        Path::new(ys(cfg_mount, "mountPath"))
    );
    assert_eq!(config_arg.file_name().unwrap().to_str().unwrap(), key);

    // Every listen path is under a hostPath mounted at the same path as on the node.
    let host_mount = |p: &Path| {
        mounts.iter().find(|mt| {
            let v = volume(ys(mt, "name"));
            let mp = Path::new(ys(mt, "mountPath"));
            v.get("hostPath").is_some() && p.starts_with(mp)
        })
    };
    let tenants = y(&cfg, "tenants").as_mapping().unwrap();
    assert!(!tenants.is_empty());
    for (name, t) in tenants {
        let listen = Path::new(ys(t, "listen"));
        let mt =
            host_mount(listen).unwrap_or_else(|| panic!("{name:?}: {listen:?} not on a hostPath"));
        assert_eq!(
            ys(volume(ys(mt, "name")), "hostPath.path"),
            ys(mt, "mountPath"),
            "tenant sockets must have the same path in the pod and on the node"
        );
        assert!(mt.get("readOnly").and_then(|r| r.as_bool()) != Some(true));
        let upstream = t
            .get("upstream")
            .or_else(|| cfg.get("defaults").and_then(|d| d.get("upstream")))
            .and_then(|u| u.as_str())
            .expect("an upstream");
        assert!(
            host_mount(Path::new(upstream)).is_some(),
            "upstream {upstream} is not mounted from the node"
        );
    }

    // Probes and the port.
    let ports = yseq(ctr, "ports");
    let port_name = ports
        .iter()
        .find(|p| y(p, "containerPort").as_u64() == Some(port as u64))
        .map(|p| ys(p, "name"))
        .unwrap_or_else(|| panic!("no containerPort {port}"));
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let g = y(ctr, &format!("{probe}.httpGet"));
        assert_eq!(ys(g, "path"), path, "{probe}");
        let p = y(g, "port");
        assert!(
            p.as_u64() == Some(port as u64) || p.as_str() == Some(port_name),
            "{probe} port {p:?} is not metrics.listen's {port}"
        );
    }
    for r in ["cpu", "memory"] {
        assert!(
            y(ctr, "resources.requests").get(r).is_some(),
            "requests.{r}"
        );
    }
    let caps = |k: &str| -> BTreeSet<String> {
        yseq(ctr, &format!("securityContext.capabilities.{k}"))
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(caps("drop"), BTreeSet::from(["ALL".to_string()]));
    assert_eq!(
        caps("add"),
        BTreeSet::from(["CHOWN".to_string(), "FOWNER".to_string()])
    );
    assert_eq!(
        y(ctr, "securityContext.allowPrivilegeEscalation").as_bool(),
        Some(false)
    );
    assert!(pod.get("hostUsers").and_then(|h| h.as_bool()) != Some(false));
    // Grace period above the largest drain timeout (30s unless set).
    let mut drain = 30u64;
    for d in std::iter::once(cfg.get("defaults"))
        .chain(tenants.values().map(Some))
        .flatten()
    {
        if let Some(s) = d.get("drain_timeout").and_then(|s| s.as_str()) {
            let secs: u64 = s.trim_end_matches('s').parse().expect("drain_timeout in s");
            drain = drain.max(secs);
        }
    }
    assert!(
        y(pod, "terminationGracePeriodSeconds").as_u64().unwrap() > drain,
        "terminationGracePeriodSeconds must exceed drain_timeout {drain}s"
    );

    // The metrics Service selects the pods and targets the metrics port.
    let svc = &m["Service"];
    for (k, v) in y(svc, "spec.selector").as_mapping().unwrap() {
        assert_eq!(labels.get(k.as_str().unwrap()), Some(v), "Service selector");
    }
    let sp = &yseq(svc, "spec.ports")[0];
    let tp = y(sp, "targetPort");
    assert!(tp.as_u64() == Some(port as u64) || tp.as_str() == Some(port_name));
    assert_eq!(
        y(svc, "spec.publishNotReadyAddresses").as_bool(),
        Some(true),
        "a broker with a tenant down is not ready, and its metrics matter then"
    );
}

/// Schema validation of the manifests with `kubernetes-validate --strict` (PyPI;
/// ships the Kubernetes JSON schemas, works offline). Found at
/// `$SB_KUBERNETES_VALIDATE`, else where tests/setup.sh installs it, else on PATH.
#[test]
fn kubernetes_manifests_pass_schema_validation() {
    let prog = std::env::var("SB_KUBERNETES_VALIDATE").unwrap_or_else(|_| {
        let venv = "/opt/sockbroker-ci/kv/bin/kubernetes-validate";
        if Path::new(venv).exists() {
            venv.into()
        } else {
            "kubernetes-validate".into()
        }
    });
    if !have(
        &prog,
        "--version",
        "tests/setup.sh installs it in a venv (or pip install kubernetes-validate==1.37.0 and set SB_KUBERNETES_VALIDATE)",
    ) {
        return;
    }
    let dir = deploy("kubernetes");
    let mut c = Command::new(&prog);
    c.arg("--strict");
    for f in [
        "namespace.yaml",
        "configmap.yaml",
        "daemonset.yaml",
        "service.yaml",
    ] {
        c.arg(dir.join(f));
    }
    let o = run(c, Duration::from_secs(120));
    assert!(o.status.success(), "kubernetes-validate:\n{}", text(&o));
    assert!(!text(&o).contains("ERROR"), "{}", text(&o));
}
