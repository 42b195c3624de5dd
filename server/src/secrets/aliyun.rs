//! Aliyun KMS instance API (ClientKey authentication): credential loading, protobuf request
//! bodies and the RSA_PKCS1_SHA_256 request signature.
//!
//! This is the signing and encoding layer of the planned `default/aliyun/<secret>` backend
//! (issue 5); the HTTPS transport, the backend itself and the emulator are not written yet.

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// API version sent in `x-kms-apiversion`.
pub const API_VERSION: &str = "dkms-gcs-0.2";
/// Signature method sent in `x-kms-signaturemethod`.
pub const SIGNATURE_METHOD: &str = "RSA_PKCS1_SHA_256";
/// Content type of every request and response.
pub const CONTENT_TYPE: &str = "application/x-protobuf";

/// Credential problems; never include the password or key.
#[derive(Debug, thiserror::Error)]
pub enum KmsCredentialError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The ClientKey file is not the expected JSON.
    #[error("{0}: not a ClientKey file (need KeyId and PrivateKeyData)")]
    Format(String),
    /// The PKCS#12 does not open with the password (or is corrupt).
    #[error(
        "{0}: cannot open the ClientKey private key (wrong password or corrupt PrivateKeyData)"
    )]
    Unlock(String),
}

/// A KMS application-access-point ClientKey: its id and RSA private key.
pub struct ClientKey {
    /// `KAAP.<uuid>`, sent as `x-kms-acccesskeyid`.
    pub key_id: String,
    key: PKey<Private>,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientKey({}, ..)", self.key_id)
    }
}

/// The password text: a JSON object's `ClientKeyPassword`, or the trimmed file content.
pub fn password_from_text(text: &str) -> Zeroizing<String> {
    let trimmed = text.trim();
    if let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(trimmed) {
        if let Some(p) = m.get("ClientKeyPassword").and_then(|v| v.as_str()) {
            return Zeroizing::new(p.to_string());
        }
    }
    Zeroizing::new(trimmed.to_string())
}

impl ClientKey {
    /// Loads `clientKey_<id>.json` and opens it with the password file.
    pub fn load(client_key: &Path, password_file: &Path) -> Result<Self, KmsCredentialError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p)
                .map(Zeroizing::new)
                .map_err(|source| KmsCredentialError::Io {
                    path: p.display().to_string(),
                    source,
                })
        };
        let name = client_key.display().to_string();
        let json = read(client_key)?;
        let password = password_from_text(&read(password_file)?);
        let v: serde_json::Value =
            serde_json::from_str(&json).map_err(|_| KmsCredentialError::Format(name.clone()))?;
        let key_id = v
            .get("KeyId")
            .and_then(|x| x.as_str())
            .ok_or_else(|| KmsCredentialError::Format(name.clone()))?;
        let data = v
            .get("PrivateKeyData")
            .and_then(|x| x.as_str())
            .ok_or_else(|| KmsCredentialError::Format(name.clone()))?;
        let der = Zeroizing::new(
            STANDARD
                .decode(data.trim())
                .map_err(|_| KmsCredentialError::Format(name.clone()))?,
        );
        // The certificate bag uses RC2-40, which OpenSSL 3 only reads with the legacy provider.
        let _legacy = openssl::provider::Provider::try_load(None, "legacy", true);
        let pfx = openssl::pkcs12::Pkcs12::from_der(&der)
            .map_err(|_| KmsCredentialError::Format(name.clone()))?;
        let parsed = pfx
            .parse2(&password)
            .map_err(|_| KmsCredentialError::Unlock(name.clone()))?;
        let key = parsed
            .pkey
            .ok_or_else(|| KmsCredentialError::Unlock(name.clone()))?;
        Ok(ClientKey {
            key_id: key_id.to_string(),
            key,
        })
    }

    /// RSASSA-PKCS1-v1_5 / SHA-256 over `string_to_sign`, standard base64.
    pub fn sign(&self, string_to_sign: &str) -> Option<String> {
        let mut s = openssl::sign::Signer::new(MessageDigest::sha256(), &self.key).ok()?;
        s.update(string_to_sign.as_bytes()).ok()?;
        s.sign_to_vec().ok().map(|sig| STANDARD.encode(sig))
    }
}

/// Upper-case hex SHA-256 of a request body (the `content-sha256` header).
pub fn content_sha256(body: &[u8]) -> String {
    hex::encode_upper(Sha256::digest(body))
}

/// The string the signature covers.
pub fn string_to_sign(content_sha256: &str, date: &str, key_id: &str, api_name: &str) -> String {
    format!(
        "POST\n{content_sha256}\n{CONTENT_TYPE}\n{date}\nx-kms-acccesskeyid:{key_id}\nx-kms-apiname:{api_name}\nx-kms-apiversion:{API_VERSION}\nx-kms-signaturemethod:{SIGNATURE_METHOD}\n/"
    )
}

fn put_len_delimited(buf: &mut Vec<u8>, field: u32, data: &[u8]) {
    if data.is_empty() {
        return; // proto3: empty strings/bytes are not encoded
    }
    put_varint(buf, u64::from(field << 3 | 2));
    put_varint(buf, data.len() as u64);
    buf.extend_from_slice(data);
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// `dkms_api.GetSecretValueRequest` (FetchExtendedConfig always true, as reference clients).
pub fn get_secret_value_request(
    secret_name: &str,
    version_stage: &str,
    version_id: &str,
) -> Vec<u8> {
    let mut b = Vec::new();
    put_len_delimited(&mut b, 1, secret_name.as_bytes());
    put_len_delimited(&mut b, 2, version_stage.as_bytes());
    put_len_delimited(&mut b, 3, version_id.as_bytes());
    put_varint(&mut b, 4 << 3);
    put_varint(&mut b, 1);
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn data(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/aliyun-kms")
            .join(name)
    }

    #[test]
    fn known_answer_signatures() {
        let vectors: Value =
            serde_json::from_str(&std::fs::read_to_string(data("vectors.json")).unwrap()).unwrap();
        let key = ClientKey::load(
            &data("clientKey_test-id.json"),
            &data("password_test-id.json"),
        )
        .unwrap();
        assert_eq!(key.key_id, "test-id");
        assert_eq!(format!("{key:?}"), "ClientKey(test-id, ..)");
        let cases = [
            ("get_secret_latest", "test_secret", ""),
            ("get_secret_previous", "model-decryption-key", "ACSPrevious"),
        ];
        for (name, secret, stage) in cases {
            let v = vectors["requests"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == name)
                .unwrap();
            let body = get_secret_value_request(secret, stage, "");
            assert_eq!(hex::encode(&body), v["body_hex"], "{name}");
            let sha = content_sha256(&body);
            assert_eq!(sha, v["content_sha256"], "{name}");
            let sts = string_to_sign(
                &sha,
                v["date"].as_str().unwrap(),
                "test-id",
                "GetSecretValue",
            );
            assert_eq!(sts, v["string_to_sign"], "{name}");
            assert_eq!(key.sign(&sts).unwrap(), v["signature_b64"], "{name}");
        }
    }

    #[test]
    fn passwords_and_bad_credentials() {
        assert_eq!(&*password_from_text("abc\n"), "abc");
        assert_eq!(&*password_from_text("{\"ClientKeyPassword\": \"p\"}"), "p");
        let dir = tempfile::tempdir().unwrap();
        let wrong = dir.path().join("pw");
        std::fs::write(&wrong, "not-the-password").unwrap();
        let e = ClientKey::load(&data("clientKey_test-id.json"), &wrong)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("wrong password") && !e.contains("not-the-password"),
            "{e}"
        );
    }
}
