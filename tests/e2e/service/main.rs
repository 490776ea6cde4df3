//! Running sockbroker as a service (one test binary, a module per subject): the sd_notify protocol spoken to a real
//! notify socket, the systemd units in deploy/systemd (systemd-analyze verify,
//! the seccomp filter against the syscalls the broker really makes, the broker
//! as a non-root uid holding only CAP_CHOWN + CAP_FOWNER), the Kubernetes
//! manifests in deploy/kubernetes, the Grafana dashboard in deploy/grafana, and
//! the container image in deploy/container built and run on a network-less engine.
//!
//! Tests that need a tool (systemd-analyze, strace, promtool,
//! kubernetes-validate, dockerd) print `SKIPPED: …` and pass when it is absent,
//! and fail under `CI=true`; tests/setup.sh installs them.

use std::path::{Path, PathBuf};

use sockbroker_e2e::*;

mod container;
mod grafana;
mod kubernetes;
mod notify;
mod privileges;
mod seccomp;
mod units;

/// Host uid/gid of root in `--userns-remap=default` containers (dockremap 231072:65536).
const ROOTMAP: u32 = 231072;

fn deploy(rel: &str) -> PathBuf {
    workspace().join("deploy").join(rel)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}
