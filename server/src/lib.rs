//! coffer-server: a Trustee-compatible Key Broker Service with a built-in attestation
//! service, Rego policies, a reference-value store and an encrypted resource store.
//!
//! Layers, outermost first: [`http`] (routes, problem+json errors, metrics) → [`service`]
//! (handshake, release, admin) → [`attestation`] (verifiers) and [`policy`] (regorus, EAR
//! tokens) → [`store`] (SQLite through rusqlite, PostgreSQL through sqlx) and [`secrets`] (resource backends).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod attestation;
pub mod config;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod policy;
pub mod secrets;
pub mod service;
pub mod store;

/// Current time in Unix seconds.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
