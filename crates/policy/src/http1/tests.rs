//! Framing: what is accepted, what is refused (and would be framed differently elsewhere).
use super::*;

fn req(s: &str) -> Result<Option<RequestHead>, HeadError> {
    parse_request(s.as_bytes())
}

#[test]
fn requests() {
    let text = "GET /v1.41/containers/json?all=1 HTTP/1.1\r\nHost: docker\r\n\r\n";
    let h = req(text).unwrap().unwrap();
    assert_eq!(h.method, "GET");
    assert_eq!(h.target(text.as_bytes()), "/v1.41/containers/json?all=1");
    assert!(
        matches!(h.method, Cow::Borrowed(_)),
        "a standard method is not copied"
    );
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
    let h = req("PUT /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
        .unwrap()
        .unwrap();
    assert!(h.expect_continue);
    assert_eq!(h.body, Framing::Length(3));
    // Equal Content-Length fields are one too many; a tab in a value is fine.
    assert!(req("GET / HTTP/1.1\r\nUser-Agent: a\tb\r\n\r\n").is_ok());
    let h = req("POST /x HTTP/1.0\r\nContent-Length: 3\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n");
    assert!(h.is_err(), "form body");
    // A form content type without a body is harmless.
    assert!(
        req("POST /x HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n").is_ok()
    );
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
        (
            "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            400,
        ),
        ("POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", 400),
        (
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            400,
        ),
        ("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            501,
        ),
        (
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        ("GET / HTTP/2.0\r\n\r\n", 400),
        ("GET /\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nX : y\r\n\r\n", 400),
    ];
    for (request, status) in cases.into_iter().chain(SMUGGLING_HEADS.iter().copied()) {
        assert_eq!(e(request).status(), status, "{request:?}");
    }
}

/// Heads some HTTP/1.1 reader (Go's net/http of some version, or the
/// engine behind a proxy) could frame differently from httparse: all
/// refused, with their status.
pub(crate) const SMUGGLING_HEADS: &[(&str, u16)] = &[
    // Bare LF / bare CR line endings.
    ("GET / HTTP/1.1\nHost: x\n\n", 400),
    ("GET / HTTP/1.1\r\nHost: x\n\r\n", 400),
    ("GET / HTTP/1.1\r\nHost: x\r\n\n", 400),
    ("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 400),
    // Control characters in a value.
    ("GET / HTTP/1.1\r\nX: a\x0bb\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\nX: a\x00\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", 400),
    ("POST / HTTP/1.1\r\nTransfer-Encoding: \x0bchunked\r\n\r\n", 400),
    // A blank line before the request line.
    ("\r\nGET / HTTP/1.1\r\n\r\n", 400),
    ("\nGET / HTTP/1.1\r\n\r\n", 400),
    // obs-fold, whitespace before the colon.
    ("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 400),
    ("POST / HTTP/1.1\r\nContent-Length: 0\r\n\tTransfer-Encoding: chunked\r\n\r\n", 400),
    ("POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n", 400),
    // Transfer-Encoding on HTTP/1.0 (Go ignores it: the body would be
    // the next request), in any spelling.
    ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ("POST / HTTP/1.0\r\ntransfer-encoding: CHUNKED\r\nConnection: keep-alive\r\n\r\n", 400),
    // Codings other than exactly chunked.
    ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 501),
    ("POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n", 501),
    ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked,\r\n\r\n", 501),
    ("POST / HTTP/1.1\r\nTransfer-Encoding: \r\n\r\n", 501),
    ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n", 400),
    // TE with CL, in either order; duplicate CL even when equal.
    ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n", 400),
    ("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", 400),
    ("POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 03\r\n\r\n", 400),
    ("POST / HTTP/1.1\r\nContent-Length: 9223372036854775808\r\n\r\n", 400),
    ("POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n", 400),
    ("POST / HTTP/1.1\r\nContent-Length: 1 0\r\n\r\n", 400),
    // A tab in the request line.
    ("GET\t/ HTTP/1.1\r\n\r\n", 400),
    // Parameters in a form body the engine reads, the policy does not.
    ("POST /build HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 16\r\n\r\n", 400),
    ("POST /build HTTP/1.1\r\nContent-Type: Application/X-WWW-Form-Urlencoded ; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ("POST /build HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=x\r\nContent-Length: 1\r\n\r\n", 400),
];

#[test]
fn old_cases_still_refused() {
    let e = |s: &str| req(s).unwrap_err();
    let cases = [("GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 400)];
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
    for (input, why) in SMUGGLING_CHUNKS {
        // Refused whether it comes at once or a byte at a time.
        assert!(bad(input).is_err(), "{why}: {input:?}");
        let mut c = Chunked::default();
        let mut buf = Vec::new();
        let mut failed = false;
        for b in *input {
            buf.push(*b);
            match c.advance(&buf, |_| {}) {
                Ok(n) => {
                    buf.drain(..n);
                }
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed, "{why}: {input:?} (bytewise)");
    }
    // Spellings every reader agrees on.
    for ok in [
        &b"5;a=b;c=\"d e\"\r\nhello\r\n0\r\n\r\n"[..],
        b"5;\tx\r\nhello\r\n0\r\n\r\n",
        b"00005\r\nhello\r\n0000\r\nX-T: v\r\nY: \r\n\r\n",
        b"A\r\n0123456789\r\n0\r\n\r\n",
    ] {
        let (data, used) = dechunk(ok, 1).unwrap();
        assert_eq!(used, ok.len(), "{ok:?}");
        assert!(!data.is_empty());
    }
}

/// Chunked bodies whose framing Go's net/http before 1.23.8 reads
/// differently (it ends a chunk line at a bare LF and ignores what is in
/// an extension), or that other readers could: all refused.
pub(crate) const SMUGGLING_CHUNKS: &[(&[u8], &str)] = &[
    (
        b"5;ext\nGET /x HTTP/1.1\r\n\r\nhello\r\n0\r\n\r\n",
        "bare LF in an extension",
    ),
    (b"5;a\rb\r\nhello\r\n0\r\n\r\n", "bare CR in an extension"),
    (b"5\nhello\r\n0\r\n\r\n", "bare LF after the size"),
    (b"5\r\nhello\r\n0\n\r\n", "bare LF after the last chunk"),
    (b"5;\x00\r\nhello\r\n0\r\n\r\n", "NUL in an extension"),
    (b"5;\x0b\r\nhello\r\n0\r\n\r\n", "VT in an extension"),
    (
        b"5;\xc3\xa9\r\nhello\r\n0\r\n\r\n",
        "non-ASCII in an extension",
    ),
    (b"5 \r\nhello\r\n0\r\n\r\n", "space after the size"),
    (b"5 ;x\r\nhello\r\n0\r\n\r\n", "space before ;"),
    (b" 5\r\nhello\r\n0\r\n\r\n", "space before the size"),
    (b"+5\r\nhello\r\n0\r\n\r\n", "a sign"),
    (b"0x5\r\nhello\r\n0\r\n\r\n", "0x prefix"),
    (b";x\r\nhello\r\n0\r\n\r\n", "no size"),
    (
        b"00000000000000005\r\nhello\r\n0\r\n\r\n",
        "17 digits (Go: too large)",
    ),
    (b"5\r\nhello\n0\r\n\r\n", "bare LF after data"),
    (b"5\r\nhello\r\n0\r\nX: y\n\r\n", "bare LF in a trailer"),
    (b"5\r\nhello\r\n0\r\nX: y\r\n z\r\n\r\n", "folded trailer"),
    (b"5\r\nhello\r\n0\r\nX y\r\n\r\n", "trailer without colon"),
    (
        b"5\r\nhello\r\n0\r\nX: a\rb\r\n\r\n",
        "bare CR in a trailer",
    ),
    (
        b"5\r\nhello\r\n0\r\n\nGET / HTTP/1.1\r\n\r\n",
        "bare LF ending the trailers",
    ),
];

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
    assert!(req("GET / HTTP/1.1\n\n").is_err());
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
            let want = s.windows(2).any(|w| w == b"\n\n") || s.windows(3).any(|w| w == b"\n\r\n");
            assert_eq!(may_hold_head(&s), want, "{s:?}");
        }
    }
}

/// The line-at-a-time check of a request head and the byte-at-a-time one
/// (which names the first offence) agree on every short mix of the bytes
/// that matter after each kind of request line.
#[test]
fn strict_lines_fast_path_agrees_with_the_exact_walk() {
    const ALPHABET: &[u8] = b"a :\t\r\n\x01\x7f";
    let prefixes: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n",
        b"GET\t/ HTTP/1.1\r\n",
        b"",
    ];
    // The fast path does take the usual heads.
    assert!(plain_lines(
        b"GET /x HTTP/1.1\r\nHost: d\r\nA: b\tc\r\n\r\n"
    ));
    let mut tail = Vec::new();
    for len in 0..=5u32 {
        for n in 0..ALPHABET.len().pow(len) {
            tail.clear();
            let mut k = n;
            for _ in 0..len {
                tail.push(ALPHABET[k % ALPHABET.len()]);
                k /= ALPHABET.len();
            }
            for p in prefixes {
                let head = [p, &tail, b"\r\n"].concat();
                assert_eq!(
                    strict_lines(&head),
                    strict_lines_exact(&head),
                    "{:?}",
                    String::from_utf8_lossy(&head)
                );
            }
        }
    }
}

#[test]
fn methods_are_kept_as_sent() {
    for m in ["GET", "get", "MKCOL", "Delete", "PATCH"] {
        let text = format!("{m} /x HTTP/1.1\r\n\r\n");
        let h = req(&text).unwrap().unwrap();
        assert_eq!(h.method, m);
        assert_eq!(h.target(text.as_bytes()), "/x");
    }
}
