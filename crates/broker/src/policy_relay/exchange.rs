//! The upstream side of a policy-mode connection: one upstream connection per
//! client connection (connected when the first request is forwarded, again
//! if the engine closed it while idle), and the exchange of one forwarded
//! request: its body streamed up while the response (1xx, then the final
//! one) is relayed down, the client watched for EOF meanwhile.

use std::io;

use bytes::{Buf, BytesMut};
use sockbroker_relay::Direction;
use sockbroker_relay::ReadRegistered;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::connection::{read_more, write_out, Connection, Stats};
use super::http1::{self, Chunked, Framing};
use super::rewrite::{self, ResponseFilter};
use super::synthetic::{Audit, Synthetic};
use super::End;

/// The engine connection and its read buffer.
#[derive(Default)]
pub(super) struct Upstream {
    stream: Option<ReadRegistered>,
    /// Bytes read from the upstream and not yet handled.
    buf: BytesMut,
}

/// The request an exchange is for.
pub(super) struct ReqInfo<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub is_head: bool,
    /// The broker already sent `100 Continue` (to read a body for
    /// inspection): drop the upstream's.
    pub swallow_continue: bool,
}

/// How an exchange ended.
pub(super) enum Exchanged {
    /// The response is complete; `close`: the upstream closes after it.
    Done { close: bool, client_eof: bool },
    /// `101`, or a body delimited by the connection's end: raw relay from here
    /// (call [`Upstream::hand_over`]).
    Switch,
    /// Nothing of a response reached the client: the upstream closed or
    /// failed first (the client gets a `502`).
    NoResponse(io::Error),
    /// The upstream's response head could not be parsed (nothing relayed).
    Invalid(String),
    /// A response filter refused the response (nothing relayed): answer this.
    Answer(Synthetic),
    /// The connection is over (part of a response was relayed, or the client
    /// side failed).
    End(End),
}

impl Upstream {
    /// Whether a live upstream connection is open. The engine may have closed
    /// an idle keep-alive connection since the last response: then it is
    /// dropped here, so that the caller connects anew rather than answers 502.
    pub(super) fn is_open(&mut self, tenant: &str) -> bool {
        let Some(up) = &self.stream else { return false };
        let mut probe = [0u8; 512];
        match up.try_read(&mut probe) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
            Ok(n) if n > 0 => {
                // Bytes nobody asked for: keep them; the next response head
                // will not parse and the client gets a 502.
                self.buf.extend_from_slice(&probe[..n]);
                true
            }
            _ => {
                tracing::debug!(tenant = %tenant, "upstream closed the idle connection; reconnecting");
                self.stream = None;
                self.buf.clear();
                false
            }
        }
    }

    /// Use `s` as the upstream connection.
    pub(super) fn set(&mut self, s: ReadRegistered) {
        self.stream = Some(s);
        self.buf.clear();
    }

    /// Write `bytes` (a head, a head with its body) to the upstream.
    pub(super) async fn send(&mut self, bytes: &[u8], stats: &Stats) -> io::Result<()> {
        let mut s = self.stream.as_ref().ok_or(io::ErrorKind::NotConnected)?;
        s.write_all(bytes).await?;
        stats.add(Direction::Upstream, bytes.len());
        Ok(())
    }

    /// Relay the response to a forwarded request while streaming the rest of
    /// its body (`framing`) from the client to the upstream.
    pub(super) async fn exchange(
        &mut self,
        client: &mut Connection<'_>,
        req: &ReqInfo<'_>,
        framing: Framing,
        filter: Option<ResponseFilter>,
        stats: &Stats,
        audit: &Audit<'_>,
    ) -> Exchanged {
        let Some(upstream) = self.stream.as_ref() else {
            return Exchanged::NoResponse(io::ErrorKind::NotConnected.into());
        };
        let (mut cr, mut cw, cbuf) = client.parts();
        let (mut ur, mut uw) = (upstream, upstream);
        let ubuf = &mut self.buf;

        let mut response = Box::pin(relay_response(
            &mut ur, &mut cw, ubuf, req, filter, stats, audit,
        ));
        let mut result: Option<Exchanged> = None;
        if framing != Framing::Empty {
            // Stream the request body while the response may already come
            // (the engine can answer early, e.g. with an error).
            let mut body = Box::pin(send_body(&mut cr, &mut uw, &mut *cbuf, framing, stats));
            loop {
                tokio::select! {
                    r = &mut body => match r {
                        Ok(()) => break,
                        Err(e) => return Exchanged::End(e),
                    },
                    r = &mut response, if result.is_none() => {
                        // A switch or a failure ends the exchange with the body
                        // unfinished; a complete response waits for the body.
                        let stop = !matches!(r, Exchanged::Done { .. });
                        result = Some(r);
                        if stop {
                            break;
                        }
                    }
                }
            }
        }
        let mut client_eof = false;
        let result = match result {
            Some(r) => r,
            None => {
                // Body sent, response still coming (e.g. `docker events`):
                // watch the client for EOF meanwhile, like the byte relay does.
                let mut watch = Box::pin(watch_client(&mut cr, &mut uw, &mut *cbuf, stats));
                let mut watching = true;
                loop {
                    tokio::select! {
                        r = &mut watch, if watching => {
                            watching = false;
                            match r {
                                Ok(eof) => client_eof = eof,
                                Err(e) => return Exchanged::End(e),
                            }
                        }
                        r = &mut response => break r,
                    }
                }
            }
        };
        match result {
            Exchanged::Done { close, .. } => Exchanged::Done { close, client_eof },
            other => other,
        }
    }

    /// Write what is buffered on each side to the other, and hand both
    /// sockets to the raw relay.
    pub(super) async fn hand_over(
        &mut self,
        client: Connection<'_>,
        stats: &Stats,
    ) -> Result<(ReadRegistered, ReadRegistered), End> {
        let (client, cbuf) = client.into_parts();
        let upstream = self.stream.take().ok_or(End::UpstreamClosed)?;
        if !cbuf.is_empty() {
            (&upstream)
                .write_all(&cbuf)
                .await
                .map_err(End::UpstreamError)?;
            stats.add(Direction::Upstream, cbuf.len());
        }
        if !self.buf.is_empty() {
            (&client)
                .write_all(&self.buf)
                .await
                .map_err(End::ClientError)?;
            stats.add(Direction::Downstream, self.buf.len());
            self.buf.clear();
        }
        Ok((client, upstream))
    }
}

/// Stream the rest of a request body from the client to the upstream.
async fn send_body<R, W>(
    cr: &mut R,
    uw: &mut W,
    cbuf: &mut BytesMut,
    framing: Framing,
    stats: &Stats,
) -> Result<(), End>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    match framing {
        Framing::Empty | Framing::UntilClose => Ok(()),
        Framing::Length(mut left) => {
            while left > 0 {
                if cbuf.is_empty() {
                    match read_more(cr, cbuf, stats).await {
                        Ok(0) => return Err(End::ClientClosed),
                        Ok(_) => {}
                        Err(e) => return Err(End::ClientError(e)),
                    }
                }
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(cbuf.len());
                let before = cbuf.len();
                let r = write_out(uw, cbuf, n, Direction::Upstream, stats).await;
                left -= (before - cbuf.len()) as u64;
                r.map_err(End::UpstreamError)?;
            }
            Ok(())
        }
        Framing::Chunked => {
            let mut c = Chunked::default();
            loop {
                let n = c
                    .advance(cbuf, |_| {})
                    .map_err(|_| End::Refused("bad chunked request body"))?;
                if n > 0 {
                    write_out(uw, cbuf, n, Direction::Upstream, stats)
                        .await
                        .map_err(End::UpstreamError)?;
                }
                if c.is_done() {
                    return Ok(());
                }
                match read_more(cr, cbuf, stats).await {
                    Ok(0) => return Err(End::ClientClosed),
                    Ok(_) => {}
                    Err(e) => return Err(End::ClientError(e)),
                }
            }
        }
    }
}

/// While a response streams, read what the client sends (pipelined requests,
/// kept in `cbuf` up to a bound). On EOF with nothing pending, shut down the
/// upstream's write side, as the byte relay does (the engine then ends a
/// stream such as `docker events`), and return `Ok(true)`. `Ok(false)`: stop
/// watching — the buffer is full, or the client closed after pipelining
/// requests that are still to be answered (the next read sees the EOF again).
async fn watch_client<R, W>(
    cr: &mut R,
    uw: &mut W,
    cbuf: &mut BytesMut,
    stats: &Stats,
) -> Result<bool, End>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    while cbuf.len() <= http1::MAX_HEAD {
        match read_more(cr, cbuf, stats).await {
            Ok(0) if cbuf.is_empty() => {
                let _ = uw.shutdown().await;
                return Ok(true);
            }
            Ok(0) => return Ok(false),
            Ok(_) => {}
            Err(e) => return Err(End::ClientError(e)),
        }
    }
    Ok(false)
}

/// Relay the response(s) to one request: interim 1xx responses, then the
/// final one with its body. The request's audit line is written here, once
/// its status is known.
async fn relay_response<R, W>(
    ur: &mut R,
    cw: &mut W,
    ubuf: &mut BytesMut,
    req: &ReqInfo<'_>,
    filter: Option<ResponseFilter>,
    stats: &Stats,
    audit: &Audit<'_>,
) -> Exchanged
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut relayed = false;
    let mut swallow = req.swallow_continue;
    let mut filter = filter;
    loop {
        // The head. `scanned`: how much of `ubuf` is known to hold no end
        // of head (each byte is looked at once, not on every read).
        let mut scanned: usize = 0;
        let head = loop {
            // (Nothing new, as before the first read: nothing to look at.)
            if (ubuf.len() > scanned && http1::may_hold_head(&ubuf[scanned.saturating_sub(3)..]))
                || ubuf.len() > http1::MAX_HEAD
            {
                match http1::parse_response(ubuf, req.is_head) {
                    Ok(Some(h)) => break h,
                    Ok(None) => {}
                    Err(_) if relayed => {
                        return Exchanged::End(End::Refused("invalid response from upstream"))
                    }
                    Err(e) => return Exchanged::Invalid(e.to_string()),
                }
            }
            scanned = ubuf.len();
            match read_more(ur, ubuf, stats).await {
                Ok(0) if !relayed && ubuf.is_empty() => {
                    return Exchanged::NoResponse(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed the connection without a response",
                    ))
                }
                Ok(0) => return Exchanged::End(End::UpstreamClosed),
                Ok(_) => {}
                Err(e) if !relayed && ubuf.is_empty() => return Exchanged::NoResponse(e),
                Err(e) => return Exchanged::End(End::UpstreamError(e)),
            }
        };
        if head.status == 100 && swallow {
            swallow = false;
            ubuf.advance(head.len);
            continue;
        }
        if let Some(filter) = filter.take_if(|_| head.status >= 200) {
            return filtered_response(ur, cw, ubuf, req, &head, filter, stats, audit).await;
        }
        // A final response's head goes out in one write with the part of its
        // body already read behind it: one send for a small answer such as
        // `_ping`'s, as the byte relay makes (two sends cost a syscall and can
        // wake the client twice).
        let mut chunked = Chunked::default();
        let first_body = match head.body {
            _ if head.status < 200 => 0,
            Framing::Length(left) => usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(ubuf.len() - head.len),
            // A chunk the scanner refuses is refused below, after the head,
            // as before: start that scan afresh.
            Framing::Chunked => chunked
                .advance(&ubuf[head.len..], |_| {})
                .unwrap_or_else(|_| {
                    chunked = Chunked::default();
                    0
                }),
            Framing::Empty | Framing::UntilClose => 0,
        };
        if let Err(e) = write_out(
            cw,
            ubuf,
            head.len + first_body,
            Direction::Downstream,
            stats,
        )
        .await
        {
            // The request went to the engine: it gets its audit line even
            // though the client left before the answer.
            audit.log(
                req.method,
                req.path,
                "allowed",
                head.status,
                "client gone before the response",
            );
            return Exchanged::End(End::ClientError(e));
        }
        relayed = true;
        if head.status == 101 {
            audit.log(req.method, req.path, "allowed", 101, "switching protocols");
            return Exchanged::Switch;
        }
        if (100..200).contains(&head.status) {
            continue;
        }
        audit.log(req.method, req.path, "allowed", head.status, "");
        let done = Exchanged::Done {
            close: head.close,
            client_eof: false,
        };
        return match head.body {
            Framing::Empty => done,
            Framing::UntilClose => Exchanged::Switch,
            Framing::Length(left) => {
                let mut left = left - first_body as u64;
                while left > 0 {
                    if ubuf.is_empty() {
                        match read_more(ur, ubuf, stats).await {
                            Ok(0) => return Exchanged::End(End::UpstreamClosed),
                            Ok(_) => {}
                            Err(e) => return Exchanged::End(End::UpstreamError(e)),
                        }
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(ubuf.len());
                    if let Err(e) = write_out(cw, ubuf, n, Direction::Downstream, stats).await {
                        return Exchanged::End(End::ClientError(e));
                    }
                    left -= n as u64;
                }
                done
            }
            Framing::Chunked => {
                let mut c = chunked;
                loop {
                    let n = match c.advance(ubuf, |_| {}) {
                        Ok(n) => n,
                        Err(_) => return Exchanged::End(End::Refused("bad chunked response body")),
                    };
                    if n > 0 {
                        if let Err(e) = write_out(cw, ubuf, n, Direction::Downstream, stats).await {
                            return Exchanged::End(End::ClientError(e));
                        }
                    }
                    if c.is_done() {
                        break done;
                    }
                    match read_more(ur, ubuf, stats).await {
                        Ok(0) => return Exchanged::End(End::UpstreamClosed),
                        Ok(_) => {}
                        Err(e) => return Exchanged::End(End::UpstreamError(e)),
                    }
                }
            }
        };
    }
}

/// A final response whose body a [`ResponseFilter`] rewrites: read it whole
/// (decoded, at most [`rewrite::FILTER_LIMIT`]), filter it, send the result
/// with a `Content-Length`.
#[allow(clippy::too_many_arguments)]
async fn filtered_response<R, W>(
    ur: &mut R,
    cw: &mut W,
    ubuf: &mut BytesMut,
    req: &ReqInfo<'_>,
    head: &http1::ResponseHead,
    filter: ResponseFilter,
    stats: &Stats,
    audit: &Audit<'_>,
) -> Exchanged
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let limit = rewrite::FILTER_LIMIT;
    let too_large =
        || Exchanged::Invalid(format!("response body over {} MiB to filter", limit >> 20));
    let head_bytes = ubuf.split_to(head.len).to_vec();
    let mut body = Vec::new();
    let mut close = head.close;
    match head.body {
        Framing::Empty => {}
        Framing::Length(n) => {
            if n > limit as u64 {
                return too_large();
            }
            while (ubuf.len() as u64) < n {
                match read_more(ur, ubuf, stats).await {
                    Ok(0) => return Exchanged::End(End::UpstreamClosed),
                    Ok(_) => {}
                    Err(e) => return Exchanged::End(End::UpstreamError(e)),
                }
            }
            body = ubuf.split_to(n as usize).to_vec();
        }
        Framing::Chunked => {
            let mut c = Chunked::default();
            loop {
                let used = match c.advance(ubuf, |d| body.extend_from_slice(d)) {
                    Ok(n) => n,
                    Err(e) => return Exchanged::Invalid(e.to_string()),
                };
                ubuf.advance(used);
                if body.len() > limit {
                    return too_large();
                }
                if c.is_done() {
                    break;
                }
                match read_more(ur, ubuf, stats).await {
                    Ok(0) => return Exchanged::End(End::UpstreamClosed),
                    Ok(_) => {}
                    Err(e) => return Exchanged::End(End::UpstreamError(e)),
                }
            }
        }
        Framing::UntilClose => {
            close = true;
            loop {
                if ubuf.len() > limit {
                    return too_large();
                }
                match read_more(ur, ubuf, stats).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => return Exchanged::End(End::UpstreamError(e)),
                }
            }
            body = ubuf.split().to_vec();
        }
    }
    let body = match filter(head.status, body) {
        Ok(b) => b,
        Err(syn) => return Exchanged::Answer(syn),
    };
    let mut out = rewrite::with_content_length(&head_bytes, body.len());
    if req.is_head {
        out = head_bytes;
    } else {
        out.extend_from_slice(&body);
    }
    let mut out = BytesMut::from(&out[..]);
    let n = out.len();
    if let Err(e) = write_out(cw, &mut out, n, Direction::Downstream, stats).await {
        return Exchanged::End(End::ClientError(e));
    }
    audit.log(
        req.method,
        req.path,
        "allowed",
        head.status,
        "response filtered",
    );
    Exchanged::Done {
        close,
        client_eof: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::Peer;

    /// The upstream's bytes, one piece per read (a piece larger than the
    /// read buffer's room is handed out over several reads).
    struct Pieces(std::collections::VecDeque<Vec<u8>>);

    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            if let Some(mut p) = self.0.pop_front() {
                let n = p.len().min(buf.remaining());
                buf.put_slice(&p[..n]);
                if n < p.len() {
                    self.0.push_front(p.split_off(n));
                }
            }
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// Each write the client side gets, as it came.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl AsyncWrite for Writes {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            self.0.push(buf.to_vec());
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// Relay `pieces` (one per read) as the response to a `GET` (or `HEAD`):
    /// the client's writes, how the exchange ended, what stayed in the buffer.
    async fn relayed(
        pieces: impl IntoIterator<Item = Vec<u8>>,
        is_head: bool,
        filter: Option<ResponseFilter>,
    ) -> (Vec<Vec<u8>>, Exchanged, BytesMut) {
        let stats = Stats::new(crate::metrics::Metrics::new().tenant("t"));
        let audit = Audit {
            tenant: "t",
            peer: Peer {
                pid: 0,
                uid: 0,
                gid: 0,
            },
        };
        let req = ReqInfo {
            method: "GET",
            path: "/system/df",
            is_head,
            swallow_continue: false,
        };
        let mut ur = Pieces(pieces.into_iter().collect());
        let mut out = Writes::default();
        let mut ubuf = BytesMut::new();
        let r = relay_response(&mut ur, &mut out, &mut ubuf, &req, filter, &stats, &audit).await;
        (out.0, r, ubuf)
    }

    async fn filtered(response: &[u8], is_head: bool, filter: ResponseFilter) -> (Vec<u8>, bool) {
        let (writes, r, _) = relayed([response.to_vec()], is_head, Some(filter)).await;
        match r {
            Exchanged::Done { close, .. } => (writes.concat(), close),
            Exchanged::Answer(s) => (s.render(false), true),
            Exchanged::Invalid(w) => (w.into_bytes(), true),
            _ => panic!("unexpected end"),
        }
    }

    /// The client's writes as text, whether the exchange completed, and what
    /// stayed in the buffer.
    async fn writes_of(pieces: &[&[u8]]) -> (Vec<String>, bool, BytesMut) {
        let (writes, r, ubuf) = relayed(pieces.iter().map(|p| p.to_vec()), false, None).await;
        let writes = writes
            .into_iter()
            .map(|w| String::from_utf8(w).unwrap())
            .collect();
        (writes, matches!(r, Exchanged::Done { .. }), ubuf)
    }

    #[tokio::test]
    async fn a_response_head_goes_out_with_the_body_bytes_read_behind_it() {
        let ping = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK";
        let (w, done, _) = writes_of(&[ping.as_bytes()]).await;
        assert_eq!((w, done), (vec![ping.to_string()], true), "one write");

        // The body's rest, read later, follows in writes of its own.
        let (w, done, _) =
            writes_of(&[b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nOK", b"ok"]).await;
        assert_eq!(w, ["HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nOK", "ok"]);
        assert!(done);

        // Never past the body: what follows stays for the next response.
        let (w, done, rest) =
            writes_of(&[b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOKHTTP/1.1 204 "]).await;
        assert_eq!(w, ["HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"]);
        assert!(done);
        assert_eq!(&rest[..], b"HTTP/1.1 204 ");

        // A chunked body: its complete chunks go with the head.
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n0\r\n\r\n";
        let (w, done, rest) = writes_of(&[chunked.as_bytes(), b"next"]).await;
        assert_eq!((w, done), (vec![chunked.to_string()], true));
        assert!(rest.is_empty(), "the next response is not read: {rest:?}");

        // A 1xx head goes alone; the final head takes its body.
        let (w, done, _) = writes_of(&[
            b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK",
        ])
        .await;
        assert_eq!(
            w,
            [
                "HTTP/1.1 102 Processing\r\n\r\n",
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"
            ]
        );
        assert!(done);

        // A bad chunk is refused after the head, as before.
        let (w, done, _) =
            writes_of(&[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]).await;
        assert_eq!(w, ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"]);
        assert!(!done);
    }

    #[tokio::test]
    async fn a_filter_gets_the_decoded_body_and_its_result_is_reframed() {
        let chunked = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n";
        let (out, close) = filtered(
            chunked,
            false,
            Box::new(|status, body| {
                assert_eq!((status, &body[..]), (200, &b"abcdef"[..]));
                Ok(b"XY".to_vec())
            }),
        )
        .await;
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\nXY"
        );
        assert!(!close);

        let until_close = b"HTTP/1.1 200 OK\r\n\r\nall of it";
        let (out, close) = filtered(until_close, false, Box::new(|_, b| Ok(b))).await;
        assert!(out.ends_with(b"Content-Length: 9\r\n\r\nall of it"));
        assert!(close, "a close-delimited response closes the connection");

        let refused = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        let (out, _) = filtered(
            refused,
            false,
            Box::new(|_, _| Err(Synthetic::not_owned("No such container: x".into()))),
        )
        .await;
        assert!(String::from_utf8(out)
            .unwrap()
            .starts_with("HTTP/1.1 404 Not Found\r\n"));

        let huge = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            rewrite::FILTER_LIMIT + 1
        );
        let (out, _) = filtered(huge.as_bytes(), false, Box::new(|_, b| Ok(b))).await;
        assert!(String::from_utf8(out).unwrap().contains("to filter"));
    }

    /// Each head is found when its empty line arrives, although only the
    /// new bytes (and the three before them) are searched on each read.
    #[tokio::test]
    async fn a_head_arriving_a_byte_at_a_time_is_found() {
        for response in [
            &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"[..],
            b"HTTP/1.1 200 OK\nContent-Length: 2\n\nOK",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\n\r\nOK",
        ] {
            let bytes = response.iter().map(|&b| vec![b]);
            let (writes, r, _) = relayed(bytes, false, None).await;
            assert!(
                matches!(r, Exchanged::Done { close: false, .. }),
                "{response:?}"
            );
            assert_eq!(writes.concat(), response);
        }
    }
}
