//! Aliyun KMS through the public OpenAPI with a RAM AccessKey (Alibaba Trustee's AccessKey
//! mode, `alibaba-trustee.md` §7): classic RPC-style requests, `POST /?<query>` with an empty
//! body, signed with signature version 1.0 (HMAC-SHA1 over the sorted, percent-encoded query).
//! Only GetSecretValue exists in this mode; Encrypt/Decrypt need the instance API (ClientKey).
//!
//! HMAC comes from OpenSSL, like the ClientKey mode's RSA signature, so the KMS client has one
//! crypto provider.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use zeroize::Zeroizing;

/// `Version` of the KMS OpenAPI.
pub const API_VERSION: &str = "2016-01-20";
/// `SignatureMethod`.
pub const SIGNATURE_METHOD: &str = "HMAC-SHA1";
/// `SignatureVersion`.
pub const SIGNATURE_VERSION: &str = "1.0";
/// Environment variable holding the AccessKey id (Alibaba Trustee's name).
pub const ENV_ACCESS_KEY_ID: &str = "ALIYUN_KMS_ACCESS_KEY_ID";
/// Environment variable holding the AccessKey secret; the only place the secret is read from,
/// so that it never sits in a config file or a ConfigMap.
pub const ENV_ACCESS_KEY_SECRET: &str = "ALIYUN_KMS_ACCESS_KEY_SECRET";
/// Environment variable holding the region, when the config has no `region_id`.
pub const ENV_REGION_ID: &str = "ALIYUN_KMS_REGION_ID";

/// Why an AccessKey could not be used; never contains the secret.
#[derive(Debug, thiserror::Error)]
pub enum AccessKeyError {
    /// A required value is neither configured nor in the environment.
    #[error("Aliyun KMS AccessKey mode: {what} is not set (config key {key} or environment variable {env})")]
    Missing {
        /// What is missing.
        what: &'static str,
        /// The config key that can hold it (or "-" when only the environment can).
        key: &'static str,
        /// The environment variable that can hold it.
        env: &'static str,
    },
    /// OpenSSL could not compute the HMAC.
    #[error("cannot compute the HMAC-SHA1 request signature: {0}")]
    Sign(#[source] openssl::error::ErrorStack),
}

/// A RAM AccessKey: its id (public, sent as `AccessKeyId`) and secret (HMAC key material).
pub struct AccessKey {
    id: String,
    secret: Zeroizing<String>,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AccessKey({}, ..)", self.id)
    }
}

impl AccessKey {
    /// An AccessKey from its two halves; `None` when either is empty.
    pub fn new(id: &str, secret: Zeroizing<String>) -> Option<Self> {
        if id.trim().is_empty() || secret.trim().is_empty() {
            return None;
        }
        Some(AccessKey {
            id: id.trim().to_string(),
            secret: Zeroizing::new(secret.trim().to_string()),
        })
    }

    /// The AccessKey id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `base64(HMAC-SHA1(secret + "&", string_to_sign))`: the `&` is where a token secret
    /// would follow in the OAuth-style key the scheme inherits; RPC requests never have one.
    pub fn sign(&self, string_to_sign: &str) -> Result<String, AccessKeyError> {
        let mut key = Zeroizing::new(self.secret.as_bytes().to_vec());
        key.push(b'&');
        hmac_sha1_b64(&key, string_to_sign.as_bytes())
    }
}

fn hmac_sha1_b64(key: &[u8], data: &[u8]) -> Result<String, AccessKeyError> {
    use openssl::{hash::MessageDigest, pkey::PKey, sign::Signer};
    let pkey = PKey::hmac(key).map_err(AccessKeyError::Sign)?;
    let mut s = Signer::new(MessageDigest::sha1(), &pkey).map_err(AccessKeyError::Sign)?;
    s.update(data).map_err(AccessKeyError::Sign)?;
    let mac = s.sign_to_vec().map_err(AccessKeyError::Sign)?;
    Ok(STANDARD.encode(mac))
}

/// RFC 3986 encoding as the signature defines it: unreserved characters stay, every other
/// UTF-8 byte becomes `%XX` in upper case (so a space is `%20`, never `+`).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The canonicalized query: `pe(k)=pe(v)` joined by `&`, sorted by (encoded) name, without
/// `Signature`.
pub fn canonicalized_query<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut pairs: Vec<(String, String)> = params
        .into_iter()
        .filter(|(k, _)| *k != "Signature")
        .map(|(k, v)| (percent_encode(k), percent_encode(v)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// `POST&%2F&` + the encoded canonicalized query.
pub fn string_to_sign(canonicalized_query: &str) -> String {
    format!("POST&%2F&{}", percent_encode(canonicalized_query))
}

/// `Timestamp`: UTC `YYYY-MM-DDTHH:MM:SSZ`.
pub fn timestamp(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `SignatureNonce`: 16 random bytes as 32 upper-case hex digits (the reference client's form).
pub fn nonce() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode_upper(b)
}

/// The parameters of GetSecretValue (current version), without `Signature`.
pub fn get_secret_value_params<'a>(
    access_key_id: &'a str,
    region_id: &'a str,
    secret_name: &'a str,
    timestamp: &'a str,
    nonce: &'a str,
) -> Vec<(&'static str, &'a str)> {
    vec![
        ("Action", "GetSecretValue"),
        ("Version", API_VERSION),
        ("Format", "json"),
        ("RegionId", region_id),
        ("Timestamp", timestamp),
        ("SignatureMethod", SIGNATURE_METHOD),
        ("SignatureType", ""),
        ("SignatureVersion", SIGNATURE_VERSION),
        ("SignatureNonce", nonce),
        ("AccessKeyId", access_key_id),
        ("SecretName", secret_name),
        ("VersionStage", ""),
        ("VersionId", ""),
        ("FetchExtendedConfig", "true"),
    ]
}

/// The request's query string: the parameters plus their `Signature`, each encoded.
pub fn signed_query(key: &AccessKey, params: &[(&str, &str)]) -> Result<String, AccessKeyError> {
    let canonical = canonicalized_query(params.iter().copied());
    let signature = key.sign(&string_to_sign(&canonical))?;
    Ok(format!(
        "{canonical}&Signature={}",
        percent_encode(&signature)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AccessKey {
        AccessKey::new(
            "testAccessKeyId",
            Zeroizing::new("testAccessKeySecret".into()),
        )
        .expect("non-empty")
    }

    /// `alibaba-trustee.md` §7 known-answer vector.
    #[test]
    fn known_answer_vector() {
        let ts = "2024-01-01T00:00:00.123456789Z";
        let params = get_secret_value_params(
            "testAccessKeyId",
            "cn-hangzhou",
            "model-decryption-key",
            ts,
            "4142434445464748494A4B4C4D4E4F50",
        );
        let canonical = canonicalized_query(params.iter().copied());
        assert_eq!(
            canonical,
            "AccessKeyId=testAccessKeyId&Action=GetSecretValue&FetchExtendedConfig=true&Format=json&RegionId=cn-hangzhou&SecretName=model-decryption-key&SignatureMethod=HMAC-SHA1&SignatureNonce=4142434445464748494A4B4C4D4E4F50&SignatureType=&SignatureVersion=1.0&Timestamp=2024-01-01T00%3A00%3A00.123456789Z&Version=2016-01-20&VersionId=&VersionStage="
        );
        assert_eq!(
            key().sign(&string_to_sign(&canonical)).expect("hmac"),
            "wPFoKXILuzPR7Nn+XvpE/TIesMY="
        );
        let q = signed_query(&key(), &params).expect("hmac");
        assert!(
            q.ends_with("&Signature=wPFoKXILuzPR7Nn%2BXvpE%2FTIesMY%3D"),
            "{q}"
        );
    }

    /// The reference source's own unit test: `sign("plaintext", "123")`.
    #[test]
    fn reference_hmac() {
        assert_eq!(
            hmac_sha1_b64(b"123", b"plaintext").expect("hmac"),
            "BmKA4TUoQuVAeZ7ocuAGNI0YTN4="
        );
    }

    #[test]
    fn encoding_and_redaction() {
        assert_eq!(percent_encode("a b*~/é"), "a%20b%2A~%2F%C3%A9");
        assert_eq!(format!("{:?}", key()), "AccessKey(testAccessKeyId, ..)");
        assert!(AccessKey::new("id", Zeroizing::new(" ".into())).is_none());
        assert!(AccessKey::new("", Zeroizing::new("s".into())).is_none());
        let n = nonce();
        assert_eq!(n.len(), 32);
        assert!(n
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()));
        let t = time::OffsetDateTime::from_unix_timestamp(1_704_067_200).expect("valid");
        assert_eq!(timestamp(t), "2024-01-01T00:00:00Z");
    }
}
