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
        let mut existing = p.to_path_buf();
        let mut rest: Vec<std::ffi::OsString> = Vec::new();
        loop {
            match std::fs::canonicalize(&existing) {
                Ok(c) => {
                    let mut out = c;
                    for part in rest.iter().rev() {
                        out.push(part);
                    }
                    return Some(out);
                }
                Err(_) => {
                    let name = existing.file_name()?.to_os_string();
                    rest.push(name);
                    if !existing.pop() {
                        return None;
                    }
                }
            }
        }
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
    let ctx = Ctx { bind_allow, fs };
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
            for opts in tree.fields("DriverOpts") {
                ctx.driver_options(opts, "volume")?;
            }
            Ok(())
        }
    }
}

struct Ctx<'a> {
    bind_allow: &'a [PathBuf],
    fs: &'a dyn HostPaths,
}

impl Ctx<'_> {
    /// The HostConfig fields that take a container out of its user namespace.
    fn host_config(&self, hc: &Json) -> Result<(), String> {
        if hc.fields("Privileged").any(Json::is_true) {
            return Err("Privileged".into());
        }
        for field in ["UsernsMode", "PidMode", "IpcMode", "NetworkMode", "UTSMode"] {
            if hc
                .fields(field)
                .filter_map(Json::as_str)
                .any(|v| v.trim().eq_ignore_ascii_case("host"))
            {
                return Err(format!("{field} host"));
            }
        }
        for field in ["CapAdd", "Devices", "DeviceCgroupRules"] {
            for v in hc.fields(field) {
                if let Json::Array(items) = v {
                    if !items.is_empty() {
                        let shown: Vec<String> = items.iter().map(Json::short).collect();
                        return Err(format!("{field} {}", shown.join(",")));
                    }
                }
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
                        for opts in dc.fields("Options") {
                            self.driver_options(opts, "volume mount")?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The `local` volume driver mounts `device` (`o=bind` or a block device):
    /// an absolute device path is a host path.
    fn driver_options(&self, opts: &Json, what: &str) -> Result<(), String> {
        for dev in opts.fields("device").filter_map(Json::as_str) {
            if dev.starts_with('/') {
                self.host_path(dev, &format!("{what} device"))?;
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
        let Some(clean) = lexical_clean(src) else {
            return refuse();
        };
        let Some(resolved) = self.fs.resolve(&clean) else {
            return refuse();
        };
        let inside = self.bind_allow.iter().any(|allowed| {
            let allowed = self.fs.resolve(allowed).unwrap_or_else(|| allowed.clone());
            resolved.starts_with(&allowed)
        });
        if inside {
            Ok(())
        } else {
            refuse()
        }
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
                .find(|(k, _)| go_fold_eq(k, "PathOnHost"))
                .and_then(|(_, v)| v.as_str())
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
          "DeviceCgroupRules":null,"Mounts":null,"MaskedPaths":null,"ReadonlyPaths":null},
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
