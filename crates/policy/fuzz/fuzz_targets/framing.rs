//! Differential framing: the same bytes framed by our `http1` and by two
//! independent readers written here, deliberately simple:
//!
//! * `strict`: an HTTP/1.1 request reader that accepts only what RFC 9112
//!   says without any leniency (CRLF only, one Content-Length, TE only on
//!   1.1 and only `chunked`, plain chunk lines);
//! * `go_old`: how Go's net/http before 1.23.8 reads a chunked body (a chunk
//!   line ends at the first LF, trailing whitespace trimmed, extension cut at
//!   the first `;`), which is what many engines still run.
//!
//! Whenever `http1` accepts a request head, `strict` must frame it the same
//! (same length, method, target, body framing); whenever `http1` accepts a
//! whole chunked body, both readers must end it at the same byte with the
//! same decoded data. Any disagreement where we accept is a crash: it is a
//! request the engine could read differently from what the policy checked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockbroker_policy::http1::{self, Chunked, Framing};

#[derive(Debug, PartialEq)]
struct Head {
    len: usize,
    method: String,
    target: String,
    body: Framing,
}

fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The strict reader's head. `None`: refused or incomplete.
fn strict_head(data: &[u8]) -> Option<Head> {
    let end = find(data, b"\r\n\r\n")? + 4;
    let text = &data[..end - 4];
    let mut lines = Vec::new();
    let mut rest = text;
    loop {
        match find(rest, b"\r\n") {
            Some(i) => {
                lines.push(&rest[..i]);
                rest = &rest[i + 2..];
            }
            None => {
                lines.push(rest);
                break;
            }
        }
    }
    if lines
        .iter()
        .any(|l| l.iter().any(|&b| b == b'\r' || b == b'\n'))
    {
        return None;
    }
    let request_line = std::str::from_utf8(lines[0]).ok()?;
    let parts: Vec<&str> = request_line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return None;
    };
    if method.is_empty() || !method.bytes().all(tchar) {
        return None;
    }
    if target.is_empty() || target.bytes().any(|b| b < 0x21 || b == 0x7f) {
        return None;
    }
    let v10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return None,
    };
    let (mut cl, mut te, mut form) = (Vec::new(), Vec::new(), false);
    for line in &lines[1..] {
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() || !name.iter().all(|&b| tchar(b)) {
            return None;
        }
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return None;
        }
        let mut v = value;
        while let [b' ' | b'\t', r @ ..] = v {
            v = r;
        }
        while let [r @ .., b' ' | b'\t'] = v {
            v = r;
        }
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        match name.as_str() {
            "content-length" => cl.push(v.to_vec()),
            "transfer-encoding" => te.push(v.to_vec()),
            "content-type" => {
                let media = String::from_utf8_lossy(v).to_ascii_lowercase();
                let media = media.split(';').next().unwrap_or("").trim().to_string();
                form |= media == "application/x-www-form-urlencoded"
                    || media == "multipart/form-data"
                    || std::str::from_utf8(v).is_err();
            }
            _ => {}
        }
    }
    let body = match (te.len(), cl.len()) {
        (0, 0) => Framing::Empty,
        (0, 1) => {
            let v = &cl[0];
            // Go reads it with strconv.ParseUint(v, 10, 63): any number of
            // digits, leading zeros included, up to 2^63-1.
            if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let n: u64 = std::str::from_utf8(v).ok()?.parse().ok()?;
            if n > i64::MAX as u64 {
                return None;
            }
            if n == 0 {
                Framing::Empty
            } else {
                Framing::Length(n)
            }
        }
        (1, 0) if !v10 && te[0].eq_ignore_ascii_case(b"chunked") => Framing::Chunked,
        _ => return None,
    };
    if form && body != Framing::Empty {
        return None;
    }
    Some(Head {
        len: end,
        method: method.to_string(),
        target: target.to_string(),
        body,
    })
}

/// The strict reader's chunked body: `(consumed, data)`, `None` if refused
/// or incomplete.
fn strict_chunked(body: &[u8]) -> Option<(usize, Vec<u8>)> {
    let (mut pos, mut out) = (0, Vec::new());
    loop {
        let i = find(&body[pos..], b"\r\n")?;
        let line = &body[pos..pos + i];
        if line.iter().any(|&b| b == b'\r' || b == b'\n') {
            return None;
        }
        let (digits, ext) = match line.iter().position(|&b| b == b';') {
            Some(s) => (&line[..s], &line[s + 1..]),
            None => (line, &b""[..]),
        };
        if digits.is_empty() || digits.len() > 16 || !digits.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        if !ext.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) {
            return None;
        }
        let size = u64::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()?;
        pos += i + 2;
        if size == 0 {
            break;
        }
        let size = usize::try_from(size).ok()?;
        let data = body.get(pos..pos.checked_add(size)?)?;
        out.extend_from_slice(data);
        pos += size;
        if body.get(pos..pos + 2)? != b"\r\n" {
            return None;
        }
        pos += 2;
    }
    loop {
        let i = find(&body[pos..], b"\r\n")?;
        let line = &body[pos..pos + i];
        pos += i + 2;
        if line.is_empty() {
            return Some((pos, out));
        }
        let colon = line.iter().position(|&b| b == b':')?;
        if colon == 0
            || !line[..colon].iter().all(|&b| tchar(b))
            || line[colon + 1..]
                .iter()
                .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
        {
            return None;
        }
    }
}

/// Go's net/http before 1.23.8 (internal/chunked.go, transfer.go).
fn go_old_chunked(body: &[u8]) -> Option<(usize, Vec<u8>)> {
    let (mut pos, mut out) = (0, Vec::new());
    loop {
        let i = body[pos..].iter().position(|&b| b == b'\n')?;
        let mut line = &body[pos..pos + i + 1];
        if line.len() >= 4096 {
            return None;
        }
        while let [r @ .., b' ' | b'\t' | b'\r' | b'\n'] = line {
            line = r;
        }
        if let Some(s) = line.iter().position(|&b| b == b';') {
            line = &line[..s];
        }
        if line.is_empty() || line.len() > 16 || !line.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        let size = u64::from_str_radix(std::str::from_utf8(line).ok()?, 16).ok()?;
        pos += i + 1;
        if size == 0 {
            break;
        }
        let size = usize::try_from(size).ok()?;
        out.extend_from_slice(body.get(pos..pos.checked_add(size)?)?);
        pos += size;
        if body.get(pos..pos + 2)? != b"\r\n" {
            return None;
        }
        pos += 2;
    }
    // body.readTrailer: CRLF, or MIME header lines up to an empty line.
    if body.get(pos..pos + 2)? == b"\r\n" {
        return Some((pos + 2, out));
    }
    loop {
        let i = body[pos..].iter().position(|&b| b == b'\n')?;
        let line = &body[pos..pos + i];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos += i + 1;
        if line.is_empty() {
            return Some((pos, out));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(Some(ours)) = http1::parse_request(data) else {
        return;
    };
    let ours_head = Head {
        len: ours.len,
        method: ours.method.to_string(),
        target: ours.target(data).to_string(),
        body: ours.body,
    };
    let theirs = strict_head(data);
    assert_eq!(Some(&ours_head), theirs.as_ref(), "head framed differently");
    if ours.body != Framing::Chunked {
        return;
    }
    let body = &data[ours.len..];
    let mut c = Chunked::default();
    let mut decoded = Vec::new();
    let Ok(used) = c.advance(body, |d| decoded.extend_from_slice(d)) else {
        return;
    };
    if !c.is_done() {
        return;
    }
    let ours_body = Some((used, decoded));
    assert_eq!(ours_body, strict_chunked(body), "strict reader disagrees");
    assert_eq!(ours_body, go_old_chunked(body), "Go < 1.23.8 disagrees");
});
