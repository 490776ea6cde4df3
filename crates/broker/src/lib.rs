//! sockbroker: a multi-tenant Unix socket broker.
//!
//! The data path, one module per arrow:
//! config file → [`config`] (parse + validate) → [`plan`] (pure diff of running vs
//! desired) → [`supervisor`] (apply the plan) → [`listener`] (accept, peer checks,
//! limits) → `sockbroker_relay` (bytes) → upstream.
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms)]

pub mod config;
