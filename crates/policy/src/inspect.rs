//! `userns-safe` body inspection: what a container create/update/start, an exec
//! create or a volume create asks for, read the way the engine reads it.
//!
//! The engine decodes bodies with Go's `encoding/json`, which
//!
//! * matches object keys to fields **ignoring case** (with Unicode folding:
//!   `ſ` is `s`, the Kelvin sign `K` is `k`),
//! * lets a repeated key decode into the same field again (for a nested
//!   struct the earlier members survive), and
//! * reads a create request's top-level object as a HostConfig too when it
//!   has no `HostConfig` member (the deprecated embedded HostConfig).
//!
//! So the body is parsed (serde_json) into a tree that keeps every member of
//! every object, repeated keys included, and every check looks at all members
//! whose key folds to the field name, in the top-level object and in every
//! `HostConfig`. A body that is not one JSON value is refused.
//!
//! Checks fail closed: a field that must be empty is admitted only as `null`
//! or an empty value of its type (`[]`, `{}`, `""`); anything else, including
//! a value of the wrong type that the engine would reject anyway, is refused.
//! (Go's `strslice.StrSlice`, the type of `CapAdd`, also accepts one string.)

use std::path::{Component, Path, PathBuf};

mod json;

pub use json::{go_fold_eq, Json};

/// What a request body must be checked as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `POST /containers/create`: a container config with a HostConfig.
    ContainerCreate,
    /// `POST /containers/{id}/update`: resources at the top level.
    ContainerUpdate,
    /// `POST /containers/{id}/start`: API < 1.24 accepts a HostConfig body,
    /// at the top level or nested as `HostConfig` (read like a create).
    ContainerStart,
    /// `POST /containers/{id}/checkpoints`: `CheckpointDir` is a host path.
    CheckpointCreate,
    /// `POST /containers/{id}/exec`: an exec config.
    ExecCreate,
    /// `POST /volumes/create`: driver options may name a host device or path.
    VolumeCreate,
}

impl BodyKind {
    /// A short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            BodyKind::ContainerCreate => "container create",
            BodyKind::ContainerUpdate => "container update",
            BodyKind::ContainerStart => "container start",
            BodyKind::CheckpointCreate => "checkpoint create",
            BodyKind::ExecCreate => "exec create",
            BodyKind::VolumeCreate => "volume create",
        }
    }
}

/// How host paths are resolved before they are compared with the allowlist.
pub trait HostPaths {
    /// The path `p` (absolute, lexically clean, no `..`) as the engine's mount
    /// would reach it, following symlinks; `None` if it cannot be told.
    fn resolve(&self, p: &Path) -> Option<PathBuf>;
}

/// Resolve against the real filesystem: the longest existing prefix is
/// canonicalized (symlinks followed), the rest appended. The broker and the
/// engine must see the same filesystem (run the broker on the host).
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

impl HostPaths for RealFs {
    fn resolve(&self, p: &Path) -> Option<PathBuf> {
        // Prefixes that resolve are exactly the first k components for some k
        // (a prefix resolves only if every shorter one does), so the longest
        // is found by bisection: O(log n) `canonicalize` calls, not O(n).
        let parts: Vec<Component<'_>> = p.components().collect();
        let prefix = |k: usize| parts[..k].iter().collect::<PathBuf>();
        if let Ok(c) = std::fs::canonicalize(p) {
            return Some(c);
        }
        // `lo` components resolve (the root at least), `hi` do not.
        let (mut lo, mut hi) = (1, parts.len());
        let mut base = std::fs::canonicalize(prefix(lo)).ok()?;
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            match std::fs::canonicalize(prefix(mid)) {
                Ok(c) => {
                    lo = mid;
                    base = c;
                }
                Err(_) => hi = mid,
            }
        }
        for part in &parts[lo..] {
            base.push(part);
        }
        Some(base)
    }
}

/// Purely lexical resolution (no filesystem): for tests and fuzzing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Lexical;

impl HostPaths for Lexical {
    fn resolve(&self, p: &Path) -> Option<PathBuf> {
        Some(p.to_path_buf())
    }
}

/// Check a body; `Err(reason)` names the first thing that is refused, e.g.
/// `Privileged` or `bind mount of / outside bind_allow`.
pub fn check(
    kind: BodyKind,
    body: &[u8],
    bind_allow: &[PathBuf],
    fs: &dyn HostPaths,
) -> Result<(), String> {
    if body.is_empty() {
        // Nothing asked for (e.g. a plain start); the engine fills in defaults.
        return Ok(());
    }
    let tree: Json<'_> = serde_json::from_slice(body)
        .map_err(|e| format!("{} body is not a JSON value: {e}", kind.as_str()))?;
    let ctx = Ctx {
        bind_allow,
        fs,
        allowed: Default::default(),
        host_paths_checked: Default::default(),
    };
    match kind {
        // The engine reads a start body (API < 1.24) with the create
        // body's wrapper: the top level and a nested HostConfig both count.
        BodyKind::ContainerCreate | BodyKind::ContainerStart => {
            ctx.host_config(&tree)?;
            for hc in tree.fields("HostConfig") {
                ctx.host_config(hc)?;
            }
            Ok(())
        }
        BodyKind::ContainerUpdate => ctx.host_config(&tree),
        BodyKind::CheckpointCreate => {
            for dir in tree.fields("CheckpointDir") {
                if !dir.is_empty() {
                    return Err(format!("CheckpointDir {} (a host directory)", dir.short()));
                }
            }
            Ok(())
        }
        BodyKind::ExecCreate => {
            if tree.fields("Privileged").any(Json::is_true) {
                return Err("Privileged exec".into());
            }
            Ok(())
        }
        BodyKind::VolumeCreate => {
            let drivers: Vec<&Json<'_>> = tree.fields("Driver").collect();
            for opts in tree.fields("DriverOpts") {
                ctx.volume_options(&drivers, opts, "volume")?;
            }
            Ok(())
        }
    }
}

struct Ctx<'a> {
    bind_allow: &'a [PathBuf],
    fs: &'a dyn HostPaths,
    /// `bind_allow` resolved, once per body.
    allowed: std::cell::OnceCell<Vec<PathBuf>>,
    /// Host paths checked so far in this body (bounded by [`MAX_HOST_PATHS`]).
    host_paths_checked: std::cell::Cell<usize>,
}

/// Most host paths (bind sources, volume devices) one body may ask for.
const MAX_HOST_PATHS: usize = 256;
/// Longest host path checked (Linux `PATH_MAX`).
const PATH_MAX: usize = 4096;
/// Deepest host path checked, in components.
const MAX_PATH_DEPTH: usize = 128;

impl Ctx<'_> {
    /// The HostConfig fields that take a container out of its user namespace.
    fn host_config(&self, hc: &Json<'_>) -> Result<(), String> {
        if hc.fields("Privileged").any(Json::is_true) {
            return Err("Privileged".into());
        }
        for field in [
            "UsernsMode",
            "PidMode",
            "IpcMode",
            "NetworkMode",
            "UTSMode",
            "CgroupnsMode",
        ] {
            if hc
                .fields(field)
                .filter_map(Json::as_str)
                .any(|v| v.trim().eq_ignore_ascii_case("host"))
            {
                return Err(format!("{field} host"));
            }
        }
        // Added capabilities, host devices (mapped, allowed by cgroup rule, or
        // requested from a device driver such as `--gpus`), sysctls (namespaced
        // ones only, but a namespace can be shared with other containers, and
        // what a namespace may turn grows with the kernel), a cgroup parent
        // outside the engine's own: all must be absent or empty.
        for field in [
            "CapAdd",
            "Devices",
            "DeviceCgroupRules",
            "DeviceRequests",
            "Sysctls",
            "CgroupParent",
        ] {
            for v in hc.fields(field) {
                if !v.is_empty() {
                    return Err(format!("{field} {}", v.listed()));
                }
            }
        }
        // Only the engine's built-in runtime: another registered runtime (a GPU
        // hook, a VM or sandbox shim, a custom wrapper) decides its own
        // isolation and may add devices or mounts the broker never sees.
        for v in hc.fields("Runtime") {
            let ok = match v {
                Json::Null => true,
                Json::String(r) => RUNTIMES.contains(&r.as_ref()),
                _ => false,
            };
            if !ok {
                return Err(format!("Runtime {}", v.short()));
            }
        }
        for v in hc.fields("SecurityOpt") {
            // A StrSlice-like list; anything but strings is refused too.
            let opts: Vec<&Json<'_>> = match v {
                Json::Null => Vec::new(),
                Json::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            for opt in opts {
                let Some(opt) = opt.as_str() else {
                    return Err(format!("SecurityOpt {}", opt.short()));
                };
                if !security_opt_is_safe(opt) {
                    return Err(format!(
                        "SecurityOpt {}",
                        opt.chars().take(60).collect::<String>()
                    ));
                }
            }
        }
        for field in ["MaskedPaths", "ReadonlyPaths"] {
            if hc.fields(field).any(|v| matches!(v, Json::Array(_))) {
                return Err(format!("{field} (unmasks /proc paths)"));
            }
        }
        for v in hc.fields("Binds") {
            for bind in v.items().filter_map(Json::as_str) {
                let mut parts = bind.split(':');
                let src = parts.next().unwrap_or_default();
                if parts.next().is_some() && src.starts_with('/') {
                    self.host_path(src, "bind mount")?;
                }
            }
        }
        // The default driver for volumes this container creates (`Binds` names,
        // `Mounts` without a driver name).
        let default_drivers: Vec<&Json<'_>> = hc.fields("VolumeDriver").collect();
        for v in hc.fields("Mounts") {
            for m in v.items() {
                let types: Vec<&str> = m.fields("Type").filter_map(Json::as_str).collect();
                if types.iter().any(|t| t.eq_ignore_ascii_case("bind")) {
                    for src in m.fields("Source").filter_map(Json::as_str) {
                        self.host_path(src, "bind mount")?;
                    }
                }
                for vo in m.fields("VolumeOptions") {
                    for dc in vo.fields("DriverConfig") {
                        let mut drivers: Vec<&Json<'_>> = dc.fields("Name").collect();
                        if drivers.iter().all(|d| d.is_empty()) {
                            drivers.extend(&default_drivers);
                        }
                        for opts in dc.fields("Options") {
                            self.volume_options(&drivers, opts, "volume mount")?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// A volume's driver options. A plugin driver's options mean what the
    /// plugin makes of them (some take a host path): with any driver but
    /// `local` they must be empty. For `local` see [`Ctx::local_options`].
    fn volume_options(
        &self,
        drivers: &[&Json<'_>],
        opts: &Json<'_>,
        what: &str,
    ) -> Result<(), String> {
        let plugin = drivers.iter().find(|d| match d {
            Json::Null => false,
            Json::String(name) => !name.is_empty() && name != "local",
            _ => true,
        });
        match plugin {
            Some(driver) if !opts.is_empty() => Err(format!(
                "{what} driver {} with options (not inspected)",
                driver.short()
            )),
            _ => self.local_options(opts, what),
        }
    }

    /// The `local` volume driver calls `mount(2)` with `device` as the source,
    /// `type` as the filesystem and `o` as flags and data, from the engine's
    /// mount namespace and working directory (`/`). So, failing closed, with
    /// an allowlist of types (the kernel knows many filesystems that show the
    /// mounting process's view of the host, and grows new ones):
    ///
    /// * with a `bind`/`rbind` flag (the type is then ignored) or no `type`,
    ///   `device` is a host path (a relative one starts at `/`) that must lie
    ///   in `bind_allow`;
    /// * otherwise every `type` must be `tmpfs` or `overlay` (no host source);
    /// * overlay directories in `o` (`lowerdir=`, `upperdir=`, `workdir=`, …)
    ///   are host paths that must lie in `bind_allow`, read the way the kernel
    ///   reads them: backslash escapes removed, `lowerdir` split at unescaped
    ///   `:` ([`overlay_paths`]). An escaped comma (`\,`) is refused: the
    ///   engine splits flags at every comma, the kernel not at that one.
    fn local_options(&self, opts: &Json<'_>, what: &str) -> Result<(), String> {
        let types: Vec<&str> = opts.fields("type").filter_map(Json::as_str).collect();
        let data: Vec<&str> = opts.fields("o").filter_map(Json::as_str).collect();
        let flags: Vec<&str> = data.iter().flat_map(|o| o.split(',')).collect();
        if flags.iter().any(|f| ends_in_escape(f)) {
            return Err(format!("{what} options with an escaped comma"));
        }
        let bind = flags
            .iter()
            .map(|f| f.trim())
            .any(|f| f.eq_ignore_ascii_case("bind") || f.eq_ignore_ascii_case("rbind"));
        if bind || types.is_empty() {
            for dev in opts.fields("device").filter_map(Json::as_str) {
                self.host_path(&from_root(dev), &format!("{what} device"))?;
            }
        } else if let Some(t) = types.iter().find(|t| !LOCAL_TYPES.contains(t)) {
            let shown: String = t.chars().take(40).collect();
            return Err(format!(
                "{what} type {shown} (only tmpfs, overlay or a bind of a bind_allow directory)"
            ));
        }
        for flag in &flags {
            let Some((key, dirs)) = flag.split_once('=') else {
                continue;
            };
            let key = key.trim().to_ascii_lowercase();
            if OVERLAY_DIRS.contains(&key.as_str()) {
                for dir in overlay_paths(dirs).iter().filter(|d| !d.is_empty()) {
                    self.host_path(&from_root(dir), &format!("{what} {key}"))?;
                }
            }
        }
        Ok(())
    }

    /// `src` must lie at or below an allowlisted directory once `..` and
    /// symlinks are resolved.
    fn host_path(&self, src: &str, what: &str) -> Result<(), String> {
        let refuse = || {
            let shown: String = src.chars().take(200).collect();
            Err(format!("{what} of {shown} outside bind_allow"))
        };
        // Bounded work per body, whatever a client sends: no path the kernel
        // would mount is longer than PATH_MAX, none sensible is this deep, and
        // a container does not need hundreds of host paths.
        let checked = self.host_paths_checked.get() + 1;
        self.host_paths_checked.set(checked);
        if checked > MAX_HOST_PATHS {
            return Err(format!(
                "{what}: more than {MAX_HOST_PATHS} host paths to check"
            ));
        }
        if src.len() > PATH_MAX || Path::new(src).components().count() > MAX_PATH_DEPTH {
            return Err(format!(
                "{what} of a path longer than {PATH_MAX} bytes or deeper than {MAX_PATH_DEPTH} directories"
            ));
        }
        let Some(clean) = lexical_clean(src) else {
            return refuse();
        };
        let Some(resolved) = self.fs.resolve(&clean) else {
            return refuse();
        };
        let allowed = self.allowed.get_or_init(|| {
            self.bind_allow
                .iter()
                .map(|a| self.fs.resolve(a).unwrap_or_else(|| a.clone()))
                .collect()
        });
        let inside = allowed.iter().any(|a| resolved.starts_with(a));
        if inside {
            Ok(())
        } else {
            refuse()
        }
    }
}

/// Runtimes `userns-safe` admits: the engine's default (unset or empty) and
/// its built-in runc, under either of its names.
const RUNTIMES: [&str; 3] = ["", "runc", "io.containerd.runc.v2"];

/// `local` volume types without a host source that `userns-safe` admits
/// (anything else only as a bind of a `bind_allow` directory).
const LOCAL_TYPES: [&str; 2] = ["tmpfs", "overlay"];

/// Overlay mount data naming host directories (`lowerdir` is a `:` list).
const OVERLAY_DIRS: [&str; 5] = ["lowerdir", "upperdir", "workdir", "lowerdir+", "datadir+"];

/// An overlay directory option's value as the kernel reads it (overlayfs
/// `ovl_split_lowerdirs` / `ovl_unescape`): a backslash makes the next
/// character literal and is dropped, an unescaped `:` separates directories.
/// Every option is split (only `lowerdir` is, by the kernel): more pieces,
/// each checked, can only refuse more.
pub(crate) fn overlay_paths(value: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    out.last_mut().expect("one").push(next);
                }
            }
            ':' => out.push(String::new()),
            c => out.last_mut().expect("one").push(c),
        }
    }
    out
}

/// Whether `s` ends in an odd run of backslashes (its last one escapes
/// whatever follows: the comma the engine split it at).
fn ends_in_escape(s: &str) -> bool {
    s.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
}

/// A `mount(2)` source as the engine (working directory `/`) resolves it.
fn from_root(p: &str) -> String {
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

/// `/a//b/./c` → `/a/b/c`. A path with `..` is refused (`None`): only the
/// filesystem can tell where `x/..` leads when `x` is a symlink.
fn lexical_clean(p: &str) -> Option<PathBuf> {
    let mut out = PathBuf::from("/");
    for c in Path::new(p).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// The `SecurityOpt` values `userns-safe` admits (an allowlist: the space
/// of values is open, and every other one loosens or replaces confinement
/// the broker cannot judge): `no-new-privileges` (bare or with a boolean),
/// `seccomp=builtin`, `apparmor=docker-default`, `writable-cgroups=false`.
/// Split the way the engine splits: at the first `=`, else at the first `:`;
/// keys compared exactly, as the engine does.
fn security_opt_is_safe(opt: &str) -> bool {
    if opt == "no-new-privileges" {
        return true;
    }
    let split = if opt.contains('=') {
        opt.split_once('=')
    } else {
        opt.split_once(':')
    };
    let Some((key, value)) = split else {
        return false;
    };
    match key {
        "no-new-privileges" => go_parse_bool(value).is_some(),
        "writable-cgroups" => go_parse_bool(value) == Some(false),
        "seccomp" => value == "builtin",
        "apparmor" => value == "docker-default",
        _ => false,
    }
}

/// Go's `strconv.ParseBool`.
fn go_parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_hostile;
