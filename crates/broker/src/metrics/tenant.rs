//! Per-tenant numbers: one [`TenantCounters`] of plain atomics a tenant, and
//! the collector that turns them into metric families when `/metrics` is
//! scraped (see the parent module for why they are not `prometheus` metrics).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};

/// Why a connection was closed without relaying (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Peer credentials outside the `allow` lists (or unreadable).
    PeerNotAllowed = 0,
    /// `max_connections` reached.
    Limit = 1,
    /// The upstream socket could not be reached in time.
    UpstreamUnavailable = 2,
}

/// Connection rejection reasons (the `reason` label), indexed by [`Reject`].
pub const REJECT_REASONS: [&str; 3] = ["peer_not_allowed", "limit", "upstream_unavailable"];

/// How the broker settled one policy-mode request: the `verdict` and `reason`
/// labels of `sockbroker_requests_total` (docs/metrics.md). A request is
/// counted once: when it is forwarded, or when the broker answers it itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// Allowed and forwarded to the upstream (`reason=""`).
    Forwarded = 0,
    /// Allowed, but the upstream could not be reached (`502`).
    UpstreamUnavailable = 1,
    /// Refused by the access policy, a rule or a body check (`403`).
    Policy = 2,
    /// Names an object the tenant does not own (`404`, `scope: own`).
    NotOwned = 3,
    /// A request the broker cannot check: malformed head, target or body
    /// framing, HTTP/2 (`400`, `431`, `501`).
    BadRequest = 4,
    /// A body too large to inspect (`413`).
    TooLarge = 5,
    /// Head or body did not arrive within `request_timeout` (`408`).
    Timeout = 6,
    /// Over `max_connections` (`429`).
    Limit = 7,
}

/// `(verdict, reason)` label values of `sockbroker_requests_total`, indexed by
/// [`RequestOutcome`]: a fixed set, so the series stay bounded.
pub const REQUEST_OUTCOMES: [(&str, &str); 8] = [
    ("allowed", ""),
    ("allowed", "upstream_unavailable"),
    ("denied", "policy"),
    ("denied", "not_owned"),
    ("denied", "bad_request"),
    ("denied", "too_large"),
    ("denied", "timeout"),
    ("denied", "limit"),
];

impl RequestOutcome {
    /// The `verdict` label value (`allowed` / `denied`), also the audit line's.
    pub fn verdict(self) -> &'static str {
        REQUEST_OUTCOMES[self as usize].0
    }
    /// The `reason` label value (`""` for a forwarded request).
    pub fn reason(self) -> &'static str {
        REQUEST_OUTCOMES[self as usize].1
    }
}

/// Upper bounds (seconds) of `sockbroker_connection_duration_seconds`.
const DURATION_BOUNDS: [f64; 12] = [
    0.001, 0.005, 0.025, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0, 86400.0,
];
/// Upper bounds (seconds) of `sockbroker_upstream_connect_duration_seconds`.
const CONNECT_BOUNDS: [f64; 10] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.005, 0.025, 0.1, 1.0, 5.0,
];

/// A histogram of plain atomics with fixed bounds: `N` counters, one per bound
/// plus one for everything above the last bound. The count is the sum of the
/// counters, so a scrape always sees buckets and count agree.
pub struct AtomicHistogram<const N: usize> {
    /// Upper bounds in seconds, `N - 1` of them, ascending.
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last one is above every bound.
    counts: [AtomicU64; N],
    /// Sum of all observations in nanoseconds (u64 lasts 584 years of sum).
    sum_ns: AtomicU64,
}

impl<const N: usize> AtomicHistogram<N> {
    fn new(bounds: &'static [f64]) -> Self {
        debug_assert_eq!(bounds.len() + 1, N);
        AtomicHistogram {
            bounds,
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Record one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self.bounds.partition_point(|b| *b < secs);
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_ns
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    fn to_proto(&self) -> proto::Histogram {
        let mut cumulative = 0;
        let mut bucket = Vec::with_capacity(N - 1);
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.counts[i].load(Relaxed);
            bucket.push(proto::Bucket {
                cumulative_count: Some(cumulative),
                upper_bound: Some(*bound),
                ..Default::default()
            });
        }
        cumulative += self.counts[N - 1].load(Relaxed);
        proto::Histogram {
            sample_count: Some(cumulative),
            sample_sum: Some(self.sum_ns.load(Relaxed) as f64 / 1e9),
            bucket,
            ..Default::default()
        }
    }
}

/// One tenant's numbers, as plain atomics: the data path bumps them without
/// lookups or locks; they become series only when `/metrics` is scraped.
pub struct TenantCounters {
    /// The `tenant` label.
    name: String,
    /// Whether the tenant's socket is listening.
    up: AtomicBool,
    /// Whether its upstream answered the last connect or probe:
    /// [`UPSTREAM_UNKNOWN`], [`UPSTREAM_UP`] or [`UPSTREAM_DOWN`].
    upstream: AtomicU8,
    /// Connections open right now (the gauge; a tenant added again while its
    /// old self drains shares it, as the series is the same).
    active: AtomicUsize,
    /// Every accepted connection, including rejected ones.
    total: AtomicU64,
    /// Rejected connections, indexed by [`Reject`].
    rejected: [AtomicU64; 3],
    /// Bytes client → upstream.
    bytes_upstream: AtomicU64,
    /// Bytes upstream → client.
    bytes_downstream: AtomicU64,
    /// How long relayed connections lived.
    duration: AtomicHistogram<13>,
    /// How long connecting to the upstream took.
    connect: AtomicHistogram<11>,
    /// Set once the tenant is configured with an access policy: only then does
    /// it have `sockbroker_requests_total` series (from 0, so rates and alerts
    /// work before the first request).
    policy_seen: AtomicBool,
    /// Policy-mode requests, indexed by [`RequestOutcome`].
    requests: [AtomicU64; 8],
}

/// A tenant's shared metric handle.
pub type TenantMetrics = Arc<TenantCounters>;

/// Upstream state: not tried yet (no `sockbroker_upstream_up` series).
const UPSTREAM_UNKNOWN: u8 = 0;
/// Upstream state: the last connect (or probe) succeeded.
const UPSTREAM_UP: u8 = 1;
/// Upstream state: the last connect (or probe) was refused or found nothing.
const UPSTREAM_DOWN: u8 = 2;

impl TenantCounters {
    pub(super) fn new(name: &str) -> Self {
        TenantCounters {
            name: name.to_owned(),
            up: AtomicBool::new(false),
            upstream: AtomicU8::new(UPSTREAM_UNKNOWN),
            active: AtomicUsize::new(0),
            total: AtomicU64::new(0),
            rejected: std::array::from_fn(|_| AtomicU64::new(0)),
            bytes_upstream: AtomicU64::new(0),
            bytes_downstream: AtomicU64::new(0),
            duration: AtomicHistogram::new(&DURATION_BOUNDS),
            connect: AtomicHistogram::new(&CONNECT_BOUNDS),
            policy_seen: AtomicBool::new(false),
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Record whether the tenant is listening.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Relaxed);
    }

    /// One more accepted connection.
    pub fn accepted(&self) {
        self.total.fetch_add(1, Relaxed);
    }

    /// One more connection closed without relaying.
    pub fn rejected(&self, why: Reject) {
        self.rejected[why as usize].fetch_add(1, Relaxed);
        if why == Reject::UpstreamUnavailable {
            self.set_upstream(false);
        }
    }

    /// Record whether the upstream answered (a connection or the periodic probe).
    pub fn set_upstream(&self, up: bool) {
        self.upstream
            .store(if up { UPSTREAM_UP } else { UPSTREAM_DOWN }, Relaxed);
    }

    /// Whether the upstream answered last time; `None` before the first try.
    pub fn upstream_up(&self) -> Option<bool> {
        match self.upstream.load(Relaxed) {
            UPSTREAM_UP => Some(true),
            UPSTREAM_DOWN => Some(false),
            _ => None,
        }
    }

    /// A relayed connection ended after `d`.
    pub fn connection_ended(&self, d: Duration) {
        self.duration.observe(d);
    }

    /// Connecting to the upstream took `d`.
    pub fn upstream_connected(&self, d: Duration) {
        self.connect.observe(d);
        self.set_upstream(true);
    }

    /// The tenant has an access policy: give it `requests_total` series.
    pub fn policy_mode(&self) {
        self.policy_seen.store(true, Relaxed);
    }

    /// One policy-mode request and how it was settled.
    pub fn request(&self, outcome: RequestOutcome) {
        self.requests[outcome as usize].fetch_add(1, Relaxed);
    }

    /// A connection passed the peer check and counts as active.
    pub fn opened(&self) {
        self.active.fetch_add(1, Relaxed);
    }

    /// An active connection ended.
    pub fn closed(&self) {
        self.active.fetch_sub(1, Relaxed);
    }
}

impl sockbroker_relay::ByteSink for TenantCounters {
    fn add(&self, dir: sockbroker_relay::Direction, n: u64) {
        match dir {
            sockbroker_relay::Direction::Upstream => self.bytes_upstream.fetch_add(n, Relaxed),
            sockbroker_relay::Direction::Downstream => self.bytes_downstream.fetch_add(n, Relaxed),
        };
    }
}

/// The tenants whose numbers `/metrics` shows, by name.
pub(super) type TenantTable = Arc<Mutex<BTreeMap<String, TenantMetrics>>>;

/// The per-tenant metric families, built from [`TenantCounters`] at scrape
/// time one family at a time, so a scrape never holds every series at once.
pub(super) struct TenantCollector {
    /// Every tenant's counters; locked only to add, remove or list tenants.
    pub(super) tenants: TenantTable,
}

/// The per-tenant metric families, in the order `/metrics` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    Up,
    UpstreamUp,
    Active,
    Connections,
    Rejected,
    Bytes,
    Duration,
    Connect,
    Requests,
}

impl Family {
    pub(super) const ALL: [Family; 9] = [
        Family::Up,
        Family::UpstreamUp,
        Family::Active,
        Family::Connections,
        Family::Rejected,
        Family::Bytes,
        Family::Duration,
        Family::Connect,
        Family::Requests,
    ];

    /// Name, help, type and the label besides `tenant` (if any).
    pub(super) fn describe(self) -> (&'static str, &'static str, MetricType, Option<&'static str>) {
        use MetricType::{COUNTER, GAUGE, HISTOGRAM};
        match self {
            Family::Up => (
                "sockbroker_tenant_up",
                "Whether the tenant's socket is listening (1) or down (0).",
                GAUGE,
                None,
            ),
            Family::UpstreamUp => (
                "sockbroker_upstream_up",
                "Whether the tenant's upstream accepted the last connection or probe (1) or refused or was missing (0).",
                GAUGE,
                None,
            ),
            Family::Active => (
                "sockbroker_connections_active",
                "Connections currently open through the tenant.",
                GAUGE,
                None,
            ),
            Family::Connections => (
                "sockbroker_connections_total",
                "Connections accepted on the tenant's socket, including rejected ones.",
                COUNTER,
                None,
            ),
            Family::Rejected => (
                "sockbroker_connections_rejected_total",
                "Connections closed without relaying, by reason.",
                COUNTER,
                Some("reason"),
            ),
            Family::Bytes => (
                "sockbroker_bytes_total",
                "Bytes relayed; direction upstream = client to upstream, downstream = back.",
                COUNTER,
                Some("direction"),
            ),
            Family::Duration => (
                "sockbroker_connection_duration_seconds",
                "Lifetime of relayed connections.",
                HISTOGRAM,
                None,
            ),
            Family::Connect => (
                "sockbroker_upstream_connect_duration_seconds",
                "Time to connect to the upstream socket.",
                HISTOGRAM,
                None,
            ),
            Family::Requests => (
                "sockbroker_requests_total",
                "HTTP requests seen in access-policy mode, by verdict and reason.",
                COUNTER,
                Some("verdict"),
            ),
        }
    }
}

fn label(name: &str, value: &str) -> LabelPair {
    LabelPair {
        name: Some(name.to_owned()),
        value: Some(value.to_owned()),
        ..Default::default()
    }
}

/// A series: the `tenant` label plus at most one other, sorted by label name
/// as the text format's readers (and our tests) expect.
fn series(tenant: &str, extra: Option<(&str, &str)>) -> proto::Metric {
    let mut labels = vec![label("tenant", tenant)];
    if let Some((k, v)) = extra {
        labels.push(label(k, v));
        labels.sort_by(|a, b| a.name().cmp(b.name()));
    }
    proto::Metric::from_label(labels)
}

fn counter(v: u64) -> proto::Counter {
    proto::Counter {
        value: Some(v as f64),
        ..Default::default()
    }
}

fn gauge(v: f64) -> proto::Gauge {
    proto::Gauge {
        value: Some(v),
        ..Default::default()
    }
}

impl TenantCollector {
    /// One tenant's series of `family`.
    fn push_series(family: Family, t: &TenantCounters, out: &mut Vec<proto::Metric>) {
        let n = t.name.as_str();
        // A counter per value of the family's second label.
        let mut counters = |label: &str, values: &[(&str, &AtomicU64)]| {
            for (value, c) in values {
                let mut m = series(n, Some((label, value)));
                m.set_counter(counter(c.load(Relaxed)));
                out.push(m);
            }
        };
        let mut m = series(n, None);
        match family {
            Family::Up => m.set_gauge(gauge(f64::from(u8::from(t.up.load(Relaxed))))),
            Family::UpstreamUp => match t.upstream_up() {
                Some(up) => m.set_gauge(gauge(f64::from(u8::from(up)))),
                None => return,
            },
            Family::Active => m.set_gauge(gauge(t.active.load(Relaxed) as f64)),
            Family::Connections => m.set_counter(counter(t.total.load(Relaxed))),
            Family::Duration => m.set_histogram(t.duration.to_proto()),
            Family::Connect => m.set_histogram(t.connect.to_proto()),
            Family::Rejected => {
                let values: Vec<_> = REJECT_REASONS.into_iter().zip(&t.rejected).collect();
                return counters("reason", &values);
            }
            Family::Bytes => {
                return counters(
                    "direction",
                    &[
                        ("upstream", &t.bytes_upstream),
                        ("downstream", &t.bytes_downstream),
                    ],
                )
            }
            // Only tenants configured with an access policy have these series.
            Family::Requests if !t.policy_seen.load(Relaxed) => return,
            Family::Requests => {
                for ((verdict, reason), c) in REQUEST_OUTCOMES.iter().zip(&t.requests) {
                    let mut labels = vec![
                        label("reason", reason),
                        label("tenant", n),
                        label("verdict", verdict),
                    ];
                    labels.sort_by(|a, b| a.name().cmp(b.name()));
                    let mut m = proto::Metric::from_label(labels);
                    m.set_counter(counter(c.load(Relaxed)));
                    out.push(m);
                }
                return;
            }
        }
        out.push(m);
    }

    /// `family` with one or more series per tenant.
    pub(super) fn family(&self, family: Family, tenants: &[TenantMetrics]) -> MetricFamily {
        let (name, help, kind, _) = family.describe();
        let mut metric = Vec::with_capacity(tenants.len());
        for t in tenants {
            Self::push_series(family, t, &mut metric);
        }
        let mut f = MetricFamily::default();
        f.set_name(name.to_owned());
        f.set_help(help.to_owned());
        f.set_field_type(kind);
        f.set_metric(metric);
        f
    }

    /// Every tenant's handle, copied out so the lock is not held while rendering.
    pub(super) fn snapshot(&self) -> Vec<TenantMetrics> {
        self.tenants
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }
}
