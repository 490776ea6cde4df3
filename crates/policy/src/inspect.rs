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

use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// What a request body must be checked as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `POST /containers/create`: a container config with a HostConfig.
    ContainerCreate,
    /// `POST /containers/{id}/update`: resources at the top level.
    ContainerUpdate,
    /// `POST /containers/{id}/start`: API < 1.24 accepts a HostConfig body.
    ContainerStart,
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
    let tree: Json = serde_json::from_slice(body)
        .map_err(|e| format!("{} body is not a JSON value: {e}", kind.as_str()))?;
    let ctx = Ctx {
        bind_allow,
        fs,
        allowed: Default::default(),
        host_paths_checked: Default::default(),
    };
    match kind {
        BodyKind::ContainerCreate => {
            ctx.host_config(&tree)?;
            for hc in tree.fields("HostConfig") {
                ctx.host_config(hc)?;
            }
            Ok(())
        }
        BodyKind::ContainerUpdate | BodyKind::ContainerStart => ctx.host_config(&tree),
        BodyKind::ExecCreate => {
            if tree.fields("Privileged").any(Json::is_true) {
                return Err("Privileged exec".into());
            }
            Ok(())
        }
        BodyKind::VolumeCreate => {
            let drivers: Vec<&Json> = tree.fields("Driver").collect();
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
    fn host_config(&self, hc: &Json) -> Result<(), String> {
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
                Json::String(r) => RUNTIMES.contains(&r.as_str()),
                _ => false,
            };
            if !ok {
                return Err(format!("Runtime {}", v.short()));
            }
        }
        for v in hc.fields("SecurityOpt") {
            for opt in v.items().filter_map(Json::as_str) {
                if weakens_confinement(opt) {
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
        let default_drivers: Vec<&Json> = hc.fields("VolumeDriver").collect();
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
                        let mut drivers: Vec<&Json> = dc.fields("Name").collect();
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
    fn volume_options(&self, drivers: &[&Json], opts: &Json, what: &str) -> Result<(), String> {
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
    /// mount namespace and working directory (`/`). So, failing closed:
    ///
    /// * the kernel's own filesystems (`proc`, `sysfs`, `cgroup2`, …) are
    ///   refused: mounted by the engine they show the host's;
    /// * `device` is a host path (a relative one starts at `/`) that must lie
    ///   in `bind_allow`, unless every `type` takes no host source (`tmpfs`,
    ///   `overlay`, network filesystems) and `o` has no `bind`/`rbind`;
    /// * overlay directories in `o` (`lowerdir=`, `upperdir=`, `workdir=`) are
    ///   host paths that must lie in `bind_allow`.
    fn local_options(&self, opts: &Json, what: &str) -> Result<(), String> {
        let types: Vec<&str> = opts.fields("type").filter_map(Json::as_str).collect();
        if let Some(t) = types
            .iter()
            .find(|t| KERNEL_FS.contains(&t.trim().to_ascii_lowercase().as_str()))
        {
            let shown: String = t.chars().take(40).collect();
            return Err(format!("{what} type {shown}"));
        }
        let flags: Vec<&str> = opts
            .fields("o")
            .filter_map(Json::as_str)
            .flat_map(|o| o.split(','))
            .map(str::trim)
            .collect();
        let bind = flags
            .iter()
            .any(|f| f.eq_ignore_ascii_case("bind") || f.eq_ignore_ascii_case("rbind"));
        let sourceless =
            !bind && !types.is_empty() && types.iter().all(|t| NO_HOST_SOURCE.contains(t));
        if !sourceless {
            for dev in opts.fields("device").filter_map(Json::as_str) {
                self.host_path(&from_root(dev), &format!("{what} device"))?;
            }
        }
        for flag in &flags {
            let Some((key, dirs)) = flag.split_once('=') else {
                continue;
            };
            let key = key.trim().to_ascii_lowercase();
            if OVERLAY_DIRS.contains(&key.as_str()) {
                for dir in dirs.split(':').filter(|d| !d.is_empty()) {
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

/// Filesystems whose contents are the kernel's view of the mounting process's
/// namespaces (the engine's, i.e. the host's): never as a `local` volume.
const KERNEL_FS: [&str; 17] = [
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "cgroup",
    "cgroup2",
    "debugfs",
    "tracefs",
    "securityfs",
    "bpf",
    "configfs",
    "efivarfs",
    "pstore",
    "binfmt_misc",
    "mqueue",
    "fusectl",
    "nsfs",
];

/// `local` volume types whose `device` is not a host path (the kernel ignores
/// it, or it names a remote export) as long as no bind flag is given.
const NO_HOST_SOURCE: [&str; 6] = ["tmpfs", "overlay", "nfs", "nfs4", "cifs", "smb3"];

/// Overlay mount data naming host directories (`lowerdir` is a `:` list).
const OVERLAY_DIRS: [&str; 5] = ["lowerdir", "upperdir", "workdir", "lowerdir+", "datadir+"];

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

/// `seccomp=unconfined`, `apparmor=unconfined`, `label=disable`,
/// `systempaths=unconfined`, or any custom seccomp profile (`seccomp=<json>`):
/// the confinement that keeps a container from the kernel's riskier parts.
fn weakens_confinement(opt: &str) -> bool {
    let Some(i) = opt.find(['=', ':']) else {
        return false;
    };
    let (key, value) = (opt[..i].trim(), opt[i + 1..].trim());
    match key.to_ascii_lowercase().as_str() {
        "seccomp" => !value.eq_ignore_ascii_case("builtin"),
        "apparmor" | "systempaths" => value.eq_ignore_ascii_case("unconfined"),
        "label" => value.eq_ignore_ascii_case("disable"),
        _ => false,
    }
}

/// Whether `key` equals `name` under Go's `encoding/json` key folding
/// (`name` is ASCII): ASCII case, plus `ſ` = `s` and the Kelvin sign = `k`.
pub fn go_fold_eq(key: &str, name: &str) -> bool {
    let mut k = key.chars();
    for n in name.chars() {
        let Some(c) = k.next() else {
            return false;
        };
        let c = match c {
            '\u{17F}' => 's',
            '\u{212A}' => 'k',
            c => c.to_ascii_lowercase(),
        };
        if c != n.to_ascii_lowercase() {
            return false;
        }
    }
    k.next().is_none()
}

/// A JSON value that keeps every member of every object, repeated keys too.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number (its value is never needed).
    Number,
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Json>),
    /// An object, members in order, repeated keys kept.
    Object(Vec<(String, Json)>),
}

impl Json {
    /// Every member value whose key folds to `name`.
    pub fn fields<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Json> + 'a {
        let members: &[(String, Json)] = match self {
            Json::Object(m) => m,
            _ => &[],
        };
        members
            .iter()
            .filter(move |(k, _)| go_fold_eq(k, name))
            .map(|(_, v)| v)
    }

    /// The items of an array (nothing for other values).
    pub fn items(&self) -> impl Iterator<Item = &Json> {
        let items: &[Json] = match self {
            Json::Array(a) => a,
            _ => &[],
        };
        items.iter()
    }

    fn is_true(&self) -> bool {
        matches!(self, Json::Bool(true))
    }

    /// `null`, `[]`, `{}` or `""`: nothing asked for.
    pub fn is_empty(&self) -> bool {
        match self {
            Json::Null => true,
            Json::Array(a) => a.is_empty(),
            Json::Object(m) => m.is_empty(),
            Json::String(s) => s.is_empty(),
            Json::Bool(_) | Json::Number => false,
        }
    }

    /// What a non-empty list, map or string asks for, for messages: array
    /// items and object keys joined by `,`, a string as it is.
    fn listed(&self) -> String {
        let shown: Vec<String> = match self {
            Json::Array(items) => items.iter().map(Json::short).collect(),
            Json::Object(m) => m
                .iter()
                .map(|(k, _)| k.chars().take(40).collect())
                .collect(),
            other => vec![other.short()],
        };
        let mut s = shown.join(",");
        if s.chars().count() > 120 {
            s = s.chars().take(120).chain(['…']).collect();
        }
        s
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    /// A short rendering for messages.
    fn short(&self) -> String {
        match self {
            Json::String(s) => s.chars().take(40).collect(),
            Json::Object(m) => m
                .iter()
                .find(|(k, _)| go_fold_eq(k, "PathOnHost") || go_fold_eq(k, "Driver"))
                .and_then(|(_, v)| v.as_str())
                .filter(|s| !s.is_empty())
                .map(|s| s.chars().take(40).collect())
                .unwrap_or_else(|| "{…}".into()),
            _ => "…".into(),
        }
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short())
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Json;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_none<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Json, E> {
                Ok(Json::Bool(b))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Json, E> {
                Ok(Json::Number)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Json, E> {
                Ok(Json::Number)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Json, E> {
                Ok(Json::Number)
            }
            fn visit_str<E>(self, s: &str) -> Result<Json, E> {
                Ok(Json::String(s.to_string()))
            }
            fn visit_string<E>(self, s: String) -> Result<Json, E> {
                Ok(Json::String(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(v) = seq.next_element()? {
                    items.push(v);
                }
                Ok(Json::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut members = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Json>()? {
                    members.push((k, v));
                }
                Ok(Json::Object(members))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(body: &str) -> Result<(), String> {
        check(
            BodyKind::ContainerCreate,
            body.as_bytes(),
            &[PathBuf::from("/srv/data")],
            &Lexical,
        )
    }

    fn denied(body: &str, want: &str) {
        match create(body) {
            Err(e) => assert!(e.contains(want), "{body}: {e}"),
            Ok(()) => panic!("allowed: {body}"),
        }
    }

    /// Roughly what `docker run --rm busybox true` sends.
    const PLAIN: &str = r#"{"Hostname":"","User":"","AttachStdin":false,"Tty":false,
        "Cmd":["true"],"Image":"tenant:local","Volumes":{},"Labels":{},
        "HostConfig":{"Binds":null,"NetworkMode":"none","PortBindings":{},"AutoRemove":true,
          "CapAdd":null,"CapDrop":null,"CgroupnsMode":"","Dns":[],"IpcMode":"","PidMode":"",
          "Privileged":false,"SecurityOpt":null,"UTSMode":"","UsernsMode":"","Devices":[],
          "DeviceCgroupRules":null,"Mounts":null,"MaskedPaths":null,"ReadonlyPaths":null,
          "CgroupParent":"","DeviceRequests":null,"BlkioWeight":0,"Init":null},
        "NetworkingConfig":{"EndpointsConfig":{}}}"#;

    #[test]
    fn ordinary_create_is_allowed() {
        assert_eq!(create(PLAIN), Ok(()));
        assert_eq!(create("{}"), Ok(()));
        assert_eq!(create(""), Ok(()));
        assert_eq!(
            create(r#"{"HostConfig":{"Binds":["named:/data","/srv/data/x:/x:ro","/anon"]}}"#),
            Ok(())
        );
        assert_eq!(
            create(
                r#"{"HostConfig":{"Mounts":[{"Type":"volume","Source":"v","Target":"/v"},{"Type":"tmpfs","Target":"/t"},{"Type":"bind","Source":"/srv/data","Target":"/d"}]}}"#
            ),
            Ok(())
        );
        assert_eq!(
            create(r#"{"HostConfig":{"SecurityOpt":["no-new-privileges","seccomp=builtin"]}}"#),
            Ok(())
        );
    }

    #[test]
    fn escapes_are_denied() {
        denied(r#"{"HostConfig":{"Privileged":true}}"#, "Privileged");
        denied(r#"{"HostConfig":{"UsernsMode":"host"}}"#, "UsernsMode host");
        denied(r#"{"HostConfig":{"PidMode":"host"}}"#, "PidMode host");
        denied(r#"{"HostConfig":{"IpcMode":"host"}}"#, "IpcMode host");
        denied(
            r#"{"HostConfig":{"NetworkMode":"host"}}"#,
            "NetworkMode host",
        );
        denied(r#"{"HostConfig":{"UTSMode":"host"}}"#, "UTSMode host");
        denied(
            r#"{"HostConfig":{"CapAdd":["SYS_ADMIN"]}}"#,
            "CapAdd SYS_ADMIN",
        );
        denied(
            r#"{"HostConfig":{"Devices":[{"PathOnHost":"/dev/sda","PathInContainer":"/dev/sda"}]}}"#,
            "Devices /dev/sda",
        );
        denied(
            r#"{"HostConfig":{"DeviceCgroupRules":["a *:* rwm"]}}"#,
            "DeviceCgroupRules",
        );
        denied(
            r#"{"HostConfig":{"Binds":["/:/host"]}}"#,
            "bind mount of / outside bind_allow",
        );
        denied(
            r#"{"HostConfig":{"Binds":["/etc:/etc:ro"]}}"#,
            "bind mount of /etc",
        );
        denied(
            r#"{"HostConfig":{"Binds":["/var/run/docker.sock:/var/run/docker.sock"]}}"#,
            "bind mount",
        );
        denied(
            r#"{"HostConfig":{"Mounts":[{"Type":"bind","Source":"/","Target":"/host"}]}}"#,
            "bind mount of /",
        );
        denied(
            r#"{"HostConfig":{"Mounts":[{"Type":"volume","Target":"/h","VolumeOptions":{"DriverConfig":{"Name":"local","Options":{"type":"none","o":"bind","device":"/etc"}}}}]}}"#,
            "volume mount device of /etc",
        );
        denied(
            r#"{"HostConfig":{"SecurityOpt":["seccomp=unconfined"]}}"#,
            "SecurityOpt",
        );
        denied(
            r#"{"HostConfig":{"SecurityOpt":["seccomp:unconfined"]}}"#,
            "SecurityOpt",
        );
        denied(
            r#"{"HostConfig":{"SecurityOpt":["apparmor=unconfined"]}}"#,
            "SecurityOpt",
        );
        denied(
            r#"{"HostConfig":{"SecurityOpt":["label=disable"]}}"#,
            "SecurityOpt",
        );
        denied(
            r#"{"HostConfig":{"SecurityOpt":["systempaths=unconfined"]}}"#,
            "SecurityOpt",
        );
        denied(
            r#"{"HostConfig":{"SecurityOpt":["seccomp={\"defaultAction\":\"SCMP_ACT_ALLOW\"}"]}}"#,
            "SecurityOpt",
        );
        denied(r#"{"HostConfig":{"MaskedPaths":[]}}"#, "MaskedPaths");
    }

    /// What docker CLI 28.2 sends for `docker create busybox true` and
    /// `docker update --memory 100m x` (captured from the CLI).
    const CLI_CREATE: &str = r#"{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":true,"AttachStderr":true,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":["true"],"Image":"busybox","Volumes":{},"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":{},"HostConfig":{"Binds":null,"ContainerIDFile":"","LogConfig":{"Type":"","Config":{}},"NetworkMode":"default","PortBindings":{},"RestartPolicy":{"Name":"no","MaximumRetryCount":0},"AutoRemove":false,"VolumeDriver":"","VolumesFrom":null,"ConsoleSize":[0,0],"CapAdd":null,"CapDrop":null,"CgroupnsMode":"","Dns":[],"DnsOptions":[],"DnsSearch":[],"ExtraHosts":null,"GroupAdd":null,"IpcMode":"","Cgroup":"","Links":null,"OomScoreAdj":0,"PidMode":"","Privileged":false,"PublishAllPorts":false,"ReadonlyRootfs":false,"SecurityOpt":null,"UTSMode":"","UsernsMode":"","ShmSize":0,"Isolation":"","CpuShares":0,"Memory":0,"NanoCpus":0,"CgroupParent":"","BlkioWeight":0,"BlkioWeightDevice":[],"BlkioDeviceReadBps":[],"BlkioDeviceWriteBps":[],"BlkioDeviceReadIOps":[],"BlkioDeviceWriteIOps":[],"CpuPeriod":0,"CpuQuota":0,"CpuRealtimePeriod":0,"CpuRealtimeRuntime":0,"CpusetCpus":"","CpusetMems":"","Devices":[],"DeviceCgroupRules":null,"DeviceRequests":null,"MemoryReservation":0,"MemorySwap":0,"MemorySwappiness":-1,"OomKillDisable":false,"PidsLimit":0,"Ulimits":[],"CpuCount":0,"CpuPercent":0,"IOMaximumIOps":0,"IOMaximumBandwidth":0,"MaskedPaths":null,"ReadonlyPaths":null},"NetworkingConfig":{"EndpointsConfig":{"default":{"IPAMConfig":null,"Links":null,"Aliases":null,"MacAddress":"","DriverOpts":null,"GwPriority":0,"NetworkID":"","EndpointID":"","Gateway":"","IPAddress":"","IPPrefixLen":0,"IPv6Gateway":"","GlobalIPv6Address":"","GlobalIPv6PrefixLen":0,"DNSNames":null}}}}"#;
    const CLI_UPDATE: &str = r#"{"CpuShares":0,"Memory":104857600,"NanoCpus":0,"CgroupParent":"","BlkioWeight":0,"BlkioWeightDevice":null,"BlkioDeviceReadBps":null,"BlkioDeviceWriteBps":null,"BlkioDeviceReadIOps":null,"BlkioDeviceWriteIOps":null,"CpuPeriod":0,"CpuQuota":0,"CpuRealtimePeriod":0,"CpuRealtimeRuntime":0,"CpusetCpus":"","CpusetMems":"","Devices":null,"DeviceCgroupRules":null,"DeviceRequests":null,"MemoryReservation":0,"MemorySwap":0,"MemorySwappiness":null,"OomKillDisable":null,"PidsLimit":null,"Ulimits":null,"CpuCount":0,"CpuPercent":0,"IOMaximumIOps":0,"IOMaximumBandwidth":0,"RestartPolicy":{"Name":"","MaximumRetryCount":0}}"#;

    #[test]
    fn docker_cli_bodies_pass() {
        assert_eq!(create(CLI_CREATE), Ok(()));
        assert_eq!(
            check(
                BodyKind::ContainerUpdate,
                CLI_UPDATE.as_bytes(),
                &[],
                &Lexical
            ),
            Ok(())
        );
        let vol = |b: &str| check(BodyKind::VolumeCreate, b.as_bytes(), &[], &Lexical);
        assert_eq!(vol(r#"{"Driver":"local","Name":"v"}"#), Ok(()));
        assert_eq!(
            vol(
                r#"{"Driver":"local","DriverOpts":{"device":"tmpfs","o":"size=100m","type":"tmpfs"},"Name":"v2"}"#
            ),
            Ok(())
        );
        // The same body with one flag more is refused.
        let with = |from: &str, to: &str| {
            let b = CLI_CREATE.replacen(from, to, 1);
            assert_ne!(b, CLI_CREATE, "{from}");
            create(&b)
        };
        assert_eq!(
            with(r#""CgroupParent":"""#, r#""CgroupParent":"/""#),
            Err("CgroupParent /".into())
        );
        assert_eq!(
            with(
                r#""DeviceRequests":null"#,
                r#""DeviceRequests":[{"Driver":"nvidia","Count":-1}]"#
            ),
            Err("DeviceRequests nvidia".into())
        );
        assert_eq!(
            with(r#""CgroupnsMode":"""#, r#""CgroupnsMode":"host""#),
            Err("CgroupnsMode host".into())
        );
        assert_eq!(
            with(
                r#""Isolation":"""#,
                r#""Isolation":"","Runtime":"nvidia","Sysctls":{}"#
            ),
            Err("Runtime nvidia".into())
        );
        assert_eq!(
            with(
                r#""Isolation":"""#,
                r#""Isolation":"","Sysctls":{"net.ipv4.ip_forward":"1"}"#
            ),
            Err("Sysctls net.ipv4.ip_forward".into())
        );
    }

    #[test]
    fn namespaces_cgroups_runtimes_and_driver_devices() {
        // Allowed: absent, null or empty, and what the docker CLI sends.
        for body in [
            r#"{"HostConfig":{"Sysctls":null,"CgroupParent":null,"Runtime":null,"DeviceRequests":null}}"#,
            r#"{"HostConfig":{"Sysctls":{},"CgroupParent":"","Runtime":"","DeviceRequests":[]}}"#,
            r#"{"HostConfig":{"Runtime":"runc","CgroupnsMode":"private"}}"#,
            r#"{"HostConfig":{"Runtime":"io.containerd.runc.v2","CgroupnsMode":""}}"#,
            r#"{"HostConfig":{"CapAdd":[],"Devices":null,"DeviceCgroupRules":[]}}"#,
            r#"{"Image":"x","sysctls":{},"cgroupparent":"","RUNTIME":"runc"}"#,
        ] {
            assert_eq!(create(body), Ok(()), "{body}");
        }
        // Sysctls: any, namespaced or not (the engine writes them as real root).
        denied(
            r#"{"HostConfig":{"Sysctls":{"net.ipv4.ip_forward":"1"}}}"#,
            "Sysctls net.ipv4.ip_forward",
        );
        denied(
            r#"{"HostConfig":{"Sysctls":{"kernel.shm_rmid_forced":"1","net.core.somaxconn":"1"}}}"#,
            "Sysctls kernel.shm_rmid_forced,net.core.somaxconn",
        );
        denied(
            r#"{"HostConfig":{"sysctls":{"kernel.msgmax":"1"}}}"#,
            "Sysctls kernel.msgmax",
        );
        denied(
            "{\"HostConfig\":{\"\u{17F}y\u{17F}ctl\u{17F}\":{\"kernel.msgmax\":\"1\"}}}",
            "Sysctls",
        );
        denied(
            r#"{"HostConfig":{"Sysctls":{},"SYSCTLS":{"net.ipv4.ping_group_range":"0 0"}}}"#,
            "Sysctls net.ipv4.ping_group_range",
        );
        denied(r#"{"HostConfig":{"Sysctls":["a=b"]}}"#, "Sysctls a=b");
        denied(r#"{"Image":"x","Sysctls":{"kernel.sem":"1"}}"#, "Sysctls");
        // CgroupParent: any non-empty value.
        denied(r#"{"HostConfig":{"CgroupParent":"/"}}"#, "CgroupParent /");
        denied(
            r#"{"HostConfig":{"cgroupparent":"system.slice"}}"#,
            "CgroupParent system.slice",
        );
        denied(r#"{"HostConfig":{"CgroupParent":" "}}"#, "CgroupParent");
        denied(
            r#"{"HostConfig":{"CgroupParent":"","CGROUPPARENT":"../.."}}"#,
            "CgroupParent ../..",
        );
        // Runtime: only the built-in runc, spelled exactly.
        denied(r#"{"HostConfig":{"Runtime":"nvidia"}}"#, "Runtime nvidia");
        denied(r#"{"HostConfig":{"runtime":"kata"}}"#, "Runtime kata");
        denied(r#"{"HostConfig":{"Runtime":"RUNC"}}"#, "Runtime RUNC");
        denied(r#"{"HostConfig":{"Runtime":" runc"}}"#, "Runtime");
        denied(r#"{"HostConfig":{"Runtime":1}}"#, "Runtime");
        denied(
            r#"{"HostConfig":{"Runtime":"runc","Runtime":"sysbox-runc"}}"#,
            "Runtime sysbox-runc",
        );
        denied(r#"{"Image":"x","Runtime":"crun"}"#, "Runtime crun");
        // CgroupnsMode host.
        denied(
            r#"{"HostConfig":{"CgroupnsMode":"host"}}"#,
            "CgroupnsMode host",
        );
        denied(
            r#"{"HostConfig":{"cgroupnsmode":" HOST "}}"#,
            "CgroupnsMode host",
        );
        denied(
            "{\"HostConfig\":{\"Cgroupn\u{17F}Mode\":\"host\"}}",
            "CgroupnsMode host",
        );
        // DeviceRequests (`--gpus`): any.
        denied(
            r#"{"HostConfig":{"DeviceRequests":[{"Driver":"nvidia","Count":-1,"Capabilities":[["gpu"]]}]}}"#,
            "DeviceRequests nvidia",
        );
        denied(
            r#"{"HostConfig":{"devicerequests":[{"Driver":"","Count":-1,"Capabilities":[["gpu"]]}]}}"#,
            "DeviceRequests {…}",
        );
        denied(
            "{\"HostConfig\":{\"DeviceRequest\u{17F}\":[{}]}}",
            "DeviceRequests",
        );
        // CapAdd is a StrSlice: one string is one capability.
        denied(
            r#"{"HostConfig":{"CapAdd":"SYS_ADMIN"}}"#,
            "CapAdd SYS_ADMIN",
        );
        denied(r#"{"HostConfig":{"capadd":"ALL"}}"#, "CapAdd ALL");
        denied(
            r#"{"HostConfig":{"Devices":{"PathOnHost":"/dev/sda"}}}"#,
            "Devices",
        );
        // The update body carries Resources at the top level (the CLI sends
        // `"CgroupParent":""` and `"DeviceRequests":null`).
        let update = |b: &str| check(BodyKind::ContainerUpdate, b.as_bytes(), &[], &Lexical);
        assert!(update(r#"{"CgroupParent":"","DeviceRequests":null,"Memory":0}"#).is_ok());
        assert_eq!(
            update(r#"{"CgroupParent":"/docker/other"}"#),
            Err("CgroupParent /docker/other".into())
        );
        assert_eq!(
            update(r#"{"DeviceRequests":[{"Driver":"nvidia"}]}"#),
            Err("DeviceRequests nvidia".into())
        );
        // API < 1.24 start bodies are HostConfigs too.
        assert_eq!(
            check(
                BodyKind::ContainerStart,
                br#"{"Sysctls":{"kernel.sem":"1"}}"#,
                &[],
                &Lexical
            ),
            Err("Sysctls kernel.sem".into())
        );
    }

    #[test]
    fn bind_allowlist_boundaries() {
        denied(
            r#"{"HostConfig":{"Binds":["/srv/database:/d"]}}"#,
            "/srv/database",
        );
        denied(
            r#"{"HostConfig":{"Binds":["/srv:/d"]}}"#,
            "bind mount of /srv ",
        );
        denied(
            r#"{"HostConfig":{"Binds":["/srv/data/../../etc:/d"]}}"#,
            "bind mount",
        );
        denied(
            r#"{"HostConfig":{"Binds":["/srv/data/..:/d"]}}"#,
            "bind mount",
        );
        assert_eq!(
            create(r#"{"HostConfig":{"Binds":["/srv//data/./x:/d"]}}"#),
            Ok(())
        );
        assert_eq!(
            create(r#"{"HostConfig":{"Binds":["/srv/data:/d:rw"]}}"#),
            Ok(())
        );
        // No allowlist: every host path is refused.
        assert!(check(
            BodyKind::ContainerCreate,
            br#"{"HostConfig":{"Binds":["/srv/data:/d"]}}"#,
            &[],
            &Lexical
        )
        .is_err());
    }

    #[test]
    fn go_decoding_tricks_are_denied() {
        // Keys match case-insensitively in Go.
        denied(r#"{"hostconfig":{"privileged":true}}"#, "Privileged");
        denied(r#"{"HOSTCONFIG":{"PRIVILEGED":true}}"#, "Privileged");
        denied(r#"{"HostConfig":{"usernsmode":"host"}}"#, "UsernsMode host");
        // Unicode folding: ſ (U+017F) is s, K (U+212A) is k.
        denied(
            "{\"HostConfig\":{\"Privileged\":false,\"Privileged\":true}}",
            "Privileged",
        );
        denied(
            "{\"HostConfig\":{\"UsernsMode\":\"HOST\"}}",
            "UsernsMode host",
        );
        denied(
            "{\"HostConfig\":{\"\u{17F}ecurityOpt\":[\"label=disable\"]}}",
            "SecurityOpt",
        );
        denied("{\"HostConfig\":{\"Mounts\":[{\"Type\":\"bind\",\"Source\":\"/\",\"Target\":\"/h\"}]}}", "/");
        denied(
            "{\"HostConfig\":{\"Devices\":[{\"PathOnHost\":\"/dev/kmsg\"}]},\"x\":1}",
            "Devices",
        );
        assert!(go_fold_eq("\u{212A}ey", "key"));
        assert!(go_fold_eq("PRIVILEGED", "Privileged"));
        assert!(!go_fold_eq("Privileged2", "Privileged"));
        assert!(!go_fold_eq("Privilege", "Privileged"));
        // A repeated HostConfig: Go decodes both into the same struct.
        denied(
            r#"{"HostConfig":{"Privileged":true},"HostConfig":{}}"#,
            "Privileged",
        );
        denied(
            r#"{"HostConfig":{},"HostConfig":{"Privileged":true}}"#,
            "Privileged",
        );
        // The deprecated embedded HostConfig at the top level.
        denied(r#"{"Image":"x","Privileged":true}"#, "Privileged");
        denied(r#"{"Image":"x","Binds":["/:/h"]}"#, "bind mount of /");
        // A second JSON value after the first (Go would stop after the first) and junk.
        assert!(create(r#"{"Image":"x"}{"HostConfig":{"Privileged":true}}"#).is_err());
        assert!(create("not json").is_err());
        assert!(create(" ").is_err());
        // Mount type spelled in another case.
        denied(
            r#"{"HostConfig":{"Mounts":[{"type":"BIND","source":"/etc","target":"/h"}]}}"#,
            "/etc",
        );
    }

    #[test]
    fn other_bodies() {
        let c = |k, b: &str| check(k, b.as_bytes(), &[], &Lexical);
        assert!(c(BodyKind::ExecCreate, r#"{"Cmd":["sh"],"Privileged":false}"#).is_ok());
        assert_eq!(
            c(BodyKind::ExecCreate, r#"{"Cmd":["sh"],"privileged":true}"#),
            Err("Privileged exec".into())
        );
        // API < 1.24: start with a HostConfig body.
        assert_eq!(
            c(BodyKind::ContainerStart, r#"{"Privileged":true}"#),
            Err("Privileged".into())
        );
        assert!(c(BodyKind::ContainerStart, "").is_ok());
        assert!(c(
            BodyKind::ContainerUpdate,
            r#"{"Memory":1000000,"CpuShares":2}"#
        )
        .is_ok());
        assert!(c(
            BodyKind::ContainerUpdate,
            r#"{"Devices":[{"PathOnHost":"/dev/mem"}]}"#
        )
        .is_err());
        assert!(c(BodyKind::VolumeCreate, r#"{"Name":"v","Driver":"local"}"#).is_ok());
        assert!(c(
            BodyKind::VolumeCreate,
            r#"{"Name":"v","DriverOpts":{"type":"tmpfs","device":"tmpfs"}}"#
        )
        .is_ok());
        assert_eq!(
            c(
                BodyKind::VolumeCreate,
                r#"{"Name":"v","DriverOpts":{"type":"none","o":"bind","device":"/"}}"#
            ),
            Err("volume device of / outside bind_allow".into())
        );
        assert!(c(
            BodyKind::VolumeCreate,
            r#"{"Name":"v","driveropts":{"Device":"/dev/sda1","type":"ext4"}}"#
        )
        .is_err());
    }

    #[test]
    fn local_volume_options() {
        let allow = [PathBuf::from("/srv/data")];
        let vol = |b: &str| check(BodyKind::VolumeCreate, b.as_bytes(), &allow, &Lexical);
        let ok = |b: &str| assert_eq!(vol(b), Ok(()), "{b}");
        let no = |b: &str, want: &str| match vol(b) {
            Err(e) => assert!(e.contains(want), "{b}: {e}"),
            Ok(()) => panic!("allowed: {b}"),
        };
        // No host source: tmpfs, network filesystems, overlay of allowed dirs.
        ok(r#"{"Name":"v"}"#);
        ok(r#"{"Name":"v","Driver":"local","DriverOpts":{}}"#);
        ok(r#"{"DriverOpts":{"type":"tmpfs","device":"tmpfs","o":"size=100m,uid=1000"}}"#);
        ok(r#"{"DriverOpts":{"type":"nfs","device":":/export/x","o":"addr=10.0.0.1,rw"}}"#);
        ok(r#"{"DriverOpts":{"type":"cifs","device":"//fileserver/share","o":"addr=10.0.0.2"}}"#);
        ok(
            r#"{"DriverOpts":{"type":"overlay","device":"overlay","o":"lowerdir=/srv/data/a:/srv/data/b,upperdir=/srv/data/u,workdir=/srv/data/w"}}"#,
        );
        // A bind of an allowed directory, absolute or relative to the engine's `/`.
        ok(r#"{"DriverOpts":{"type":"none","o":"bind","device":"/srv/data/x"}}"#);
        ok(r#"{"DriverOpts":{"type":"none","o":"bind","device":"srv/data/x"}}"#);
        // Relative devices are host paths from `/` (the engine's working directory).
        no(
            r#"{"DriverOpts":{"type":"none","o":"bind","device":"etc"}}"#,
            "volume device of /etc outside bind_allow",
        );
        no(
            r#"{"DriverOpts":{"type":"ext4","device":"dev/sda1"}}"#,
            "volume device of /dev/sda1",
        );
        no(
            r#"{"DriverOpts":{"type":"btrfs","device":"/dev/sda2"}}"#,
            "volume device of /dev/sda2",
        );
        // A bind flag makes any type's device a host path.
        no(
            r#"{"DriverOpts":{"type":"tmpfs","o":"size=1m, RBIND","device":"etc"}}"#,
            "volume device of /etc",
        );
        no(
            r#"{"DriverOpts":{"type":"nfs","o":"bind","device":"/"}}"#,
            "volume device of /",
        );
        // Every type given must be sourceless (a repeated key counts too).
        no(
            r#"{"DriverOpts":{"type":"tmpfs","Type":"none","o":"bind","device":"etc"}}"#,
            "device of /etc",
        );
        no(
            r#"{"DriverOpts":{"type":"tmpfs","TYPE":"ext4","device":"dev/sda"}}"#,
            "device of /dev/sda",
        );
        // Overlay directories are host paths.
        no(
            r#"{"DriverOpts":{"type":"overlay","device":"overlay","o":"lowerdir=/etc,upperdir=/srv/data/u,workdir=/srv/data/w"}}"#,
            "volume lowerdir of /etc outside bind_allow",
        );
        no(
            r#"{"DriverOpts":{"type":"overlay","device":"overlay","o":"lowerdir=/srv/data/a:/root,upperdir=/srv/data/u,workdir=/srv/data/w"}}"#,
            "volume lowerdir of /root",
        );
        no(
            r#"{"DriverOpts":{"type":"overlay","device":"overlay","o":"lowerdir=/srv/data/a,UpperDir=var/lib,workdir=/srv/data/w"}}"#,
            "volume upperdir of /var/lib",
        );
        // The kernel's own filesystems, mounted by the engine, show the host's.
        no(
            r#"{"DriverOpts":{"type":"proc","device":"/srv/data/p"}}"#,
            "volume type proc",
        );
        no(
            r#"{"DriverOpts":{"type":"SysFS","device":"sysfs"}}"#,
            "volume type SysFS",
        );
        no(
            r#"{"DriverOpts":{"type":"cgroup2","device":"none"}}"#,
            "volume type cgroup2",
        );
        no(
            r#"{"driveropts":{"TYPE":"devtmpfs","device":"/srv/data"}}"#,
            "volume type devtmpfs",
        );
        // A plugin driver's options are not understood: none allowed.
        ok(r#"{"Name":"v","Driver":"some-plugin"}"#);
        ok(r#"{"Name":"v","Driver":"some-plugin","DriverOpts":{}}"#);
        no(
            r#"{"Name":"v","Driver":"local-persist","DriverOpts":{"mountpoint":"/etc"}}"#,
            "volume driver local-persist with options (not inspected)",
        );
        no(
            r#"{"Driver":"local","driver":"x","DriverOpts":{"size":"1"}}"#,
            "volume driver x with options",
        );
        no(
            r#"{"Driver":"Local","DriverOpts":{"type":"tmpfs","device":"tmpfs"}}"#,
            "volume driver Local",
        );
    }

    #[test]
    fn mount_volume_options() {
        denied(
            r#"{"HostConfig":{"Mounts":[{"Type":"volume","Target":"/h","VolumeOptions":{"DriverConfig":{"Name":"local","Options":{"type":"none","o":"bind","device":"etc"}}}}]}}"#,
            "volume mount device of /etc",
        );
        denied(
            r#"{"HostConfig":{"Mounts":[{"Type":"volume","Target":"/h","VolumeOptions":{"DriverConfig":{"Name":"plug","Options":{"path":"/"}}}}]}}"#,
            "volume mount driver plug with options (not inspected)",
        );
        // Without a name the container's VolumeDriver is the driver.
        denied(
            r#"{"HostConfig":{"VolumeDriver":"plug","Mounts":[{"Type":"volume","Target":"/h","VolumeOptions":{"DriverConfig":{"Options":{"path":"/"}}}}]}}"#,
            "volume mount driver plug",
        );
        denied(
            r#"{"HostConfig":{"Mounts":[{"Type":"volume","Target":"/h","VolumeOptions":{"DriverConfig":{"Options":{"type":"proc","device":"proc"}}}}]}}"#,
            "volume mount type proc",
        );
        // A named local driver is the driver, whatever the default.
        assert_eq!(
            create(
                r#"{"HostConfig":{"VolumeDriver":"plug","Binds":["named:/n"],"Mounts":[{"Type":"volume","Source":"v","Target":"/h","VolumeOptions":{"DriverConfig":{"Name":"local","Options":{"type":"tmpfs","device":"tmpfs"}}}}]}}"#
            ),
            Ok(())
        );
        denied(
            r#"{"HostConfig":{"VolumeDriver":"plug","Mounts":[{"Type":"volume","Target":"/h","VolumeOptions":{"DriverConfig":{"Name":"","Options":{"type":"tmpfs","device":"tmpfs"}}}}]}}"#,
            "volume mount driver plug",
        );
        assert_eq!(
            create(
                r#"{"HostConfig":{"VolumeDriver":"local","Mounts":[{"Type":"volume","Source":"v","Target":"/h","VolumeOptions":{"DriverConfig":{"Name":"local","Options":{"type":"tmpfs","device":"tmpfs"}}}}]}}"#
            ),
            Ok(())
        );
        assert_eq!(
            create(r#"{"HostConfig":{"VolumeDriver":"plug","Binds":["named:/n"]}}"#),
            Ok(())
        );
    }

    #[test]
    fn deep_nesting_is_refused_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(create(&deep).is_err());
    }

    /// A fake filesystem with one symlink: /srv/data/link -> /.
    struct WithLink;
    impl HostPaths for WithLink {
        fn resolve(&self, p: &Path) -> Option<PathBuf> {
            match p.strip_prefix("/srv/data/link") {
                Ok(rest) => Some(Path::new("/").join(rest)),
                Err(_) => Some(p.to_path_buf()),
            }
        }
    }

    #[test]
    fn symlinks_are_followed() {
        let allow = [PathBuf::from("/srv/data")];
        let b = br#"{"HostConfig":{"Binds":["/srv/data/link:/h"]}}"#;
        assert!(check(BodyKind::ContainerCreate, b, &allow, &Lexical).is_ok());
        assert!(check(BodyKind::ContainerCreate, b, &allow, &WithLink).is_err());
        let b = br#"{"HostConfig":{"Binds":["/srv/data/link/etc:/h"]}}"#;
        assert!(check(BodyKind::ContainerCreate, b, &allow, &WithLink).is_err());
    }

    #[test]
    fn host_path_work_is_bounded() {
        let allow = [PathBuf::from("/srv/data")];
        // One absurdly long or deep path: refused before the filesystem is asked.
        let deep = format!("/srv/data{}", "/d".repeat(MAX_PATH_DEPTH));
        let body = format!(r#"{{"HostConfig":{{"Binds":["{deep}:/h"]}}}}"#);
        let e = check(BodyKind::ContainerCreate, body.as_bytes(), &allow, &RealFs).unwrap_err();
        assert!(e.contains("deeper than"), "{e}");
        let long = format!("/srv/data/{}", "x".repeat(PATH_MAX));
        let body = format!(r#"{{"HostConfig":{{"Binds":["{long}:/h"]}}}}"#);
        assert!(check(BodyKind::ContainerCreate, body.as_bytes(), &allow, &RealFs).is_err());
        // Many allowed binds: up to the limit fine, one more refused.
        let binds = |n: usize| {
            let list: Vec<String> = (0..n).map(|i| format!("\"/srv/data/{i}:/m{i}\"")).collect();
            format!(r#"{{"HostConfig":{{"Binds":[{}]}}}}"#, list.join(","))
        };
        let ok = binds(MAX_HOST_PATHS);
        assert!(check(BodyKind::ContainerCreate, ok.as_bytes(), &allow, &Lexical).is_ok());
        let over = binds(MAX_HOST_PATHS + 1);
        let e = check(BodyKind::ContainerCreate, over.as_bytes(), &allow, &Lexical).unwrap_err();
        assert!(e.contains("host paths to check"), "{e}");
    }

    #[test]
    fn real_fs_resolution() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        std::fs::create_dir(root.join("data")).unwrap();
        std::os::unix::fs::symlink("/", root.join("data/link")).unwrap();
        let fs = RealFs;
        assert_eq!(
            fs.resolve(&root.join("data/x/y")),
            Some(root.join("data/x/y"))
        );
        assert_eq!(
            fs.resolve(&root.join("data/link")),
            Some(PathBuf::from("/"))
        );
        assert_eq!(
            fs.resolve(&root.join("data/link/etc")),
            Some(PathBuf::from("/etc"))
        );
        // The longest existing prefix is resolved, the rest appended as written.
        assert_eq!(
            fs.resolve(&root.join("data/link/no-such-dir/x/y/z")),
            Some(PathBuf::from("/no-such-dir/x/y/z"))
        );
        let deep: PathBuf = std::iter::repeat_n("d", 100).collect();
        assert_eq!(
            fs.resolve(&root.join("data").join(&deep)),
            Some(root.join("data").join(&deep))
        );
        let allow = [root.join("data")];
        let body = format!(
            r#"{{"HostConfig":{{"Binds":["{}:/h"]}}}}"#,
            root.join("data/link").display()
        );
        assert!(check(BodyKind::ContainerCreate, body.as_bytes(), &allow, &RealFs).is_err());
        let body = format!(
            r#"{{"HostConfig":{{"Binds":["{}:/h"]}}}}"#,
            root.join("data/new").display()
        );
        assert!(check(BodyKind::ContainerCreate, body.as_bytes(), &allow, &RealFs).is_ok());
    }
}
