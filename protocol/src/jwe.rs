//! The flattened JSON JWE in which a resource travels to the TEE.
//!
//! `ECDH-ES+A256KW` (Concat KDF with SHA-256, RFC 7518 §4.6, then AES Key Wrap) for EC
//! P-256 keys, RSA-OAEP-256 / RSA-OAEP / RSA1_5 for RSA keys; content is always `A256GCM`
//! with the ASCII of the `protected` member as additional authenticated data.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use rand::RngCore;
use rsa::{Oaep, Pkcs1v15Encrypt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::b64;
use crate::jwk::{ec_coordinates, TeeKeyPair, TeePubKey, ALG_ECDH_ES_A256KW};

/// Content encryption algorithm.
pub const ENC_A256GCM: &str = "A256GCM";

/// JWE failures. None of them carries key or plaintext bytes.
#[derive(Debug, thiserror::Error)]
pub enum JweError {
    /// A member is missing or not valid base64url, or the header is not JSON.
    #[error("malformed JWE: {0}")]
    Malformed(&'static str),
    /// The header names an algorithm this implementation does not support.
    #[error("unsupported JWE algorithm {0}")]
    Unsupported(String),
    /// The key does not match the header's algorithm.
    #[error("JWE key type does not match algorithm {0}")]
    KeyMismatch(String),
    /// Unwrapping the content key or authenticating the content failed.
    #[error("JWE decryption failed (wrong key or tampered ciphertext)")]
    Decrypt,
    /// Encrypting failed (RSA error).
    #[error("JWE encryption failed")]
    Encrypt,
}

/// A flattened JSON JWE, member names and order as Trustee sends them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlattenedJwe {
    /// base64url of the protected header JSON.
    pub protected: String,
    /// base64url of the wrapped / encrypted content key.
    pub encrypted_key: String,
    /// base64url of the 12-byte GCM IV.
    pub iv: String,
    /// base64url of the ciphertext.
    pub ciphertext: String,
    /// base64url of the 16-byte GCM tag.
    pub tag: String,
}

/// Concat KDF (NIST SP 800-56A) with SHA-256 producing a 256-bit key for `alg`.
fn concat_kdf(z: &[u8], alg: &str, apu: &[u8], apv: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(1u32.to_be_bytes());
    h.update(z);
    for part in [alg.as_bytes(), apu, apv] {
        h.update((part.len() as u32).to_be_bytes());
        h.update(part);
    }
    h.update(256u32.to_be_bytes());
    Zeroizing::new(h.finalize().into())
}

fn ec_xy(key: &p256::PublicKey) -> Value {
    let (x, y) = ec_coordinates(key);
    json!({"crv": "P-256", "kty": "EC", "x": x, "y": y})
}

/// Encrypts `plaintext` to `key`.
pub fn encrypt(key: &TeePubKey, plaintext: &[u8]) -> Result<FlattenedJwe, JweError> {
    let mut rng = rand::rngs::OsRng;
    let mut cek = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(cek.as_mut());

    let (header, encrypted_key) = match key {
        TeePubKey::EcP256(peer) => {
            let (eph, _, eph_public) = crate::ec::generate().ok_or(JweError::Encrypt)?;
            let peer = crate::ec::public_key(peer).ok_or(JweError::Encrypt)?;
            let shared = crate::ec::ecdh(&eph, &peer).ok_or(JweError::Encrypt)?;
            let kek = concat_kdf(&shared, ALG_ECDH_ES_A256KW, &[], &[]);
            let wrapped = aes_kw::KekAes256::from(*kek)
                .wrap_vec(cek.as_ref())
                .map_err(|_| JweError::Encrypt)?;
            let header = json!({
                "alg": ALG_ECDH_ES_A256KW,
                "enc": ENC_A256GCM,
                "epk": ec_xy(&eph_public),
            });
            (header, wrapped)
        }
        TeePubKey::Rsa { key, alg } => {
            let ek = match alg.as_str() {
                "RSA-OAEP-256" => key.encrypt(&mut rng, Oaep::new::<Sha256>(), cek.as_ref()),
                "RSA-OAEP" => key.encrypt(&mut rng, Oaep::new::<sha1::Sha1>(), cek.as_ref()),
                "RSA1_5" => key.encrypt(&mut rng, Pkcs1v15Encrypt, cek.as_ref()),
                other => return Err(JweError::Unsupported(other.to_string())),
            }
            .map_err(|_| JweError::Encrypt)?;
            (json!({"alg": alg, "enc": ENC_A256GCM}), ek)
        }
    };

    let protected = b64::url_encode(header.to_string());
    let mut iv = [0u8; 12];
    rng.fill_bytes(&mut iv);
    let cipher = Aes256Gcm::new_from_slice(cek.as_ref()).map_err(|_| JweError::Encrypt)?;
    let mut buf = plaintext.to_vec();
    let tag = cipher
        .encrypt_in_place_detached(&Nonce::from(iv), protected.as_bytes(), &mut buf)
        .map_err(|_| JweError::Encrypt)?;
    Ok(FlattenedJwe {
        protected,
        encrypted_key: b64::url_encode(encrypted_key),
        iv: b64::url_encode(iv),
        ciphertext: b64::url_encode(buf),
        tag: b64::url_encode(tag),
    })
}

fn field(v: &str, what: &'static str) -> Result<Vec<u8>, JweError> {
    b64::url_decode(v).map_err(|_| JweError::Malformed(what))
}

/// Decrypts a JWE with the TEE's private key.
pub fn decrypt(key: &TeeKeyPair, jwe: &FlattenedJwe) -> Result<Zeroizing<Vec<u8>>, JweError> {
    let header: Value = serde_json::from_slice(&field(&jwe.protected, "protected")?)
        .map_err(|_| JweError::Malformed("protected header is not JSON"))?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(JweError::Malformed("alg"))?;
    let enc = header
        .get("enc")
        .and_then(Value::as_str)
        .ok_or(JweError::Malformed("enc"))?;
    if enc != ENC_A256GCM {
        return Err(JweError::Unsupported(enc.to_string()));
    }
    let ek = field(&jwe.encrypted_key, "encrypted_key")?;
    let cek: Zeroizing<Vec<u8>> = match (alg, key) {
        (ALG_ECDH_ES_A256KW, TeeKeyPair::EcP256(own)) => {
            let epk = header.get("epk").ok_or(JweError::Malformed("epk"))?;
            let epk = match TeePubKey::from_jwk(epk) {
                Ok(TeePubKey::EcP256(k)) => k,
                _ => return Err(JweError::Malformed("epk")),
            };
            let apu = header
                .get("apu")
                .and_then(Value::as_str)
                .map(|s| field(s, "apu"))
                .transpose()?;
            let apv = header
                .get("apv")
                .and_then(Value::as_str)
                .map(|s| field(s, "apv"))
                .transpose()?;
            let epk = crate::ec::public_key(&epk).ok_or(JweError::Malformed("epk"))?;
            let shared = crate::ec::ecdh(own.openssl(), &epk).ok_or(JweError::Decrypt)?;
            let kek = concat_kdf(
                &shared,
                alg,
                apu.as_deref().unwrap_or_default(),
                apv.as_deref().unwrap_or_default(),
            );
            Zeroizing::new(
                aes_kw::KekAes256::from(*kek)
                    .unwrap_vec(&ek)
                    .map_err(|_| JweError::Decrypt)?,
            )
        }
        ("RSA-OAEP-256", TeeKeyPair::Rsa(sk, _)) => Zeroizing::new(
            sk.decrypt(Oaep::new::<Sha256>(), &ek)
                .map_err(|_| JweError::Decrypt)?,
        ),
        ("RSA-OAEP", TeeKeyPair::Rsa(sk, _)) => Zeroizing::new(
            sk.decrypt(Oaep::new::<sha1::Sha1>(), &ek)
                .map_err(|_| JweError::Decrypt)?,
        ),
        ("RSA1_5", TeeKeyPair::Rsa(sk, _)) => Zeroizing::new(
            sk.decrypt(Pkcs1v15Encrypt, &ek)
                .map_err(|_| JweError::Decrypt)?,
        ),
        (ALG_ECDH_ES_A256KW | "RSA-OAEP-256" | "RSA-OAEP" | "RSA1_5", _) => {
            return Err(JweError::KeyMismatch(alg.to_string()))
        }
        (other, _) => return Err(JweError::Unsupported(other.to_string())),
    };
    let iv: [u8; 12] = field(&jwe.iv, "iv")?
        .try_into()
        .map_err(|_| JweError::Malformed("iv length"))?;
    let tag: [u8; 16] = field(&jwe.tag, "tag")?
        .try_into()
        .map_err(|_| JweError::Malformed("tag length"))?;
    if cek.len() != 32 {
        return Err(JweError::Decrypt);
    }
    let cipher = Aes256Gcm::new_from_slice(&cek).map_err(|_| JweError::Decrypt)?;
    let mut buf = Zeroizing::new(field(&jwe.ciphertext, "ciphertext")?);
    cipher
        .decrypt_in_place_detached(
            &Nonce::from(iv),
            jwe.protected.as_bytes(),
            &mut buf,
            &Tag::from(tag),
        )
        .map_err(|_| JweError::Decrypt)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec_round_trip_and_header_shape() {
        let k = TeeKeyPair::generate();
        let jwe = encrypt(&k.public(), b"anchor-test-secret-0123456789abcdef").unwrap();
        let header: Value =
            serde_json::from_slice(&b64::url_decode(&jwe.protected).unwrap()).unwrap();
        assert_eq!(header["alg"], "ECDH-ES+A256KW");
        assert_eq!(header["enc"], "A256GCM");
        assert_eq!(header["epk"]["crv"], "P-256");
        assert_eq!(b64::url_decode(&jwe.encrypted_key).unwrap().len(), 40);
        assert_eq!(b64::url_decode(&jwe.ciphertext).unwrap().len(), 35);
        assert_eq!(
            &decrypt(&k, &jwe).unwrap()[..],
            b"anchor-test-secret-0123456789abcdef"
        );
    }

    #[test]
    fn rsa_round_trips() {
        for alg in ["RSA-OAEP-256", "RSA-OAEP", "RSA1_5"] {
            let k = TeeKeyPair::generate_rsa(2048, alg).unwrap();
            let pk = TeePubKey::from_jwk(&k.public_jwk()).unwrap();
            let jwe = encrypt(&pk, b"secret").unwrap();
            assert_eq!(&decrypt(&k, &jwe).unwrap()[..], b"secret", "{alg}");
        }
    }

    #[test]
    fn tampering_is_detected() {
        let k = TeeKeyPair::generate();
        let jwe = encrypt(&k.public(), b"secret bytes").unwrap();
        let mut ct = b64::url_decode(&jwe.ciphertext).unwrap();
        ct[0] ^= 1;
        let bad = FlattenedJwe {
            ciphertext: b64::url_encode(ct),
            ..jwe.clone()
        };
        assert!(matches!(decrypt(&k, &bad), Err(JweError::Decrypt)));
        let other = TeeKeyPair::generate();
        assert!(matches!(decrypt(&other, &jwe), Err(JweError::Decrypt)));
        let bad_header = FlattenedJwe {
            protected: "bm90IGpzb24".into(),
            ..jwe
        };
        assert!(matches!(
            decrypt(&k, &bad_header),
            Err(JweError::Malformed(_))
        ));
    }

    #[test]
    fn concat_kdf_rfc7518_appendix_c() {
        // RFC 7518 Appendix C: ECDH-ES with A128GCM, apu "Alice", apv "Bob", 128-bit output.
        // Our helper fixes the length at 256 bits, so check the shared structure against an
        // independent computation for the 256-bit case instead.
        let z = [7u8; 32];
        let mut h = Sha256::new();
        h.update([0, 0, 0, 1]);
        h.update(z);
        h.update([0, 0, 0, 14]);
        h.update(b"ECDH-ES+A256KW");
        h.update([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        let want: [u8; 32] = h.finalize().into();
        assert_eq!(*concat_kdf(&z, "ECDH-ES+A256KW", &[], &[]), want);
    }
}
