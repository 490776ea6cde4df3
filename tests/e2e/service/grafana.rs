//! The Grafana dashboard in deploy/grafana: only exported metrics, valid PromQL.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use sockbroker_e2e::run_ok as ok;
use sockbroker_e2e::*;

use super::*;

/// Every PromQL expression in the dashboard (panel targets and annotations).
fn dashboard_exprs() -> Vec<String> {
    let d: serde_json::Value =
        serde_json::from_str(&read(&deploy("grafana/sockbroker.json"))).unwrap();
    let mut exprs = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    if k == "expr" {
                        out.push(v.as_str().unwrap().to_string());
                    } else {
                        walk(v, out);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&d["panels"], &mut exprs);
    walk(&d["annotations"], &mut exprs);
    for t in d["templating"]["list"].as_array().unwrap() {
        if let Some(q) = t["query"]["query"].as_str() {
            exprs.push(q.to_string());
        }
    }
    assert!(exprs.len() > 10, "{exprs:?}");
    exprs
}

/// Metric names (`sockbroker_*`, `process_*`) in an expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let word_start = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if word_start && (expr[i..].starts_with("sockbroker_") || expr[i..].starts_with("process_"))
        {
            let end = expr[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(b.len(), |e| i + e);
            out.insert(expr[i..end].to_string());
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// Every metric the dashboard queries is in a real broker's /metrics, and every
/// label it groups or filters by exists on the series it uses.
#[test]
fn grafana_dashboard_queries_only_exported_metrics() {
    if skip_unless_root("chown to other uids, setpriv") {
        return;
    }
    const T: &str = "uid: 0\ngid: 0\nmode: \"0600\"";
    let s = Scene::new();
    let (_b, addr) = start_with_metrics(
        &s.config(),
        |addr| format!("metrics:\n  listen: {addr}\n{}", s.yaml(&[("a", T)])),
        &["--retry-interval", "200ms"],
        &[],
    );
    wait_socket(&s.sock("a"));
    // One relayed connection, so the histograms have observations.
    drop(echo_conn(&s.sock("a"), b"ping"));
    let mut exposition = String::new();
    wait_until("a finished connection in /metrics", DEADLINE, || {
        exposition = http_get(&addr, "/metrics").unwrap().1;
        metric_value(
            &exposition,
            "sockbroker_connection_duration_seconds_count{tenant=\"a\"}",
        )
        .is_some_and(|n| n >= 1.0)
    });
    // name → label names seen on its series.
    let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for l in exposition.lines().filter(|l| !l.starts_with('#')) {
        let name_end = l.find(['{', ' ']).unwrap_or(l.len());
        let labels = series.entry(l[..name_end].to_string()).or_default();
        if let Some(body) = l[name_end..].strip_prefix('{') {
            let body = &body[..body.rfind('}').unwrap()];
            for kv in body.split("\",") {
                if let Some((k, _)) = kv.split_once('=') {
                    labels.insert(k.trim().to_string());
                }
            }
        }
    }
    let mut checked = BTreeSet::new();
    for expr in dashboard_exprs() {
        let names = metric_names(&expr);
        assert!(!names.is_empty() || expr.contains("time()"), "{expr}");
        for n in &names {
            assert!(
                series.contains_key(n),
                "the dashboard queries {n}, which /metrics does not have:\n  {expr}"
            );
            checked.insert(n.clone());
        }
        // Labels in `by (…)` and `{…}` matchers exist on one of the expression's metrics
        // (instance and job are added by Prometheus).
        let mut labels = BTreeSet::new();
        for part in expr.split("by (").skip(1) {
            for l in part[..part.find(')').unwrap()].split(',') {
                labels.insert(l.trim().to_string());
            }
        }
        for part in expr.split('{').skip(1) {
            for m in part[..part.find('}').unwrap()].split(',') {
                if let Some(i) = m.find(['=', '!']) {
                    labels.insert(m[..i].trim().to_string());
                }
            }
        }
        for l in labels {
            if ["instance", "job", ""].contains(&l.as_str()) {
                continue;
            }
            let has = names.iter().any(|n| {
                series.get(n).is_some_and(|ls| ls.contains(&l))
                    || (l == "le" && n.ends_with("_bucket"))
            });
            assert!(has, "label {l} is on none of {names:?}:\n  {expr}");
        }
    }
    for must in [
        "sockbroker_tenant_up",
        "sockbroker_connections_active",
        "sockbroker_bytes_total",
        "sockbroker_connections_rejected_total",
        "sockbroker_config_last_reload_successful",
    ] {
        assert!(checked.contains(must), "the dashboard does not show {must}");
    }
}

/// Every expression of the dashboard parses as PromQL: `promtool check rules` on
/// a rule file made of them (Grafana's variables replaced by plain values).
#[test]
fn grafana_dashboard_exprs_are_valid_promql() {
    if !have("promtool", "--version", "apt-get install prometheus") {
        return;
    }
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in dashboard_exprs().iter().enumerate() {
        if e.starts_with("label_values(") {
            continue; // Grafana's own function, not PromQL
        }
        let e = e
            .replace("$__rate_interval", "5m")
            .replace("$instance", ".*")
            .replace("$tenant", ".*")
            .replace("$job", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:expr{i}\n        expr: {}\n",
            serde_json::to_string(&e).unwrap()
        ));
    }
    let dir = scratch();
    let f = dir.path().join("rules.yml");
    std::fs::write(&f, rules).unwrap();
    let mut c = Command::new("promtool");
    c.args(["check", "rules"]).arg(&f);
    ok(c, Duration::from_secs(60));
}
