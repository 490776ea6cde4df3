//! The reconcile plan: a pure function of (running tenants, desired tenants).
//!
//! No sockets, no clocks, no I/O: [`plan`] only compares specs, so every kind of
//! edit is covered by table-driven unit tests below. The supervisor applies the
//! result in the order removals → changes → additions, so a path freed by a
//! removed tenant can be taken by another in the same reload.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use crate::config::TenantSpec;

/// What one reload must do. Tenants present in neither list are untouched:
/// same listener, same inode, same connections, same counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// New tenants: bind their sockets.
    pub to_add: Vec<TenantSpec>,
    /// Existing tenants whose spec differs; how is in [`Change`].
    pub to_change: Vec<Change>,
    /// Tenants no longer in the file: stop accepting, unlink, drain.
    pub to_remove: Vec<String>,
}

impl Plan {
    /// True when the reload has nothing to do.
    pub fn is_empty(&self) -> bool {
        self.to_add.is_empty() && self.to_change.is_empty() && self.to_remove.is_empty()
    }
}

/// One changed tenant: the new spec and which parts of it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The tenant's desired spec after the reload.
    pub spec: TenantSpec,
    /// The `listen` path moved: bind the new path first, then retire the old one.
    pub moved: bool,
    /// Owner or mode changed: chown/chmod the existing inode in place (irrelevant when moved).
    pub permissions: bool,
    /// Settings read per connection changed (upstream, allow, access, limits,
    /// timeouts): new connections use them, open ones keep going.
    pub settings: bool,
}

/// Compare running and desired tenants. Both maps are keyed by tenant name;
/// the running side may hold the specs behind `Arc`s (the supervisor shares
/// one copy with the tenants' connections).
pub fn plan<R: Borrow<TenantSpec>>(
    running: &BTreeMap<String, R>,
    desired: &BTreeMap<String, TenantSpec>,
) -> Plan {
    let mut p = Plan::default();
    for name in running.keys() {
        if !desired.contains_key(name) {
            p.to_remove.push(name.clone());
        }
    }
    for (name, new) in desired {
        match running.get(name).map(Borrow::borrow) {
            None => p.to_add.push(new.clone()),
            Some(old) if old == new => {}
            Some(old) => {
                let moved = old.listen != new.listen;
                let permissions = old.uid != new.uid || old.gid != new.gid || old.mode != new.mode;
                // Everything except the socket's identity is a per-connection setting;
                // comparing the rest wholesale means a new field can never be forgotten.
                let settings = {
                    let mut a = old.clone();
                    a.listen = new.listen.clone();
                    a.uid = new.uid;
                    a.gid = new.gid;
                    a.mode = new.mode;
                    a != *new
                };
                p.to_change.push(Change {
                    spec: new.clone(),
                    moved,
                    permissions,
                    settings,
                });
            }
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AccessPolicy, AllowList, IdRange, OwnerSource};
    use std::path::PathBuf;
    use std::time::Duration;

    fn spec(name: &str) -> TenantSpec {
        TenantSpec {
            name: name.into(),
            listen: PathBuf::from(format!("/run/sb/{name}/docker.sock")),
            uid: 231072,
            gid: 231072,
            owner: OwnerSource::Ids,
            mode: 0o660,
            upstream: PathBuf::from("/var/run/docker.sock"),
            allow: None,
            access: AccessPolicy::Full,
            max_connections: 256,
            idle_timeout: None,
            drain_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }

    fn map(specs: &[TenantSpec]) -> BTreeMap<String, TenantSpec> {
        specs.iter().map(|s| (s.name.clone(), s.clone())).collect()
    }

    /// (moved, permissions, settings) for a single changed tenant `a`.
    fn kinds(edit: impl Fn(&mut TenantSpec)) -> (bool, bool, bool) {
        let old = spec("a");
        let mut new = old.clone();
        edit(&mut new);
        let p = plan(&map(&[old]), &map(&[new]));
        assert!(p.to_add.is_empty() && p.to_remove.is_empty());
        assert_eq!(p.to_change.len(), 1, "{p:?}");
        let c = &p.to_change[0];
        (c.moved, c.permissions, c.settings)
    }

    #[test]
    fn each_kind_of_change() {
        type Edit = fn(&mut TenantSpec);
        let table: &[(&str, Edit, (bool, bool, bool))] = &[
            ("uid", |s| s.uid = 1, (false, true, false)),
            ("gid", |s| s.gid = 1, (false, true, false)),
            ("mode", |s| s.mode = 0o600, (false, true, false)),
            (
                "upstream",
                |s| s.upstream = "/other.sock".into(),
                (false, false, true),
            ),
            (
                "allow",
                |s| {
                    s.allow = Some(AllowList {
                        uids: vec![IdRange { start: 1, end: 2 }],
                        gids: vec![],
                    })
                },
                (false, false, true),
            ),
            (
                "max_connections",
                |s| s.max_connections = 1,
                (false, false, true),
            ),
            (
                "idle_timeout",
                |s| s.idle_timeout = Some(Duration::from_secs(60)),
                (false, false, true),
            ),
            (
                "drain_timeout",
                |s| s.drain_timeout = Duration::from_secs(1),
                (false, false, true),
            ),
            (
                "connect_timeout",
                |s| s.connect_timeout = Duration::from_secs(1),
                (false, false, true),
            ),
            (
                "request_timeout",
                |s| s.request_timeout = Duration::from_secs(1),
                (false, false, true),
            ),
            (
                "owner source only (same ids)",
                |s| {
                    s.owner = OwnerSource::Userns {
                        user: "dockremap".into(),
                        container_uid: 0,
                        container_gid: 0,
                    }
                },
                (false, false, true),
            ),
            (
                "listen",
                |s| s.listen = "/run/sb/x/d.sock".into(),
                (true, false, false),
            ),
            (
                "listen + mode + upstream",
                |s| {
                    s.listen = "/run/sb/x/d.sock".into();
                    s.mode = 0o600;
                    s.upstream = "/u".into();
                },
                (true, true, true),
            ),
        ];
        for (what, edit, want) in table {
            assert_eq!(kinds(edit), *want, "change of {what}");
        }
    }

    #[test]
    fn unchanged_is_empty() {
        let m = map(&[spec("a"), spec("b")]);
        assert!(plan(&m, &m).is_empty());
        assert!(plan(&BTreeMap::<String, TenantSpec>::new(), &BTreeMap::new()).is_empty());
    }

    #[test]
    fn add_remove_and_change_together() {
        let running = map(&[spec("keep"), spec("gone"), spec("edit")]);
        let mut edited = spec("edit");
        edited.mode = 0o600;
        let desired = map(&[spec("keep"), edited.clone(), spec("new")]);
        let p = plan(&running, &desired);
        assert_eq!(p.to_remove, vec!["gone".to_string()]);
        assert_eq!(p.to_add, vec![spec("new")]);
        assert_eq!(p.to_change.len(), 1);
        assert_eq!(p.to_change[0].spec, edited);
    }

    #[test]
    fn from_empty_adds_everything_and_to_empty_removes_everything() {
        let m = map(&[spec("a"), spec("b")]);
        let p = plan(&BTreeMap::<String, TenantSpec>::new(), &m);
        assert_eq!(p.to_add.len(), 2);
        let p = plan(&m, &BTreeMap::new());
        assert_eq!(p.to_remove, vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn rename_of_tenant_is_remove_plus_add() {
        let p = plan(&map(&[spec("old")]), &map(&[spec("new")]));
        assert_eq!(p.to_remove, vec!["old".to_string()]);
        assert_eq!(p.to_add, vec![spec("new")]);
    }

    #[test]
    fn work_scales_with_changes_not_total() {
        let many: Vec<TenantSpec> = (0..1000).map(|i| spec(&format!("t{i}"))).collect();
        let running = map(&many);
        let mut desired = running.clone();
        desired.insert("extra".into(), spec("extra"));
        let p = plan(&running, &desired);
        assert_eq!(p.to_add.len(), 1);
        assert!(p.to_change.is_empty() && p.to_remove.is_empty());
    }

    #[test]
    fn running_specs_behind_arcs_diff_the_same() {
        let running: BTreeMap<String, std::sync::Arc<TenantSpec>> =
            [("a".to_owned(), std::sync::Arc::new(spec("a")))].into();
        assert!(plan(&running, &map(&[spec("a")])).is_empty());
        let mut moved = spec("a");
        moved.listen = PathBuf::from("/run/elsewhere.sock");
        let p = plan(&running, &map(&[moved]));
        assert!(p.to_change.len() == 1 && p.to_change[0].moved);
    }
}
