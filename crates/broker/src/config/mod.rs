//! Configuration: read the YAML file, validate it, resolve defaults and owners.
//!
//! [`load`] / [`parse`] turn `/etc/sockbroker/sockbroker.yaml` into a
//! [`Config`], the desired state, or into [`ConfigErrors`] listing every
//! problem found, each with the file, tenant, field, `line:column` where it
//! could be found, and what to do. A file with any error is rejected as a
//! whole (docs/configuration.md "Rules").
//!
//! Parsing happens in three steps:
//! 1. serde (`raw`): the schema, with unknown keys and wrong shapes as errors
//!    carrying serde_yaml's position; leaf values stay YAML values;
//! 2. validation (`validate`): every value checked, defaults merged, owners
//!    resolved (`userns` through `/etc/subuid` and `/etc/subgid`), cross-tenant
//!    rules (unique `listen`, no `listen` equal to an `upstream`), collecting
//!    all errors; positions come from a small source-text locator (`locate`);
//! 3. the result, a [`Config`] with a [`TenantSpec`] per tenant.

mod access;
mod error;
mod locate;
mod raw;
mod subid;
mod table;
mod validate;
mod values;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use access::AccessPolicy;
pub use error::{ConfigError, ConfigErrors};
pub use subid::SubIdFiles;
pub use table::format_table;

/// Files larger than this are refused rather than read into memory.
const MAX_FILE_SIZE: u64 = 16 * 1024 * 1024;

/// The validated, resolved desired state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// Where the HTTP endpoints are served; `None` when the `metrics` section is omitted.
    pub metrics: Option<MetricsConfig>,
    /// Every tenant, keyed by name.
    pub tenants: BTreeMap<String, TenantSpec>,
}

/// The `metrics` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Where `/metrics`, `/healthz`, `/readyz` and `/tenants` are served.
    pub listen: MetricsListen,
}

/// Where the HTTP endpoints listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsListen {
    /// A TCP address: `127.0.0.1:9477`, `[::1]:9477`, or `localhost:9477` (= 127.0.0.1).
    Tcp(SocketAddr),
    /// A Unix socket path, written `unix:/run/sockbroker/metrics.sock`.
    Unix(PathBuf),
}

impl fmt::Display for MetricsListen {
    /// As written in the file: `127.0.0.1:9477` or `unix:/path`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricsListen::Tcp(a) => write!(f, "{a}"),
            MetricsListen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// One tenant after defaults are merged and the owner resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSpec {
    /// The tenant's name (the key under `tenants:`); `[a-z0-9][a-z0-9_.-]{0,62}`.
    pub name: String,
    /// The socket path to create: absolute, normal form, at most 107 bytes, unique.
    pub listen: PathBuf,
    /// Owner (uid) of the listening socket, resolved from `uid` or `userns`.
    pub uid: u32,
    /// Group (gid) of the listening socket, resolved from `gid` or `userns`.
    pub gid: u32,
    /// How `uid`/`gid` were given (for `check` and status output).
    pub owner: OwnerSource,
    /// Permission bits of the socket, at most `0o777`.
    pub mode: u32,
    /// The socket connections are relayed to, e.g. `/var/run/docker.sock`.
    pub upstream: PathBuf,
    /// Peers (SO_PEERCRED) allowed to connect; `None` = any peer the file mode lets in.
    pub allow: Option<AllowList>,
    /// Docker API access policy.
    pub access: AccessPolicy,
    /// Concurrent connections at most (at least 1).
    pub max_connections: usize,
    /// Close a connection idle this long; `None` = never.
    pub idle_timeout: Option<Duration>,
    /// How long open connections may live after their tenant is removed.
    pub drain_timeout: Duration,
    /// How long connecting to the upstream may take (default 5s).
    pub connect_timeout: Duration,
    /// Policy mode: how long a request head and its body may take to arrive
    /// once its first byte is in (default 10s); then `408`.
    pub request_timeout: Duration,
}

/// How a tenant's owner was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerSource {
    /// `uid:` and `gid:` given directly.
    Ids,
    /// `userns:`: the first ranges of `user` in `/etc/subuid` and `/etc/subgid`,
    /// offset by the container-side ids.
    Userns {
        /// The user whose subordinate ranges are used (e.g. `dockremap`).
        user: String,
        /// The uid inside the container that owns the socket (default 0, root).
        container_uid: u32,
        /// The gid inside the container that owns the socket (default 0).
        container_gid: u32,
    },
}

/// Peers allowed to connect, by their SO_PEERCRED uid and gid.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllowList {
    /// Allowed uids; empty = any uid.
    pub uids: Vec<IdRange>,
    /// Allowed gids; empty = any gid.
    pub gids: Vec<IdRange>,
}

impl AllowList {
    /// Whether a peer with these ids may connect: it must match every
    /// non-empty list.
    pub fn permits(&self, uid: u32, gid: u32) -> bool {
        (self.uids.is_empty() || self.uids.iter().any(|r| r.contains(uid)))
            && (self.gids.is_empty() || self.gids.iter().any(|r| r.contains(gid)))
    }
}

/// An inclusive range of ids; written `1000` or `"231072-296607"`. `start <= end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// First id of the range.
    pub start: u32,
    /// Last id of the range (inclusive).
    pub end: u32,
}

impl IdRange {
    /// Whether `id` lies in the range.
    pub fn contains(&self, id: u32) -> bool {
        self.start <= id && id <= self.end
    }
}

impl fmt::Display for IdRange {
    /// `1000` or `231072-296607`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

impl TenantSpec {
    /// The mode as 4 octal digits, e.g. `0660`.
    pub fn mode_string(&self) -> String {
        format!("{:04o}", self.mode)
    }

    /// `UID:GID`, plus how it was resolved for `userns` owners:
    /// `231072:231072 (userns dockremap)`, or
    /// `232072:232072 (userns dockremap, container 1000:1000)` for non-root
    /// container ids.
    pub fn owner_string(&self) -> String {
        match &self.owner {
            OwnerSource::Ids => format!("{}:{}", self.uid, self.gid),
            OwnerSource::Userns {
                user,
                container_uid: 0,
                container_gid: 0,
            } => format!("{}:{} (userns {user})", self.uid, self.gid),
            OwnerSource::Userns {
                user,
                container_uid,
                container_gid,
            } => format!(
                "{}:{} (userns {user}, container {container_uid}:{container_gid})",
                self.uid, self.gid
            ),
        }
    }
}

/// Read and validate the configuration file at `path`.
///
/// A missing, unreadable or non-UTF-8 file, or a directory, is one error
/// naming the file; otherwise see [`parse`].
pub fn load(path: &Path, ids: &SubIdFiles) -> Result<Config, ConfigErrors> {
    let text = read(path)?;
    parse(&text, path, ids)
}

/// Read the configuration file's text with [`load`]'s checks and messages
/// (size cap, directory, UTF-8), for callers that need the text itself (the
/// daemon hashes it to skip reloads of unchanged content): `check` and `run`
/// read a file the same way.
pub fn read(path: &Path) -> Result<String, ConfigErrors> {
    read_file(path).map_err(|m| ConfigError::file_level(path, m).into())
}

fn read_file(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            "cannot read the configuration: the file does not exist; create it \
             (`tenants: {}` is a valid start) or pass --config PATH / set SOCKBROKER_CONFIG"
                .to_string()
        }
        std::io::ErrorKind::PermissionDenied => format!(
            "cannot read the configuration: {e}; run sockbroker as a user that can read the file"
        ),
        _ => format!("cannot read the configuration: {e}"),
    })?;
    if meta.is_dir() {
        return Err(format!(
            "is a directory, not a configuration file; pass the YAML file itself, e.g. --config {}",
            path.join("sockbroker.yaml").display()
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_SIZE + 1).read_to_end(&mut bytes))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => format!(
                "cannot read the configuration: {e}; run sockbroker as a user that can read the file"
            ),
            _ => format!("cannot read the configuration: {e}"),
        })?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(format!(
            "the file is larger than {} MiB; this is not a sockbroker configuration",
            MAX_FILE_SIZE / 1024 / 1024
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "the file is not valid UTF-8 (at byte {}); save it as UTF-8",
            e.utf8_error().valid_up_to()
        )
    })
}

/// Validate configuration `text` read from `source` (named in errors),
/// resolving `userns` owners through `ids`.
///
/// An empty file (or one with only comments) is an error: on a reload, a
/// half-written file must not remove every tenant. `tenants: {}` is the way to
/// run with none.
pub fn parse(text: &str, source: &Path, ids: &SubIdFiles) -> Result<Config, ConfigErrors> {
    validate::parse(text, source, ids)
}

#[cfg(test)]
mod tests;
