//! The TEE's public key (`tee-pubkey`, a JWK) and the matching private half held in the TEE.

use openssl::pkey::{PKey, Private, Public};
use p256::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::b64;

/// JWE key-management algorithm for EC P-256 keys.
pub const ALG_ECDH_ES_A256KW: &str = "ECDH-ES+A256KW";

/// The RSA key-management algorithms Trustee accepts for a TEE key: which padding wraps the
/// JWE's content key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RsaAlg {
    /// OAEP with SHA-256 and MGF1-SHA-256 (the default for RSA keys that name none).
    RsaOaep256,
    /// OAEP with SHA-1 and MGF1-SHA-1.
    RsaOaep,
    /// PKCS#1 v1.5, the only one protocol 0.1.x guests know.
    Rsa1_5,
}

impl RsaAlg {
    /// The JWA name (`RSA-OAEP-256`, `RSA-OAEP`, `RSA1_5`).
    pub fn name(self) -> &'static str {
        match self {
            RsaAlg::RsaOaep256 => "RSA-OAEP-256",
            RsaAlg::RsaOaep => "RSA-OAEP",
            RsaAlg::Rsa1_5 => ALG_RSA1_5,
        }
    }

    /// Parses a JWA name; any other algorithm is `None`.
    pub fn from_name(name: &str) -> Option<Self> {
        [RsaAlg::RsaOaep256, RsaAlg::RsaOaep, RsaAlg::Rsa1_5]
            .into_iter()
            .find(|a| a.name() == name)
    }

    fn parse(name: &str) -> Result<Self, JwkError> {
        Self::from_name(name).ok_or_else(|| JwkError::Unsupported(format!("RSA algorithm {name}")))
    }
}

impl std::fmt::Display for RsaAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

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

/// JWE key-management algorithm of the 0.1.x protocol (RSA PKCS#1 v1.5).
pub const ALG_RSA1_5: &str = "RSA1_5";

/// A TEE public key that a secret can be encrypted to.
#[derive(Debug, Clone)]
pub enum TeePubKey {
    /// EC P-256, used with `ECDH-ES+A256KW`.
    EcP256(p256::PublicKey),
    /// RSA, with the padding the guest asked for.
    Rsa {
        /// The key (OpenSSL, the workspace's one RSA provider).
        key: PKey<Public>,
        /// How the content key is wrapped.
        alg: RsaAlg,
    },
}

impl PartialEq for TeePubKey {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (TeePubKey::EcP256(a), TeePubKey::EcP256(b)) => a == b,
            (TeePubKey::Rsa { key: a, alg: x }, TeePubKey::Rsa { key: b, alg: y }) => {
                x == y && a.public_eq(b)
            }
            _ => false,
        }
    }
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
                let alg = match jwk.get("alg") {
                    None => RsaAlg::RsaOaep256,
                    Some(a) => RsaAlg::parse(a.as_str().ok_or(JwkError::Member("alg"))?)?,
                };
                Self::rsa_from_jwk(jwk, alg)
            }
            other => Err(JwkError::Unsupported(format!("key type {other}"))),
        }
    }

    /// Parses a protocol 0.1.0 `tee-pubkey`: `{kty, alg, n, e}`, always RSA. The 0.1.0
    /// server read these four strings into a struct and never looked at `kty`, so neither
    /// does this.
    pub fn from_legacy_jwk(jwk: &Value) -> Result<Self, JwkError> {
        member(jwk, "kty")?;
        let alg = RsaAlg::parse(member(jwk, "alg")?)?;
        Self::rsa_from_jwk(jwk, alg)
    }

    fn rsa_from_jwk(jwk: &Value, alg: RsaAlg) -> Result<Self, JwkError> {
        use crate::rsa_ops::{public_from_components, KeySize, MAX_BITS, MIN_BITS};
        let key = public_from_components(&b64_member(jwk, "n")?, &b64_member(jwk, "e")?).map_err(
            |e| match e {
                KeySize::TooSmall => {
                    JwkError::Unsupported(format!("RSA key shorter than {MIN_BITS} bits"))
                }
                KeySize::TooLarge => {
                    JwkError::Unsupported(format!("RSA key longer than {MAX_BITS} bits"))
                }
                KeySize::BadExponent => JwkError::InvalidKey,
            },
        )?;
        Ok(TeePubKey::Rsa { key, alg })
    }

    /// The JWE key-management algorithm this key is used with.
    pub fn alg(&self) -> &'static str {
        match self {
            TeePubKey::EcP256(_) => ALG_ECDH_ES_A256KW,
            TeePubKey::Rsa { alg, .. } => alg.name(),
        }
    }

    /// The JWK form, as guest-components sends it.
    pub fn to_jwk(&self) -> Value {
        match self {
            TeePubKey::EcP256(key) => {
                let (x, y) = ec_coordinates(key);
                json!({"kty": "EC", "crv": "P-256", "alg": ALG_ECDH_ES_A256KW, "x": x, "y": y})
            }
            TeePubKey::Rsa { key, alg } => {
                // `key` was built as an RSA key (the variant holds nothing else), so its
                // components are there; only an allocation failure in OpenSSL could fail.
                let (n, e) = crate::rsa_ops::components(key).expect("an RSA key's n and e");
                json!({
                    "kty": "RSA",
                    "alg": alg.name(),
                    "n": b64::url_encode(n),
                    "e": b64::url_encode(e),
                })
            }
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
    Rsa(Box<PKey<Private>>, RsaAlg),
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

    /// A fresh RSA key (0.1.x peers, which only know `RSA1_5`, and RSA-only peers).
    pub fn generate_rsa(bits: u32, alg: RsaAlg) -> Result<Self, JwkError> {
        if !(crate::rsa_ops::MIN_BITS..=crate::rsa_ops::MAX_BITS).contains(&bits) {
            return Err(JwkError::Unsupported(format!("RSA key size {bits}")));
        }
        let key = crate::rsa_ops::generate(bits)
            .ok_or_else(|| JwkError::PrivateKey("RSA key generation failed".into()))?;
        Ok(TeeKeyPair::Rsa(Box::new(key), alg))
    }

    /// Loads a PKCS#8 PEM private key (EC P-256, or RSA used with RSA-OAEP-256).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, JwkError> {
        if let Ok(k) = p256::SecretKey::from_pkcs8_pem(pem) {
            return Ok(TeeKeyPair::EcP256(Box::new(EcKeyPair::from_secret(k)?)));
        }
        let key = PKey::private_key_from_pem(pem.as_bytes())
            .map_err(|_| JwkError::PrivateKey("neither a P-256 nor an RSA private key".into()))?;
        let bits = key
            .rsa()
            .map(|r| r.size() * 8)
            .map_err(|_| JwkError::PrivateKey("neither a P-256 nor an RSA private key".into()))?;
        if !(crate::rsa_ops::MIN_BITS..=crate::rsa_ops::MAX_BITS).contains(&bits) {
            return Err(JwkError::Unsupported(format!("RSA key size {bits}")));
        }
        Ok(TeeKeyPair::Rsa(Box::new(key), RsaAlg::RsaOaep256))
    }

    /// The same RSA key used with another JWE algorithm (protocol 0.1.x needs `RSA1_5`).
    /// EC keys have a single algorithm and are refused.
    pub fn with_rsa_alg(self, alg: RsaAlg) -> Result<Self, JwkError> {
        match self {
            TeeKeyPair::Rsa(k, _) => Ok(TeeKeyPair::Rsa(k, alg)),
            TeeKeyPair::EcP256(_) => Err(JwkError::Unsupported(format!(
                "algorithm {alg} for an EC key (an RSA key is needed)"
            ))),
        }
    }

    /// The JWE key-management algorithm this key is used with.
    pub fn alg(&self) -> &'static str {
        match self {
            TeeKeyPair::EcP256(_) => ALG_ECDH_ES_A256KW,
            TeeKeyPair::Rsa(_, alg) => alg.name(),
        }
    }

    /// PKCS#8 PEM of the private key.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, JwkError> {
        match self {
            TeeKeyPair::EcP256(k) => k
                .secret
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| JwkError::PrivateKey(e.to_string())),
            TeeKeyPair::Rsa(k, _) => {
                let pem = Zeroizing::new(
                    k.private_key_to_pem_pkcs8()
                        .map_err(|_| JwkError::PrivateKey("PEM encoding failed".into()))?,
                );
                String::from_utf8(pem.to_vec())
                    .map(Zeroizing::new)
                    .map_err(|_| JwkError::PrivateKey("PEM encoding failed".into()))
            }
        }
    }

    /// The public half.
    pub fn public(&self) -> TeePubKey {
        match self {
            TeeKeyPair::EcP256(k) => TeePubKey::EcP256(k.public),
            TeeKeyPair::Rsa(k, alg) => {
                // Re-deriving the public key from a valid private key cannot fail short of
                // an allocation failure inside OpenSSL.
                let key = crate::rsa_ops::public_half(k).expect("the public half of an RSA key");
                TeePubKey::Rsa { key, alg: *alg }
            }
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
    fn rsa_keys_round_trip_and_are_bounded() {
        let k = TeeKeyPair::generate_rsa(2048, RsaAlg::Rsa1_5).unwrap();
        let jwk = k.public_jwk();
        assert_eq!(jwk["kty"], "RSA");
        assert_eq!(jwk["alg"], "RSA1_5");
        assert_eq!(jwk["e"], "AQAB");
        assert_eq!(
            b64::url_decode(jwk["n"].as_str().unwrap()).unwrap().len(),
            256
        );
        assert_eq!(TeePubKey::from_jwk(&jwk).unwrap(), k.public());
        let mut legacy = jwk.clone();
        legacy["kty"] = json!("whatever");
        assert_eq!(TeePubKey::from_legacy_jwk(&legacy).unwrap(), k.public());
        assert!(
            TeePubKey::from_legacy_jwk(&json!({"alg":"RSA1_5","n":"AQAB","e":"AQAB"})).is_err()
        );

        let pem = k.to_pkcs8_pem().unwrap();
        let back = TeeKeyPair::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(back.alg(), "RSA-OAEP-256");
        let back = back.with_rsa_alg(RsaAlg::Rsa1_5).unwrap();
        assert_eq!(back.public(), k.public());
        assert!(TeeKeyPair::generate().with_rsa_alg(RsaAlg::Rsa1_5).is_err());

        let small =
            json!({"kty":"RSA","alg":"RSA1_5","n": b64::url_encode([0xffu8; 128]),"e":"AQAB"});
        assert!(matches!(
            TeePubKey::from_jwk(&small),
            Err(JwkError::Unsupported(_))
        ));
        let huge =
            json!({"kty":"RSA","alg":"RSA1_5","n": b64::url_encode([0xffu8; 1025]),"e":"AQAB"});
        assert!(matches!(
            TeePubKey::from_jwk(&huge),
            Err(JwkError::Unsupported(_))
        ));
        let even_e = json!({"kty":"RSA","alg":"RSA1_5","n": jwk["n"],"e":"AQAA"});
        assert!(matches!(
            TeePubKey::from_jwk(&even_e),
            Err(JwkError::InvalidKey)
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
