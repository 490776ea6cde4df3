//! Request parsing and policy decisions on arbitrary bytes, as a client could
//! send them: the head parser, target normalization, every preset's decision,
//! the chunked-body scanner and the userns-safe body inspection must never
//! panic, and must keep their invariants.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sockbroker_policy::http1::{self, Chunked, Framing};
use sockbroker_policy::{self as policy, BodyKind, Decision, Lexical, Policy, Preset, Rule};

static POLICIES: LazyLock<Vec<Policy>> = LazyLock::new(policies);

fn policies() -> Vec<Policy> {
    let rules = |l: &[&str]| {
        l.iter()
            .map(|r| Rule::parse(r).unwrap())
            .collect::<Vec<_>>()
    };
    vec![
        Policy::preset(Preset::ReadOnly),
        Policy::preset(Preset::UsernsSafe),
        Policy {
            preset: Some(Preset::Full),
            bind_allow: vec![],
            allow: vec![],
            deny: rules(&["* /containers/create", "GET /secrets/**"]),
        },
        Policy {
            preset: None,
            bind_allow: vec![],
            allow: rules(&["GET,HEAD /**", "POST /containers/*/restart"]),
            deny: rules(&["GET /secrets/**"]),
        },
        Policy {
            preset: Some(Preset::Full),
            bind_allow: vec![],
            allow: vec![],
            deny: rules(&["POST /containers/*/exec"]),
        },
        Policy {
            preset: None,
            bind_allow: vec![],
            allow: rules(&["POST /containers/*/start"]),
            deny: vec![],
        },
    ]
}

/// The normalized path has the canonical form the policy relies on.
fn check_canonical(path: &str) {
    assert!(path.starts_with('/'), "{path:?}");
    assert!(path == "/" || !path.ends_with('/'), "{path:?}");
    for seg in path[1..].split('/').filter(|_| path != "/") {
        assert!(!seg.is_empty() && seg != "." && seg != "..", "{path:?}");
    }
    let first = path[1..].split('/').next().unwrap_or("");
    let version = first.len() > 1
        && matches!(first.as_bytes()[0], b'v' | b'V')
        && first[1..].bytes().all(|b| b.is_ascii_digit() || b == b'.');
    assert!(!version, "version prefix left in {path:?}");
    assert!(!path.chars().any(char::is_control), "{path:?}");
}

fuzz_target!(|data: &[u8]| {
    let _ = http1::parse_response(data, false);
    let _ = http1::parse_response(data, true);
    let _ = http1::h2_preface(data);
    let head = match http1::parse_request(data) {
        Ok(Some(h)) => h,
        _ => return,
    };
    assert!(head.len <= data.len());
    assert_ne!(head.body, Framing::UntilClose);
    let body = &data[head.len..];

    if let Ok(target) = policy::normalize(head.target(data)) {
        check_canonical(&target.path);
        // Normalizing the canonical form again changes nothing (when it has
        // nothing that decodes or splits again).
        if !target.path.contains(['%', '?']) {
            assert_eq!(policy::normalize(&target.path).unwrap().path, target.path);
        }
        for p in POLICIES.iter() {
            let d = p.decide(&head.method, &target, head.upgrade);
            if p.preset == Some(Preset::ReadOnly) {
                if let Decision::Allow = d {
                    let m = head.method.to_ascii_uppercase();
                    assert!(m == "GET" || m == "HEAD", "read-only allowed {m}");
                    assert!(!head.upgrade);
                }
            }
            if p.deny.iter().any(|r| r.as_str() == "* /containers/create")
                && target.path.eq_ignore_ascii_case("/containers/create")
            {
                assert!(matches!(d, Decision::Deny(_)));
            }
            // Whatever the spelling of the container name: an exec is never
            // let through a deny rule, nor through userns-safe unchecked;
            // read-only never hands out file contents; a start outside
            // `full` always has its body checked.
            let route = policy::route::resolve(&head.method, &target.path);
            let m = head.method.to_ascii_uppercase();
            if m == "POST" && route.is(&["containers", "*", "exec"]) {
                if p.deny
                    .iter()
                    .any(|r| r.as_str() == "POST /containers/*/exec")
                {
                    assert!(matches!(d, Decision::Deny(_)), "exec passed a deny rule");
                }
                if p.preset == Some(Preset::UsernsSafe) {
                    assert!(!matches!(d, Decision::Allow), "exec not inspected");
                }
            }
            if p.preset != Some(Preset::Full) && route.is(&["containers", "*", "start"]) {
                assert!(!matches!(d, Decision::Allow), "start without body check");
            }
            if p.preset == Some(Preset::ReadOnly) && matches!(d, Decision::Allow) {
                for segs in [
                    &["containers", "*", "archive"][..],
                    &["containers", "*", "export"],
                    &["images", "*", "get"],
                    &["images", "get"],
                    &["swarm", "unlockkey"],
                ] {
                    assert!(!route.is(segs), "read-only allowed {}", target.path);
                }
                assert!(route.known && !route.libpod);
            }
            if p.preset == Some(Preset::UsernsSafe) && route.libpod {
                assert!(matches!(d, Decision::Deny(_)));
            }
            if let Decision::Inspect(kind) = d {
                let _ = p.check_body(kind, body, &Lexical);
            }
        }
    }

    // The chunked scanner gives the same result fed at once or byte by byte.
    if head.body == Framing::Chunked {
        let mut whole = Chunked::default();
        let mut out_whole = Vec::new();
        let r_whole = whole.advance(body, |d| out_whole.extend_from_slice(d));
        let mut bytewise = Chunked::default();
        let mut out_bytes = Vec::new();
        let mut buf = Vec::new();
        let mut used = 0;
        let mut err = false;
        for b in body {
            buf.push(*b);
            match bytewise.advance(&buf, |d| out_bytes.extend_from_slice(d)) {
                Ok(n) => {
                    buf.drain(..n);
                    used += n;
                }
                Err(_) => {
                    err = true;
                    break;
                }
            }
            if bytewise.is_done() {
                break;
            }
        }
        if let Ok(n) = r_whole {
            if whole.is_done() {
                assert!(!err);
                assert!(bytewise.is_done());
                assert_eq!(n, used);
                assert_eq!(out_whole, out_bytes);
            }
        }
    }

    // Inspection never panics on any body.
    for kind in [
        BodyKind::ContainerCreate,
        BodyKind::ContainerUpdate,
        BodyKind::ContainerStart,
        BodyKind::CheckpointCreate,
        BodyKind::ExecCreate,
        BodyKind::VolumeCreate,
    ] {
        let _ = policy::inspect::check(
            kind,
            body,
            &[std::path::PathBuf::from("/srv/data")],
            &Lexical,
        );
    }
});
