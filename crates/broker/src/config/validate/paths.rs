//! Rules across tenants: the socket paths they listen on and relay to.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{Ctx, Scope};
use crate::config::{MetricsConfig, MetricsListen};

/// Cross-tenant rules: every `listen` unique, no `listen` equal to an
/// `upstream`, and the metrics socket clear of both.
pub(super) fn check_paths(
    ctx: &mut Ctx<'_>,
    listens: &[(&str, PathBuf)],
    upstreams: &[(&str, PathBuf)],
    metrics: Option<&MetricsConfig>,
) {
    // Indexed by path (first tenant wins, as a linear search would find it):
    // pairwise comparison made 10,000 tenants take seconds (docs/performance.md).
    let mut first_upstream: HashMap<&Path, &str> = HashMap::with_capacity(upstreams.len());
    for (owner, u) in upstreams {
        first_upstream.entry(u.as_path()).or_insert(owner);
    }
    let mut seen: HashMap<&Path, &str> = HashMap::with_capacity(listens.len());
    for (name, listen) in listens {
        let scope = Scope::Tenant(name);
        if let Some(other) = seen.get(listen.as_path()).copied() {
            ctx.err(
                scope,
                Some("listen"),
                format!(
                    "listen {} is also the listen path of tenant {other:?}; every tenant needs its own \
                     socket path (and its own directory)",
                    quoted(listen)
                ),
            );
        }
        seen.entry(listen.as_path()).or_insert(name);
        if let Some(owner) = first_upstream.get(listen.as_path()).copied() {
            let whose = if owner == *name {
                "this tenant's own upstream".to_string()
            } else {
                format!("the upstream of tenant {owner:?}")
            };
            ctx.err(
                scope,
                Some("listen"),
                format!(
                    "listen {} is {whose}; a tenant socket must not replace the socket it relays to — \
                     choose another listen path, e.g. /run/sockbroker/{name}/docker.sock",
                    quoted(listen)
                ),
            );
        }
    }
    if let Some(MetricsConfig {
        listen: MetricsListen::Unix(path),
    }) = metrics
    {
        let clash = listens
            .iter()
            .map(|(t, l)| (t, l, "listen path"))
            .chain(upstreams.iter().map(|(t, u)| (t, u, "upstream")))
            .find(|(_, p, _)| *p == path);
        if let Some((tenant, _, what)) = clash {
            ctx.err(
                Scope::Metrics,
                Some("listen"),
                format!(
                    "unix:{} is the {what} of tenant {tenant:?}; give the metrics socket its own path",
                    path.display()
                ),
            );
        }
    }
}

fn quoted(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}
