//! What the policy relay forwards is framed the same way by a real Go
//! net/http server (the engine's HTTP stack): for every input, the requests
//! `http1` accepts are forwarded as they came, and the Go server (built here
//! from tests/go/echo.go, answering with what it read) must see exactly those
//! requests with exactly those bodies — or refuse and close, never see more
//! or different ones. Inputs: hand-written tricky-but-legal requests, the
//! smuggling shapes from issue #14, and a few thousand deterministic
//! mutations of them.
//!
//! Needs `go` (Debian: `apt-get install golang-go`); the test fails with that
//! hint when it is missing. With Go before 1.23.8 (an unpatched engine's
//! HTTP stack) the test also shows that the raw smuggling input is framed
//! differently by Go, i.e. that refusing it is necessary.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sockbroker_policy::http1::{self, Chunked, Framing};

/// One request as read: method, target, decoded body.
type Seen = (String, String, Vec<u8>);

struct GoServer {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for GoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn go_server() -> GoServer {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go/echo.go");
    let bin = dir.path().join("echo");
    let built = Command::new("go")
        .arg("build")
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .env("GOCACHE", dir.path().join("gocache"))
        .env("GOPATH", dir.path().join("gopath"))
        .env("GO111MODULE", "off")
        .output();
    let out = match built {
        Ok(o) => o,
        Err(e) => panic!(
            "cannot run `go` ({e}): this test builds a Go net/http server; \
             install Go (Debian: apt-get install golang-go)"
        ),
    };
    assert!(
        out.status.success(),
        "go build {}: {}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let socket = dir.path().join("go.sock");
    let mut child = Command::new(&bin)
        .arg(&socket)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    GoServer {
        child,
        socket,
        _dir: dir,
    }
}

fn go_version() -> Option<(u32, u32, u32)> {
    let out = Command::new("go").arg("version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let v = text.split_whitespace().nth(2)?.strip_prefix("go")?;
    let mut n = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    Some((n.next()?, n.next().unwrap_or(0), n.next().unwrap_or(0)))
}

/// What our framing makes of `input`: the accepted requests and the bytes
/// the relay would forward (each accepted request as it came; nothing of a
/// refused one or of what follows it).
fn ours(input: &[u8]) -> (Vec<Seen>, Vec<u8>) {
    let (mut seen, mut forwarded, mut pos) = (Vec::new(), Vec::new(), 0);
    while pos < input.len() {
        let rest = &input[pos..];
        let Ok(Some(head)) = http1::parse_request(rest) else {
            break;
        };
        let body_bytes = &rest[head.len..];
        let (used, body) = match head.body {
            Framing::Empty | Framing::UntilClose => (0, Vec::new()),
            Framing::Length(n) => {
                let n = n as usize;
                if body_bytes.len() < n {
                    break;
                }
                (n, body_bytes[..n].to_vec())
            }
            Framing::Chunked => {
                let mut c = Chunked::default();
                let mut body = Vec::new();
                match c.advance(body_bytes, |d| body.extend_from_slice(d)) {
                    Ok(n) if c.is_done() => (n, body),
                    _ => break,
                }
            }
        };
        forwarded.extend_from_slice(&rest[..head.len + used]);
        seen.push((head.method.to_string(), head.target(rest).to_string(), body));
        pos += head.len + used;
        if head.close {
            break;
        }
    }
    (seen, forwarded)
}

/// What the Go server read from `bytes`: the requests it answered with 200,
/// and whether it ended with a refusal (an error status) rather than EOF.
fn go(server: &GoServer, bytes: &[u8]) -> (Vec<Seen>, Vec<String>) {
    let mut s = UnixStream::connect(&server.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(bytes).unwrap();
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let (mut seen, mut errors, mut pos) = (Vec::new(), Vec::new(), 0);
    while pos < all.len() {
        let Ok(Some(head)) = http1::parse_response(&all[pos..], false) else {
            errors.push(format!("unparsable response {:?}", &all[pos..]));
            break;
        };
        pos += head.len;
        let body: Vec<u8> = match head.body {
            Framing::Length(n) => {
                let b = all[pos..pos + n as usize].to_vec();
                pos += n as usize;
                b
            }
            Framing::Chunked => {
                let mut c = Chunked::default();
                let mut b = Vec::new();
                pos += c.advance(&all[pos..], |d| b.extend_from_slice(d)).unwrap();
                b
            }
            Framing::Empty => Vec::new(),
            Framing::UntilClose => {
                let b = all[pos..].to_vec();
                pos = all.len();
                b
            }
        };
        if head.status != 200 {
            errors.push(format!(
                "{} {}",
                head.status,
                String::from_utf8_lossy(&body)
            ));
            break;
        }
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        if let Some(e) = v.get("err") {
            errors.push(format!("body read error {e}"));
        }
        let hex = field("body");
        let body = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        seen.push((field("method"), field("uri"), body));
    }
    (seen, errors)
}

/// Go frames what we forward as we do: the same requests, or a prefix of
/// them followed by a refusal (never more, never different, no body error).
fn assert_same(server: &GoServer, input: &[u8]) -> usize {
    let (mine, forwarded) = ours(input);
    if forwarded.is_empty() {
        return 0;
    }
    let (theirs, errors) = go(server, &forwarded);
    let ok = theirs.len() <= mine.len()
        && theirs[..] == mine[..theirs.len()]
        && (theirs.len() == mine.len() || !errors.is_empty())
        && !errors.iter().any(|e| e.starts_with("body read error"));
    assert!(
        ok,
        "Go framed the forwarded bytes differently\ninput: {:?}\nforwarded: {:?}\nours: {mine:?}\nGo: {theirs:?} {errors:?}",
        String::from_utf8_lossy(input),
        String::from_utf8_lossy(&forwarded)
    );
    mine.len()
}

const H: &str = "Host: docker\r\n";

fn seeds() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        format!("GET /containers/json HTTP/1.1\r\n{H}\r\n"),
        format!("POST /containers/create HTTP/1.1\r\n{H}Content-Length: 5\r\n\r\nhello"),
        format!("POST /x HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        format!("POST /x HTTP/1.1\r\n{H}Transfer-Encoding: Chunked\r\n\r\n5;a=b;c=\"d e\"\r\nhello\r\n6;\tx\r\n world\r\n0\r\nX-T: y\r\n\r\n"),
        format!("POST /x HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n0005\r\nhello\r\n000\r\n\r\nGET /next HTTP/1.1\r\n{H}\r\n"),
        format!("POST /a HTTP/1.1\r\n{H}Content-Length: 2\r\n\r\nabGET /b HTTP/1.1\r\n{H}Content-Length:  3 \r\n\r\nxyzDELETE /c HTTP/1.1\r\n{H}\r\n"),
        "POST /x HTTP/1.0\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nabcGET /y HTTP/1.0\r\n\r\n".to_string(),
        format!("GET / HTTP/1.1\r\n{H}X-A: \t tab \t\r\nX-B:\r\nX-C: \u{e9}t\u{e9}\r\n\r\n"),
        // The shapes of issue #14 (refused by us; what comes before is compared).
        format!("POST /containers/x/start HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n2;ext\nGET /smuggled HTTP/1.1\r\n{H}\r\n\r\nab\r\n0\r\n\r\n"),
        "POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.0\r\n\r\n".to_string(),
        format!("POST /x HTTP/1.1\r\n{H}Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc"),
        format!("POST /x HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n"),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect();
    v.push(b"GET /a HTTP/1.1\nHost: d\n\nGET /b HTTP/1.1\r\nHost: d\r\n\r\n".to_vec());
    v
}

#[test]
fn go_net_http_frames_what_we_forward_the_same() {
    let server = go_server();
    // Legal requests are all accepted and framed the same.
    for (i, seed) in seeds().iter().take(8).enumerate() {
        let n = assert_same(&server, seed);
        assert!(
            n > 0,
            "seed {i} not accepted: {:?}",
            String::from_utf8_lossy(seed)
        );
    }
    // The smuggling shapes: what we forward (the requests before the bad
    // one, if any) is framed the same.
    for seed in seeds() {
        assert_same(&server, &seed);
    }
    // Deterministic mutations around the framing characters.
    const ALPHABET: &[u8] =
        b"\r\n;: \t0159aAfF\x0b\x00,=\"\\chunkedContent-Length:Transfer-Encoding: HTTP/1.0";
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rand = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let seeds = seeds();
    let mut accepted = 0;
    for _ in 0..3000 {
        let mut input = seeds[rand(seeds.len())].clone();
        for _ in 0..1 + rand(3) {
            let at = rand(input.len() + 1);
            match rand(3) {
                0 => input.insert(at, ALPHABET[rand(ALPHABET.len())]),
                1 if at < input.len() => {
                    input.remove(at);
                }
                _ if at < input.len() => input[at] = ALPHABET[rand(ALPHABET.len())],
                _ => {}
            }
        }
        accepted += assert_same(&server, &input);
    }
    assert!(accepted > 1000, "only {accepted} mutated requests accepted");
}

/// The chunked-body scanner before issue #14: httparse's chunk-size parser
/// (a bare LF inside an extension is part of the extension).
fn httparse_dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let httparse::Status::Complete((n, size)) = httparse::parse_chunk_size(body).ok()? else {
            return None;
        };
        body = &body[n..];
        if size == 0 {
            return body.starts_with(b"\r\n").then_some(out);
        }
        let size = size as usize;
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size..)?.strip_prefix(b"\r\n")?;
    }
}

/// Not vacuous: an unpatched Go (< 1.23.8, what engines such as Debian's
/// docker.io 20.10 are built with) decodes a different body from bytes the
/// old scanner accepted (so the policy would have checked one body and the
/// engine acted on another); ours refuses them.
#[test]
fn unpatched_go_reads_another_body_than_httparse() {
    let Some(v) = go_version() else {
        panic!("cannot run `go version`: install Go (Debian: apt-get install golang-go)");
    };
    let body = b"4;x\nab\r\n\r\n00\r\n0;x:y\r\n\r\n";
    let raw = [
        format!("POST /containers/create HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n")
            .as_bytes(),
        &body[..],
        format!("GET /after HTTP/1.1\r\n{H}\r\n").as_bytes(),
    ]
    .concat();
    let (mine, _) = ours(&raw);
    assert!(mine.is_empty(), "accepted: {mine:?}");
    assert_eq!(httparse_dechunk(body).as_deref(), Some(&b"\r\n00"[..]));
    let patched = match v {
        (1, 23, p) => p >= 8,
        (1, 24, p) => p >= 2,
        (1, m, _) => m > 24,
        (major, _, _) => major > 1,
    };
    if patched {
        eprintln!("go {v:?} is patched (CVE-2025-22871); nothing more to show");
        return;
    }
    let server = go_server();
    let (theirs, errors) = go(&server, &raw);
    assert_eq!(
        theirs.first().map(|s| &s.2[..]),
        Some(&b"ab\r\n"[..]),
        "go {v:?}: {theirs:?} {errors:?}"
    );
}
