//! sockbroker: a multi-tenant Unix socket broker.
//!
//! The data path, one module per arrow:
//! config file → [`config`] (parse + validate) → [`plan`] (pure diff of running vs
//! desired) → [`supervisor`] (apply the plan) → [`listener`] (accept, peer checks,
//! limits) → `sockbroker_relay` (bytes) → upstream. [`socket`] creates the tenant
//! sockets safely (asking [`sockdiag`] whether a leftover it may not connect to
//! is stale), [`daemon`] drives reloads and shutdown and tells the service
//! manager through [`notify`], [`watch`] notices file edits, [`metrics`] and
//! [`http`] export what happens. Tenants with an `access`
//! policy go through [`policy_relay`] (HTTP/1.1-aware) instead of the byte relay,
//! deciding each request with [`policy`].
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms)]

pub mod cli;
pub mod config;
pub mod daemon;
pub mod http;
pub mod listener;
pub mod metrics;
pub mod notify;
pub mod plan;
pub use sockbroker_policy as policy;
pub mod policy_relay;
pub mod sockdiag;
pub mod socket;
pub mod status;
pub mod supervisor;
pub mod tenants_api;
pub mod text_table;
pub mod watch;
