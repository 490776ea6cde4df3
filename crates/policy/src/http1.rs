//! HTTP/1.x message framing for the policy relay, on top of `httparse`:
//! request and response heads, where each message body ends (RFC 9112 §6),
//! chunked-body scanning, and the JSON error responses the docker CLI prints.
//!
//! Everything here is pure (bytes in, decisions out) so that it can be
//! unit-tested and fuzzed without sockets.

use std::borrow::Cow;
use std::fmt;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::LazyLock;

use memchr::memmem;

/// Largest request or response head accepted (request line + headers).
pub const MAX_HEAD: usize = 256 * 1024;
/// Most header fields in one head.
pub const MAX_HEADERS: usize = 128;
/// Longest chunk-size line (with extensions and CRLF) accepted in a chunked
/// body, plus one: Go refuses a line of 4096 bytes.
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

/// A parsed request head. It owns no copy of the head's bytes (parsing
/// allocates nothing for a standard method): the target is a range of the
/// buffer the head was parsed from, read with [`RequestHead::target`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method as sent (`GET`): borrowed for the standard methods,
    /// owned only for any other token.
    pub method: Cow<'static, str>,
    /// Where the raw request target (`/v1.41/containers/json?all=1`) is
    /// in the head's bytes.
    pub target: Range<usize>,
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

impl RequestHead {
    /// The raw request target, from `head`: the bytes this head was parsed
    /// from (the same buffer, or its first [`RequestHead::len`] bytes).
    pub fn target<'b>(&self, head: &'b [u8]) -> &'b str {
        // httparse checked these bytes (a `&str` it handed out), so this
        // never falls back to "".
        head.get(self.target.clone())
            .and_then(|t| std::str::from_utf8(t).ok())
            .unwrap_or_default()
    }
}

/// The method as a `Cow`: the standard methods (as sent, case included)
/// without an allocation.
fn method(m: &str) -> Cow<'static, str> {
    const STANDARD: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    match STANDARD.iter().find(|s| **s == m) {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(m.to_string()),
    }
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

/// What the framing-relevant header fields say, taken straight from
/// httparse's slice of fields (borrowing from the head: nothing allocated).
#[derive(Default)]
struct Fields<'h> {
    content_length: Option<u64>,
    /// How many `Content-Length` fields there were.
    cl_count: usize,
    /// The (last) `Transfer-Encoding` value, trimmed; `"?"` if not UTF-8.
    transfer_encoding: Option<&'h str>,
    /// The request body is a form the engine would read parameters from
    /// (requests only).
    form_body: bool,
    connection_close: bool,
    connection_keep_alive: bool,
    upgrade: bool,
    expect_continue: bool,
}

fn fields<'h>(headers: &[httparse::Header<'h>], request: bool) -> Result<Fields<'h>, HeadError> {
    let mut f = Fields::default();
    let mut te_count = 0;
    for h in headers {
        // Go's textproto trims spaces and tabs around a value, nothing else.
        // Checked and trimmed only for the fields read here (most of a
        // response's are not): a UTF-8 check per field cost ~100
        // instructions each (docs/performance.md).
        let value = || {
            std::str::from_utf8(h.value)
                .ok()
                .map(|v| v.trim_matches([' ', '\t']))
        };
        // The names read here all differ in length: one comparison at most.
        let name = h.name;
        match name.len() {
            14 if name.eq_ignore_ascii_case("content-length") => {
                f.cl_count += 1;
                // Go: strconv.ParseUint(v, 10, 63): digits only, at most 2^63-1.
                let v = value()
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<u64>().ok())
                    .filter(|v| *v <= i64::MAX as u64)
                    .ok_or_else(|| HeadError::Invalid("invalid Content-Length".into()))?;
                if f.content_length.is_some_and(|old| old != v) {
                    return Err(HeadError::Invalid(
                        "conflicting Content-Length fields".into(),
                    ));
                }
                f.content_length = Some(v);
            }
            17 if name.eq_ignore_ascii_case("transfer-encoding") => {
                te_count += 1;
                f.transfer_encoding = Some(value().unwrap_or("?"));
            }
            10 if name.eq_ignore_ascii_case("connection") => {
                for token in value().unwrap_or_default().split(',') {
                    let t = token.trim();
                    if t.eq_ignore_ascii_case("close") {
                        f.connection_close = true;
                    } else if t.eq_ignore_ascii_case("keep-alive") {
                        f.connection_keep_alive = true;
                    }
                }
            }
            7 if name.eq_ignore_ascii_case("upgrade") => f.upgrade = true,
            12 if request && name.eq_ignore_ascii_case("content-type") => {
                // Go's mime.ParseMediaType: the type before any `;`, trimmed,
                // any case. An unparsable value counts (fail closed).
                let media = value().unwrap_or("").split(';').next().unwrap_or("");
                let media = media.trim_matches([' ', '\t']);
                f.form_body |= media.eq_ignore_ascii_case("application/x-www-form-urlencoded")
                    || media.eq_ignore_ascii_case("multipart/form-data")
                    || std::str::from_utf8(h.value).is_err();
            }
            6 if name.eq_ignore_ascii_case("expect") => {
                f.expect_continue |=
                    value().is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
            }
            _ => {}
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
/// One framing for both sides (docs/security.md "Framing"): the head and
/// its body are forwarded as they came, so a head is accepted only if every
/// HTTP/1.1 reader, Go's net/http of any version included, frames it the
/// same way. Refused (400 unless noted):
///
/// * anything but CRLF line endings (a bare LF or CR), control characters
///   other than HTAB in field values, a blank line before the request line,
///   folded (obs-fold) fields, whitespace before a colon;
/// * `Transfer-Encoding` on an HTTP/1.0 request (Go ignores it there),
///   more than one `Transfer-Encoding` field, any coding but exactly
///   `chunked` (501), `Transfer-Encoding` together with `Content-Length`;
/// * more than one `Content-Length` field (even with equal values), a
///   value that is not plain digits or is over 2^63-1;
/// * a form body (`application/x-www-form-urlencoded`, `multipart/form-data`):
///   the engine reads parameters from it as well as from the query, the
///   policy reads only the query.
pub fn parse_request(buf: &[u8]) -> Result<Option<RequestHead>, HeadError> {
    if let Some(&b) = buf.first() {
        if b == b'\r' || b == b'\n' {
            return Err(HeadError::Invalid(
                "empty line before the request line".into(),
            ));
        }
    }
    // Uninitialized: filling 128 empty fields first cost ~400 instructions
    // per head (docs/performance.md).
    let mut headers = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let Some(len) = head_len(req.parse_with_uninit_headers(buf, &mut headers), buf.len())? else {
        return Ok(None);
    };
    if len > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    strict_lines(&buf[..len])?;
    let method = method(req.method.unwrap_or_default());
    let target = match req.path {
        // The path is a slice of `buf`: keep where it is.
        Some(p) => {
            let start = p.as_ptr() as usize - buf.as_ptr() as usize;
            start..start + p.len()
        }
        None => 0..0,
    };
    let minor_version = req.version.unwrap_or(1);
    let f = fields(req.headers, true)?;
    if f.cl_count > 1 {
        return Err(HeadError::Invalid(
            "more than one Content-Length field".into(),
        ));
    }
    let body = match (&f.transfer_encoding, f.content_length) {
        (Some(_), _) if minor_version == 0 => {
            return Err(HeadError::Invalid(
                "Transfer-Encoding on an HTTP/1.0 request".into(),
            ))
        }
        (Some(_), Some(_)) => {
            return Err(HeadError::Invalid(
                "both Content-Length and Transfer-Encoding".into(),
            ))
        }
        (Some(te), None) if te.eq_ignore_ascii_case("chunked") => Framing::Chunked,
        (Some(te), None) => return Err(HeadError::UnsupportedTransferEncoding(te.to_string())),
        (None, Some(0)) | (None, None) => Framing::Empty,
        (None, Some(n)) => Framing::Length(n),
    };
    if f.form_body && body != Framing::Empty {
        return Err(HeadError::Invalid(
            "a form-encoded request body (the Docker API takes parameters in the query only)"
                .into(),
        ));
    }
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

/// The byte-level rules httparse leaves open: every line of `head` ends with
/// CRLF, no CR or LF elsewhere, no control character but HTAB (and none at
/// all in the request line), no line that starts with whitespace.
fn strict_lines(head: &[u8]) -> Result<(), HeadError> {
    // A plain head passes the line-at-a-time check; anything it does not
    // pass goes through the byte-at-a-time one, which names the first
    // offence (the byte-at-a-time walk of every head cost ~1,000
    // instructions per request, docs/performance.md).
    if plain_lines(head) {
        Ok(())
    } else {
        strict_lines_exact(head)
    }
}

/// Whether `head` certainly passes [`strict_lines_exact`], in one pass over
/// each pair of neighbouring bytes: no control character but HTAB, CR and
/// LF; a CR exactly where an LF follows (CRLF and nothing else ends a line);
/// no line start (after an LF) with a space or HTAB; no HTAB in the request
/// line. `false` may also mean "not sure".
fn plain_lines(head: &[u8]) -> bool {
    let (Some(&first), Some(&last)) = (head.first(), head.last()) else {
        return true;
    };
    let ctl = |b: u8| (b < 0x20) & (b != b'\t') & (b != b'\r') & (b != b'\n') | (b == 0x7f);
    // Accumulated without early exit or branches, so that the loop vectorizes.
    let bad = head.iter().zip(&head[1..]).fold(false, |bad, (&x, &y)| {
        bad | ctl(x)
            | ((x == b'\r') != (y == b'\n'))
            | ((x == b'\n') & ((y == b' ') | (y == b'\t')))
    });
    let request_line = &head[..memchr::memchr(b'\n', head).unwrap_or(head.len())];
    !bad && first != b'\n'
        && last != b'\r'
        && !ctl(last)
        && memchr::memchr(b'\t', request_line).is_none()
}

/// [`strict_lines`] a byte at a time: the error names the first offence.
fn strict_lines_exact(head: &[u8]) -> Result<(), HeadError> {
    let bad = |what: &str| Err(HeadError::Invalid(format!("{what} in the request head")));
    let mut line_start = true;
    let mut request_line = true;
    let mut i = 0;
    while i < head.len() {
        let b = head[i];
        match b {
            b'\r' => {
                if head.get(i + 1) != Some(&b'\n') {
                    return bad("a bare CR");
                }
                i += 2;
                line_start = true;
                request_line = false;
                continue;
            }
            b'\n' => return bad("a bare LF (lines must end with CRLF)"),
            b' ' | b'\t' if line_start && !request_line => {
                return bad("a folded header line (obs-fold)")
            }
            b'\t' if request_line => return bad("a tab in the request line"),
            b'\t' => {}
            0..=0x1f | 0x7f => return bad("a control character"),
            _ => {}
        }
        line_start = false;
        i += 1;
    }
    Ok(())
}

/// Parse a response head at the start of `buf`, for a request whose method
/// was HEAD (`head_request`) or not. `Ok(None)`: incomplete.
pub fn parse_response(buf: &[u8], head_request: bool) -> Result<Option<ResponseHead>, HeadError> {
    let mut headers = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        buf,
        &mut headers,
    );
    let Some(len) = head_len(parsed, buf.len())? else {
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
    // An empty line is "\n\r\n" or "\n\n", each found by one vectorized
    // substring search (this runs on every read of every request and
    // response: a byte-at-a-time scan cost ~2,800 instructions per request,
    // stopping at each line end ~850 per response, docs/performance.md).
    // The searchers are built once.
    static CRLF: LazyLock<memmem::Finder<'static>> =
        LazyLock::new(|| memmem::Finder::new(b"\n\r\n"));
    static LF: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(b"\n\n"));
    CRLF.find(buf).is_some() || LF.find(buf).is_some()
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
    /// In the trailer section (ends with an empty line), this many bytes in.
    Trailers(usize),
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
                    let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
                        if rest.len() >= MAX_CHUNK_LINE {
                            return Err(ChunkError("chunk size line too long"));
                        }
                        // Refuse a bad byte as soon as it arrives.
                        let partial = rest.strip_suffix(b"\r").unwrap_or(rest);
                        chunk_line(partial, true)?;
                        return Ok(pos);
                    };
                    if lf + 1 >= MAX_CHUNK_LINE {
                        return Err(ChunkError("chunk size line too long"));
                    }
                    let Some(line) = rest[..lf].strip_suffix(b"\r") else {
                        return Err(ChunkError("chunk line ends with a bare LF"));
                    };
                    let size = chunk_line(line, false)?;
                    pos += lf + 1;
                    self.state = if size == 0 {
                        ChunkState::Trailers(0)
                    } else {
                        ChunkState::Data(size)
                    };
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
                ChunkState::Trailers(seen) => {
                    let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
                        if seen + rest.len() > MAX_TRAILERS {
                            return Err(ChunkError("trailer section too large"));
                        }
                        let partial = rest.strip_suffix(b"\r").unwrap_or(rest);
                        trailer_line(partial, true)?;
                        return Ok(pos);
                    };
                    let Some(line) = rest[..lf].strip_suffix(b"\r") else {
                        return Err(ChunkError("trailer line ends with a bare LF"));
                    };
                    if seen + lf + 1 > MAX_TRAILERS {
                        return Err(ChunkError("trailer section too large"));
                    }
                    pos += lf + 1;
                    if line.is_empty() {
                        self.state = ChunkState::Done;
                    } else {
                        trailer_line(line, false)?;
                        self.state = ChunkState::Trailers(seen + lf + 1);
                    }
                }
            }
        }
    }
}

/// A chunk-size line without its CRLF: `1*16HEXDIG [ ";" ext ]`, the
/// extension printable ASCII, space or tab. What every reader, Go's
/// net/http before 1.23.8 included (it ends the line at a bare LF and cuts
/// at the first `;`), reads as the same size and the same line end.
/// `partial`: `line` may be cut short (check what is there).
fn chunk_line(line: &[u8], partial: bool) -> Result<u64, ChunkError> {
    let (digits, ext) = match line.iter().position(|&b| b == b';') {
        Some(i) => (&line[..i], Some(&line[i + 1..])),
        None => (line, None),
    };
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(ChunkError("chunk size is not hexadecimal"));
    }
    if digits.len() > 16 {
        return Err(ChunkError("chunk size has more than 16 digits"));
    }
    if digits.is_empty() && (ext.is_some() || !partial) {
        return Err(ChunkError("chunk size is not hexadecimal"));
    }
    if let Some(ext) = ext {
        if !ext.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) {
            return Err(ChunkError(
                "chunk extension has a control character or a non-ASCII byte",
            ));
        }
    }
    let mut size: u64 = 0;
    for &d in digits {
        let v = (d as char).to_digit(16).unwrap_or(0) as u64;
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(v))
            .ok_or(ChunkError("chunk size too large"))?;
    }
    Ok(size)
}

/// A trailer field line without its CRLF: `token ":" value`, the value
/// without control characters but HTAB. `partial`: `line` may be cut short.
fn trailer_line(line: &[u8], partial: bool) -> Result<(), ChunkError> {
    let bad = Err(ChunkError("bad trailer field"));
    let colon = line.iter().position(|&b| b == b':');
    let name = &line[..colon.unwrap_or(line.len())];
    if !name.iter().all(|&b| is_tchar(b)) || (colon.is_some() && name.is_empty()) {
        return bad;
    }
    match colon {
        None if partial => Ok(()),
        None => bad,
        Some(i) => {
            if line[i + 1..]
                .iter()
                .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
            {
                Ok(())
            } else {
                bad
            }
        }
    }
}

/// An RFC 9110 token character.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests;
