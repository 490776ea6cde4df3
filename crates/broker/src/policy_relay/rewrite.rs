//! The seam between "the policy allowed this request" and "forward it": a
//! step that may rewrite the request (its target — path and query — and its
//! body), answer it itself with a [`Synthetic`] (e.g. `404` for an object the
//! tenant does not own), ask the engine questions of its own first
//! ([`side_request`]), and have the response body filtered
//! ([`Outgoing::filter_response`]).
//!
//! Today no setting uses it and [`before_forward`] forwards every request as
//! it came, byte for byte. A feature that rewrites (`scope: own`) adds its
//! work in [`before_forward`] (and says in [`wants_body`] which requests it
//! needs the body of); the relay around it already re-frames a replaced body
//! (`Content-Length`), keeps the audit line and the metric right, and answers
//! an `Err(Synthetic)`.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;

use super::connection::Body;
use super::http1::Framing;
use super::synthetic::Synthetic;
use crate::config::TenantSpec;
use crate::policy::scope::Scope;
use crate::policy::Target;

/// A response body filter: gets the engine's status and whole (decoded) body,
/// returns the body the client gets. See [`Outgoing::filter_response`].
pub type ResponseFilter = Box<dyn FnOnce(u16, Vec<u8>) -> Result<Vec<u8>, Synthetic> + Send>;

/// Largest response body a [`ResponseFilter`] is given; a larger one is
/// answered `502`.
pub const FILTER_LIMIT: usize = 16 * 1024 * 1024;

/// An allowed request about to be forwarded.
pub struct Outgoing {
    /// The method as sent.
    method: String,
    /// The normalized target the policy decided on (until [`set_target`](Self::set_target)).
    target: Target,
    /// The path the policy decided on, once [`set_target`](Self::set_target)
    /// changed it (the audit line names this one).
    decided: Option<String>,
    /// The head as it will be forwarded (as received unless rewritten).
    head: Vec<u8>,
    /// The body, when it was read whole (inspected, or [`wants_body`]);
    /// `None`: it follows in the client's stream and is streamed as framed.
    body: Option<Body>,
    /// The body was replaced: forward `body.decoded` with a `Content-Length`.
    body_replaced: bool,
    /// Filter for the response body.
    filter: Option<ResponseFilter>,
}

impl Outgoing {
    pub(super) fn new(method: String, target: Target, head: Vec<u8>, body: Option<Body>) -> Self {
        Outgoing {
            method,
            target,
            decided: None,
            head,
            body,
            body_replaced: false,
            filter: None,
        }
    }

    /// The method.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The normalized target (path without version prefix, raw query).
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The normalized path the policy decided on, before any
    /// [`set_target`](Self::set_target): the one the audit line names.
    pub(super) fn decided_path(&self) -> &str {
        self.decided.as_deref().unwrap_or(&self.target.path)
    }

    /// The values of every header field named `name` (ignoring case), as sent.
    pub fn header_values(&self, name: &str) -> Vec<Vec<u8>> {
        self.head
            .split(|&b| b == b'\n')
            .skip(1)
            .filter_map(|line| {
                let colon = line.iter().position(|&b| b == b':')?;
                let field = String::from_utf8_lossy(&line[..colon]);
                field
                    .trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| line[colon + 1..].trim_ascii().to_vec())
            })
            .collect()
    }

    /// The decoded body, if it was read whole.
    pub fn body(&self) -> Option<&[u8]> {
        self.body.as_ref().map(|b| b.decoded.as_slice())
    }

    /// Forward to `path` (normalized form, without the version prefix; the
    /// request's version prefix is kept) with `query` (raw, without `?`).
    pub fn set_target(&mut self, path: &str, query: Option<&str>) {
        let mut t = String::new();
        if let Some(v) = &self.target.api_version {
            t.push_str("/v");
            t.push_str(v);
        }
        t.push_str(path);
        if let Some(q) = query {
            t.push('?');
            t.push_str(q);
        }
        self.head = replace_target(&self.head, &t);
        let before = std::mem::replace(&mut self.target.path, path.to_string());
        self.decided.get_or_insert(before);
        self.target.query = query.map(str::to_string);
    }

    /// Forward `body` instead of the one received; it goes out with a
    /// `Content-Length`. Ask for the received one in [`wants_body`]: if it
    /// was not read, the relay reads and drops it (bounded like an
    /// inspected body).
    pub fn set_body(&mut self, body: Vec<u8>) {
        self.body = Some(Body {
            raw: Vec::new(),
            decoded: body,
        });
        self.body_replaced = true;
    }

    /// [`Outgoing::set_body`] with a JSON body, adding `Content-Type:
    /// application/json` when the request had none (the engine refuses a
    /// non-empty body without it; a stamped create may have had no body).
    pub fn set_json_body(&mut self, body: Vec<u8>) {
        if self.header_values("content-type").is_empty() {
            let line_end = self
                .head
                .iter()
                .position(|&b| b == b'\n')
                .map_or(self.head.len(), |i| i + 1);
            let mut head = self.head[..line_end].to_vec();
            head.extend_from_slice(b"Content-Type: application/json\r\n");
            head.extend_from_slice(&self.head[line_end..]);
            self.head = head;
        }
        self.set_body(body);
    }

    /// Give the response body (whole, decoded, up to [`FILTER_LIMIT`]) to
    /// `filter` and send the client what it returns instead. Not for streams
    /// (`logs -f`, `events`): they would be buffered until they end.
    pub fn filter_response(&mut self, filter: ResponseFilter) {
        self.filter = Some(filter);
    }

    /// Whether [`set_body`](Self::set_body) replaced the body.
    pub(super) fn body_replaced(&self) -> bool {
        self.body_replaced
    }

    /// The bytes to write to the upstream first, the framing of what follows
    /// from the client (streamed), and the response filter.
    /// Takes them out: the method and target stay, for the audit line.
    pub(super) fn take_wire(
        &mut self,
        framing: Framing,
    ) -> (Vec<u8>, Framing, Option<ResponseFilter>) {
        let head = std::mem::take(&mut self.head);
        let filter = self.filter.take();
        match self.body.take() {
            None => (head, framing, filter),
            Some(body) if !self.body_replaced => {
                let mut out = head;
                out.extend_from_slice(&body.raw);
                (out, Framing::Empty, filter)
            }
            Some(body) => {
                let mut out = with_content_length(&head, body.decoded.len());
                out.extend_from_slice(&body.decoded);
                (out, Framing::Empty, filter)
            }
        }
    }
}

/// Whether the rewrite step needs the body of this request read whole before
/// [`before_forward`] (bounded like inspected bodies).
pub(super) fn wants_body(spec: &TenantSpec, method: &str, target: &Target) -> bool {
    spec.access.scope() == Scope::Own && super::scope::wants_body(method, target)
}

/// The rewrite step: change `req`, or answer it with `Err`. `scope: own`
/// tenants' requests are confined to their own objects
/// ([`super::scope`]); others go as they are.
pub(super) async fn before_forward(spec: &TenantSpec, req: &mut Outgoing) -> Result<(), Synthetic> {
    match spec.access.scope() {
        Scope::Own => super::scope::before_forward(spec, req).await,
        Scope::Engine => Ok(()),
    }
}

/// `head` with its request target replaced by `target`.
fn replace_target(head: &[u8], target: &str) -> Vec<u8> {
    let first = head.iter().position(|&b| b == b' ').unwrap_or(head.len());
    let rest = &head[(first + 1).min(head.len())..];
    let second = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    let mut out = Vec::with_capacity(head.len() + target.len());
    out.extend_from_slice(&head[..first]);
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(&rest[second..]);
    out
}

/// `head` (of a request or a response) with its `Content-Length` /
/// `Transfer-Encoding` fields replaced by one `Content-Length: len` (and no
/// `Expect`: the body comes at once).
pub(super) fn with_content_length(head: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len() + 24);
    let mut lines = head.split_inclusive(|&b| b == b'\n');
    if let Some(request_line) = lines.next() {
        out.extend_from_slice(request_line);
    }
    for line in lines {
        let name = line.split(|&b| b == b':').next().unwrap_or_default();
        let name = String::from_utf8_lossy(name);
        let name = name.trim();
        if name.is_empty()
            || name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
        {
            continue;
        }
        out.extend_from_slice(line);
    }
    out.extend_from_slice(format!("Content-Length: {len}\r\n\r\n").as_bytes());
    out
}

/// A request of the broker's own to the engine at `upstream` (to resolve a
/// name, read an object's labels): one connection, `method target` with an
/// optional JSON body, the whole exchange within `deadline`, a response body
/// of at most `limit` bytes. `Err`: what went wrong, for a `502`.
pub async fn side_request(
    upstream: &Path,
    connect_timeout: Duration,
    deadline: Duration,
    method: &str,
    target: &str,
    body: Option<Vec<u8>>,
    limit: usize,
) -> Result<(u16, Bytes), String> {
    use http_body_util::{BodyExt, Full, Limited};
    let work = async {
        let stream = crate::upstream::connect_upstream(upstream, connect_timeout)
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(target)
            .header(hyper::header::HOST, "docker");
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| e.to_string())?;
        let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let bytes = Limited::new(resp.into_body(), limit)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        driver.abort();
        Ok((status, bytes))
    };
    match tokio::time::timeout(deadline, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {deadline:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewritten_request_keeps_its_head_and_is_reframed() {
        let head = b"POST /v1.41/containers/create?name=web HTTP/1.1\r\nHost: docker\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\nX-A: 1\r\n\r\n";
        let target = crate::policy::normalize("/v1.41/containers/create?name=web").unwrap();
        let mut out = Outgoing::new(
            "POST".into(),
            target,
            head.to_vec(),
            Some(Body {
                raw: b"2\r\n{}\r\n0\r\n\r\n".to_vec(),
                decoded: b"{}".to_vec(),
            }),
        );
        // Untouched: forwarded byte for byte.
        let (wire, framing, _) = Outgoing {
            body: out.body.clone(),
            head: out.head.clone(),
            method: out.method.clone(),
            target: out.target.clone(),
            decided: None,
            body_replaced: false,
            filter: None,
        }
        .take_wire(Framing::Chunked);
        assert_eq!(&wire[..head.len()], &head[..]);
        assert!(wire.ends_with(b"0\r\n\r\n"));
        assert_eq!(framing, Framing::Empty);

        // The audit line keeps naming the path the policy decided on.
        assert_eq!(out.decided_path(), "/containers/create");
        out.set_target("/x", None);
        out.set_target("/y", Some("z=1"));
        assert_eq!(
            (out.decided_path(), out.target().path.as_str()),
            ("/containers/create", "/y")
        );
        out.set_target("/containers/create", Some("name=web2"));
        out.set_body(br#"{"Labels":{"a":"b"}}"#.to_vec());
        let (wire, _, _) = out.take_wire(Framing::Chunked);
        let text = String::from_utf8(wire).unwrap();
        assert_eq!(
            text,
            "POST /v1.41/containers/create?name=web2 HTTP/1.1\r\nHost: docker\r\nX-A: 1\r\nContent-Length: 20\r\n\r\n{\"Labels\":{\"a\":\"b\"}}"
        );
    }
}
