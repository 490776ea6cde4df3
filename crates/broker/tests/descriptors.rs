//! Each tenant listener holds one descriptor: 10,000 tenants must fit in
//! 20,000 (the descriptor store once kept a duplicate of each, and the
//! bench's 10,000-tenant start failed with `EMFILE`). Its own test binary,
//! with one test, because it counts the process's descriptors.

use std::collections::BTreeMap;

use sockbroker::config::{self, SubIdFiles, TenantSpec};
use sockbroker::metrics::Metrics;
use sockbroker::supervisor::{Stop, Supervisor};

const N: usize = 40;

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn tenants(dir: &std::path::Path) -> BTreeMap<String, TenantSpec> {
    let (uid, gid) = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    let mut y = format!(
        "defaults:\n  upstream: {}\ntenants:\n",
        dir.join("upstream.sock").display()
    );
    for i in 0..N {
        y.push_str(&format!(
            "  t{i}:\n    listen: {}\n    uid: {uid}\n    gid: {gid}\n",
            dir.join(format!("t{i}")).join("s.sock").display()
        ));
    }
    config::parse(&y, &dir.join("t.yaml"), &SubIdFiles::default())
        .unwrap()
        .tenants
}

#[tokio::test]
async fn each_tenant_listener_holds_one_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let specs = tenants(dir.path());
    let mut sup = Supervisor::new(Metrics::new());
    // One tenant first, so that the runtime's and the supervisor's own
    // descriptors (probes, the upstream check) exist before counting.
    let one: BTreeMap<_, _> = specs
        .iter()
        .take(1)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    sup.apply(&one);
    let before = open_descriptors();
    let s = sup.apply(&specs);
    assert_eq!((s.added, s.down), (N - 1, 0));
    let added = open_descriptors() - before;
    assert!(
        added <= N - 1 + 2,
        "{added} descriptors for {} new tenants: more than one each",
        N - 1
    );
    sup.shutdown(Stop::RemoveSockets).await;
}
