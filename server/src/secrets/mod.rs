//! Where resource bytes come from: the [`SecretBackend`] seam and the default backend that
//! keeps resources in the database, sealed with AES-256-GCM under a key-encryption key.

pub mod aliyun;
pub mod aliyun_rpc;
pub mod kek_kms;
mod sealed_db;

use async_trait::async_trait;
use coffer_protocol::ResourcePath;
use zeroize::Zeroizing;

pub use sealed_db::{Kek, SealedDbBackend, SEALED_OVERHEAD};

/// Secret backend failures. Messages never contain secret bytes.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The backend (database, KMS) cannot be reached.
    #[error("secret backend unavailable: {0}")]
    Unavailable(String),
    /// Stored ciphertext failed authentication (tampered, or a different KEK).
    #[error("stored secret for {0} failed integrity check (tampered or wrong key-encryption key)")]
    Integrity(String),
    /// The backend does not accept writes.
    #[error("secret backend for {0} is read-only")]
    ReadOnly(String),
    /// The backend refused the request (credentials, permissions, bad request).
    #[error("secret backend refused the request: {0}")]
    Refused(String),
    /// The database behind the sealed backend failed.
    #[error("secret store")]
    Store(#[from] crate::store::StoreError),
    /// A value cannot be sealed (beyond AES-GCM's size limit).
    #[error("the value for {0} cannot be sealed")]
    Seal(String),
    /// The clock cannot be read to date a write.
    #[error("secret backend")]
    Clock(#[from] crate::clock::ClockError),
}

/// Sends each resource path to the backend configured for its repository and type, and
/// everything else to the default backend.
pub struct RoutedSecrets {
    /// Backend for unrouted paths (the sealed database).
    pub default: std::sync::Arc<dyn SecretBackend>,
    /// (repository, type) → backend.
    pub routes: Vec<(String, String, std::sync::Arc<dyn SecretBackend>)>,
}

impl RoutedSecrets {
    fn pick(&self, path: &ResourcePath) -> &dyn SecretBackend {
        self.routes
            .iter()
            .find(|(r, t, _)| r == path.repository() && t == path.kind())
            .map(|(_, _, b)| b.as_ref())
            .unwrap_or(self.default.as_ref())
    }
}

#[async_trait]
impl SecretBackend for RoutedSecrets {
    async fn get(&self, path: &ResourcePath) -> Result<Option<Zeroizing<Vec<u8>>>, SecretError> {
        self.pick(path).get(path).await
    }
    async fn put(&self, path: &ResourcePath, value: &[u8]) -> Result<(), SecretError> {
        self.pick(path).put(path, value).await
    }
    async fn delete(&self, path: &ResourcePath) -> Result<bool, SecretError> {
        self.pick(path).delete(path).await
    }
}

/// A source of resource bytes.
#[async_trait]
pub trait SecretBackend: Send + Sync {
    /// Reads a resource; `None` when it does not exist.
    async fn get(&self, path: &ResourcePath) -> Result<Option<Zeroizing<Vec<u8>>>, SecretError>;
    /// Writes (creates or replaces) a resource.
    async fn put(&self, path: &ResourcePath, value: &[u8]) -> Result<(), SecretError>;
    /// Deletes a resource; returns whether it existed.
    async fn delete(&self, path: &ResourcePath) -> Result<bool, SecretError>;
}
