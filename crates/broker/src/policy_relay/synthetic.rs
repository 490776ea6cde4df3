//! The answers the broker makes itself ([`Synthetic`]), and the audit line
//! every request gets.
//!
//! One value per answer: its status, the Docker-style JSON message the docker
//! CLI prints, whether the connection closes after it, the audit verdict and
//! the metric's `verdict`/`reason` all come from it, so that a new kind of
//! refusal is one constructor here, not another copy of "count + log +
//! write".

use crate::metrics::RequestOutcome;
use crate::tenant::Peer;

/// How the answer is put on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// An HTTP/1.1 response with a `{"message": …}` body.
    Json,
    /// An HTTP/2 server preface and GOAWAY (HTTP_1_1_REQUIRED) carrying the
    /// message: the connection opened with the HTTP/2 preface.
    Http2Goaway,
}

/// An answer the broker makes itself instead of the engine's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synthetic {
    /// The HTTP status (`0` in the audit line for the HTTP/2 refusal).
    status: u16,
    /// The metric series and audit verdict.
    outcome: RequestOutcome,
    /// What the client is told (the JSON `message`).
    message: String,
    /// Why, for the audit line's `reason` field.
    detail: String,
    /// Whether the connection closes after the answer.
    close: bool,
    form: Form,
}

impl Synthetic {
    fn new(
        status: u16,
        outcome: RequestOutcome,
        message: String,
        detail: String,
        close: bool,
    ) -> Self {
        Synthetic {
            status,
            outcome,
            message,
            detail,
            close,
            form: Form::Json,
        }
    }

    /// `403`: the access policy refuses `method path` (`reason` says which
    /// rule or body check). Keeps the connection unless `close`.
    pub fn denied(tenant: &str, method: &str, path: &str, reason: &str) -> Self {
        Self::new(
            403,
            RequestOutcome::Policy,
            format!("sockbroker: tenant {tenant} may not {method} {path} ({reason})"),
            reason.to_string(),
            false,
        )
    }

    /// `404` with `message` exactly as the engine words it for a missing
    /// object (e.g. `No such container: web`): the tenant may not see the
    /// object (`scope: own`), and must not learn that it exists.
    pub fn not_owned(message: String) -> Self {
        Self::new(
            404,
            RequestOutcome::NotOwned,
            message,
            "not owned".into(),
            false,
        )
    }

    /// `403` for a scoped tenant acting on a shared object it may not change
    /// (removing an image not labelled for it).
    pub fn not_yours(message: String) -> Self {
        Self::new(
            403,
            RequestOutcome::NotOwned,
            message,
            "not owned (shared)".into(),
            false,
        )
    }

    /// `409`: a scoped tenant's create names something (a container or
    /// volume name) another tenant holds; the message does not say which.
    pub fn conflict(message: String) -> Self {
        Self::new(
            409,
            RequestOutcome::NotOwned,
            message,
            "name held by another tenant".into(),
            false,
        )
    }

    /// `400` for a request whose head and body were read whole but which the
    /// broker cannot rewrite (a malformed `filters`, a create body with two
    /// `Labels`); the connection stays usable.
    pub fn invalid(message: String) -> Self {
        Self::new(
            400,
            RequestOutcome::BadRequest,
            message.clone(),
            message,
            false,
        )
    }

    /// `502`: a lookup the broker needed before forwarding (`scope: own`)
    /// failed or did not finish in time; nothing was forwarded.
    pub fn lookup_failed(upstream: &std::path::Path, what: &str) -> Self {
        Self::new(
            502,
            RequestOutcome::UpstreamUnavailable,
            format!(
                "sockbroker: upstream {} did not answer a lookup: {what}",
                upstream.display()
            ),
            format!("lookup failed: {what}"),
            true,
        )
    }

    /// `400`/`431`/`501`: a request the broker cannot check (`status` from
    /// the framing error). Closes: where the next request starts is unknown.
    pub fn bad_request(status: u16, message: String, detail: String) -> Self {
        Self::new(status, RequestOutcome::BadRequest, message, detail, true)
    }

    /// `413`: a body over `limit` bytes that would need inspecting.
    pub fn too_large(tenant: &str, method: &str, path: &str, limit: usize) -> Self {
        Self::new(
            413,
            RequestOutcome::TooLarge,
            format!(
                "sockbroker: tenant {tenant} may not {method} {path} (request body over {} KiB, too large to inspect)",
                limit / 1024
            ),
            "body too large to inspect".into(),
            true,
        )
    }

    /// `408`: the request head or body did not arrive within `request_timeout`.
    pub fn timeout(tenant: &str, timeout: std::time::Duration) -> Self {
        Self::new(
            408,
            RequestOutcome::Timeout,
            format!(
                "sockbroker: tenant {tenant}: the request did not arrive within request_timeout ({})",
                humantime::format_duration(timeout)
            ),
            "request_timeout".into(),
            true,
        )
    }

    /// `429`: the tenant has `max` connections open already.
    pub fn limit(tenant: &str, max: usize) -> Self {
        Self::new(
            429,
            RequestOutcome::Limit,
            format!(
                "sockbroker: tenant {tenant} has {max} connections open (max_connections); close one or try again later"
            ),
            "max_connections".into(),
            true,
        )
    }

    /// `502`: the upstream could not be reached or did not answer.
    pub fn upstream_unavailable(upstream: &std::path::Path, error: &std::io::Error) -> Self {
        Self::new(
            502,
            RequestOutcome::UpstreamUnavailable,
            format!(
                "sockbroker: upstream {} unavailable: {error}",
                upstream.display()
            ),
            "upstream unavailable".into(),
            true,
        )
    }

    /// `502`: the upstream's response head could not be parsed.
    pub fn bad_upstream(upstream: &std::path::Path, what: &str) -> Self {
        Self::new(
            502,
            RequestOutcome::UpstreamUnavailable,
            format!(
                "sockbroker: upstream {} sent an invalid response: {what}",
                upstream.display()
            ),
            what.to_string(),
            true,
        )
    }

    /// The connection opened with the HTTP/2 preface and the policy is not
    /// "everything": an HTTP/2 GOAWAY telling the client to use HTTP/1.1.
    pub fn http2_refused(tenant: &str) -> Self {
        Synthetic {
            form: Form::Http2Goaway,
            ..Self::new(
                0,
                RequestOutcome::BadRequest,
                format!(
                    "sockbroker: tenant {tenant} has an access policy; HTTP/2 cannot be checked, use HTTP/1.1"
                ),
                "HTTP/2 cannot be checked".into(),
                true,
            )
        }
    }

    /// Close the connection after this answer (e.g. a refused request whose
    /// large body is left unread).
    pub fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The message the client is told.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the connection closes after this answer.
    pub fn close(&self) -> bool {
        self.close
    }

    /// The metric series (and audit verdict) it counts under.
    pub fn outcome(&self) -> RequestOutcome {
        self.outcome
    }

    /// The audit line's reason.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The bytes to write; without a body for a `HEAD` request (the
    /// `Content-Length` still tells the body's size).
    pub fn render(&self, head_request: bool) -> Vec<u8> {
        if self.form == Form::Http2Goaway {
            return super::http1::h2_refusal(&self.message);
        }
        let body = serde_json::json!({ "message": self.message }).to_string();
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.status,
            reason_phrase(self.status),
            body.len()
        );
        if self.close {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        if !head_request {
            out.push_str(&body);
        }
        out.into_bytes()
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        _ => "Error",
    }
}

/// Who is asking: the tenant and the peer, for the audit lines.
#[derive(Debug, Clone, Copy)]
pub struct Audit<'a> {
    /// The tenant's name.
    pub tenant: &'a str,
    /// The client's credentials.
    pub peer: Peer,
}

impl Audit<'_> {
    /// The one audit line of a request: `verdict` and the HTTP `status` the
    /// client got (`0`: none), with `reason` (empty for a plain forward).
    pub fn log(&self, method: &str, path: &str, verdict: &str, status: u16, reason: &str) {
        tracing::info!(
            message = %Said {
                verdict,
                method,
                path,
                status
            },
            tenant = %self.tenant,
            pid = self.peer.pid,
            uid = self.peer.uid,
            gid = self.peer.gid,
            method = %method,
            path = %path,
            verdict,
            status,
            reason,
        );
    }
}

/// The audit line's message, `request {verdict}: {method} {path} ->
/// {status}`, written as six `write_str`s: the same text as that
/// `format_args!`, without walking its pieces and argument formatters per
/// request (docs/performance.md).
struct Said<'a> {
    verdict: &'a str,
    method: &'a str,
    path: &'a str,
    status: u16,
}

impl std::fmt::Display for Said<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.verdict {
            "allowed" => f.write_str("request allowed: ")?,
            "denied" => f.write_str("request denied: ")?,
            other => {
                f.write_str("request ")?;
                f.write_str(other)?;
                f.write_str(": ")?;
            }
        }
        f.write_str(self.method)?;
        f.write_str(" ")?;
        f.write_str(self.path)?;
        f.write_str(" -> ")?;
        f.write_str(itoa::Buffer::new().format(self.status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_message_is_the_documented_text() {
        for (verdict, method, path, status) in [
            ("allowed", "GET", "/_ping", 200),
            ("denied", "POST", "/containers/create", 403),
            ("denied", "-", "-", 0),
            ("allowed", "PRI", "*", 0),
            ("denied", "get", "/a b/%zz/caf\u{e9}\x1b", 65535),
            ("other", "GET", "/", 9),
            ("allowed", "GET", "/", 10),
            ("allowed", "GET", "/", 101),
        ] {
            let said = Said {
                verdict,
                method,
                path,
                status,
            };
            assert_eq!(
                said.to_string(),
                format!("request {verdict}: {method} {path} -> {status}")
            );
            // What both formats write for a `%` field (its `Debug`).
            assert_eq!(
                format!("{:?}", tracing::field::display(&said)),
                said.to_string()
            );
        }
    }

    #[test]
    fn every_answer_says_status_message_and_close_in_one_place() {
        let s = Synthetic::denied("ci", "POST", "/containers/create", "privileged");
        let bytes = String::from_utf8(s.render(false)).unwrap();
        assert!(bytes.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{bytes}");
        assert!(!bytes.contains("Connection: close"));
        assert!(bytes.ends_with(
            r#"{"message":"sockbroker: tenant ci may not POST /containers/create (privileged)"}"#
        ));
        assert_eq!(s.outcome(), RequestOutcome::Policy);
        let closing = s.closing();
        assert!(String::from_utf8(closing.render(false))
            .unwrap()
            .contains("Connection: close\r\n"));

        let t = Synthetic::timeout("ci", std::time::Duration::from_secs(10));
        let head = String::from_utf8(t.render(true)).unwrap();
        assert!(
            head.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{head}"
        );
        assert!(head.ends_with("\r\n\r\n"), "HEAD: no body: {head}");
        assert!(t.message().contains("request_timeout (10s)"));
        assert_eq!(
            (t.outcome().verdict(), t.outcome().reason()),
            ("denied", "timeout")
        );

        assert_eq!(Synthetic::limit("ci", 3).status(), 429);
        let nf = Synthetic::not_owned("No such container: web".into());
        assert!(String::from_utf8(nf.render(false))
            .unwrap()
            .ends_with(r#"{"message":"No such container: web"}"#));
        let h2 = Synthetic::http2_refused("ci").render(false);
        assert_eq!(&h2[..9], &[0, 0, 0, 0x04, 0, 0, 0, 0, 0], "SETTINGS first");
    }
}
