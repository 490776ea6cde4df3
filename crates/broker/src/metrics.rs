//! Prometheus metrics: names, types and labels exactly as docs/metrics.md
//! "Metrics" lists them.
//!
//! Broker-wide metrics are ordinary `prometheus` crate metrics. Per-tenant
//! numbers are not: the crate keeps a copy of the help text, descriptor and
//! label pairs in every series (about 5 KB a tenant for our twelve series,
//! docs/performance.md), which dominated the broker's memory with thousands of
//! tenants. Instead each tenant has one [`TenantCounters`] of plain atomics
//! (about 0.3 KB) that the data path bumps without lookups or locks, and a
//! custom collector turns them into metric families only when `/metrics` is
//! scraped. A removed tenant's series are dropped after its drain
//! ([`Metrics::remove_tenant`]), so label sets do not grow as tenants come and go.

mod tenant;

use std::sync::Arc;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub use tenant::{
    AtomicHistogram, Reject, RequestOutcome, TenantCounters, TenantMetrics, REJECT_REASONS,
    REQUEST_OUTCOMES,
};
use tenant::{Family, TenantCollector, TenantTable};

/// Every metric the broker exports, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    /// The registry `/metrics` renders (ours plus the process collector).
    registry: Registry,
    /// 1 when the last reload attempt succeeded, 0 when it failed.
    pub config_last_reload_successful: IntGauge,
    /// Unix time of the last successful (re)load.
    pub config_last_reload_success_timestamp_seconds: Gauge,
    /// Reload attempts by result (success / failure).
    config_reloads_total: IntCounterVec,
    /// Number of configured tenants (up or down).
    pub tenants: IntGauge,
    /// Upgrades in place (SIGUSR2) by result (success / failure).
    upgrades_total: IntCounterVec,
    /// Per-tenant counters by tenant name, rendered after the registry's families.
    per_tenant: Arc<TenantCollector>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn reg<T: Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    r.register(Box::new(c.clone()))
        .expect("metric names are unique constants");
    c
}

impl Metrics {
    /// Build and register every metric.
    pub fn new() -> Self {
        let r = Registry::new();
        let build_info = reg(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "sockbroker_build_info",
                    "Build information (version, git commit as in `sockbroker --version`); always 1.",
                ),
                &["version", "commit"],
            )
            .unwrap(),
        );
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                option_env!("SOCKBROKER_GIT_COMMIT").unwrap_or("unknown"),
            ])
            .set(1);
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            r.register(Box::new(pc))
                .expect("process collector registers once");
        }
        Metrics {
            config_last_reload_successful: reg(
                &r,
                IntGauge::new(
                    "sockbroker_config_last_reload_successful",
                    "Whether the last configuration (re)load attempt succeeded (1) or failed (0).",
                )
                .unwrap(),
            ),
            config_last_reload_success_timestamp_seconds: reg(
                &r,
                Gauge::new(
                    "sockbroker_config_last_reload_success_timestamp_seconds",
                    "Unix time of the last successful configuration (re)load.",
                )
                .unwrap(),
            ),
            config_reloads_total: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "sockbroker_config_reloads_total",
                        "Configuration (re)load attempts by result.",
                    ),
                    &["result"],
                )
                .unwrap(),
            ),
            tenants: reg(
                &r,
                IntGauge::new("sockbroker_tenants", "Number of configured tenants.").unwrap(),
            ),
            upgrades_total: {
                let c = reg(
                    &r,
                    IntCounterVec::new(
                        Opts::new(
                            "sockbroker_upgrades_total",
                            "Upgrades in place (SIGUSR2) started by this process, by result.",
                        ),
                        &["result"],
                    )
                    .unwrap(),
                );
                for result in ["success", "failure"] {
                    c.with_label_values(&[result]);
                }
                c
            },
            per_tenant: Arc::new(TenantCollector {
                tenants: TenantTable::default(),
            }),
            registry: r,
        }
    }

    /// One tenant's counters, created (with its series) on first use. A tenant
    /// added again while its old self still drains shares the old counters.
    pub fn tenant(&self, name: &str) -> TenantMetrics {
        self.per_tenant
            .tenants
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(TenantCounters::new(name)))
            .clone()
    }

    /// Drop every series of a tenant (after its drain ended).
    pub fn remove_tenant(&self, name: &str) {
        self.per_tenant
            .tenants
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }

    /// Record a (re)load attempt.
    pub fn record_reload(&self, success: bool) {
        if success {
            self.config_reloads_total
                .with_label_values(&["success"])
                .inc();
            self.config_last_reload_successful.set(1);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default();
            self.config_last_reload_success_timestamp_seconds.set(now);
        } else {
            self.config_reloads_total
                .with_label_values(&["failure"])
                .inc();
            self.config_last_reload_successful.set(0);
        }
    }

    /// Record an upgrade in place that handed over (`true`) or failed.
    pub fn record_upgrade(&self, success: bool) {
        self.upgrades_total
            .with_label_values(&[if success { "success" } else { "failure" }])
            .inc();
    }

    /// The Prometheus text exposition: the registry's families, then the
    /// per-tenant families, each built and encoded in turn.
    pub fn render(&self) -> String {
        let enc = TextEncoder::new();
        let mut buf = Vec::new();
        enc.encode(&self.registry.gather(), &mut buf)
            .expect("text encoding into a Vec cannot fail");
        let tenants = self.per_tenant.snapshot();
        for f in Family::ALL {
            let family = self.per_tenant.family(f, &tenants);
            if !family.get_metric().is_empty() {
                enc.encode(&[family], &mut buf)
                    .expect("text encoding into a Vec cannot fail");
            }
        }
        String::from_utf8(buf).expect("exposition is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sockbroker_relay::{ByteSink, Direction};
    use std::time::Duration;

    #[test]
    fn tenant_series_appear_and_are_removed() {
        let m = Metrics::new();
        let t = m.tenant("ci");
        t.accepted();
        t.add(Direction::Upstream, 10);
        t.rejected(Reject::Limit);
        t.set_up(true);
        let text = m.render();
        assert!(
            text.contains("sockbroker_connections_total{tenant=\"ci\"} 1"),
            "{text}"
        );
        assert!(text.contains("sockbroker_bytes_total{direction=\"upstream\",tenant=\"ci\"} 10"));
        assert!(text.contains("sockbroker_bytes_total{direction=\"downstream\",tenant=\"ci\"} 0"));
        assert!(text
            .contains("sockbroker_connections_rejected_total{reason=\"limit\",tenant=\"ci\"} 1"));
        assert!(text.contains("sockbroker_tenant_up{tenant=\"ci\"} 1"));
        // No upstream series before the first connect or probe; then 0/1.
        assert!(!text.contains("sockbroker_upstream_up"), "{text}");
        t.rejected(Reject::UpstreamUnavailable);
        assert!(m
            .render()
            .contains("sockbroker_upstream_up{tenant=\"ci\"} 0"));
        t.upstream_connected(Duration::from_millis(1));
        assert!(m
            .render()
            .contains("sockbroker_upstream_up{tenant=\"ci\"} 1"));
        assert!(text.contains("# TYPE sockbroker_connections_total counter"));
        assert!(text.contains("sockbroker_build_info{commit="), "{text}");
        assert!(text.contains(&format!(",version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"))));
        // No requests series until the tenant has an access policy.
        assert!(!text.contains("sockbroker_requests_total"), "{text}");
        t.policy_mode();
        t.request(RequestOutcome::Policy);
        t.request(RequestOutcome::Timeout);
        t.request(RequestOutcome::Timeout);
        let text = m.render();
        let series = |reason: &str, verdict: &str, n: u64| {
            format!("sockbroker_requests_total{{reason=\"{reason}\",tenant=\"ci\",verdict=\"{verdict}\"}} {n}\n")
        };
        assert!(text.contains(&series("policy", "denied", 1)), "{text}");
        assert!(text.contains(&series("timeout", "denied", 2)), "{text}");
        assert!(text.contains(&series("", "allowed", 0)), "{text}");
        // Every (verdict, reason) pair is there from 0, and no other.
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("sockbroker_requests_total{"))
                .count(),
            REQUEST_OUTCOMES.len(),
            "{text}"
        );
        m.remove_tenant("ci");
        let text = m.render();
        assert!(!text.contains("tenant=\"ci\""), "{text}");
        assert!(!text.contains("sockbroker_tenant_up"), "{text}");
    }

    #[test]
    fn same_name_shares_counters_until_removed() {
        let m = Metrics::new();
        m.tenant("a").accepted();
        m.tenant("a").accepted();
        assert!(m
            .render()
            .contains("sockbroker_connections_total{tenant=\"a\"} 2"));
        m.remove_tenant("a");
        m.tenant("a").accepted();
        assert!(m
            .render()
            .contains("sockbroker_connections_total{tenant=\"a\"} 1"));
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_match_the_count() {
        let m = Metrics::new();
        let t = m.tenant("h");
        for ms in [0, 3, 3, 40, 100_000_000] {
            t.connection_ended(Duration::from_millis(ms));
        }
        // Exactly on a bound counts in that bucket (le = "less or equal").
        t.upstream_connected(Duration::from_micros(100));
        let text = m.render();
        let want = [
            "sockbroker_connection_duration_seconds_bucket{tenant=\"h\",le=\"0.001\"} 1",
            "sockbroker_connection_duration_seconds_bucket{tenant=\"h\",le=\"0.005\"} 3",
            "sockbroker_connection_duration_seconds_bucket{tenant=\"h\",le=\"0.025\"} 3",
            "sockbroker_connection_duration_seconds_bucket{tenant=\"h\",le=\"0.1\"} 4",
            "sockbroker_connection_duration_seconds_bucket{tenant=\"h\",le=\"86400\"} 4",
            "sockbroker_connection_duration_seconds_bucket{tenant=\"h\",le=\"+Inf\"} 5",
            "sockbroker_connection_duration_seconds_sum{tenant=\"h\"} 100000.046",
            "sockbroker_connection_duration_seconds_count{tenant=\"h\"} 5",
            "sockbroker_upstream_connect_duration_seconds_bucket{tenant=\"h\",le=\"0.00005\"} 0",
            "sockbroker_upstream_connect_duration_seconds_bucket{tenant=\"h\",le=\"0.0001\"} 1",
            "sockbroker_upstream_connect_duration_seconds_count{tenant=\"h\"} 1",
        ];
        for w in want {
            assert!(text.contains(w), "missing {w} in\n{text}");
        }
    }

    #[test]
    fn tenant_family_names_and_labels_are_valid() {
        for f in Family::ALL {
            let (name, help, _, label) = f.describe();
            let mut l = vec!["tenant".to_owned()];
            l.extend(label.map(str::to_owned));
            prometheus::core::Desc::new(name.into(), help.into(), l, Default::default())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn reload_results() {
        let m = Metrics::new();
        m.record_reload(true);
        m.record_reload(false);
        let text = m.render();
        assert!(text.contains("sockbroker_config_last_reload_successful 0"));
        assert!(text.contains("sockbroker_config_reloads_total{result=\"failure\"} 1"));
        assert!(text.contains("sockbroker_config_reloads_total{result=\"success\"} 1"));
    }
}
