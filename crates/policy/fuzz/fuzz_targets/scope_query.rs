//! `scope: own` query rewriting on arbitrary input: the first line is a query
//! string, the rest request targets. Never panics; a rewritten query carries
//! exactly one `filters` (one `labels` for a build), and it holds the
//! tenant's label; rewriting again changes nothing more. Every target is
//! classified without a panic, and an object route forwarded by ID names the
//! same route.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockbroker_policy::scope::{self, query, Route, LABEL};

const TENANT: &str = "a";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.lines();
    let q = lines.next().filter(|q| !q.is_empty());
    let own = format!("{LABEL}={TENANT}");
    if let Ok(out) = query::with_label_filter(q, TENANT) {
        let f = query::first(Some(&out), "filters").expect("a filters parameter");
        assert_eq!(count(&out, "filters"), 1, "{out}");
        let v: serde_json::Value = serde_json::from_str(&f).expect("filters is JSON");
        assert_eq!(v["label"][&own], serde_json::Value::Bool(true), "{f}");
        let again = query::with_label_filter(Some(&out), TENANT).expect("re-merges");
        assert_eq!(query::first(Some(&again), "filters"), Some(f), "{out}");
    }
    if let Ok(out) = query::for_build(q, TENANT) {
        let l = query::first(Some(&out), "labels").expect("a labels parameter");
        assert_eq!(count(&out, "labels"), 1, "{out}");
        let v: std::collections::BTreeMap<String, String> =
            serde_json::from_str(&l).expect("labels is a JSON map");
        assert_eq!(v[LABEL], TENANT);
    }
    for target in lines.take(8) {
        let Ok(t) = sockbroker_policy::normalize(target) else {
            continue;
        };
        for method in ["GET", "POST", "DELETE", "HEAD", "PUT"] {
            if let Route::Object(o) = scope::classify(method, &t.path) {
                assert!(!o.reference.is_empty());
                let forwarded = o.path_for("0123456789abcdef");
                let t2 =
                    sockbroker_policy::normalize(&forwarded).expect("forwarded path normalizes");
                let Route::Object(o2) = scope::classify(method, &t2.path) else {
                    panic!("{method} {forwarded} is no longer an object route");
                };
                assert_eq!(
                    (o2.kind, o2.reference.as_str(), o2.suffix.as_str()),
                    (o.kind, "0123456789abcdef", o.suffix.as_str())
                );
            }
        }
    }
});

/// How many parameters are named `name` (decoded), as the engine splits them.
fn count(q: &str, name: &str) -> usize {
    q.split(['&', ';'])
        .filter(|p| {
            let k = p.split_once('=').map_or(*p, |(k, _)| k);
            query::first(Some(&format!("{k}=")), name).is_some()
        })
        .count()
}
