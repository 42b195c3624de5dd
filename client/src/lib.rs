//! coffer client library: evidence collection, the KBS protocol (RCAR handshake and
//! resource retrieval), the admin API of coffer-server, model encryption and local policy
//! tests.
//!
//! Works against coffer-server and against Trustee's KBS alike: only the wire protocol is
//! assumed.

// Unsafe code is confined to `tdx_legacy` (one ioctl, one vsock connect).
#![deny(unsafe_code)]

pub mod admin;
pub mod cdh;
pub mod console;
pub mod error;
pub mod evidence;
pub mod exit;
pub mod gpu;
pub mod kbs;
pub mod measure;
pub mod model;
pub mod policy_test;
pub mod service;
pub mod tdx;
pub mod tdx_legacy;

pub use error::ClientError;
pub use kbs::KbsClient;

/// Builds the HTTP client used for every request: rustls, optional extra root CA.
pub fn http_client(extra_root_pem: Option<&[u8]>) -> Result<reqwest::Client, ClientError> {
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("coffer/", env!("CARGO_PKG_VERSION")))
        .timeout(std::time::Duration::from_secs(60));
    if let Some(pem) = extra_root_pem {
        let cert = reqwest::Certificate::from_pem(pem)
            .map_err(|e| ClientError::Config(format!("CA certificate: {e}")))?;
        b = b.add_root_certificate(cert);
    }
    b.build().map_err(|e| ClientError::Config(e.to_string()))
}
