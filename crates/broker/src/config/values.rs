//! Parsers for single configuration values. Each returns the value or a
//! message saying what is wrong and what to write instead; the caller adds
//! the file, tenant, field and position.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde_yaml::Value;

use super::{IdRange, MetricsListen};
use crate::socket::SUN_PATH_MAX;

/// The largest id `chown(2)` accepts as an id: `(uid_t)-1` means "no change".
pub(crate) const MAX_ID: u32 = u32::MAX - 1;

/// Durations longer than this are refused (they would be typos, and adding
/// them to an `Instant` could overflow).
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// How a value reads in a message: `"abc"`, `the number 660`, `a list`.
pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null (no value)".to_string(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "a list".to_string(),
        Value::Mapping(_) => "a mapping".to_string(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// A file mode: octal permission bits, at most `0777`.
///
/// How the YAML value arrives (serde_norway):
/// * `mode: "0660"`, `mode: "660"`, `mode: "0o660"` — strings: octal digits
///   with an optional `0` / `0o` prefix. A *quoted* `"660"` is accepted as
///   octal: quoting shows the operator wrote a string of digits, not a number.
/// * `mode: 0660` (unquoted, leading zero) — serde_norway hands it over as the
///   string `"0660"`: accepted like the above.
/// * `mode: 0o660` — arrives as the integer 432; `mode: 660` as the integer
///   660 and `mode: 432` as 432. The integer alone cannot tell `0o660` from
///   `432`, so `raw` is the scalar exactly as written in the file (see
///   `raw::ModeText`): only an integer written with a `0o` prefix is
///   accepted. Any other integer is refused because it would be read as
///   decimal (0..=7 excepted: they mean the same in both bases). When `raw`
///   is unknown the integer is refused too (never guess a permission).
pub(crate) fn parse_mode(v: &Value, raw: Option<&str>) -> Result<u32, String> {
    const HINT: &str = "write the mode quoted in octal, e.g. mode: \"0660\"";
    match v {
        Value::String(s) => parse_mode_str(s),
        Value::Number(n) => {
            let Some(n) = n.as_u64() else {
                return Err(if n.is_f64() {
                    format!("{n} is not a file mode; {HINT}")
                } else {
                    format!("a mode cannot be negative ({n}); {HINT}")
                });
            };
            if n <= 7 {
                return Ok(n as u32);
            }
            let raw = raw.map(str::trim);
            if let Some(digits) = raw
                .map(|r| r.strip_prefix('+').unwrap_or(r))
                .and_then(|r| r.strip_prefix("0o").or_else(|| r.strip_prefix("0O")))
            {
                let mode = parse_octal_digits(digits, raw.unwrap_or_default())?;
                if u64::from(mode) == n {
                    return Ok(mode);
                }
            }
            match raw {
                Some(r) if r.starts_with("0x") || r.starts_with("+0x") => {
                    Err(format!("{r} is hexadecimal; {HINT}"))
                }
                Some(r) if !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()) => {
                    let example = if r.len() <= 4 && r.bytes().all(|b| b <= b'7') {
                        format!("{r:0>4}")
                    } else {
                        "0660".to_string()
                    };
                    Err(format!(
                        "{r} would be read as decimal; write the mode quoted in octal, e.g. mode: \"{example}\""
                    ))
                }
                _ => Err(format!(
                    "the integer {n} cannot be told apart from a decimal number; {HINT}"
                )),
            }
        }
        other => Err(format!("{} is not a file mode; {HINT}", describe(other))),
    }
}

/// A mode written as a string: `"0660"`, `"660"`, `"0o660"`.
pub(crate) fn parse_mode_str(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let digits = t
        .strip_prefix("0o")
        .or_else(|| t.strip_prefix("0O"))
        .unwrap_or(t);
    parse_octal_digits(digits, s)
}

fn parse_octal_digits(digits: &str, written: &str) -> Result<u32, String> {
    if digits.is_empty() {
        return Err(format!(
            "{written:?} is not a file mode; write octal permission bits, e.g. mode: \"0660\""
        ));
    }
    if let Some(bad) = digits.chars().find(|c| !('0'..='7').contains(c)) {
        return Err(format!(
            "{written:?} is not octal ({bad:?} is not a digit 0-7); write the mode in octal, e.g. mode: \"0660\""
        ));
    }
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(format!(
            "{written:?} is above 0777: setuid, setgid and sticky bits mean nothing on a socket; \
             use permission bits only, e.g. mode: \"0660\""
        )),
    }
}

/// Which duration field is parsed; they differ in what `null` and `0` mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DurationKind {
    /// `idle_timeout`: `null` = never; 0 refused.
    Idle,
    /// `drain_timeout`: 0 = close at once; `null` refused.
    Drain,
    /// `connect_timeout`: must be above 0; `null` refused.
    Connect,
    /// `request_timeout`: must be above 0; `null` refused.
    Request,
}

/// A human duration (`30s`, `15m`, `1h`, `1h 30m`, `500ms`). `Ok(None)` only
/// for `null` in an `idle_timeout` (never time out).
pub(crate) fn parse_duration(v: &Value, kind: DurationKind) -> Result<Option<Duration>, String> {
    const EXAMPLES: &str = "e.g. 30s, 15m, 1h or 1h 30m";
    let d = match v {
        Value::Null if kind == DurationKind::Idle => return Ok(None),
        Value::Null => {
            return Err(format!(
                "needs a duration, {EXAMPLES}; remove the key to use the default"
            ))
        }
        Value::Number(n) => {
            return Err(format!(
                "a bare number ({n}) has no unit; write a unit, e.g. \"{n}s\" (or 15m, 1h, 500ms)"
            ))
        }
        Value::String(s) => {
            let t = s.trim();
            if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "{s:?} has no unit; write a unit, e.g. \"{t}s\" (or 15m, 1h, 500ms)"
                ));
            }
            humantime::parse_duration(t).map_err(|e| {
                format!("{s:?} is not a duration ({e}); write a number with a unit, {EXAMPLES}")
            })?
        }
        other => {
            return Err(format!(
                "{} is not a duration; write a number with a unit, {EXAMPLES}",
                describe(other)
            ))
        }
    };
    if d > MAX_DURATION {
        let never = if kind == DurationKind::Idle {
            " (use null to never time out)"
        } else {
            ""
        };
        return Err(format!(
            "{} is longer than the maximum of 365 days{never}",
            humantime::format_duration(d)
        ));
    }
    if d.is_zero() {
        match kind {
            DurationKind::Idle => {
                return Err(
                    "0 would close every connection at once; use null to never time out, or a duration such as 15m"
                        .into(),
                )
            }
            DurationKind::Connect => {
                return Err(
                    "0 would fail every upstream connect; use a duration such as 5s".into(),
                )
            }
            DurationKind::Request => {
                return Err(
                    "0 would refuse every request with 408; use a duration such as 10s".into(),
                )
            }
            DurationKind::Drain => {}
        }
    }
    Ok(Some(d))
}

/// A user or group id: an integer in 0…4294967294. `what` is `uid` or `gid`.
pub(crate) fn parse_id(v: &Value, what: &str) -> Result<u32, String> {
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(id) => id_in_range(id),
            None if n.is_f64() => Err(format!(
                "{n} is not a {what}; write a whole number, e.g. {what}: 231072"
            )),
            None => Err(format!(
                "{what} {n} is negative; ids are 0…{MAX_ID}, e.g. {what}: 231072"
            )),
        },
        other => Err(format!(
            "{} is not a {what}; write a number, e.g. {what}: 231072",
            describe(other)
        )),
    }
}

fn id_in_range(id: u64) -> Result<u32, String> {
    if id == u64::from(u32::MAX) {
        Err(format!(
            "4294967295 is (uid_t)-1, which chown(2) reads as \"do not change\"; ids are 0…{MAX_ID}"
        ))
    } else if id > u64::from(MAX_ID) {
        Err(format!("{id} is too large; ids are 0…{MAX_ID}"))
    } else {
        Ok(id as u32)
    }
}

/// One entry of an `allow` list: `1000`, `"1000"` or `"231072-296607"` (inclusive).
pub(crate) fn parse_id_range(v: &Value) -> Result<IdRange, String> {
    const HINT: &str = "write an id such as 1000 or an inclusive range such as \"231072-296607\"";
    let id = |s: &str| -> Result<u32, String> {
        let t = s.trim();
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{s:?} is not an id; {HINT}"));
        }
        match t.parse::<u64>() {
            Ok(n) => id_in_range(n),
            Err(_) => Err(format!("{t} is too large; ids are 0…{MAX_ID}")),
        }
    };
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(n) => id_in_range(n).map(|i| IdRange { start: i, end: i }),
            None => Err(format!("{n} is not an id; {HINT}")),
        },
        Value::String(s) => {
            let (start, end) = match s.split_once('-') {
                Some((a, b)) => (id(a)?, id(b)?),
                None => {
                    let i = id(s)?;
                    (i, i)
                }
            };
            if start > end {
                return Err(format!(
                    "range {s:?} starts after it ends; write the lower id first, e.g. \"{end}-{start}\""
                ));
            }
            Ok(IdRange { start, end })
        }
        other => Err(format!("{} is not an id; {HINT}", describe(other))),
    }
}

/// A socket path (`listen` or `upstream`): absolute, in normal form (no `.`,
/// `..`, `//` or trailing `/`), not `/`, at most 107 bytes, no NUL byte.
/// `example` is shown in the hint for a relative path.
pub(crate) fn parse_socket_path(v: &Value, example: &str) -> Result<PathBuf, String> {
    let s = match v {
        Value::String(s) => s.as_str(),
        other => {
            return Err(format!(
                "{} is not a path; write an absolute path, e.g. {example}",
                describe(other)
            ))
        }
    };
    check_socket_path(s, example).map(|()| PathBuf::from(s))
}

fn check_socket_path(s: &str, example: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!(
            "the path is empty; write an absolute path, e.g. {example}"
        ));
    }
    if s.contains('\0') {
        return Err(format!(
            "{s:?} contains a NUL byte; write a plain absolute path, e.g. {example}"
        ));
    }
    if !s.starts_with('/') {
        return Err(format!(
            "{s:?} is a relative path; write an absolute path (starting with /), e.g. {example}"
        ));
    }
    if s == "/" {
        return Err(format!(
            "\"/\" is a directory, not a socket path; write e.g. {example}"
        ));
    }
    let normal = normalize(s);
    if s.ends_with('/') {
        return Err(format!(
            "{s:?} ends with a slash, so it names a directory; write the socket's path, e.g. {:?}",
            format!("{}/docker.sock", normal.trim_end_matches('/'))
        ));
    }
    if normal != s {
        return Err(format!(
            "{s:?} is not in normal form (it contains `.`, `..` or `//`); write it as {normal:?}"
        ));
    }
    if s.len() > SUN_PATH_MAX {
        return Err(format!(
            "{s:?} is {} bytes long; a Unix socket path can be at most {SUN_PATH_MAX} bytes (sun_path); choose a shorter path",
            s.len()
        ));
    }
    Ok(())
}

/// `s` with `.` and empty components dropped and `..` applied lexically.
pub(crate) fn normalize(s: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(s).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str().unwrap_or_default()),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    // `components()` hides a `/.` at the end; treat it like any `.`.
    format!("/{}", parts.join("/"))
}

/// `metrics.listen`: `IP:PORT`, `[IPv6]:PORT`, `localhost:PORT` (= 127.0.0.1)
/// or `unix:/ABSOLUTE/PATH`.
pub(crate) fn parse_metrics_listen(v: &Value) -> Result<MetricsListen, String> {
    const HINT: &str =
        "write IP:PORT (e.g. 127.0.0.1:9477 or [::1]:9477) or unix:/ABSOLUTE/PATH (e.g. unix:/run/sockbroker/metrics.sock)";
    let s = match v {
        Value::String(s) => s.trim(),
        Value::Number(n) => {
            return Err(format!(
                "{n} is not an address; write the address with its port, e.g. 127.0.0.1:{n}"
            ))
        }
        other => return Err(format!("{} is not an address; {HINT}", describe(other))),
    };
    if let Some(path) = s.strip_prefix("unix:") {
        check_socket_path(path, "unix:/run/sockbroker/metrics.sock")?;
        return Ok(MetricsListen::Unix(PathBuf::from(path)));
    }
    let addr = if let Ok(addr) = s.parse::<SocketAddr>() {
        addr
    } else if let Some(port) = s.strip_prefix("localhost:") {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{s:?}: {port:?} is not a port number (1-65535); {HINT}"))?;
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    } else if s.rsplit_once(':').is_some_and(|(host, _)| {
        !host.is_empty() && host.parse::<IpAddr>().is_err() && !host.contains(':')
    }) {
        return Err(format!(
            "{s:?}: host names other than localhost are not resolved; {HINT}"
        ));
    } else {
        return Err(format!("{s:?} is not an address; {HINT}"));
    };
    if addr.port() == 0 {
        return Err(format!("{s:?} has port 0; pick a fixed port, e.g. 9477"));
    }
    Ok(MetricsListen::Tcp(addr))
}

/// `max_connections`: a whole number, at least 1.
pub(crate) fn parse_max_connections(v: &Value) -> Result<usize, String> {
    const HINT: &str = "write a whole number of at least 1, e.g. max_connections: 256";
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(0) => Err(format!("0 would refuse every connection; {HINT}")),
            Some(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
            None => Err(format!("{n} is not allowed; {HINT}")),
        },
        other => Err(format!("{} is not a number; {HINT}", describe(other))),
    }
}

/// Tenant names: `[a-z0-9][a-z0-9_.-]{0,62}` (they become metric label values).
pub(crate) fn check_tenant_name(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'.' | b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tenant name {name:?} is not allowed: use 1 to 63 characters from a-z, 0-9, `_`, `.` and `-`, \
             starting with a letter or digit (names become metric label values), e.g. ci-runner"
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn s(x: &str) -> Value {
        Value::String(x.into())
    }
    pub(crate) fn n(x: i64) -> Value {
        Value::Number(x.into())
    }
    pub(crate) fn yaml(x: &str) -> Value {
        serde_yaml::from_str(x).unwrap()
    }

    #[test]
    fn mode_table() {
        // (value as YAML, raw scalar as written, expected)
        let ok: &[(&str, Option<&str>, u32)] = &[
            ("\"0660\"", None, 0o660),
            ("\"660\"", None, 0o660),
            ("\"0o660\"", None, 0o660),
            ("\"0777\"", None, 0o777),
            ("\"0\"", None, 0),
            ("\"00660\"", None, 0o660),
            ("\" 0600 \"", None, 0o600),
            ("0660", Some("0660"), 0o660), // unquoted: a string for serde_norway
            ("0o660", Some("0o660"), 0o660),
            ("0o600", Some("0o600"), 0o600),
            ("+0o660", Some("+0o660"), 0o660),
            ("0", Some("0"), 0),
            ("7", Some("7"), 7),
        ];
        for (text, raw, want) in ok {
            let v = yaml(text);
            assert_eq!(parse_mode(&v, *raw), Ok(*want), "{text}");
        }
        let bad: &[(&str, Option<&str>, &str)] = &[
            (
                "660",
                Some("660"),
                "660 would be read as decimal; write the mode quoted in octal, e.g. mode: \"0660\"",
            ),
            ("644", Some("644"), "e.g. mode: \"0644\""),
            ("432", Some("432"), "432 would be read as decimal"),
            ("999", Some("999"), "e.g. mode: \"0660\""),
            ("0o660", None, "cannot be told apart"), // raw unknown: never guess
            ("0o660", Some("432"), "432 would be read as decimal"), // raw does not match: never guess
            ("0x1b0", Some("0x1b0"), "is hexadecimal"),
            ("\"01777\"", None, "above 0777"),
            ("\"01000\"", None, "above 0777"),
            ("\"7777777777777\"", None, "above 0777"),
            ("0o1777", Some("0o1777"), "above 0777"),
            ("\"0668\"", None, "not octal"),
            ("0668", Some("0668"), "not octal"),
            ("\"rw-rw----\"", None, "not octal"),
            ("\"\"", None, "not a file mode"),
            ("\"0o\"", None, "not a file mode"),
            ("-1", Some("-1"), "cannot be negative"),
            ("6.6", Some("6.6"), "not a file mode"),
            ("true", Some("true"), "not a file mode"),
            ("[1]", None, "not a file mode"),
            ("null", None, "not a file mode"),
        ];
        for (text, raw, want) in bad {
            let v = yaml(text);
            let e = parse_mode(&v, *raw).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn durations() {
        use DurationKind::*;
        let d = |x: &str, k| parse_duration(&s(x), k);
        assert_eq!(d("30s", Drain), Ok(Some(Duration::from_secs(30))));
        assert_eq!(d("15m", Idle), Ok(Some(Duration::from_secs(900))));
        assert_eq!(d("1h", Idle), Ok(Some(Duration::from_secs(3600))));
        assert_eq!(d("1h 30m", Idle), Ok(Some(Duration::from_secs(5400))));
        assert_eq!(d("500ms", Connect), Ok(Some(Duration::from_millis(500))));
        assert_eq!(d("0s", Drain), Ok(Some(Duration::ZERO)));
        assert_eq!(parse_duration(&Value::Null, Idle), Ok(None));
        let e = |v: &Value, k| parse_duration(v, k).unwrap_err();
        assert!(e(&Value::Null, Drain).contains("needs a duration"));
        assert!(e(&n(30), Drain).contains("write a unit, e.g. \"30s\""));
        assert!(e(&s("30"), Drain).contains("write a unit, e.g. \"30s\""));
        assert!(e(&s("soon"), Drain).contains("e.g. 30s, 15m, 1h"));
        assert!(e(&s("30 parsecs"), Drain).contains("is not a duration"));
        assert!(e(&s(""), Drain).contains("is not a duration"));
        assert!(e(&s("0s"), Idle).contains("use null"));
        assert!(e(&s("0s"), Connect).contains("fail every upstream connect"));
        assert!(e(&s("400days"), Drain).contains("maximum"));
        assert!(e(&s("99999999999999999999years"), Drain).contains("is not a duration"));
        assert!(e(&yaml("[1]"), Drain).contains("a list is not a duration"));
    }

    #[test]
    fn ids_and_ranges() {
        assert_eq!(parse_id(&n(0), "uid"), Ok(0));
        assert_eq!(parse_id(&n(4294967294), "uid"), Ok(4294967294));
        assert!(parse_id(&n(4294967295), "uid")
            .unwrap_err()
            .contains("(uid_t)-1"));
        assert!(parse_id(&n(4294967296), "gid")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_id(&n(-1), "gid").unwrap_err().contains("negative"));
        assert!(parse_id(&s("1000"), "uid")
            .unwrap_err()
            .contains("write a number"));
        assert!(parse_id(&yaml("1.5"), "uid")
            .unwrap_err()
            .contains("whole number"));

        let r = |v: &Value| parse_id_range(v);
        assert_eq!(
            r(&n(1000)),
            Ok(IdRange {
                start: 1000,
                end: 1000
            })
        );
        assert_eq!(
            r(&s("1000")),
            Ok(IdRange {
                start: 1000,
                end: 1000
            })
        );
        assert_eq!(
            r(&s("231072-296607")),
            Ok(IdRange {
                start: 231072,
                end: 296607
            })
        );
        assert_eq!(r(&s(" 1 - 2 ")), Ok(IdRange { start: 1, end: 2 }));
        assert_eq!(r(&s("5-5")), Ok(IdRange { start: 5, end: 5 }));
        for bad in [
            "2-1",
            "a-b",
            "-5",
            "5-",
            "1-2-3",
            "",
            "x",
            "1-4294967295",
            "99999999999999999999",
        ] {
            assert!(r(&s(bad)).is_err(), "{bad}");
        }
        assert!(r(&s("2-1")).unwrap_err().contains("\"1-2\""));
        assert!(r(&n(-1)).is_err());
        assert!(r(&n(4294967295)).is_err());
        assert!(r(&Value::Null).is_err());
    }

    #[test]
    fn socket_paths() {
        let p = |x: &str| parse_socket_path(&s(x), "/run/x.sock");
        assert_eq!(
            p("/run/a/docker.sock"),
            Ok(PathBuf::from("/run/a/docker.sock"))
        );
        assert!(p("run/a.sock").unwrap_err().contains("relative path"));
        assert!(p("").unwrap_err().contains("empty"));
        assert!(p("/").unwrap_err().contains("not a socket path"));
        assert!(p("/run/a/").unwrap_err().contains("ends with a slash"));
        assert!(p("/run/../a.sock")
            .unwrap_err()
            .contains("write it as \"/a.sock\""));
        assert!(p("/run/./a.sock").unwrap_err().contains("\"/run/a.sock\""));
        assert!(p("//run/a.sock").unwrap_err().contains("normal form"));
        assert!(p("/run//a.sock").unwrap_err().contains("normal form"));
        assert!(p("/run/a/.").unwrap_err().contains("normal form"));
        assert!(p("/a\0b").unwrap_err().contains("NUL"));
        let long = format!("/{}", "x".repeat(106));
        assert_eq!(long.len(), 107);
        assert!(p(&long).is_ok());
        assert!(p(&format!("{long}y"))
            .unwrap_err()
            .contains("108 bytes long"));
        assert!(parse_socket_path(&n(1), "/x")
            .unwrap_err()
            .contains("not a path"));
    }

    #[test]
    fn metrics_listen() {
        let m = |x: &str| parse_metrics_listen(&s(x));
        assert_eq!(
            m("127.0.0.1:9477"),
            Ok(MetricsListen::Tcp("127.0.0.1:9477".parse().unwrap()))
        );
        assert_eq!(
            m("[::1]:9477"),
            Ok(MetricsListen::Tcp("[::1]:9477".parse().unwrap()))
        );
        assert_eq!(
            m("localhost:9477"),
            Ok(MetricsListen::Tcp("127.0.0.1:9477".parse().unwrap()))
        );
        assert_eq!(
            m("unix:/run/sockbroker/metrics.sock"),
            Ok(MetricsListen::Unix("/run/sockbroker/metrics.sock".into()))
        );
        assert!(m("unix:run/m.sock").unwrap_err().contains("relative"));
        assert!(m("example.com:9477").unwrap_err().contains("not resolved"));
        assert!(m("localhost:http").unwrap_err().contains("not a port"));
        assert!(m("127.0.0.1").unwrap_err().contains("not an address"));
        assert!(m("127.0.0.1:0").unwrap_err().contains("port 0"));
        assert!(m("::1:9477").is_err());
        assert!(parse_metrics_listen(&n(9477))
            .unwrap_err()
            .contains("127.0.0.1:9477"));
    }

    #[test]
    fn max_connections() {
        assert_eq!(parse_max_connections(&n(1)), Ok(1));
        assert_eq!(parse_max_connections(&n(256)), Ok(256));
        assert!(parse_max_connections(&n(0))
            .unwrap_err()
            .contains("at least 1"));
        assert!(parse_max_connections(&n(-3)).is_err());
        assert!(parse_max_connections(&s("10")).is_err());
        assert!(parse_max_connections(&yaml("2.5")).is_err());
    }

    #[test]
    fn tenant_names() {
        for ok in ["a", "0", "ci-runner", "a.b_c-d", &"a".repeat(63)] {
            assert!(check_tenant_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "A",
            "-a",
            "_a",
            ".a",
            "a b",
            "ä",
            "a/b",
            "a:b",
            &"a".repeat(64),
        ] {
            assert!(check_tenant_name(bad).is_err(), "{bad}");
        }
    }
}
