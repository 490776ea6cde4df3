//! End-to-end tests of live reconfiguration (docs/configuration.md "What an
//! edit does"), with the real binary: every edit is observed through sockets,
//! inodes and logs.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use sockbroker_e2e::*;

/// The usual tenant owner: this test's own uid and gid (no root needed).
fn t() -> &'static str {
    own_owner()
}

#[test]
fn add_then_remove_with_drain() {
    if skip_unless_root("socket ownership") {
        return;
    }
    let s = Scene::new();
    let b = s.start(&[("a", t())], &[]);
    wait_socket(&s.sock("a"));
    let a_ino = socket_meta(&s.sock("a")).3;
    let mut a_conn = echo_conn(&s.sock("a"), b"a-before");

    s.write(&[
        ("a", t()),
        ("b", "uid: 231072\ngid: 231073\nmode: \"0640\""),
    ]);
    wait_socket(&s.sock("b"));
    let (uid, gid, mode, _) = socket_meta(&s.sock("b"));
    assert_eq!((uid, gid, mode), (231072, 231073, 0o640));
    assert_eq!(
        socket_meta(&s.sock("a")).3,
        a_ino,
        "untouched tenant re-created"
    );
    echo_again(&mut a_conn, b"a-after-add");

    let mut b_conn = echo_conn(&s.sock("b"), b"b-open");
    // Remove b (drain_timeout 2s from the defaults): socket gone at once,
    // the open connection keeps working, then is closed at the deadline.
    s.write(&[("a", t())]);
    wait_gone(&s.sock("b"));
    echo_again(&mut b_conn, b"b-during-drain");
    wait_until(
        "b's connection to be closed after the drain",
        DEADLINE,
        || is_closed(&mut b_conn),
    );
    b.wait_log("drain timeout reached");
    echo_again(&mut a_conn, b"a-still-fine");
}

#[test]
fn owner_and_mode_change_in_place() {
    if skip_unless_root("socket ownership") {
        return;
    }
    let s = Scene::new();
    let _b = s.start(&[("a", t())], &[]);
    wait_socket(&s.sock("a"));
    let (_, _, _, ino) = socket_meta(&s.sock("a"));
    let mut c = echo_conn(&s.sock("a"), b"x");
    s.write(&[("a", "uid: 231072\ngid: 231072\nmode: \"0660\"")]);
    wait_until("owner/mode to change", DEADLINE, || {
        socket_meta(&s.sock("a")) == (231072, 231072, 0o660, ino)
    });
    echo_again(&mut c, b"unaffected");
}

#[test]
fn upstream_change_applies_to_new_connections_only() {
    let s = Scene::new();
    let old = Upstream::start(&s.dir.path().join("old.sock"), Some("OLD:"));
    let new = Upstream::start(&s.dir.path().join("new.sock"), Some("NEW:"));
    let with = |u: &Path| format!("{}\nupstream: {}", t(), u.display());
    let _b = s.start(&[("a", &with(&old.path))], &[]);
    wait_socket(&s.sock("a"));
    let mut c1 = echo_conn(&s.sock("a"), b"");
    let mut tag = [0u8; 4];
    std::io::Read::read_exact(&mut c1, &mut tag).unwrap();
    assert_eq!(&tag, b"OLD:");
    s.write(&[("a", &with(&new.path))]);
    wait_until(
        "new connections to reach the new upstream",
        DEADLINE,
        || {
            let mut c = echo_conn(&s.sock("a"), b"");
            std::io::Read::read_exact(&mut c, &mut tag).unwrap();
            &tag == b"NEW:"
        },
    );
    echo_again(&mut c1, b"old connection still talks to OLD");
}

#[test]
fn listen_path_moves() {
    let s = Scene::new();
    let b = s.start(&[("a", t())], &[]);
    wait_socket(&s.sock("a"));
    let mut c = echo_conn(&s.sock("a"), b"before move");
    let moved = s.dir.path().join("elsewhere/a.sock");
    let text = s.yaml(&[("a", t())]).replace(
        &s.sock("a").display().to_string(),
        &moved.display().to_string(),
    );
    write_config(&s.config(), &text);
    wait_socket(&moved);
    wait_gone(&s.sock("a"));
    // The connection accepted on the old path drains (2s), it is not cut at once.
    echo_again(&mut c, b"draining");
    let _ = echo_conn(&moved, b"on the new path");
    b.wait_log("configuration reloaded");
}

fn check_save_style(save: impl Fn(&Scene, &str)) {
    let s = Scene::new();
    let b = s.start(&[("a", t())], &[]);
    wait_socket(&s.sock("a"));
    let ino = socket_meta(&s.sock("a")).3;
    save(&s, &s.yaml(&[("a", t()), ("b", t())]));
    wait_socket(&s.sock("b"));
    save(&s, &s.yaml(&[("a", t()), ("c", t())]));
    wait_socket(&s.sock("c"));
    wait_gone(&s.sock("b"));
    assert_eq!(socket_meta(&s.sock("a")).3, ino);
    drop(b);
}

#[test]
fn save_in_place() {
    check_save_style(|s, text| std::fs::write(s.config(), text).unwrap());
}

#[test]
fn save_by_rename() {
    check_save_style(|s, text| write_config(&s.config(), text));
}

#[test]
fn save_by_sed_in_place() {
    let s = Scene::new();
    let _b = s.start(&[("a", t())], &[]);
    wait_socket(&s.sock("a"));
    let ino = socket_meta(&s.sock("a")).3;
    let st = Command::new("sed")
        .args(["-i", "s/mode: \"0600\"/mode: \"0640\"/"])
        .arg(s.config())
        .status()
        .unwrap();
    assert!(st.success());
    wait_until("sed -i edit to apply", DEADLINE, || {
        socket_meta(&s.sock("a")).2 == 0o640
    });
    assert_eq!(socket_meta(&s.sock("a")).3, ino);
}

#[test]
fn save_by_delete_then_recreate() {
    check_save_style(|s, text| {
        std::fs::remove_file(s.config()).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        std::fs::write(s.config(), text).unwrap();
    });
}

#[test]
fn kubernetes_configmap_symlink_swap() {
    let s = Scene::new();
    let cm = s.dir.path().join("cm");
    std::fs::create_dir(&cm).unwrap();
    let publish = |gen: u32, text: &str| {
        let ts = cm.join(format!("..2026_11_29_00_00_0{gen}.{gen}"));
        std::fs::create_dir(&ts).unwrap();
        std::fs::write(ts.join("sockbroker.yaml"), text).unwrap();
        let tmp = cm.join("..data_tmp");
        symlink(ts.file_name().unwrap(), &tmp).unwrap();
        let old = std::fs::read_link(cm.join("..data")).ok();
        std::fs::rename(&tmp, cm.join("..data")).unwrap();
        if let Some(old) = old {
            std::fs::remove_dir_all(cm.join(old)).unwrap();
        }
    };
    publish(1, &s.yaml(&[("a", t())]));
    symlink("..data/sockbroker.yaml", cm.join("sockbroker.yaml")).unwrap();
    let _b = Broker::start(&cm.join("sockbroker.yaml"), &[], &[]);
    wait_socket(&s.sock("a"));
    publish(2, &s.yaml(&[("a", t()), ("b", t())]));
    wait_socket(&s.sock("b"));
    publish(3, &s.yaml(&[("b", t())]));
    wait_gone(&s.sock("a"));
}

#[test]
fn burst_of_fifty_edits_converges_to_the_last() {
    let s = Scene::new();
    let b = s.start(&[("a", t())], &[]);
    wait_socket(&s.sock("a"));
    for i in 0..50 {
        let name = format!("t{i}");
        s.write(&[("a", t()), (&name, t())]);
    }
    wait_socket(&s.sock("t49"));
    b.wait_log("configuration reloaded");
    wait_until("only a and t49 to remain", DEADLINE, || {
        (0..49).all(|i| !s.sock(&format!("t{i}")).exists())
    });
    assert!(s.sock("a").exists());
}

#[test]
fn invalid_edit_changes_nothing_and_a_later_valid_edit_applies() {
    let s = Scene::new();
    let b = s.start(&[("a", t())], &[]);
    wait_socket(&s.sock("a"));
    let ino = socket_meta(&s.sock("a")).3;
    let mut c = echo_conn(&s.sock("a"), b"x");
    // Syntax error, validation error, half-written file, missing file, directory.
    let bad: Vec<Box<dyn Fn()>> = vec![
        Box::new(|| write_config(&s.config(), "tenants: [unclosed\n")),
        Box::new(|| write_config(&s.config(), &s.yaml(&[("a", "uid: 0\ngid: 0\nmode: 660")]))),
        Box::new(|| {
            let full = s.yaml(&[("a", t()), ("b", t())]);
            std::fs::write(s.config(), &full[..full.len() - 12]).unwrap()
        }),
        Box::new(|| std::fs::remove_file(s.config()).unwrap()),
        Box::new(|| std::fs::create_dir(s.config()).unwrap()),
    ];
    for (i, edit) in bad.iter().enumerate() {
        edit();
        b.wait_log_n("running tenants unchanged", 1 + i);
        assert_eq!(socket_meta(&s.sock("a")).3, ino);
        echo_again(&mut c, b"still here");
        if s.config().is_dir() {
            std::fs::remove_dir(s.config()).unwrap();
        }
    }
    b.wait_log("reload rejected");
    s.write(&[("a", t()), ("b", t())]);
    wait_socket(&s.sock("b"));
    assert_eq!(socket_meta(&s.sock("a")).3, ino);
}

#[test]
fn sighup_reloads_with_watching_off() {
    let s = Scene::new();
    let b = s.start(&[("a", t())], &["--watch", "off"]);
    wait_socket(&s.sock("a"));
    s.write(&[("a", t()), ("b", t())]);
    b.signal(Signal::SIGHUP);
    wait_socket(&s.sock("b"));
}

#[test]
fn poll_watch_mode_follows_edits() {
    let s = Scene::new();
    let _b = s.start(
        &[("a", t())],
        &["--watch", "poll", "--poll-interval", "200ms"],
    );
    wait_socket(&s.sock("a"));
    s.write(&[("a", t()), ("b", t())]);
    wait_socket(&s.sock("b"));
}

#[test]
fn tenant_blocked_by_a_file_comes_up_once_it_is_removed() {
    let s = Scene::new();
    std::fs::create_dir_all(s.dir.path().join("a")).unwrap();
    std::fs::write(s.sock("a"), b"squatter").unwrap();
    let b = s.start(&[("a", t()), ("ok", t())], &[]);
    wait_socket(&s.sock("ok"));
    b.wait_log("regular file");
    // The obstacle changes (atomically, by rename): the reported reason follows it.
    let tmp = s.dir.path().join("a/link.tmp");
    symlink("/nonexistent", &tmp).unwrap();
    std::fs::rename(&tmp, s.sock("a")).unwrap();
    b.wait_log("is a symlink");
    std::fs::remove_file(s.sock("a")).unwrap();
    wait_socket(&s.sock("a"));
}

#[test]
fn thousand_tenants_adding_one_touches_no_other() {
    let s = Scene::new();
    let names: Vec<String> = (0..1000).map(|i| format!("t{i:04}")).collect();
    let mut tenants: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), t())).collect();
    let b = s.start(&tenants, &[]);
    b.wait_log("sockbroker started");
    for n in &names {
        wait_socket(&s.sock(n));
    }
    let inodes: Vec<u64> = names.iter().map(|n| socket_meta(&s.sock(n)).3).collect();
    tenants.push(("extra", t()));
    s.write(&tenants);
    wait_socket(&s.sock("extra"));
    b.wait_log("added=1 changed=0 removed=0");
    let after: Vec<u64> = names.iter().map(|n| socket_meta(&s.sock(n)).3).collect();
    assert_eq!(inodes, after);
}
