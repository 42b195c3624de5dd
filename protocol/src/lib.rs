//! Wire types and cryptographic glue of the KBS protocol, as spoken by Trustee
//! (confidential-containers) and by coffer.
//!
//! This crate performs no I/O. It is shared by `coffer-server` and the `coffer` client so
//! that both sides agree byte for byte on JSON shapes, the runtime-data binding hash, the
//! JWE that carries a released secret, and the JWTs used for attestation and admin access.
//!
//! A release, both halves: the guest sends the public half of its TEE key, the server
//! encrypts the secret to it, and only the holder of the private half reads it back.
//!
//! ```
//! use coffer_protocol::{jwe, TeeKeyPair, TeePubKey};
//!
//! let tee_key = TeeKeyPair::generate(); // stays in the TEE
//! let sent = tee_key.public_jwk(); // the `tee-pubkey` of the attestation
//! let server_side = TeePubKey::from_jwk(&sent)?; // checked like any hostile input
//! let released = jwe::encrypt(&server_side, b"model key")?;
//! assert_eq!(&jwe::decrypt(&tee_key, &released)?[..], b"model key");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

pub mod admin;
pub mod aead;
pub mod audit;
pub mod b64;
mod ec;
pub mod error;
pub mod jcs;
pub mod jwe;
pub mod jwk;
pub mod jwt;
pub mod messages;
pub mod resource;
mod rsa_ops;
pub mod runtime_data;
pub mod tee;

pub use admin::{PolicyKind, ResourceMeta, StoredPolicy};
pub use audit::{AdminOp, AuditAction, AuditCount, AuditEntry, AuditPage, AuditStats, Decision};
pub use error::{ErrorKind, Problem};
pub use jwk::{TeeKeyPair, TeePubKey};
pub use messages::{
    Attestation, AttestationToken, Challenge, ProtocolVersion, Request, PROTOCOL_VERSION,
};
pub use resource::ResourcePath;
pub use runtime_data::HashAlgorithm;
pub use tee::{Tee, UnknownTee};
