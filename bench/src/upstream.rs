//! The upstream server (in this process, on its own tokio runtime).
//!
//! The first byte of a connection picks what it does: `S` sink (read and
//! discard until EOF), `O` source (write until the peer goes away), `E` echo.
//!
//! Two server models, switched between scenarios: tokio tasks (an event-driven
//! server such as the Docker engine's goroutines on a few threads), or a
//! blocking thread per connection (as a simple server, or a harness built from
//! threads and blocking I/O, serves). Which one sits behind the relays changes
//! how a relay with few threads fares against socat's process per connection:
//! docs/performance.md "Two ways to serve".

use crate::CHUNK;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub(crate) struct Upstream {
    pub(crate) path: PathBuf,
    pub(crate) accepted: Arc<AtomicUsize>,
    /// Serve new connections on a blocking thread each instead of a tokio task.
    pub(crate) threads: Arc<AtomicBool>,
}

/// The blocking twin of [`upstream_conn`], on a thread of its own.
fn upstream_conn_blocking(mut s: std::os::unix::net::UnixStream) {
    use std::io::{Read, Write};
    let mut mode = [0u8; 1];
    if s.read_exact(&mut mode).is_err() {
        return;
    }
    match mode[0] {
        b'S' => {
            let mut buf = vec![0u8; CHUNK];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
        }
        b'O' => {
            let buf = vec![0x5au8; CHUNK];
            while s.write_all(&buf).is_ok() {}
        }
        b'E' => {
            let mut buf = [0u8; 1024];
            loop {
                let n = match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
        _ => {}
    }
}

pub(crate) async fn upstream_conn(mut s: tokio::net::UnixStream) {
    let mut mode = [0u8; 1];
    if s.read_exact(&mut mode).await.is_err() {
        return;
    }
    match mode[0] {
        b'S' => {
            let mut buf = vec![0u8; CHUNK];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        }
        b'O' => {
            let buf = vec![0x5au8; CHUNK];
            while s.write_all(&buf).await.is_ok() {}
        }
        b'E' => {
            let mut buf = [0u8; 1024];
            loop {
                let n = match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if s.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
        _ => {}
    }
}

/// A tokio listener on `path`, registered with `rt`.
pub(crate) fn bind_listener(rt: &tokio::runtime::Runtime, path: &Path) -> tokio::net::UnixListener {
    let _g = rt.enter();
    let std_l = std::os::unix::net::UnixListener::bind(path)
        .unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
    std_l.set_nonblocking(true).unwrap();
    tokio::net::UnixListener::from_std(std_l).unwrap()
}

pub(crate) fn start_upstream(rt: &tokio::runtime::Runtime, path: &Path) -> Upstream {
    let accepted = Arc::new(AtomicUsize::new(0));
    let listener = bind_listener(rt, path);
    let acc = accepted.clone();
    let threads = Arc::new(AtomicBool::new(false));
    let on_threads = threads.clone();
    rt.spawn(async move {
        loop {
            match listener.accept().await {
                Ok((s, _)) if on_threads.load(Ordering::Relaxed) => {
                    acc.fetch_add(1, Ordering::Relaxed);
                    let s = s.into_std().expect("upstream socket");
                    s.set_nonblocking(false).expect("blocking upstream socket");
                    std::thread::Builder::new()
                        .stack_size(64 * 1024)
                        .spawn(move || upstream_conn_blocking(s))
                        .expect("upstream thread");
                }
                Ok((s, _)) => {
                    acc.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(upstream_conn(s));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    });
    Upstream {
        path: path.to_owned(),
        accepted,
        threads,
    }
}

// ---------------------------------------------------------------------------
// The Docker-like HTTP upstream (policy group), on its own socket: hyper's
// HTTP/1.1 server (keep-alive) answering the two requests the policy scenarios
// send the way the Docker engine does: same status codes, similar headers.

/// Headers the Docker engine sends with every answer.
pub(crate) const ENGINE_HEADERS: [(&str, &str); 4] = [
    ("Api-Version", "1.41"),
    ("Docker-Experimental", "false"),
    ("Ostype", "linux"),
    ("Server", "Docker/20.10.24 (linux)"),
];

/// The engine's answer to a container create.
pub(crate) const CREATED: &str = "{\"Id\":\"4f1d5e0c3b2a19f8e7d6c5b4a3928170f6e5d4c3b2a1908f7e6d5c4b3a291807\",\"Warnings\":[]}\n";

/// One request to the Docker-like upstream: `GET|HEAD /v1.41/_ping` → `200 OK`,
/// `POST /v1.41/containers/create` with a JSON body → `201`, anything else `404`.
pub(crate) async fn engine(
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path();
    let ping = path == "/v1.41/_ping" && matches!(*req.method(), Method::GET | Method::HEAD);
    let create = path == "/v1.41/containers/create" && req.method() == Method::POST;
    let json = "application/json";
    let (status, ctype, body) = if ping {
        (200, "text/plain; charset=utf-8", Bytes::from_static(b"OK"))
    } else if create {
        let body = req.into_body().collect().await.map(|b| b.to_bytes());
        match body {
            Ok(b) if b.first() == Some(&b'{') => {
                (201, json, Bytes::from_static(CREATED.as_bytes()))
            }
            _ => (
                400,
                json,
                Bytes::from_static(b"{\"message\":\"bench upstream: no JSON body\"}\n"),
            ),
        }
    } else {
        (
            404,
            json,
            Bytes::from_static(b"{\"message\":\"page not found\"}\n"),
        )
    };
    let mut b = Response::builder()
        .status(status)
        .header("Content-Type", ctype);
    if ping {
        b = b
            .header("Cache-Control", "no-cache, no-store, must-revalidate")
            .header("Pragma", "no-cache");
    }
    for (k, v) in ENGINE_HEADERS {
        b = b.header(k, v);
    }
    // hyper adds Content-Length (the body's size is known) and Date.
    Ok(b.body(Full::new(body)).expect("static response"))
}

pub(crate) fn start_http_upstream(rt: &tokio::runtime::Runtime, path: &Path) -> PathBuf {
    let listener = bind_listener(rt, path);
    rt.spawn(async move {
        loop {
            match listener.accept().await {
                Ok((s, _)) => {
                    tokio::spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(
                                hyper_util::rt::TokioIo::new(s),
                                hyper::service::service_fn(engine),
                            )
                            .await;
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    });
    path.to_owned()
}
