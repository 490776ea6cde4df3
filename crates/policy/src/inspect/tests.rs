//! Body inspection: what passes, what is refused, and why.
use super::*;

pub(super) fn create(body: &str) -> Result<(), String> {
    check(
        BodyKind::ContainerCreate,
        body.as_bytes(),
        &[PathBuf::from("/srv/data")],
        &Lexical,
    )
}

pub(super) fn denied(body: &str, want: &str) {
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
    denied(
        "{\"HostConfig\":{\"Mounts\":[{\"Type\":\"bind\",\"Source\":\"/\",\"Target\":\"/h\"}]}}",
        "/",
    );
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
    // No host source: tmpfs, overlay of allowed dirs.
    ok(r#"{"Name":"v"}"#);
    ok(r#"{"Name":"v","Driver":"local","DriverOpts":{}}"#);
    ok(r#"{"DriverOpts":{"type":"tmpfs","device":"tmpfs","o":"size=100m,uid=1000"}}"#);
    // Network filesystems mount from the engine's (the host's) network
    // namespace: not on the allowlist.
    no(
        r#"{"DriverOpts":{"type":"nfs","device":":/export/x","o":"addr=10.0.0.1,rw"}}"#,
        "volume type nfs",
    );
    no(
        r#"{"DriverOpts":{"type":"cifs","device":"//fileserver/share","o":"addr=10.0.0.2"}}"#,
        "volume type cifs",
    );
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
        "volume type ext4",
    );
    no(
        r#"{"DriverOpts":{"type":"btrfs","device":"/dev/sda2"}}"#,
        "volume type btrfs",
    );
    // No type: the device is a host path.
    no(
        r#"{"DriverOpts":{"device":"/dev/sda2"}}"#,
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
        "volume type ext4",
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
    // An allowlist: kernel filesystems no denylist named are refused too.
    for t in [
        "cpuset",
        "selinuxfs",
        "resctrl",
        "hugetlbfs",
        "fuse",
        "autofs",
        "rpc_pipefs",
        "Tmpfs",
        "tmpfs ",
        "overlayfs",
        "",
    ] {
        no(
            &format!(r#"{{"DriverOpts":{{"type":"{t}","device":"x"}}}}"#),
            "volume ",
        );
    }
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
