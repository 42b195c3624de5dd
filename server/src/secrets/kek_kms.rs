//! The database KEK wrapped by an Aliyun KMS key (envelope encryption): only the KMS
//! ciphertext is on disk; the KEK exists in memory after a KMS Decrypt at start-up.

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::aliyun::AliyunKms;
use super::{Kek, SecretError};
use crate::store::Store;

/// Why the wrapped KEK could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum KekKmsError {
    /// The wrapped KEK is unreadable, malformed or cannot be stored.
    #[error("{path}: {reason}")]
    File {
        /// The file, or the database row.
        path: String,
        /// Cause.
        reason: String,
    },
    /// KMS refused or could not be reached.
    #[error("KMS: {0}")]
    Kms(#[from] SecretError),
    /// The database row of the wrapped KEK cannot be read or written.
    #[error("database table wrapped_keys, row {DB_NAME:?}")]
    Store(#[source] crate::store::StoreError),
}

/// On-disk form of the wrapped KEK.
#[derive(Serialize, Deserialize)]
struct WrappedKek {
    kms_key_id: String,
    algorithm: String,
    ciphertext_blob: String,
    iv: String,
}

fn file_err(path: &Path, reason: impl Into<String>) -> KekKmsError {
    KekKmsError::File {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Where the wrapped KEK is kept.
pub enum WrappedKekLocation<'a> {
    /// A JSON file (mode 0600), for a single server.
    File(&'a Path),
    /// The `wrapped_keys` table of the server's database, shared by every replica: the first
    /// replica to start creates the KEK, the others unwrap the same one. `now` (Unix
    /// seconds) dates a new row.
    Database {
        /// The database.
        store: &'a dyn Store,
        /// The time of the start-up.
        now: i64,
    },
}

impl WrappedKekLocation<'_> {
    fn describe(&self) -> String {
        match self {
            WrappedKekLocation::File(p) => p.display().to_string(),
            WrappedKekLocation::Database { .. } => {
                format!("database table wrapped_keys, row {DB_NAME:?}")
            }
        }
    }

    fn err(&self, reason: impl Into<String>) -> KekKmsError {
        KekKmsError::File {
            path: self.describe(),
            reason: reason.into(),
        }
    }

    async fn read(&self) -> Result<Option<String>, KekKmsError> {
        match self {
            WrappedKekLocation::File(p) if !p.exists() => Ok(None),
            WrappedKekLocation::File(p) => std::fs::read_to_string(p)
                .map(Some)
                .map_err(|e| file_err(p, e.to_string())),
            WrappedKekLocation::Database { store, .. } => store
                .get_wrapped_key(DB_NAME)
                .await
                .map_err(KekKmsError::Store),
        }
    }

    /// Stores `json`; for the database only if no other replica stored one first.
    async fn write(&self, json: &str) -> Result<(), KekKmsError> {
        match self {
            WrappedKekLocation::File(p) => crate::keys::write_private_file(p, json.as_bytes())
                .map_err(|e| file_err(p, e.to_string())),
            WrappedKekLocation::Database { store, now } => store
                .put_wrapped_key_if_absent(DB_NAME, json, *now)
                .await
                .map_err(KekKmsError::Store),
        }
    }
}

/// Row name of the KEK in `wrapped_keys`.
const DB_NAME: &str = "kek";

/// Unwraps the KEK kept at `at` with KMS key `key_id`. On first start it generates a KEK,
/// wraps it with KMS Encrypt, checks the round trip and stores the wrapped form; with the
/// database location a replica that loses the race to store it unwraps the winner's KEK.
pub async fn unwrap_or_create(
    kms: &AliyunKms,
    key_id: &str,
    at: WrappedKekLocation<'_>,
) -> Result<Kek, KekKmsError> {
    if let Some(text) = at.read().await? {
        return unwrap(kms, key_id, &at, &text).await;
    }
    let mut k = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(k.as_mut());
    let (blob, iv) = kms.encrypt(key_id, k.as_ref()).await?;
    let back = kms.decrypt(key_id, &blob, &iv).await?;
    if back.as_slice() != k.as_ref() {
        return Err(KekKmsError::Kms(SecretError::Unavailable(
            "KMS Decrypt did not return what Encrypt wrapped".into(),
        )));
    }
    let w = WrappedKek {
        kms_key_id: key_id.to_string(),
        algorithm: "AES_GCM".into(),
        ciphertext_blob: STANDARD.encode(blob),
        iv: STANDARD.encode(iv),
    };
    let json = serde_json::to_string_pretty(&w).map_err(|e| at.err(e.to_string()))?;
    at.write(&json).await?;
    match &at {
        WrappedKekLocation::File(_) => {
            Kek::from_slice(k.as_ref()).ok_or_else(|| at.err("KEK is not 32 bytes"))
        }
        // Another replica may have stored its KEK first: use whatever the table holds.
        WrappedKekLocation::Database { .. } => {
            let stored = at
                .read()
                .await?
                .ok_or_else(|| at.err("the wrapped KEK vanished right after it was stored"))?;
            if stored == json {
                Kek::from_slice(k.as_ref()).ok_or_else(|| at.err("KEK is not 32 bytes"))
            } else {
                unwrap(kms, key_id, &at, &stored).await
            }
        }
    }
}

async fn unwrap(
    kms: &AliyunKms,
    key_id: &str,
    at: &WrappedKekLocation<'_>,
    text: &str,
) -> Result<Kek, KekKmsError> {
    let w: WrappedKek = serde_json::from_str(text).map_err(|e| at.err(e.to_string()))?;
    if w.kms_key_id != key_id {
        return Err(at.err(format!(
            "wrapped with KMS key {:?}, configured key is {key_id:?}",
            w.kms_key_id
        )));
    }
    let blob = STANDARD
        .decode(&w.ciphertext_blob)
        .map_err(|_| at.err("ciphertext_blob is not base64"))?;
    let iv = STANDARD
        .decode(&w.iv)
        .map_err(|_| at.err("iv is not base64"))?;
    let plain = kms.decrypt(key_id, &blob, &iv).await?;
    Kek::from_slice(&plain).ok_or_else(|| at.err("KMS returned a KEK that is not 32 bytes"))
}
