//! Statistics and the result tables.

use crate::target::{Kind, KINDS};
use std::fmt::Write as _;

pub(crate) fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Percentile `p` (0..=100) of sorted nanosecond samples, in microseconds.
pub(crate) fn pct_us(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

/// One row of the report: a metric measured for some of the three kinds.
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) unit: &'static str,
    /// Higher is better (rates), else lower is better (latency, memory, time).
    pub(crate) higher_better: bool,
    pub(crate) samples: [Vec<f64>; KINDS],
}

impl Row {
    pub(crate) fn new(name: impl Into<String>, unit: &'static str, hb: bool) -> Row {
        Row {
            name: name.into(),
            unit,
            higher_better: hb,
            samples: Default::default(),
        }
    }
    pub(crate) fn push(&mut self, k: Kind, v: f64) {
        self.samples[k as usize].push(v);
    }
    pub(crate) fn med(&self, k: Kind) -> Option<f64> {
        let s = &self.samples[k as usize];
        (!s.is_empty()).then(|| median(s))
    }
}

pub(crate) fn fmt_num(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v.is_nan() => "-".into(),
        Some(v) if v >= 10_000.0 => format!("{v:.0}"),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

pub(crate) fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 && !a.is_nan() && !b.is_nan() => format!("{:.2}x", a / b),
        _ => "-".into(),
    }
}

/// The main table: direct, socat (or B), the floor relay and sockbroker, with
/// sockbroker's ratio to each. Columns nothing was measured for are left out.
pub(crate) fn print_table(rows: &[Row]) -> String {
    let mut out = String::new();
    let c2 = Kind::Socat.name();
    let floor = rows.iter().any(|r| r.med(Kind::Floor).is_some());
    let (fh, fs) = if floor {
        (" floor |", "---:|")
    } else {
        ("", "")
    };
    let (frh, frs) = if floor {
        (" sockbroker/floor |", "---:|")
    } else {
        ("", "")
    };
    let _ = writeln!(
        out,
        "| scenario | unit | direct | {c2} |{fh} sockbroker | sockbroker/{c2} |{frh} sockbroker/direct | {c2}/direct |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|{fs}---:|---:|{frs}---:|---:|");
    for r in rows {
        let (d, s, f, b) = (
            r.med(Kind::Direct),
            r.med(Kind::Socat),
            r.med(Kind::Floor),
            r.med(Kind::Broker),
        );
        let fv = if floor {
            format!(" {} |", fmt_num(f))
        } else {
            String::new()
        };
        let fr = if floor {
            format!(" {} |", ratio(b, f))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {} | {}{} | {} | {} |{fv} {} | {} |{fr} {} | {} |",
            r.name,
            r.unit,
            if r.higher_better { " ↑" } else { " ↓" },
            fmt_num(d),
            fmt_num(s),
            fmt_num(b),
            ratio(b, s),
            ratio(b, d),
            ratio(s, d)
        );
    }
    out
}

/// The policy group's table: direct, the byte relay, the two policies and
/// HAProxy (when it ran), with ratios to direct, to the byte relay and to HAProxy.
pub(crate) fn print_policy_table(rows: &[Row]) -> String {
    let mut out = String::new();
    let hap = rows.iter().any(|r| r.med(Kind::Haproxy).is_some());
    let mut head =
        String::from("| scenario | unit | direct | byte relay (full) | read-only | userns-safe |");
    let mut sep = String::from("|---|---|---:|---:|---:|---:|");
    if hap {
        head.push_str(" haproxy |");
        sep.push_str("---:|");
    }
    head.push_str(" full/direct | read-only/direct | userns-safe/direct | read-only/full | userns-safe/full |");
    sep.push_str("---:|---:|---:|---:|---:|");
    if hap {
        head.push_str(" haproxy/direct | read-only/haproxy | userns-safe/haproxy |");
        sep.push_str("---:|---:|---:|");
    }
    let _ = writeln!(out, "{head}\n{sep}");
    for r in rows {
        let (d, f, ro, ns, h) = (
            r.med(Kind::Direct),
            r.med(Kind::Broker),
            r.med(Kind::ReadOnly),
            r.med(Kind::UsernsSafe),
            r.med(Kind::Haproxy),
        );
        let mut line = format!(
            "| {} | {}{} | {} | {} | {} | {} |",
            r.name,
            r.unit,
            if r.higher_better { " ↑" } else { " ↓" },
            fmt_num(d),
            fmt_num(f),
            fmt_num(ro),
            fmt_num(ns),
        );
        if hap {
            let _ = write!(line, " {} |", fmt_num(h));
        }
        let _ = write!(
            line,
            " {} | {} | {} | {} | {} |",
            ratio(f, d),
            ratio(ro, d),
            ratio(ns, d),
            ratio(ro, f),
            ratio(ns, f)
        );
        if hap {
            let _ = write!(
                line,
                " {} | {} | {} |",
                ratio(h, d),
                ratio(ro, h),
                ratio(ns, h)
            );
        }
        let _ = writeln!(out, "{line}");
    }
    out
}

/// µs each policy adds per request over the byte relay: p50 and relay CPU.
pub(crate) fn policy_summary(rows: &[Row]) -> String {
    let mut out = String::new();
    for r in rows {
        if !(r.name.ends_with(" p50") || r.name.ends_with("relay CPU per request")) {
            continue;
        }
        let Some(full) = r.med(Kind::Broker) else {
            continue;
        };
        let mut parts = Vec::new();
        for k in [Kind::ReadOnly, Kind::UsernsSafe] {
            if let Some(v) = r.med(k) {
                parts.push(format!("{} {:+.1} µs", k.name(), v - full));
            }
        }
        let _ = writeln!(out, "- {}: {}", r.name, parts.join(", "));
    }
    out
}
