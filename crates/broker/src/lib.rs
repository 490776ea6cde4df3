//! sockbroker: a multi-tenant Unix socket broker.
//!
//! The data path, one module per arrow:
//! config file → [`config`] (parse + validate) → [`plan`] (pure diff of running vs
//! desired) → [`supervisor`] (apply the plan) → [`listener`] (accept, peer checks,
//! limits, on one of the data path's [`workers`]; [`tenant`] is what its
//! connections share) → `sockbroker_relay` (bytes)
//! → upstream (connected through [`upstream`]). [`socket`] creates the tenant
//! sockets safely (asking [`sockdiag`] whether a leftover it may not connect to
//! is stale), [`daemon`] drives reloads, upgrades in place and shutdown from
//! one stream of triggers and tells the service manager through [`notify`]
//! (which also keeps every listener in its descriptor store), [`handover`]
//! takes and passes listening sockets across restarts and upgrades,
//! [`watch`] notices file edits, [`logging`] writes log lines off the
//! workers, [`metrics`] and
//! [`http`] export what happens. Tenants with an `access`
//! policy go through [`policy_relay`] (HTTP/1.1-aware) instead of the byte relay,
//! deciding each request with [`policy`].
// `unsafe` is denied everywhere except `handover` (descriptor passing, which
// the standard library cannot express safely; the module explains each use)
// and `alloc_trim` (one call of jemalloc's `mallctl`).
#![deny(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms)]

#[allow(unsafe_code)]
mod alloc_trim;
mod backoff;
pub mod cli;
pub mod config;
pub mod daemon;
#[allow(unsafe_code)]
pub mod handover;
pub mod http;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod plan;
pub use sockbroker_policy as policy;
pub mod policy_relay;
pub mod sockdiag;
pub mod socket;
pub mod status;
pub mod supervisor;
pub mod tenant;
pub mod tenants_api;
pub mod text_table;
pub mod upstream;
pub mod watch;
pub mod workers;
