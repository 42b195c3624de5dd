//! coffer-server: a Trustee-compatible Key Broker Service with a built-in attestation
//! service, Rego policies, a reference-value store and an encrypted resource store.
//!
//! Layers, outermost first: [`http`] (routes, problem+json errors, metrics) → [`service`]
//! (handshake, release, admin) → [`attestation`] (verifiers) and [`policy`] (regorus, EAR
//! tokens) → [`store`] (SQLite through rusqlite, PostgreSQL through sqlx) and [`secrets`] (resource backends).
//! Every time is read from one injected [`clock::Clock`].
//!
//! The binary is `config` → [`service::Kbs::from_config`] → [`http::app`]; tests build the
//! same [`service::Kbs`] over a temporary store with a [`clock::ManualClock`].

#![forbid(unsafe_code)]

pub mod attestation;
pub mod clock;
pub mod config;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod policy;
pub mod secrets;
pub mod service;
pub mod store;
