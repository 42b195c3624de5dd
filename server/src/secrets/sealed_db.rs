//! Resources at rest in the database, each sealed as `nonce(12) || AES-256-GCM(value) || tag`
//! with the resource path as associated data, so a row copied to another path fails to open.

use std::sync::Arc;

use async_trait::async_trait;
use coffer_protocol::aead;
use coffer_protocol::ResourcePath;
use rand::RngCore;
use zeroize::{Zeroize, Zeroizing};

use super::{SecretBackend, SecretError};
use crate::clock::Clock;
use crate::store::Store;

const AAD_PREFIX: &str = "coffer-resource-v1:";

/// Bytes a sealed value has beyond the value: the 12-byte nonce and the 16-byte GCM tag.
pub const SEALED_OVERHEAD: i64 = 12 + 16;

/// A 256-bit key-encryption key, wiped on drop.
#[derive(Clone)]
pub struct Kek(Zeroizing<[u8; 32]>);

impl Kek {
    /// From exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut k = Zeroizing::new([0u8; 32]);
        if bytes.len() != 32 {
            return None;
        }
        k.copy_from_slice(bytes);
        Some(Kek(k))
    }

    /// Seals `value` for `path`. Fails only for a value beyond AES-GCM's limit (64 GiB);
    /// never returns an empty or partial seal.
    pub fn seal(&self, path: &str, value: &[u8]) -> Result<Vec<u8>, SecretError> {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = format!("{AAD_PREFIX}{path}");
        let (ct, tag) = aead::seal(&self.0, &nonce, aad.as_bytes(), value)
            .map_err(|_| SecretError::Seal(path.to_string()))?;
        let mut out = Vec::with_capacity(nonce.len() + ct.len() + tag.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Opens a sealed value for `path`; `None` if it fails authentication.
    pub fn open(&self, path: &str, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < 12 + 16 {
            return None;
        }
        let (nonce, rest) = sealed.split_at(12);
        let (ct, tag) = rest.split_at(rest.len() - aead::TAG_LEN);
        let nonce: &[u8; 12] = nonce.try_into().ok()?;
        let tag: &[u8; aead::TAG_LEN] = tag.try_into().ok()?;
        let aad = format!("{AAD_PREFIX}{path}");
        aead::open(&self.0, nonce, aad.as_bytes(), ct, tag).ok()
    }
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(..)")
    }
}

/// The default [`SecretBackend`]: sealed rows in the coffer database.
pub struct SealedDbBackend {
    store: Arc<dyn Store>,
    kek: Kek,
    clock: Arc<dyn Clock>,
}

impl SealedDbBackend {
    /// A backend over `store` using `kek`; `clock` dates each write.
    pub fn new(store: Arc<dyn Store>, kek: Kek, clock: Arc<dyn Clock>) -> Self {
        SealedDbBackend { store, kek, clock }
    }
}

#[async_trait]
impl SecretBackend for SealedDbBackend {
    async fn get(&self, path: &ResourcePath) -> Result<Option<Zeroizing<Vec<u8>>>, SecretError> {
        let key = path.to_string();
        match self.store.get_resource(&key).await? {
            None => Ok(None),
            Some(sealed) => self
                .kek
                .open(&key, &sealed)
                .map(Some)
                .ok_or(SecretError::Integrity(key)),
        }
    }

    async fn put(&self, path: &ResourcePath, value: &[u8]) -> Result<(), SecretError> {
        let key = path.to_string();
        let now = self.clock.now_secs()?;
        let mut sealed = self.kek.seal(&key, value)?;
        let r = self.store.put_resource(&key, &sealed, now).await;
        sealed.zeroize();
        Ok(r?)
    }

    async fn delete(&self, path: &ResourcePath) -> Result<bool, SecretError> {
        Ok(self.store.delete_resource(&path.to_string()).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_binds_path_and_key() {
        let k = Kek::from_slice(&[7; 32]).unwrap();
        let sealed = k.seal("default/a/b", b"model key").unwrap();
        assert!(!sealed.windows(9).any(|w| w == b"model key"));
        assert_eq!(&k.open("default/a/b", &sealed).unwrap()[..], b"model key");
        assert!(k.open("default/a/c", &sealed).is_none());
        let other = Kek::from_slice(&[8; 32]).unwrap();
        assert!(other.open("default/a/b", &sealed).is_none());
        let mut bad = sealed.clone();
        bad[20] ^= 1;
        assert!(k.open("default/a/b", &bad).is_none());
        assert!(Kek::from_slice(&[0; 31]).is_none());
        assert_eq!(format!("{k:?}"), "Kek(..)");
    }
}
