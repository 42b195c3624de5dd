//! The TEE's public key (`tee-pubkey`, a JWK) and the matching private half held in the TEE.

use p256::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPrivateKey, RsaPublicKey};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::b64;

/// JWE key-management algorithm for EC P-256 keys.
pub const ALG_ECDH_ES_A256KW: &str = "ECDH-ES+A256KW";
/// RSA key-management algorithms Trustee accepts.
pub const RSA_ALGS: [&str; 3] = ["RSA-OAEP-256", "RSA-OAEP", "RSA1_5"];

/// Why a JWK could not be used as a TEE key.
#[derive(Debug, thiserror::Error)]
pub enum JwkError {
    /// The JWK is missing a member or a member has the wrong type.
    #[error("tee-pubkey: missing or invalid member `{0}`")]
    Member(&'static str),
    /// Unsupported key type, curve or algorithm.
    #[error("tee-pubkey: unsupported {0}")]
    Unsupported(String),
    /// The coordinates are not a point on the curve, or the RSA key is unusable.
    #[error("tee-pubkey: invalid key material")]
    InvalidKey,
    /// A private key file could not be parsed.
    #[error("tee key: cannot parse private key ({0})")]
    PrivateKey(String),
}

/// A TEE public key that a secret can be encrypted to.
#[derive(Debug, Clone, PartialEq)]
pub enum TeePubKey {
    /// EC P-256, used with `ECDH-ES+A256KW`.
    EcP256(p256::PublicKey),
    /// RSA with one of [`RSA_ALGS`].
    Rsa {
        /// The key.
        key: RsaPublicKey,
        /// `RSA-OAEP-256`, `RSA-OAEP` or `RSA1_5`.
        alg: String,
    },
}

/// base64url x and y coordinates of a P-256 public key.
pub(crate) fn ec_coordinates(key: &p256::PublicKey) -> (String, String) {
    let p = key.to_encoded_point(false);
    let enc = |c: Option<&p256::FieldBytes>| b64::url_encode(c.map(|c| &c[..]).unwrap_or_default());
    (enc(p.x()), enc(p.y()))
}

/// Parses base64url P-256 coordinates into a public key.
pub(crate) fn ec_from_coordinates(x: &str, y: &str) -> Option<p256::PublicKey> {
    let x: [u8; 32] = b64::url_decode(x).ok()?.try_into().ok()?;
    let y: [u8; 32] = b64::url_decode(y).ok()?.try_into().ok()?;
    let point = p256::EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
    Option::from(p256::PublicKey::from_encoded_point(&point))
}

fn member<'a>(jwk: &'a Value, name: &'static str) -> Result<&'a str, JwkError> {
    jwk.get(name)
        .and_then(Value::as_str)
        .ok_or(JwkError::Member(name))
}

fn b64_member(jwk: &Value, name: &'static str) -> Result<Vec<u8>, JwkError> {
    b64::url_decode(member(jwk, name)?).map_err(|_| JwkError::Member(name))
}

impl TeePubKey {
    /// Parses a `tee-pubkey` JWK.
    pub fn from_jwk(jwk: &Value) -> Result<Self, JwkError> {
        match member(jwk, "kty")? {
            "EC" => {
                let crv = member(jwk, "crv")?;
                if crv != "P-256" {
                    return Err(JwkError::Unsupported(format!("curve {crv}")));
                }
                if let Some(alg) = jwk.get("alg").and_then(Value::as_str) {
                    if alg != ALG_ECDH_ES_A256KW {
                        return Err(JwkError::Unsupported(format!("EC algorithm {alg}")));
                    }
                }
                let key = ec_from_coordinates(member(jwk, "x")?, member(jwk, "y")?)
                    .ok_or(JwkError::InvalidKey)?;
                Ok(TeePubKey::EcP256(key))
            }
            "RSA" => {
                let alg = jwk
                    .get("alg")
                    .and_then(Value::as_str)
                    .unwrap_or("RSA-OAEP-256");
                if !RSA_ALGS.contains(&alg) {
                    return Err(JwkError::Unsupported(format!("RSA algorithm {alg}")));
                }
                let n = BigUint::from_bytes_be(&b64_member(jwk, "n")?);
                let e = BigUint::from_bytes_be(&b64_member(jwk, "e")?);
                let key = RsaPublicKey::new(n, e).map_err(|_| JwkError::InvalidKey)?;
                if key.size() < 256 {
                    return Err(JwkError::Unsupported(
                        "RSA key shorter than 2048 bits".into(),
                    ));
                }
                Ok(TeePubKey::Rsa {
                    key,
                    alg: alg.to_string(),
                })
            }
            other => Err(JwkError::Unsupported(format!("key type {other}"))),
        }
    }

    /// The JWK form, as guest-components sends it.
    pub fn to_jwk(&self) -> Value {
        match self {
            TeePubKey::EcP256(key) => {
                let (x, y) = ec_coordinates(key);
                json!({"kty": "EC", "crv": "P-256", "alg": ALG_ECDH_ES_A256KW, "x": x, "y": y})
            }
            TeePubKey::Rsa { key, alg } => json!({
                "kty": "RSA",
                "alg": alg,
                "n": b64::url_encode(key.n().to_bytes_be()),
                "e": b64::url_encode(key.e().to_bytes_be()),
            }),
        }
    }
}

/// An EC P-256 key pair, held both as `p256` values (for encoding) and as an OpenSSL key
/// (for fast ECDH).
#[derive(Clone)]
pub struct EcKeyPair {
    secret: p256::SecretKey,
    public: p256::PublicKey,
    ossl: openssl::ec::EcKey<openssl::pkey::Private>,
}

impl EcKeyPair {
    fn from_secret(secret: p256::SecretKey) -> Result<Self, JwkError> {
        let public = secret.public_key();
        let ossl = crate::ec::private_key(&secret, &public).ok_or(JwkError::InvalidKey)?;
        Ok(EcKeyPair {
            secret,
            public,
            ossl,
        })
    }

    pub(crate) fn openssl(&self) -> &openssl::ec::EcKeyRef<openssl::pkey::Private> {
        &self.ossl
    }
}

/// The private half of the TEE key; it never leaves the TEE.
#[derive(Clone)]
pub enum TeeKeyPair {
    /// EC P-256 (default).
    EcP256(Box<EcKeyPair>),
    /// RSA, with its JWE algorithm.
    Rsa(Box<RsaPrivateKey>, String),
}

impl std::fmt::Debug for TeeKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        match self {
            TeeKeyPair::EcP256(_) => f.write_str("TeeKeyPair::EcP256(..)"),
            TeeKeyPair::Rsa(_, alg) => write!(f, "TeeKeyPair::Rsa({alg}, ..)"),
        }
    }
}

impl TeeKeyPair {
    /// A fresh EC P-256 key.
    pub fn generate() -> Self {
        match crate::ec::generate() {
            Some((ossl, secret, public)) => TeeKeyPair::EcP256(Box::new(EcKeyPair {
                secret,
                public,
                ossl,
            })),
            // OpenSSL without a usable RNG: fall back to the pure-Rust generator.
            None => {
                let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
                EcKeyPair::from_secret(secret)
                    .map(|k| TeeKeyPair::EcP256(Box::new(k)))
                    .expect("a freshly generated P-256 key is valid")
            }
        }
    }

    /// A fresh RSA key (tests and RSA-only peers).
    pub fn generate_rsa(bits: usize, alg: &str) -> Result<Self, JwkError> {
        if !RSA_ALGS.contains(&alg) {
            return Err(JwkError::Unsupported(format!("RSA algorithm {alg}")));
        }
        let key = RsaPrivateKey::new(&mut rand::rngs::OsRng, bits)
            .map_err(|e| JwkError::PrivateKey(e.to_string()))?;
        Ok(TeeKeyPair::Rsa(Box::new(key), alg.to_string()))
    }

    /// Loads a PKCS#8 PEM private key (EC P-256, or RSA used with RSA-OAEP-256).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, JwkError> {
        if let Ok(k) = p256::SecretKey::from_pkcs8_pem(pem) {
            return Ok(TeeKeyPair::EcP256(Box::new(EcKeyPair::from_secret(k)?)));
        }
        RsaPrivateKey::from_pkcs8_pem(pem)
            .map(|k| TeeKeyPair::Rsa(Box::new(k), "RSA-OAEP-256".to_string()))
            .map_err(|e| JwkError::PrivateKey(e.to_string()))
    }

    /// PKCS#8 PEM of the private key.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, JwkError> {
        let pem = match self {
            TeeKeyPair::EcP256(k) => k.secret.to_pkcs8_pem(LineEnding::LF),
            TeeKeyPair::Rsa(k, _) => k.to_pkcs8_pem(LineEnding::LF),
        };
        pem.map_err(|e| JwkError::PrivateKey(e.to_string()))
    }

    /// The public half.
    pub fn public(&self) -> TeePubKey {
        match self {
            TeeKeyPair::EcP256(k) => TeePubKey::EcP256(k.public),
            TeeKeyPair::Rsa(k, alg) => TeePubKey::Rsa {
                key: k.to_public_key(),
                alg: alg.clone(),
            },
        }
    }

    /// The public half as a JWK.
    pub fn public_jwk(&self) -> Value {
        self.public().to_jwk()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_guest_components_key_parses_and_round_trips() {
        let jwk = json!({"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW",
            "x":"RlLPctALp76VldkuY1XB_ZFOwkmp5-IJShqrdUtmmLM",
            "y":"jD2bwozUCB8gBH5I3BdRobu40z2NzqeMWnqTvGauU9A"});
        let key = TeePubKey::from_jwk(&jwk).unwrap();
        assert_eq!(key.to_jwk(), jwk);
    }

    #[test]
    fn rejects_bad_keys() {
        let off_curve = json!({"kty":"EC","crv":"P-256","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","y":"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"});
        assert!(matches!(
            TeePubKey::from_jwk(&off_curve),
            Err(JwkError::InvalidKey)
        ));
        assert!(matches!(
            TeePubKey::from_jwk(&json!({"kty":"OKP"})),
            Err(JwkError::Unsupported(_))
        ));
        assert!(matches!(
            TeePubKey::from_jwk(&json!({"kty":"EC","crv":"P-384"})),
            Err(JwkError::Unsupported(_))
        ));
        assert!(matches!(
            TeePubKey::from_jwk(&json!({"crv":"P-256"})),
            Err(JwkError::Member("kty"))
        ));
    }

    #[test]
    fn pem_round_trip() {
        let k = TeeKeyPair::generate();
        let pem = k.to_pkcs8_pem().unwrap();
        let back = TeeKeyPair::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(back.public(), k.public());
        assert_eq!(format!("{k:?}"), "TeeKeyPair::EcP256(..)");
    }
}
