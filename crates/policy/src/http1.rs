//! HTTP/1.x message framing for the policy relay, on top of `httparse`:
//! request and response heads, where each message body ends (RFC 9112 §6),
//! chunked-body scanning, and the JSON error responses the docker CLI prints.
//!
//! Everything here is pure (bytes in, decisions out) so that it can be
//! unit-tested and fuzzed without sockets.

use std::fmt;

/// Largest request or response head accepted (request line + headers).
pub const MAX_HEAD: usize = 256 * 1024;
/// Most header fields in one head.
pub const MAX_HEADERS: usize = 128;
/// Longest chunk-size line (with extensions) accepted in a chunked body.
const MAX_CHUNK_LINE: usize = 4096;
/// Largest trailer section accepted after a chunked body.
const MAX_TRAILERS: usize = 64 * 1024;

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method as sent (`GET`).
    pub method: String,
    /// The raw request target (`/v1.41/containers/json?all=1`).
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Length of the head in bytes (up to and including the empty line).
    pub len: usize,
    /// How the body is delimited (never [`Framing::UntilClose`]).
    pub body: Framing,
    /// The client wants the connection closed after this exchange
    /// (`Connection: close`, or HTTP/1.0 without `keep-alive`).
    pub close: bool,
    /// The request asks for a protocol switch (an `Upgrade` header).
    pub upgrade: bool,
    /// `Expect: 100-continue`: the client waits before sending the body.
    pub expect_continue: bool,
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// Length of the head in bytes.
    pub len: usize,
    /// How the body is delimited.
    pub body: Framing,
    /// The upstream closes the connection after this response.
    pub close: bool,
}

/// Why a head was refused; each maps to the status the client receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// Larger than [`MAX_HEAD`] (431).
    TooLarge,
    /// More than [`MAX_HEADERS`] fields (431).
    TooManyHeaders,
    /// Not HTTP/1.x, or malformed (400).
    Invalid(String),
    /// A transfer coding other than `chunked` (501).
    UnsupportedTransferEncoding(String),
}

impl HeadError {
    /// The status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::TooLarge | HeadError::TooManyHeaders => 431,
            HeadError::Invalid(_) => 400,
            HeadError::UnsupportedTransferEncoding(_) => 501,
        }
    }
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::TooLarge => write!(f, "the header section is over {} KiB", MAX_HEAD / 1024),
            HeadError::TooManyHeaders => write!(f, "more than {MAX_HEADERS} header fields"),
            HeadError::Invalid(m) => f.write_str(m),
            HeadError::UnsupportedTransferEncoding(te) => {
                write!(f, "transfer coding {te:?} is not supported (only chunked)")
            }
        }
    }
}

fn httparse_error(e: httparse::Error) -> HeadError {
    match e {
        httparse::Error::TooManyHeaders => HeadError::TooManyHeaders,
        httparse::Error::Version => {
            HeadError::Invalid("not an HTTP/1.0 or HTTP/1.1 message".into())
        }
        other => HeadError::Invalid(format!("malformed message head: {other}")),
    }
}

/// What the framing-relevant header fields say.
#[derive(Default)]
struct Fields {
    content_length: Option<u64>,
    transfer_encoding: Option<String>,
    connection_close: bool,
    connection_keep_alive: bool,
    upgrade: bool,
    expect_continue: bool,
}

fn fields(headers: &[httparse::Header<'_>], request: bool) -> Result<Fields, HeadError> {
    let mut f = Fields::default();
    let mut te_count = 0;
    for h in headers {
        let value = std::str::from_utf8(h.value).ok().map(str::trim);
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = value
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| HeadError::Invalid("invalid Content-Length".into()))?;
            if f.content_length.is_some_and(|old| old != v) {
                return Err(HeadError::Invalid(
                    "conflicting Content-Length fields".into(),
                ));
            }
            f.content_length = Some(v);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            te_count += 1;
            f.transfer_encoding = Some(value.unwrap_or("?").to_string());
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in value.unwrap_or_default().split(',') {
                let t = token.trim();
                if t.eq_ignore_ascii_case("close") {
                    f.connection_close = true;
                } else if t.eq_ignore_ascii_case("keep-alive") {
                    f.connection_keep_alive = true;
                }
            }
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            f.upgrade = true;
        } else if h.name.eq_ignore_ascii_case("expect") {
            f.expect_continue |= value.is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        }
    }
    if request && te_count > 1 {
        return Err(HeadError::Invalid(
            "more than one Transfer-Encoding field".into(),
        ));
    }
    Ok(f)
}

/// The length of a head httparse finished parsing; `Ok(None)` while it is
/// incomplete and `buf_len` is still within [`MAX_HEAD`].
fn head_len(parsed: httparse::Result<usize>, buf_len: usize) -> Result<Option<usize>, HeadError> {
    match parsed {
        Ok(httparse::Status::Complete(n)) => Ok(Some(n)),
        Ok(httparse::Status::Partial) if buf_len > MAX_HEAD => Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(httparse_error(e)),
    }
}

/// Parse a request head at the start of `buf`. `Ok(None)`: incomplete, read more.
///
/// Stricter than the engine where that can only refuse, never reinterpret:
/// both `Content-Length` and `Transfer-Encoding` (a request-smuggling shape),
/// differing `Content-Length`s, and transfer codings other than a single
/// `chunked` are refused.
pub fn parse_request(buf: &[u8]) -> Result<Option<RequestHead>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let Some(len) = head_len(req.parse(buf), buf.len())? else {
        return Ok(None);
    };
    if len > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let method = req.method.unwrap_or_default().to_string();
    let target = req.path.unwrap_or_default().to_string();
    let minor_version = req.version.unwrap_or(1);
    let f = fields(req.headers, true)?;
    let body = match (&f.transfer_encoding, f.content_length) {
        (Some(_), Some(_)) => {
            return Err(HeadError::Invalid(
                "both Content-Length and Transfer-Encoding".into(),
            ))
        }
        (Some(te), None) if te.eq_ignore_ascii_case("chunked") => Framing::Chunked,
        (Some(te), None) => return Err(HeadError::UnsupportedTransferEncoding(te.clone())),
        (None, Some(0)) | (None, None) => Framing::Empty,
        (None, Some(n)) => Framing::Length(n),
    };
    let close = f.connection_close || (minor_version == 0 && !f.connection_keep_alive);
    Ok(Some(RequestHead {
        method,
        target,
        minor_version,
        len,
        body,
        close,
        upgrade: f.upgrade,
        expect_continue: f.expect_continue,
    }))
}

/// Parse a response head at the start of `buf`, for a request whose method
/// was HEAD (`head_request`) or not. `Ok(None)`: incomplete.
pub fn parse_response(buf: &[u8], head_request: bool) -> Result<Option<ResponseHead>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let Some(len) = head_len(resp.parse(buf), buf.len())? else {
        return Ok(None);
    };
    let status = resp.code.unwrap_or(0);
    let minor_version = resp.version.unwrap_or(1);
    let f = fields(resp.headers, false)?;
    let body = if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Empty
    } else {
        match (&f.transfer_encoding, f.content_length) {
            (Some(te), _) if te.eq_ignore_ascii_case("chunked") => Framing::Chunked,
            (Some(_), _) => Framing::UntilClose,
            (None, Some(0)) => Framing::Empty,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::UntilClose,
        }
    };
    let close = f.connection_close
        || (minor_version == 0 && !f.connection_keep_alive)
        || body == Framing::UntilClose;
    Ok(Some(ResponseHead {
        status,
        len,
        body,
        close,
    }))
}

/// Whether `buf` may hold a complete head: it contains an empty line. Cheap
/// enough to run on every read before the full parse.
pub fn may_hold_head(buf: &[u8]) -> bool {
    // One pass from line end to line end (a `position` scan, not two passes of
    // slice windows: this runs on every read of every request and response).
    let mut rest = buf;
    while let Some(i) = rest.iter().position(|&b| b == b'\n') {
        rest = &rest[i + 1..];
        if let [b'\n', ..] | [b'\r', b'\n', ..] = rest {
            return true;
        }
    }
    false
}

/// The HTTP/2 prior-knowledge connection preface.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether `buf` starts with the HTTP/2 preface: `Some(true)` yes,
/// `Some(false)` no, `None` too short to tell yet.
pub fn h2_preface(buf: &[u8]) -> Option<bool> {
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] != H2_PREFACE[..n] {
        Some(false)
    } else if n == H2_PREFACE.len() {
        Some(true)
    } else {
        None
    }
}

/// An HTTP/2 server preface (empty SETTINGS) and a GOAWAY with
/// HTTP_1_1_REQUIRED and `message` as debug data: how an HTTP/2 client is
/// told cleanly to use HTTP/1.1.
pub fn h2_refusal(message: &str) -> Vec<u8> {
    let debug = &message.as_bytes()[..message.len().min(1024)];
    let mut out = vec![0, 0, 0, 0x04, 0, 0, 0, 0, 0];
    let len = 8 + debug.len();
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, 0x07, 0]);
    out.extend_from_slice(&[0, 0, 0, 0]); // stream 0
    out.extend_from_slice(&[0, 0, 0, 0]); // last stream id 0
    out.extend_from_slice(&[0, 0, 0, 0x0d]); // HTTP_1_1_REQUIRED
    out.extend_from_slice(debug);
    out
}

/// A Docker-style error response: `status`, `Content-Type: application/json`,
/// body `{"message":"..."}`; with `Connection: close` when `close`.
pub fn error_response(status: u16, message: &str, close: bool) -> Vec<u8> {
    let body = serde_json::json!({ "message": message }).to_string();
    let reason = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        _ => "Error",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    out.push_str(&body);
    out.into_bytes()
}

/// The interim response sent when the broker itself needs a body the client
/// holds back for `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// An error in a chunked body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkError(pub &'static str);

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid chunked body: {}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    Size,
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// Expecting the trailer section (ends with an empty line).
    Trailers,
    /// The body is complete.
    Done,
}

/// Scans a chunked body as it streams by: says how many bytes belong to it
/// (so they can be forwarded verbatim) and hands out the decoded data.
#[derive(Debug, Clone)]
pub struct Chunked {
    state: ChunkState,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked {
            state: ChunkState::Size,
        }
    }
}

impl Chunked {
    /// Whether the terminating chunk and trailers have been seen.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Consume as much of `buf` as forms complete pieces of the body, calling
    /// `data` with each piece of decoded content. Returns the number of bytes
    /// consumed; the rest (a partial line, or what follows the body) stays.
    pub fn advance(
        &mut self,
        buf: &[u8],
        mut data: impl FnMut(&[u8]),
    ) -> Result<usize, ChunkError> {
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            match self.state {
                ChunkState::Done => return Ok(pos),
                ChunkState::Size => {
                    if rest.is_empty() {
                        return Ok(pos);
                    }
                    if !rest[0].is_ascii_hexdigit() {
                        return Err(ChunkError("chunk size is not hexadecimal"));
                    }
                    match httparse::parse_chunk_size(rest) {
                        Ok(httparse::Status::Complete((n, size))) => {
                            pos += n;
                            self.state = if size == 0 {
                                ChunkState::Trailers
                            } else {
                                ChunkState::Data(size)
                            };
                        }
                        Ok(httparse::Status::Partial) => {
                            if rest.len() > MAX_CHUNK_LINE {
                                return Err(ChunkError("chunk size line too long"));
                            }
                            return Ok(pos);
                        }
                        Err(_) => return Err(ChunkError("bad chunk size line")),
                    }
                }
                ChunkState::Data(left) => {
                    if rest.is_empty() {
                        return Ok(pos);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                    data(&rest[..take]);
                    pos += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                }
                ChunkState::DataEnd => {
                    if rest.starts_with(b"\r\n") {
                        pos += 2;
                        self.state = ChunkState::Size;
                    } else if rest.is_empty() || rest == b"\r" {
                        return Ok(pos);
                    } else {
                        return Err(ChunkError("chunk data not followed by CRLF"));
                    }
                }
                ChunkState::Trailers => {
                    let mut headers = [httparse::EMPTY_HEADER; 32];
                    match httparse::parse_headers(rest, &mut headers) {
                        Ok(httparse::Status::Complete((n, _))) => {
                            pos += n;
                            self.state = ChunkState::Done;
                        }
                        Ok(httparse::Status::Partial) => {
                            if rest.len() > MAX_TRAILERS {
                                return Err(ChunkError("trailer section too large"));
                            }
                            return Ok(pos);
                        }
                        Err(_) => return Err(ChunkError("bad trailer section")),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Result<Option<RequestHead>, HeadError> {
        parse_request(s.as_bytes())
    }

    #[test]
    fn requests() {
        let text = "GET /v1.41/containers/json?all=1 HTTP/1.1\r\nHost: docker\r\n\r\n";
        let h = req(text).unwrap().unwrap();
        assert_eq!(h.method, "GET");
        assert_eq!(h.target, "/v1.41/containers/json?all=1");
        assert_eq!(h.body, Framing::Empty);
        assert!(!h.close && !h.upgrade && !h.expect_continue);
        assert_eq!(h.len, text.len());
        let h = req("POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
            .unwrap()
            .unwrap();
        assert_eq!(h.body, Framing::Length(5));
        assert_eq!(h.len, 39);
        let h = req("POST /x HTTP/1.1\r\ntransfer-encoding: Chunked\r\nConnection: Upgrade, close\r\nUpgrade: tcp\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.body, Framing::Chunked);
        assert!(h.close && h.upgrade);
        let h = req("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(h.close);
        let h = req("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.close);
        let h = req("PUT /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.expect_continue);
        assert_eq!(h.body, Framing::Length(3));
        // Bare LF line endings are tolerated (as Go does).
        assert!(req("GET / HTTP/1.1\nHost: x\n\n").unwrap().is_some());
        // Incomplete.
        assert_eq!(req("GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        assert_eq!(req("GET / HT"), Ok(None));
        assert_eq!(req(""), Ok(None));
    }

    #[test]
    fn refused_requests() {
        let e = |s: &str| req(s).unwrap_err();
        // (request, status): ambiguous framing is refused, not guessed.
        let cases = [
            ("POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("GET / HTTP/2.0\r\n\r\n", 400),
            ("GET /\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nX : y\r\n\r\n", 400),
        ];
        for (request, status) in cases {
            assert_eq!(e(request).status(), status, "{request:?}");
        }
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "A: b\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(e(&many), HeadError::TooManyHeaders);
        let big = format!("GET / HTTP/1.1\r\nA: {}", "b".repeat(MAX_HEAD));
        assert_eq!(e(&big), HeadError::TooLarge);
    }

    #[test]
    fn responses() {
        let r = |s: &str, head: bool| parse_response(s.as_bytes(), head).unwrap().unwrap();
        let h = r("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false);
        assert_eq!(
            (h.status, h.body, h.close),
            (200, Framing::Length(2), false)
        );
        let h = r("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", true);
        assert_eq!(h.body, Framing::Empty);
        let h = r(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n",
            false,
        );
        assert_eq!(h.body, Framing::Chunked);
        let h = r("HTTP/1.1 204 No Content\r\n\r\n", false);
        assert_eq!(h.body, Framing::Empty);
        let h = r(
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n",
            false,
        );
        assert_eq!(h.body, Framing::Empty);
        let h = r(
            "HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
            false,
        );
        assert_eq!((h.status, h.body), (101, Framing::Empty));
        let h = r("HTTP/1.1 100 Continue\r\n\r\n", false);
        assert_eq!(h.status, 100);
        let h = r(
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n",
            false,
        );
        assert_eq!((h.body, h.close), (Framing::UntilClose, true));
        let h = r(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        assert_eq!((h.body, h.close), (Framing::Empty, true));
        let h = r("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false);
        assert!(h.close);
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\n", false), Ok(None));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false).is_err());
        assert!(parse_response(b"SSH-2.0\r\n\r\n", false).is_err());
    }

    fn dechunk(input: &[u8], step: usize) -> Result<(Vec<u8>, usize), ChunkError> {
        // Feed `input` `step` bytes at a time, as reads would.
        let mut c = Chunked::default();
        let mut buf = Vec::new();
        let mut out = Vec::new();
        let mut consumed_total = 0;
        for piece in input.chunks(step.max(1)) {
            buf.extend_from_slice(piece);
            let n = c.advance(&buf, |d| out.extend_from_slice(d))?;
            buf.drain(..n);
            consumed_total += n;
            if c.is_done() {
                break;
            }
        }
        assert!(c.is_done(), "not done after {input:?}");
        Ok((out, consumed_total))
    }

    #[test]
    fn chunked_bodies() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\nGET /next";
        for step in [1, 2, 3, 7, 100] {
            let (data, used) = dechunk(body, step).unwrap();
            assert_eq!(data, b"hello world", "step {step}");
            assert_eq!(&body[used..], b"GET /next", "step {step}");
        }
        let (data, used) = dechunk(b"0\r\n\r\n", 1).unwrap();
        assert!(data.is_empty());
        assert_eq!(used, 5);
        let bad = |b: &[u8]| {
            let mut c = Chunked::default();
            c.advance(b, |_| {})
        };
        assert!(bad(b"x\r\n").is_err());
        assert!(bad(b"\r\n").is_err());
        assert!(bad(b"5\r\nhelloXX").is_err());
        assert!(bad(b"fffffffffffffffff\r\n").is_err());
        assert!(bad(&[b'1'; 5000]).is_err());
        assert_eq!(bad(b"5\r\nhel"), Ok(6));
    }

    #[test]
    fn error_responses() {
        let r = error_response(
            403,
            "sockbroker: tenant ci may not POST /containers/create (Privileged)",
            false,
        );
        let text = String::from_utf8(r.clone()).unwrap();
        let body =
            r#"{"message":"sockbroker: tenant ci may not POST /containers/create (Privileged)"}"#;
        assert_eq!(
            text,
            format!(
                "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        );
        let h = parse_response(&r, false).unwrap().unwrap();
        assert_eq!(
            (h.status, h.body),
            (403, Framing::Length(body.len() as u64))
        );
        let r = error_response(502, "a \"quoted\"\nthing", true);
        let text = String::from_utf8(r).unwrap();
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with(r#"{"message":"a \"quoted\"\nthing"}"#));
    }

    #[test]
    fn h2() {
        assert_eq!(h2_preface(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Some(true));
        assert_eq!(
            h2_preface(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nxyz"),
            Some(true)
        );
        assert_eq!(h2_preface(b"PRI * HT"), None);
        assert_eq!(h2_preface(b"GET / HTTP/1.1"), Some(false));
        assert_eq!(h2_preface(b"P"), None);
        let g = h2_refusal("no");
        assert_eq!(&g[..9], &[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        assert_eq!(&g[9..14], &[0, 0, 10, 7, 0]);
        assert_eq!(&g[22..26], &[0, 0, 0, 0x0d]);
        assert_eq!(&g[26..], b"no");
        assert!(may_hold_head(b"GET / HTTP/1.1\r\n\r\n"));
        assert!(may_hold_head(b"GET / HTTP/1.1\n\n"));
        assert!(!may_hold_head(b"GET / HTTP/1.1\r\nA: b\r\n"));
    }

    #[test]
    fn may_hold_head_finds_exactly_an_empty_line() {
        // Every string of up to 8 bytes over {a, \r, \n}, against the
        // definition: it contains "\n\n" or "\n\r\n".
        let alphabet = [b'a', b'\r', b'\n'];
        for len in 0..=8u32 {
            for mut code in 0..3usize.pow(len) {
                let s: Vec<u8> = (0..len)
                    .map(|_| {
                        let b = alphabet[code % 3];
                        code /= 3;
                        b
                    })
                    .collect();
                let want =
                    s.windows(2).any(|w| w == b"\n\n") || s.windows(3).any(|w| w == b"\n\r\n");
                assert_eq!(may_hold_head(&s), want, "{s:?}");
            }
        }
    }
}
