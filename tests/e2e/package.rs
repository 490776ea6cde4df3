//! The Debian package and the binary's identity, end to end on this machine:
//! `cargo deb -p sockbroker` builds it, lintian finds no error (and only the
//! warnings docs/packaging.md lists), apt installs it, and what it installed
//! is checked (binary, man pages, completions, conffile, user, unit verified by
//! systemd-analyze, enabled); a reinstall keeps an edited config; a purge
//! removes what the package added and nothing of the operator's.
//!
//! Also: `--version` and `sockbroker_build_info` name the git commit, the
//! shipped config's commented example is valid, and the harness itself:
//! under `CI=true` a missing tool fails a test instead of skipping it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sockbroker_e2e::*;
use sockbroker_e2e::{output_text as text, run_cmd as run, run_ok as ok};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `sh -c SCRIPT` as a command, for pipelines.
fn sh(script: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(script);
    c
}

fn apt(args: &[&str]) -> Command {
    let mut c = Command::new("apt-get");
    c.args(["-y", "-q", "--no-install-recommends"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive");
    c
}

fn installed() -> bool {
    let o = run(
        cmd("dpkg-query", &["-W", "-f", "${Status}", "sockbroker"]),
        DEADLINE,
    );
    String::from_utf8_lossy(&o.stdout).contains("ok installed")
}

/// The Debian architecture of this machine (amd64, arm64, …).
fn arch() -> String {
    ok(cmd("dpkg", &["--print-architecture"]), DEADLINE)
        .trim()
        .to_string()
}

/// Build the package with the installed cargo-deb; return its path.
fn build_package() -> PathBuf {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace())
        .args(["deb", "-p", "sockbroker", "--", "--locked"]);
    ok(c, Duration::from_secs(3600));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    let deb = target.join(format!("debian/sockbroker_{VERSION}-1_{}.deb", arch()));
    assert!(deb.exists(), "{} was not written", deb.display());
    deb
}

/// The lintian tags docs/packaging.md lists as kept warnings (lines
/// `| \`tag\` | why |` in its "Lintian" table).
fn documented_warnings() -> Vec<String> {
    let doc = read(&workspace().join("docs/packaging.md"));
    doc.lines()
        .filter_map(|l| {
            l.strip_prefix("| `")?
                .split_once('`')
                .map(|(t, _)| t.to_string())
        })
        .collect()
}

#[test]
fn debian_package_installs_reinstalls_keeping_the_config_and_purges() {
    if skip_unless_root("installs the package with apt")
        || !have("cargo-deb", "--version", "cargo install cargo-deb --locked")
        || !have("lintian", "--version", "apt-get install lintian")
        || !have("systemd-analyze", "--version", "apt-get install systemd")
        || !have("man", "--version", "apt-get install man-db")
    {
        return;
    }
    // Installed system-wide: runs from several checkouts take turns.
    let _lock = lock_file(Path::new("/run/lock/sockbroker-package-test.lock"));
    let deb = build_package();

    // lintian: no error; every warning is one docs/packaging.md explains.
    let mut c = Command::new("lintian");
    c.args(["--fail-on", "error"]).arg(&deb);
    let o = run(c, Duration::from_secs(600));
    let out = text(&o);
    assert!(o.status.success(), "lintian found errors:\n{out}");
    let kept = documented_warnings();
    for line in out
        .lines()
        .filter(|l| l.starts_with("W: ") || l.starts_with("E: "))
    {
        let tag = line.split_whitespace().nth(2).unwrap_or_default();
        assert!(
            kept.iter().any(|k| k == tag),
            "lintian: {line}\nnot among the warnings docs/packaging.md explains: {kept:?}"
        );
    }

    if installed() {
        ok(apt(&["purge", "sockbroker"]), Duration::from_secs(300));
    }
    let deb_arg = deb.to_str().unwrap();
    ok(apt(&["install", deb_arg]), Duration::from_secs(300));
    let cleanup = Purge;

    // The binary.
    let v = ok(cmd("/usr/bin/sockbroker", &["--version"]), DEADLINE);
    assert!(v.starts_with(&format!("sockbroker {VERSION} (git ")), "{v}");

    // Man pages: sockbroker(8) and one per subcommand (as --help lists them), found by man.
    let help = ok(cmd("/usr/bin/sockbroker", &["--help"]), DEADLINE);
    let subcommands: Vec<String> = help
        .split("Commands:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no Commands: in --help:\n{help}"))
        .lines()
        .take_while(|l| l.starts_with("  "))
        .map(|l| format!("sockbroker-{}", l.split_whitespace().next().unwrap()))
        .collect();
    assert!(subcommands.len() >= 3, "{subcommands:?}");
    for page in std::iter::once("sockbroker".to_string()).chain(subcommands) {
        let page = page.as_str();
        let path = ok(cmd("man", &["-w", "8", page]), DEADLINE);
        assert_eq!(path.trim(), format!("/usr/share/man/man8/{page}.8.gz"));
        let page_text = ok(
            sh(&format!("zcat /usr/share/man/man8/{page}.8.gz")),
            DEADLINE,
        );
        assert!(page_text.contains(&format!(".TH {page} 8")), "{page_text}");
    }
    let run_page = ok(sh("zcat /usr/share/man/man8/sockbroker-run.8.gz"), DEADLINE);
    assert!(run_page.contains("retry") && run_page.contains("SOCKBROKER_CONFIG"));

    // Completions: bash registers one, zsh and fish files are theirs.
    let mut c = Command::new("bash");
    c.arg("-c")
        .arg(". /usr/share/bash-completion/completions/sockbroker && complete -p sockbroker");
    let bash = ok(c, DEADLINE);
    assert!(bash.contains("sockbroker"), "{bash}");
    assert!(
        read(Path::new("/usr/share/zsh/vendor-completions/_sockbroker"))
            .starts_with("#compdef sockbroker")
    );
    let fish = read(Path::new(
        "/usr/share/fish/vendor_completions.d/sockbroker.fish",
    ));
    assert!(fish.contains("complete -c sockbroker"), "{fish}");

    // The conffile: registered as one, valid as shipped (zero tenants).
    let conffiles = ok(
        cmd("dpkg-query", &["-W", "-f", "${Conffiles}", "sockbroker"]),
        DEADLINE,
    );
    assert!(
        conffiles.contains("/etc/sockbroker/sockbroker.yaml"),
        "{conffiles}"
    );
    let check = ok(
        {
            let mut c = Command::new("/usr/bin/sockbroker");
            c.arg("check").env_remove("SOCKBROKER_CONFIG");
            c
        },
        DEADLINE,
    );
    assert!(
        check.contains("/etc/sockbroker/sockbroker.yaml: valid, 0 tenant(s)"),
        "{check}"
    );

    // The user from sysusers.d, and the unit: verified, enabled.
    let pw = ok(cmd("getent", &["passwd", "sockbroker"]), DEADLINE);
    assert!(pw.trim_end().ends_with(":/usr/sbin/nologin"), "{pw}");
    let unit = "/usr/lib/systemd/system/sockbroker.service";
    let mut c = Command::new("systemd-analyze");
    c.args(["verify", unit]);
    let o = run(c, Duration::from_secs(60));
    assert!(
        o.status.success() && text(&o).trim().is_empty(),
        "systemd-analyze verify {unit}:\n{}",
        text(&o)
    );
    assert!(read(Path::new(unit)).contains("\nUser=sockbroker\n"));
    assert!(
        Path::new("/etc/systemd/system/multi-user.target.wants/sockbroker.service").exists(),
        "the package enables the unit"
    );

    // Reinstall: the operator's edit of the conffile stays.
    let conf = Path::new("/etc/sockbroker/sockbroker.yaml");
    let edited = read(conf).replace(
        "tenants: {}\n",
        "tenants:\n  ci:\n    listen: /run/sockbroker/ci/docker.sock\n    uid: 231072\n    gid: 231072\n    access: read-only\n",
    );
    std::fs::write(conf, &edited).unwrap();
    ok(
        apt(&["install", "--reinstall", deb_arg]),
        Duration::from_secs(300),
    );
    assert_eq!(
        read(conf),
        edited,
        "a reinstall must keep the edited config"
    );

    // Upgrade to a newer package version (the same build, repackaged as
    // revision 2): the maintainer scripts' upgrade path, the edit stays.
    let newer = deb.with_file_name("upgrade");
    let mut c = cmd(
        std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
        &["deb", "-p", "sockbroker", "--no-build", "--no-dbgsym"],
    );
    c.current_dir(workspace())
        .arg("--deb-version")
        .arg(format!("{VERSION}-2"))
        .arg("-o")
        .arg(&newer);
    ok(c, Duration::from_secs(600));
    let newer_deb = std::fs::read_dir(&newer)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.to_string_lossy()
                .ends_with(&format!("_{VERSION}-2_{}.deb", arch()))
        })
        .unwrap_or_else(|| panic!("no {VERSION}-2 package in {}", newer.display()));
    ok(
        apt(&["install", newer_deb.to_str().unwrap()]),
        Duration::from_secs(300),
    );
    let v = ok(
        cmd("dpkg-query", &["-W", "-f", "${Version}", "sockbroker"]),
        DEADLINE,
    );
    assert_eq!(v, format!("{VERSION}-2"));
    assert_eq!(read(conf), edited, "an upgrade must keep the edited config");

    // Purge: the package's files go; the operator's stay.
    let notes = Path::new("/etc/sockbroker/operator-notes.txt");
    std::fs::write(notes, "mine\n").unwrap();
    let run_dir = Path::new("/run/sockbroker");
    std::fs::create_dir_all(run_dir.join("empty-tenant")).unwrap();
    std::fs::create_dir_all(run_dir.join("kept")).unwrap();
    std::fs::write(run_dir.join("kept/file"), "mine\n").unwrap();
    std::fs::set_permissions(run_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    drop(cleanup);
    assert!(!installed());
    for gone in [
        "/usr/bin/sockbroker",
        unit,
        "/usr/share/man/man8/sockbroker.8.gz",
        "/usr/share/bash-completion/completions/sockbroker",
        "/etc/sockbroker/sockbroker.yaml",
        "/etc/systemd/system/multi-user.target.wants/sockbroker.service",
        "/run/sockbroker/empty-tenant",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} is left after purge");
    }
    assert_eq!(read(notes), "mine\n", "purge must keep the operator's file");
    assert_eq!(read(&run_dir.join("kept/file")), "mine\n");
    std::fs::remove_file(notes).unwrap();
    let _ = std::fs::remove_dir(notes.parent().unwrap());
    std::fs::remove_dir_all(run_dir.join("kept")).unwrap();
    let _ = std::fs::remove_dir(run_dir);
}

/// Purges the package at drop (also when an assertion failed).
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let o = run(apt(&["purge", "sockbroker"]), Duration::from_secs(300));
        if !o.status.success() && !std::thread::panicking() {
            panic!("apt-get purge sockbroker failed:\n{}", text(&o));
        }
    }
}

/// `sockbroker --version` names the version and the commit it was built from,
/// and `sockbroker_build_info` carries the same two labels.
#[test]
fn version_and_build_info_name_the_git_commit() {
    let v = ok(
        {
            let mut c = Command::new(broker_bin());
            c.arg("--version");
            c
        },
        DEADLINE,
    );
    let commit = v
        .trim()
        .strip_prefix(&format!("sockbroker {VERSION} (git "))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("--version: {v:?}"))
        .to_string();
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(workspace())
        .output();
    match head {
        Ok(o) if o.status.success() => {
            let head = String::from_utf8_lossy(&o.stdout).trim().to_string();
            assert!(
                commit == head || std::env::var_os("SOCKBROKER_GIT_COMMIT").is_some(),
                "--version names {commit}, HEAD is {head} (build again after committing)"
            );
        }
        _ => assert_eq!(commit, "unknown"),
    }

    let s = Scene::new();
    let (_b, addr) = start_with_metrics(
        &s.config(),
        |addr| format!("metrics:\n  listen: {addr}\ntenants: {{}}\n"),
        &[],
        &[],
    );
    let (code, body) = http_get(&addr, "/metrics").unwrap();
    assert_eq!(code, 200);
    let series = format!("sockbroker_build_info{{commit=\"{commit}\",version=\"{VERSION}\"}}");
    assert_eq!(
        metric_value(&body, &series),
        Some(1.0),
        "{series} in:\n{body}"
    );
}

/// The packaged config is valid as shipped (zero tenants), and so is its
/// commented example once uncommented; `check` warns about nothing in either.
#[test]
fn packaged_config_and_its_commented_example_are_valid() {
    let shipped = workspace().join("deploy/debian/sockbroker.yaml");
    let check = |path: &Path| {
        let mut c = Command::new(broker_bin());
        c.arg("check").arg("--config").arg(path);
        run(c, DEADLINE)
    };
    let o = check(&shipped);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("valid, 0 tenant(s)\n"), "{}", text(&o));
    assert!(o.stderr.is_empty(), "{}", text(&o));

    let s = read(&shipped);
    let (head, example) = s
        .split_once("#tenants:")
        .expect("a commented `#tenants:` block");
    let example: String = format!("#tenants:{example}")
        .lines()
        .map(|l| l.strip_prefix('#').unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let dir = scratch();
    let p = dir.path().join("example.yaml");
    std::fs::write(
        &p,
        format!("{}{example}\n", head.replace("tenants: {}\n", "")),
    )
    .unwrap();
    let o = check(&p);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("valid, 2 tenant(s)\n"), "{}", text(&o));
    assert!(
        o.stderr.is_empty(),
        "the example chooses every access: {}",
        text(&o)
    );
}

/// `sockbroker check` warns (exit 0, on stderr) about each tenant whose
/// `access: full` nobody wrote, and says how to silence it; writing it, in
/// the tenant or in `defaults`, silences it.
#[test]
fn check_warns_about_full_access_nobody_chose() {
    let dir = scratch();
    let p = dir.path().join("c.yaml");
    let tenant = |name: &str, extra: &str| {
        format!("  {name}:\n    listen: /run/sbe2e/{name}.sock\n    uid: 1\n    gid: 1\n{extra}")
    };
    let check = |yaml: &str| {
        std::fs::write(&p, yaml).unwrap();
        let mut c = Command::new(broker_bin());
        c.arg("check").arg("--config").arg(&p);
        let o = run(c, DEADLINE);
        assert!(o.status.success(), "{}", text(&o));
        (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let yaml = format!(
        "tenants:\n{}{}{}",
        tenant("implicit", ""),
        tenant("chosen", "    access: full\n"),
        tenant("limited", "    access: read-only\n")
    );
    let (out, err) = check(&yaml);
    assert!(out.contains("valid, 3 tenant(s), 1 warning(s)"), "{out}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("warning: {}: tenant \"implicit\"", p.display()))
            && err.contains("root-equivalent")
            && err.contains("Write `access: full`"),
        "{err}"
    );
    let (out, err) = check(&format!("defaults:\n  access: full\n{yaml}"));
    assert!(
        out.contains("valid, 3 tenant(s)\n") && err.is_empty(),
        "{out}{err}"
    );
    let (_, err) = check(&yaml.replace(
        "implicit.sock\n    uid: 1\n    gid: 1\n",
        "implicit.sock\n    uid: 1\n    gid: 1\n    access: full\n",
    ));
    assert!(err.is_empty(), "{err}");
}

/// Not run by itself (`#[ignore]`): what [`ci_true_fails_a_test_whose_tool_is_missing`]
/// runs, a test needing a tool, as the e2e tests ask for theirs.
#[test]
#[ignore]
fn probe_needs_strace() {
    if !have("strace", "-V", "apt-get install strace") {
        return;
    }
    println!("PROBE RAN");
}

/// The harness itself: with strace gone from PATH, a test that needs it
/// prints SKIPPED and passes normally, and fails under `CI=true` with what to
/// install.
#[test]
fn ci_true_fails_a_test_whose_tool_is_missing() {
    let probe = |ci: Option<&str>| {
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.args(["--ignored", "--exact", "probe_needs_strace", "--nocapture"])
            .env("PATH", "/nonexistent");
        match ci {
            Some(v) => c.env("CI", v),
            None => c.env_remove("CI"),
        };
        run(c, DEADLINE)
    };
    let o = probe(None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("SKIPPED: `strace` not found; apt-get install strace"),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains("PROBE RAN"));
    let o = probe(Some("true"));
    assert!(!o.status.success(), "CI=true must fail:\n{}", text(&o));
    assert!(
        text(&o).contains("`strace` not found; apt-get install strace")
            && text(&o).contains("CI=true: a test never skips"),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains("SKIPPED"), "{}", text(&o));
}

/// The postinst's upgrade step (`upgrade_running_broker` in
/// deploy/debian/postinst) with `systemctl` and `deb-systemd-invoke` replaced
/// by recorders, against a real process as the unit's main process: one that
/// does not catch SIGUSR2 is restarted (and not signalled, which would kill
/// it); one that catches it gets SIGUSR2 and, once the main pid changes, no
/// restart.
#[test]
fn postinst_upgrades_in_place_only_a_broker_that_catches_sigusr2() {
    let postinst = read(&workspace().join("deploy/debian/postinst"));
    let start = postinst
        .find("upgrade_running_broker() {")
        .expect("postinst defines upgrade_running_broker");
    let len = postinst[start..]
        .find("\n}\n")
        .expect("end of the function")
        + 3;
    let function = &postinst[start..start + len];

    let dir = scratch();
    let d = dir.path();
    let bin = d.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let fake = |name: &str, body: &str| {
        let p = bin.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    fake(
        "systemctl",
        &format!(
            "case \"$1\" in is-active) exit 0 ;; show) cat {}/mainpid ;; esac",
            d.display()
        ),
    );
    fake(
        "deb-systemd-invoke",
        &format!("echo \"$@\" >> {}/invoked", d.display()),
    );
    let upgrade = || {
        let script = format!("unit=sockbroker.service\n{function}\nupgrade_running_broker\n");
        let mut c = cmd("sh", &["-ec", &script]);
        c.env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        );
        run(c, DEADLINE)
    };
    let invoked = || std::fs::read_to_string(d.join("invoked")).unwrap_or_default();

    // A main process that does not catch SIGUSR2: restarted, not signalled.
    let plain = Reaped::spawn(cmd("sleep", &["600"]));
    std::fs::write(d.join("mainpid"), format!("{}\n", plain.0.id())).unwrap();
    let o = upgrade();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("restarting sockbroker.service"),
        "{}",
        text(&o)
    );
    assert_eq!(invoked(), "restart sockbroker.service\n");
    let mut plain = plain;
    assert!(
        plain.0.try_wait().unwrap().is_none(),
        "SIGUSR2 would have killed a process that does not catch it"
    );
    drop(plain);

    // One that catches it: signalled; it "hands over" by becoming another pid.
    std::fs::remove_file(d.join("invoked")).ok();
    let handler = format!(
        "trap 'echo 424242 > {}/mainpid' USR2; echo ready > {}/ready; while :; do sleep 0.05; done",
        d.display(),
        d.display()
    );
    let catching = Reaped::spawn(cmd("sh", &["-c", &handler]));
    wait_until("the stand-in to set its trap", DEADLINE, || {
        d.join("ready").exists()
    });
    let pid = catching.0.id();
    std::fs::write(d.join("mainpid"), format!("{pid}\n")).unwrap();
    let o = upgrade();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("upgraded in place (pid {pid} -> 424242)")),
        "{}",
        text(&o)
    );
    assert_eq!(invoked(), "", "no restart after an upgrade in place");
}

/// A child with no stdio of ours (it must not hold a test's output pipe),
/// killed and reaped on drop, also when an assertion failed.
struct Reaped(std::process::Child);

impl Reaped {
    fn spawn(mut c: Command) -> Reaped {
        use std::process::Stdio;
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Reaped(c.spawn().unwrap_or_else(|e| panic!("spawn {c:?}: {e}")))
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
