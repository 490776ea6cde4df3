//! `scope: own` label stamping on arbitrary create bodies: never panics; a
//! stamped body is one JSON object with exactly one key folding to `Labels`,
//! holding the tenant's label; stamping it again gives the same value; the
//! references of a stamped body are read, and replaced by IDs, without a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockbroker_policy::inspect::go_fold_eq;
use sockbroker_policy::scope::{body, CreateKind, LABEL};

fuzz_target!(|data: &[u8]| {
    for kind in [
        CreateKind::Container,
        CreateKind::Volume,
        CreateKind::Network,
        CreateKind::Commit,
    ] {
        let Ok(out) = body::stamp(kind, data, "a") else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_slice(&out).expect("stamped body is JSON");
        let obj = v.as_object().expect("stamped body is an object");
        let keys: Vec<&String> = obj.keys().filter(|k| go_fold_eq(k, "Labels")).collect();
        assert_eq!(keys, ["Labels"], "{v}");
        assert_eq!(v["Labels"][LABEL], "a", "{v}");
        let again = body::stamp(kind, &out, "a").expect("a stamped body stamps again");
        let again: serde_json::Value = serde_json::from_slice(&again).expect("JSON");
        assert_eq!(again, v);
        if kind == CreateKind::Container {
            let refs = body::references(&out).expect("a stamped body is JSON");
            // Every container named goes on by its ID: the rewrite never
            // panics and keeps the body a JSON object.
            let ids: std::collections::HashMap<String, String> = refs
                .iter()
                .filter(|r| r.kind == sockbroker_policy::scope::Kind::Container)
                .map(|r| (r.name.clone(), "f".repeat(64)))
                .collect();
            let by_id = body::with_container_ids(&out, &ids).expect("a stamped body is JSON");
            let w: serde_json::Value = serde_json::from_slice(&by_id).expect("JSON");
            assert!(w.is_object(), "{w}");
            let _ = body::endpoint_network_ids(&out).expect("a stamped body is JSON");
        }
    }
    let _ = body::references(data);
    let _ = body::attach_container(data);
    let _ = body::create_name(data);
    let _ = body::endpoint_network_ids(data);
});
