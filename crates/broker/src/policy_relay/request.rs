//! One request at a time: read its head, let the tenant's current policy
//! decide, read a body that needs inspecting, run the rewrite step, forward
//! it and relay the response — or answer it with a [`Synthetic`].

use std::sync::Arc;

use sockbroker_relay::{Direction, ReadRegistered};

use super::connection::{Connection, Incoming, ReadError, Stats};
use super::exchange::{Exchanged, ReqInfo, Upstream};
use super::http1::{self, Framing, RequestHead};
use super::rewrite::{self, Outgoing};
use super::synthetic::{Audit, Synthetic};
use super::{End, Step, DISCARD_LIMIT, INSPECT_LIMIT};
use crate::config::TenantSpec;
use crate::metrics::RequestOutcome;
use crate::policy::{self, Decision, Policy, Preset, RealFs};
use crate::tenant::TenantShared;

/// A policy-mode connection between requests.
pub(super) struct Session<'a> {
    pub tenant: &'a TenantShared,
    /// The settings the connection was accepted with: its upstream.
    pub spec: Arc<TenantSpec>,
    pub audit: Audit<'a>,
    pub stats: &'a Stats,
    pub client: Connection<'a>,
    pub upstream: Upstream,
    /// Requests seen (for the closing log line).
    pub requests: u64,
    /// The request being handled is a HEAD (broker answers carry no body).
    head_request: bool,
}

/// Used when a tenant changed from a policy to `full` while a policy-mode
/// connection is open: its next requests are all allowed.
fn allow_all() -> Policy {
    Policy::preset(Preset::Full)
}

impl<'a> Session<'a> {
    pub(super) fn new(
        tenant: &'a TenantShared,
        spec: Arc<TenantSpec>,
        audit: Audit<'a>,
        stats: &'a Stats,
        client: Connection<'a>,
    ) -> Self {
        Session {
            tenant,
            spec,
            audit,
            stats,
            client,
            upstream: Upstream::default(),
            requests: 0,
            head_request: false,
        }
    }

    /// Serve requests until the connection ends or turns into a raw relay.
    pub(super) async fn run(&mut self) -> Step {
        loop {
            // `request_timeout` runs from the head's first byte to the end
            // of a body the broker reads itself (docs/configuration.md).
            let timeout = self.tenant.spec().request_timeout;
            self.client.set_request_timeout(Some(timeout));
            self.head_request = false;
            let head = self.client.read_head().await;
            // The policy as configured now, once the head is in: a reload
            // applies to the next request of an open connection.
            let current = self.tenant.spec();
            let head = match head {
                Ok(Incoming::Request(h)) => h,
                Ok(Incoming::Closed) => return Step::End(End::ClientClosed),
                Ok(Incoming::Http2) => return self.http2(&current).await,
                Err(e) => {
                    self.requests += 1;
                    return self.read_failed("-", "-", e).await;
                }
            };
            self.requests += 1;
            match self.handle(head, &current).await {
                Step::KeepAlive => {}
                other => return other,
            }
        }
    }

    /// Answer with `syn` (counted and audited unless `counted`: a request
    /// already counted when it was forwarded).
    async fn answer(&mut self, method: &str, path: &str, syn: Synthetic, counted: bool) -> Step {
        let outcome = syn.outcome();
        if !counted {
            self.tenant.metrics().request(outcome);
        }
        self.audit
            .log(method, path, outcome.verdict(), syn.status(), syn.detail());
        if let Err(e) = self.client.write(&syn.render(self.head_request)).await {
            return Step::End(End::ClientError(e));
        }
        if syn.close() {
            self.client.linger_close().await;
            return Step::End(End::Refused(outcome.reason()));
        }
        Step::KeepAlive
    }

    /// A request that could not be read to its end: answered when the
    /// broker can still say why, else counted and audited with status 0.
    async fn read_failed(&mut self, method: &str, path: &str, e: ReadError) -> Step {
        let tenant = self.audit.tenant;
        let syn = match e {
            ReadError::Head(e) => Synthetic::bad_request(
                e.status(),
                format!("sockbroker: tenant {tenant} sent a request sockbroker cannot check: {e}"),
                e.to_string(),
            ),
            ReadError::Chunk(e) => Synthetic::bad_request(
                400,
                format!("sockbroker: tenant {tenant}: {e}"),
                format!("request body not read to its end: {e}"),
            ),
            ReadError::TimedOut(t) => Synthetic::timeout(tenant, t),
            ReadError::Eof | ReadError::Io(_) => {
                if method != "-" {
                    // The head was in, the body was not: never forwarded.
                    self.tenant.metrics().request(RequestOutcome::BadRequest);
                    self.audit.log(
                        method,
                        path,
                        "denied",
                        0,
                        "request body not read to its end: client closed",
                    );
                }
                return Step::End(match e {
                    ReadError::Io(e) => End::ClientError(e),
                    _ => End::ClientClosed,
                });
            }
        };
        self.answer(method, path, syn, false).await
    }

    /// The connection opened with the HTTP/2 preface: passed through only
    /// when the policy allows everything, else refused with a GOAWAY.
    async fn http2(&mut self, current: &TenantSpec) -> Step {
        self.requests += 1;
        let everything = match current.access.policy() {
            None => true,
            Some(p) => p.allows_everything(),
        };
        if !everything {
            let syn = Synthetic::http2_refused(self.audit.tenant);
            return self.answer("PRI", "*", syn, false).await;
        }
        if let Err(syn) = self.connect().await {
            return self.answer("PRI", "*", syn, false).await;
        }
        self.tenant.metrics().request(RequestOutcome::Forwarded);
        self.audit
            .log("PRI", "*", "allowed", 0, "HTTP/2 passed through");
        Step::Raw
    }

    /// Connect to the upstream unless connected.
    async fn connect(&mut self) -> Result<(), Synthetic> {
        if self.upstream.is_open(self.audit.tenant) {
            return Ok(());
        }
        // Registered for reading only, as the byte relay's sockets
        // (`ReadRegistered`: no wake-up when the engine drains a request).
        let connected = crate::upstream::connect_std(self.tenant, &self.spec, self.audit.peer)
            .await
            .and_then(ReadRegistered::new);
        match connected {
            Ok(s) => {
                self.upstream.set(s);
                Ok(())
            }
            Err(e) => Err(Synthetic::upstream_unavailable(&self.spec.upstream, &e)),
        }
    }

    async fn handle(&mut self, mut head: RequestHead, current: &TenantSpec) -> Step {
        // Moved, not copied: the method and path are owned by the request
        // (and later by its `Outgoing`) and borrowed for the audit line.
        let method = std::mem::take(&mut head.method);
        self.head_request = method.eq_ignore_ascii_case("HEAD");
        let tenant = self.audit.tenant;
        let target = match policy::normalize(&head.target) {
            Ok(t) => t,
            Err(e) => {
                let shown: String = head.target.chars().take(200).collect();
                let syn = Synthetic::bad_request(
                    400,
                    format!("sockbroker: tenant {tenant} sent a request target sockbroker cannot check: {e}"),
                    e.to_string(),
                );
                return self.answer(&method, &shown, syn, false).await;
            }
        };
        let fallback;
        let policy = match current.access.policy() {
            Some(p) => p,
            None => {
                fallback = allow_all();
                &fallback
            }
        };
        let inspect = match policy.decide(&method, &target, head.upgrade) {
            Decision::Deny(reason) => {
                return self.deny(&head, &method, &target.path, &reason).await
            }
            Decision::Allow => None,
            Decision::Inspect(kind) => Some(kind),
        };
        let read_whole = inspect.is_some() || rewrite::wants_body(current, &method, &target);
        let mut swallow_continue = false;
        let head_bytes = self.client.take(head.len);
        let body = if read_whole {
            if head.expect_continue && head.body != Framing::Empty {
                if let Err(e) = self.client.write(http1::CONTINUE).await {
                    return Step::End(End::ClientError(e));
                }
                swallow_continue = true;
            }
            match self.client.read_body(head.body, INSPECT_LIMIT as u64).await {
                Ok(Some(b)) => Some(b),
                Ok(None) => {
                    let path = &target.path;
                    let syn = Synthetic::too_large(tenant, &method, path, INSPECT_LIMIT);
                    return self.answer(&method, path, syn, false).await;
                }
                Err(e) => return self.read_failed(&method, &target.path, e).await,
            }
        } else {
            None
        };
        if let (Some(kind), Some(b)) = (inspect, &body) {
            if let Err(reason) = policy.check_body(kind, &b.decoded, &RealFs) {
                let mut syn = Synthetic::denied(tenant, &method, &target.path, &reason);
                if head.close {
                    syn = syn.closing();
                }
                return self.answer(&method, &target.path, syn, false).await;
            }
        }
        let mut out = Outgoing::new(method, target, head_bytes, body);
        let rewritten = rewrite::before_forward(current, &mut out).await;
        let path = out.decided_path();
        let method = out.method();
        if let Err(syn) = rewritten {
            let syn = if head.close || (!read_whole && head.body != Framing::Empty) {
                // The body was not read: where the next request starts is unknown.
                syn.closing()
            } else {
                syn
            };
            return self.answer(method, path, syn, false).await;
        }
        let mut framing = head.body;
        if out.body_replaced() && !read_whole && framing != Framing::Empty {
            // A replaced body whose original is still unread: drop it.
            match self.client.read_body(framing, INSPECT_LIMIT as u64).await {
                Ok(Some(_)) => framing = Framing::Empty,
                Ok(None) => {
                    let syn = Synthetic::too_large(tenant, method, path, INSPECT_LIMIT);
                    return self.answer(method, path, syn, false).await;
                }
                Err(e) => return self.read_failed(method, path, e).await,
            }
        }
        if let Err(syn) = self.connect().await {
            return self.answer(method, path, syn, false).await;
        }
        let (wire, framing, filter) = out.take_wire(framing);
        let path = out.decided_path();
        let method = out.method();
        self.tenant.metrics().request(RequestOutcome::Forwarded);
        if let Err(e) = self.upstream.send(&wire, self.stats).await {
            let syn = Synthetic::upstream_unavailable(&self.spec.upstream, &e);
            return self.answer(method, path, syn, true).await;
        }
        let req = ReqInfo {
            method,
            path,
            is_head: self.head_request,
            swallow_continue,
        };
        let result = self
            .upstream
            .exchange(
                &mut self.client,
                &req,
                framing,
                filter,
                self.stats,
                &self.audit,
            )
            .await;
        match result {
            Exchanged::Switch => Step::Raw,
            Exchanged::Done { close: true, .. } => {
                self.client.shutdown().await;
                Step::End(End::UpstreamClosed)
            }
            Exchanged::Done { .. } if head.close => {
                self.client.shutdown().await;
                Step::End(End::Done)
            }
            Exchanged::Done {
                client_eof: true, ..
            } => Step::End(End::ClientClosed),
            Exchanged::Done { .. } => Step::KeepAlive,
            Exchanged::NoResponse(e) => {
                let syn = Synthetic::upstream_unavailable(&self.spec.upstream, &e);
                self.answer(method, path, syn, true).await
            }
            Exchanged::Answer(syn) => self.answer(method, path, syn, true).await,
            Exchanged::Invalid(what) => {
                let syn = Synthetic::bad_upstream(&self.spec.upstream, &what);
                self.answer(method, path, syn, true).await
            }
            Exchanged::End(e) => Step::End(e),
        }
    }

    /// Refuse a request whose body is still unread: read and drop a small
    /// body to keep the connection, close after a large one.
    async fn deny(&mut self, head: &RequestHead, method: &str, path: &str, reason: &str) -> Step {
        self.client.skip(head.len);
        let mut close = head.close;
        if head.body != Framing::Empty {
            if head.expect_continue {
                close = true;
            } else {
                match self.client.read_body(head.body, DISCARD_LIMIT).await {
                    Ok(Some(_)) => {}
                    Ok(None) => close = true,
                    Err(e) => return self.read_failed(method, path, e).await,
                }
            }
        }
        let mut syn = Synthetic::denied(self.audit.tenant, method, path, reason);
        if close {
            syn = syn.closing();
        }
        match self.answer(method, path, syn, false).await {
            Step::End(End::Refused(_)) => Step::End(End::Done),
            other => other,
        }
    }
}

/// Count bytes of the raw relay (it counted the metric itself).
pub(super) fn count_raw(stats: &Stats, up: u64, down: u64) {
    stats.count(Direction::Upstream, up);
    stats.count(Direction::Downstream, down);
}
