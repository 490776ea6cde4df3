//! Prometheus metrics (DESIGN.md "Metrics and HTTP endpoints"): names, types and
//! labels exactly as the design's table lists them.
//!
//! Per-tenant handles ([`TenantMetrics`]) are resolved once per tenant, so the
//! hot path increments plain atomics without label lookups. A removed tenant's
//! series are dropped after its drain ([`Metrics::remove_tenant`]), so label
//! sets do not grow as tenants come and go.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Connection rejection reasons (the `reason` label).
pub const REJECT_REASONS: [&str; 3] = ["peer_not_allowed", "limit", "upstream_unavailable"];

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
    tenant_up: IntGaugeVec,
    connections_active: IntGaugeVec,
    connections_total: IntCounterVec,
    connections_rejected_total: IntCounterVec,
    bytes_total: IntCounterVec,
    connection_duration_seconds: HistogramVec,
    upstream_connect_duration_seconds: HistogramVec,
    /// Policy-mode request verdicts; no series until a tenant uses an access policy.
    pub requests_total: IntCounterVec,
}

/// One tenant's metric handles, resolved once so the data path does no lookups.
#[derive(Clone)]
pub struct TenantMetrics {
    /// 1 while the tenant's socket is listening.
    pub up: IntGauge,
    /// Connections currently relayed (or being set up).
    pub active: IntGauge,
    /// Every accepted connection, including rejected ones.
    pub total: IntCounter,
    /// Rejected: peer credentials outside the `allow` lists.
    pub rejected_peer: IntCounter,
    /// Rejected: `max_connections` reached.
    pub rejected_limit: IntCounter,
    /// Rejected: the upstream socket could not be reached in time.
    pub rejected_upstream: IntCounter,
    /// Bytes client → upstream.
    pub bytes_upstream: IntCounter,
    /// Bytes upstream → client.
    pub bytes_downstream: IntCounter,
    /// How long relayed connections lived.
    pub duration: Histogram,
    /// How long connecting to the upstream took.
    pub connect: Histogram,
    /// `sockbroker_requests_total` (labels `tenant`, `verdict`): resolved by the
    /// policy relay per connection, so only tenants with a policy have series.
    pub requests: IntCounterVec,
}

impl sockbroker_relay::ByteSink for TenantMetrics {
    fn add(&self, dir: sockbroker_relay::Direction, n: u64) {
        match dir {
            sockbroker_relay::Direction::Upstream => self.bytes_upstream.inc_by(n),
            sockbroker_relay::Direction::Downstream => self.bytes_downstream.inc_by(n),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
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
                Opts::new("sockbroker_build_info", "Build information; always 1."),
                &["version"],
            )
            .unwrap(),
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            r.register(Box::new(pc))
                .expect("process collector registers once");
        }
        let tenant = &["tenant"];
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
            tenant_up: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "sockbroker_tenant_up",
                        "Whether the tenant's socket is listening (1) or down (0).",
                    ),
                    tenant,
                )
                .unwrap(),
            ),
            connections_active: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "sockbroker_connections_active",
                        "Connections currently open through the tenant.",
                    ),
                    tenant,
                )
                .unwrap(),
            ),
            connections_total: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "sockbroker_connections_total",
                        "Connections accepted on the tenant's socket, including rejected ones.",
                    ),
                    tenant,
                )
                .unwrap(),
            ),
            connections_rejected_total: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "sockbroker_connections_rejected_total",
                        "Connections closed without relaying, by reason.",
                    ),
                    &["tenant", "reason"],
                )
                .unwrap(),
            ),
            bytes_total: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "sockbroker_bytes_total",
                        "Bytes relayed; direction upstream = client to upstream, downstream = back.",
                    ),
                    &["tenant", "direction"],
                )
                .unwrap(),
            ),
            connection_duration_seconds: reg(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "sockbroker_connection_duration_seconds",
                        "Lifetime of relayed connections.",
                    )
                    .buckets(vec![
                        0.001, 0.005, 0.025, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0,
                        86400.0,
                    ]),
                    tenant,
                )
                .unwrap(),
            ),
            upstream_connect_duration_seconds: reg(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "sockbroker_upstream_connect_duration_seconds",
                        "Time to connect to the upstream socket.",
                    )
                    .buckets(vec![
                        0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.005, 0.025, 0.1, 1.0, 5.0,
                    ]),
                    tenant,
                )
                .unwrap(),
            ),
            requests_total: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "sockbroker_requests_total",
                        "HTTP requests seen in access-policy mode, by verdict.",
                    ),
                    &["tenant", "verdict"],
                )
                .unwrap(),
            ),
            registry: r,
        }
    }

    /// Resolve (creating the series of) one tenant's metrics.
    pub fn tenant(&self, name: &str) -> TenantMetrics {
        let rej = |reason: &str| {
            self.connections_rejected_total
                .with_label_values(&[name, reason])
        };
        TenantMetrics {
            up: self.tenant_up.with_label_values(&[name]),
            active: self.connections_active.with_label_values(&[name]),
            total: self.connections_total.with_label_values(&[name]),
            rejected_peer: rej(REJECT_REASONS[0]),
            rejected_limit: rej(REJECT_REASONS[1]),
            rejected_upstream: rej(REJECT_REASONS[2]),
            bytes_upstream: self.bytes_total.with_label_values(&[name, "upstream"]),
            bytes_downstream: self.bytes_total.with_label_values(&[name, "downstream"]),
            duration: self.connection_duration_seconds.with_label_values(&[name]),
            connect: self
                .upstream_connect_duration_seconds
                .with_label_values(&[name]),
            requests: self.requests_total.clone(),
        }
    }

    /// Drop every series of a tenant (after its drain ended).
    pub fn remove_tenant(&self, name: &str) {
        let _ = self.tenant_up.remove_label_values(&[name]);
        let _ = self.connections_active.remove_label_values(&[name]);
        let _ = self.connections_total.remove_label_values(&[name]);
        for reason in REJECT_REASONS {
            let _ = self
                .connections_rejected_total
                .remove_label_values(&[name, reason]);
        }
        for dir in ["upstream", "downstream"] {
            let _ = self.bytes_total.remove_label_values(&[name, dir]);
        }
        let _ = self
            .connection_duration_seconds
            .remove_label_values(&[name]);
        let _ = self
            .upstream_connect_duration_seconds
            .remove_label_values(&[name]);
        for verdict in ["allowed", "denied"] {
            let _ = self.requests_total.remove_label_values(&[name, verdict]);
        }
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

    /// The Prometheus text exposition of everything registered.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(buf).expect("exposition is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_series_appear_and_are_removed() {
        let m = Metrics::new();
        let t = m.tenant("ci");
        t.total.inc();
        t.bytes_upstream.inc_by(10);
        let text = m.render();
        assert!(
            text.contains("sockbroker_connections_total{tenant=\"ci\"} 1"),
            "{text}"
        );
        assert!(text.contains("sockbroker_bytes_total{direction=\"upstream\",tenant=\"ci\"} 10"));
        assert!(text.contains("sockbroker_build_info{version="));
        m.remove_tenant("ci");
        let text = m.render();
        assert!(!text.contains("tenant=\"ci\""), "{text}");
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
