//! Body inspection against crafted bodies (issue #14): the kernel's reading of
//! overlay options, SecurityOpt as an allowlist, old-API start bodies,
//! checkpoint directories.

use super::*;

// The same helpers as the ordinary body tests.
use super::tests::{create, denied};

#[test]
fn overlay_options_are_read_as_the_kernel_reads_them() {
    let allow = [PathBuf::from("/srv/data")];
    let vol = |o: &str| {
        let body =
            serde_json::json!({"DriverOpts": {"type": "overlay", "device": "overlay", "o": o}});
        check(
            BodyKind::VolumeCreate,
            body.to_string().as_bytes(),
            &allow,
            &Lexical,
        )
    };
    let ok = "lowerdir=/srv/data/l,upperdir=/srv/data/u,workdir=/srv/data/w";
    assert_eq!(vol(ok), Ok(()));
    // Backslash escapes are removed by the kernel: `\.\.` is `..`.
    for o in [
        r"lowerdir=/srv/data/\.\./\.\./etc,upperdir=/srv/data/u,workdir=/srv/data/w",
        r"lowerdir=/srv/data/l,upperdir=/srv/data/\.\./\.\./root,workdir=/srv/data/w",
        r"lowerdir=/srv/data/l,upperdir=/srv/data/u,workdir=/srv/data/..\/../w",
        // An escaped colon is part of a path; an unescaped one separates.
        r"lowerdir=/srv/data/l\::/etc,upperdir=/srv/data/u,workdir=/srv/data/w",
        r"lowerdir+=/srv/data/\.\./x,upperdir=/srv/data/u,workdir=/srv/data/w",
    ] {
        assert!(vol(o).is_err(), "{o}");
    }
    // The engine splits flags at every comma, the kernel not at `\,`.
    let e = vol(r"lowerdir=/srv/data/l\,upperdir=/etc,upperdir=/srv/data/u,workdir=/srv/data/w")
        .unwrap_err();
    assert!(e.contains("escaped comma"), "{e}");
    assert_eq!(
        vol(r"lowerdir=/srv/data/a\:b,upperdir=/srv/data/u\\,workdir=/srv/data/w"),
        Ok(())
    );
    assert_eq!(overlay_paths(r"/a\:b:/c\\:/d\"), ["/a:b", "/c\\", "/d"]);
}

#[test]
fn security_opt_is_an_allowlist() {
    for opt in [
        "no-new-privileges",
        "no-new-privileges=true",
        "no-new-privileges:true",
        "no-new-privileges=false",
        "no-new-privileges=1",
        "seccomp=builtin",
        "apparmor=docker-default",
        "writable-cgroups=false",
    ] {
        let body = format!(r#"{{"HostConfig":{{"SecurityOpt":["{opt}"]}}}}"#);
        assert_eq!(create(&body), Ok(()), "{opt}");
    }
    for opt in [
        "disable",
        "label=disable",
        "label:disable",
        "label=type:spc_t",
        "label=level:s0",
        "label=user:system_u",
        "apparmor=unconfined",
        "apparmor=my-loose-profile",
        "apparmor:unconfined",
        "seccomp=unconfined",
        "seccomp:unconfined",
        "seccomp={}",
        "seccomp=/etc/profile.json",
        "systempaths=unconfined",
        "writable-cgroups=true",
        "writable-cgroups",
        "no-new-privileges=maybe",
        "No-New-Privileges",
        "mask=/proc/kcore",
        "unmask=ALL",
        "proc-opts=x",
        " seccomp=builtin",
        "",
    ] {
        let body = serde_json::json!({"HostConfig": {"SecurityOpt": [opt]}}).to_string();
        denied(&body, "SecurityOpt");
    }
    // One string instead of a list, or not a string at all.
    denied(
        r#"{"HostConfig":{"SecurityOpt":"label=disable"}}"#,
        "SecurityOpt",
    );
    denied(r#"{"HostConfig":{"SecurityOpt":[1]}}"#, "SecurityOpt");
    assert_eq!(create(r#"{"HostConfig":{"SecurityOpt":null}}"#), Ok(()));
}

#[test]
fn old_api_start_bodies_are_read_like_create() {
    let start = |b: &str| check(BodyKind::ContainerStart, b.as_bytes(), &[], &Lexical);
    // Top level (the deprecated embedded HostConfig) and nested.
    assert_eq!(start(r#"{"Privileged":true}"#), Err("Privileged".into()));
    assert_eq!(
        start(r#"{"HostConfig":{"Privileged":true}}"#),
        Err("Privileged".into())
    );
    assert!(start(r#"{"hostconfig":{"Binds":["/:/h"]}}"#).is_err());
    assert!(start(r#"{"HostConfig":{"SecurityOpt":["apparmor=unconfined"]}}"#).is_err());
    assert!(start(r#"{"HostConfig":{"PidMode":"host"}}"#).is_err());
    assert_eq!(start(""), Ok(()));
    assert_eq!(start("{}"), Ok(()));
    assert_eq!(start(r#"{"HostConfig":{}}"#), Ok(()));
}

#[test]
fn checkpoint_directories_are_refused() {
    let cp = |b: &str| check(BodyKind::CheckpointCreate, b.as_bytes(), &[], &Lexical);
    assert_eq!(cp(r#"{"CheckpointID":"c1","Exit":true}"#), Ok(()));
    assert_eq!(cp(r#"{"CheckpointID":"c1","CheckpointDir":""}"#), Ok(()));
    assert!(cp(r#"{"CheckpointID":"c1","CheckpointDir":"/etc"}"#).is_err());
    assert!(cp(r#"{"CheckpointID":"c1","checkpointdir":"/root"}"#).is_err());
}

/// Keys and strings with JSON escapes are read unescaped (the engine's
/// decoder does the same), although escape-free ones are borrowed from the
/// body rather than copied.
#[test]
fn escaped_keys_and_strings_are_read_unescaped() {
    denied(
        r#"{"Image":"x","Host\u0043onfig":{"Privil\u0065ged":true}}"#,
        "Privileged",
    );
    denied(
        r#"{"Image":"x","HostConfig":{"\u0042inds":["/\u0065tc:/mnt"]}}"#,
        "/etc",
    );
    // A folding character written as an escape still folds.
    denied(
        r#"{"Image":"x","HostConfig":{"Privileged":false,"Privileged":false,"\u017fecurityOpt":["seccomp=unconfined"]}}"#,
        "seccomp",
    );
    assert_eq!(
        create(r#"{"Image":"x","HostConfig":{"Binds":["\u0077ebdata:/data"]}}"#),
        Ok(())
    );
}
