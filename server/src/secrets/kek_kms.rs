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

/// Why the wrapped KEK could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum KekKmsError {
    /// The wrapped-KEK file is unreadable or malformed.
    #[error("{path}: {reason}")]
    File {
        /// File.
        path: String,
        /// Cause.
        reason: String,
    },
    /// KMS refused or could not be reached.
    #[error("KMS: {0}")]
    Kms(#[from] SecretError),
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

/// Unwraps the KEK stored in `path` with KMS key `key_id`; on first start generates a KEK,
/// wraps it, checks the round trip and writes `path` (mode 0600).
pub async fn unwrap_or_create(
    kms: &AliyunKms,
    key_id: &str,
    path: &Path,
) -> Result<Kek, KekKmsError> {
    if path.exists() {
        let text = std::fs::read_to_string(path).map_err(|e| file_err(path, e.to_string()))?;
        let w: WrappedKek =
            serde_json::from_str(&text).map_err(|e| file_err(path, e.to_string()))?;
        if w.kms_key_id != key_id {
            return Err(file_err(
                path,
                format!(
                    "wrapped with KMS key {:?}, configured key is {key_id:?}",
                    w.kms_key_id
                ),
            ));
        }
        let blob = STANDARD
            .decode(&w.ciphertext_blob)
            .map_err(|_| file_err(path, "ciphertext_blob is not base64"))?;
        let iv = STANDARD
            .decode(&w.iv)
            .map_err(|_| file_err(path, "iv is not base64"))?;
        let plain = kms.decrypt(key_id, &blob, &iv).await?;
        return Kek::from_slice(&plain)
            .ok_or_else(|| file_err(path, "KMS returned a KEK that is not 32 bytes"));
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
    let json = serde_json::to_vec_pretty(&w).map_err(|e| file_err(path, e.to_string()))?;
    crate::keys::write_private_file(path, &json).map_err(|e| file_err(path, e.to_string()))?;
    Kek::from_slice(k.as_ref()).ok_or_else(|| file_err(path, "KEK"))
}
