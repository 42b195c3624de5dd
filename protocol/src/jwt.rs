//! Compact JWS (JWT) signing and verification for the two algorithms the KBS uses:
//! ES256 for attestation tokens and EdDSA (Ed25519) for admin tokens.

use ed25519_dalek::Signer as _;
use serde_json::{json, Map, Value};

use crate::b64;

/// JWT failures.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    /// Not three base64url parts with JSON header and claims.
    #[error("malformed JWT: {0}")]
    Malformed(&'static str),
    /// The header's `alg` is not the one the verification key is for.
    #[error("JWT algorithm {found} not accepted (expected {expected})")]
    Algorithm {
        /// Algorithm found in the header.
        found: String,
        /// Algorithm of the key.
        expected: &'static str,
    },
    /// The signature does not verify.
    #[error("JWT signature is invalid")]
    Signature,
    /// `exp` is in the past, or absent where required.
    #[error("JWT has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("JWT is not yet valid")]
    NotYetValid,
    /// The signature verifies but `iss` names another issuer (or none): a token meant for
    /// another relying party, or one whose key is shared between issuers.
    #[error("JWT issuer {found:?} is not the expected one ({expected:?})")]
    Issuer {
        /// The `iss` claim, when it is a string.
        found: Option<String>,
        /// The issuer the verifier accepts.
        expected: String,
    },
}

/// A JWT could not be signed: the signing key's library refused (an ES256 key that OpenSSL
/// cannot use). No token is produced, never one with an empty or partial signature.
#[derive(Debug, thiserror::Error)]
#[error("JWT signing failed")]
pub struct SignError(#[source] openssl::error::ErrorStack);

/// A key that signs JWTs.
pub enum SigningKey {
    /// ECDSA P-256 with SHA-256 (build with [`SigningKey::es256`]).
    Es256(Es256SigningKey),
    /// Ed25519.
    EdDsa(ed25519_dalek::SigningKey),
}

/// An ES256 private key, signing through OpenSSL.
pub struct Es256SigningKey {
    ossl: openssl::ec::EcKey<openssl::pkey::Private>,
    public: Es256VerifyingKey,
}

/// An ES256 public key, verifying through OpenSSL.
#[derive(Clone)]
pub struct Es256VerifyingKey {
    key: p256::ecdsa::VerifyingKey,
    ossl: openssl::ec::EcKey<openssl::pkey::Public>,
}

impl PartialEq for Es256VerifyingKey {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Es256VerifyingKey {}
impl std::fmt::Debug for Es256VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Es256VerifyingKey({})", self.thumbprint_source())
    }
}

impl Es256VerifyingKey {
    fn new(key: p256::ecdsa::VerifyingKey) -> Option<Self> {
        let ossl = crate::ec::public_key(&p256::PublicKey::from(&key))?;
        Some(Es256VerifyingKey { key, ossl })
    }

    fn thumbprint_source(&self) -> String {
        crate::jwk::ec_coordinates(&p256::PublicKey::from(&self.key)).0
    }
}

/// A key that verifies JWTs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyingKey {
    /// ECDSA P-256 with SHA-256 (build with [`VerifyingKey::es256`]).
    Es256(Es256VerifyingKey),
    /// Ed25519.
    EdDsa(ed25519_dalek::VerifyingKey),
}

impl SigningKey {
    /// An ES256 signing key.
    pub fn es256(key: &p256::ecdsa::SigningKey) -> Self {
        let secret = p256::SecretKey::from(key);
        let public = secret.public_key();
        let ossl = crate::ec::private_key(&secret, &public)
            .expect("a valid P-256 key converts to OpenSSL");
        let public = Es256VerifyingKey::new(*key.verifying_key())
            .expect("a valid P-256 key converts to OpenSSL");
        SigningKey::Es256(Es256SigningKey { ossl, public })
    }

    fn alg(&self) -> &'static str {
        match self {
            SigningKey::Es256(_) => "ES256",
            SigningKey::EdDsa(_) => "EdDSA",
        }
    }

    /// The matching verification key.
    pub fn verifying_key(&self) -> VerifyingKey {
        match self {
            SigningKey::Es256(k) => VerifyingKey::Es256(k.public.clone()),
            SigningKey::EdDsa(k) => VerifyingKey::EdDsa(k.verifying_key()),
        }
    }
}

impl VerifyingKey {
    /// An ES256 verification key.
    pub fn es256(key: p256::ecdsa::VerifyingKey) -> Option<Self> {
        Es256VerifyingKey::new(key).map(VerifyingKey::Es256)
    }

    fn alg(&self) -> &'static str {
        match self {
            VerifyingKey::Es256(_) => "ES256",
            VerifyingKey::EdDsa(_) => "EdDSA",
        }
    }

    /// Public JWK (with `alg` and `use: sig`) for publication in a JWKS or a token header.
    pub fn to_jwk(&self) -> Value {
        match self {
            VerifyingKey::Es256(k) => {
                let (x, y) = crate::jwk::ec_coordinates(&p256::PublicKey::from(&k.key));
                json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "x": x, "y": y})
            }
            VerifyingKey::EdDsa(k) => json!({
                "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                "x": b64::url_encode(k.as_bytes()),
            }),
        }
    }

    /// Parses a public JWK (EC P-256 or OKP Ed25519).
    pub fn from_jwk(jwk: &Value) -> Option<Self> {
        let get = |n: &str| jwk.get(n).and_then(Value::as_str);
        match (get("kty")?, get("crv")?) {
            ("EC", "P-256") => crate::jwk::ec_from_coordinates(get("x")?, get("y")?)
                .and_then(|pk| VerifyingKey::es256(pk.into())),
            ("OKP", "Ed25519") => {
                let x: [u8; 32] = b64::url_decode(get("x")?).ok()?.try_into().ok()?;
                ed25519_dalek::VerifyingKey::from_bytes(&x)
                    .ok()
                    .map(VerifyingKey::EdDsa)
            }
            _ => None,
        }
    }

    /// RFC 7638 thumbprint (base64url SHA-256 of the canonical required members); used as `kid`.
    pub fn thumbprint(&self) -> String {
        use sha2::Digest;
        let jwk = self.to_jwk();
        let required = match self {
            VerifyingKey::Es256(_) => {
                json!({"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"], "y": jwk["y"]})
            }
            VerifyingKey::EdDsa(_) => json!({"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]}),
        };
        b64::url_encode(sha2::Sha256::digest(
            crate::jcs::canonicalize(&required).as_bytes(),
        ))
    }
}

/// A decoded token.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The JOSE header.
    pub header: Value,
    /// The claims.
    pub claims: Value,
}

/// Signs `claims` with `key`; `extra_header` members (e.g. `jwk`, `kid`) are added to the
/// header after `typ` and `alg`.
pub fn sign(
    claims: &Value,
    extra_header: Map<String, Value>,
    key: &SigningKey,
) -> Result<String, SignError> {
    let mut header = Map::new();
    header.insert("typ".into(), "JWT".into());
    header.insert("alg".into(), key.alg().into());
    header.extend(extra_header);
    let signing_input = format!(
        "{}.{}",
        b64::url_encode(Value::Object(header).to_string()),
        b64::url_encode(claims.to_string())
    );
    let sig: Vec<u8> = match key {
        SigningKey::Es256(k) => {
            crate::ec::sign(&k.ossl, signing_input.as_bytes()).map_err(SignError)?
        }
        SigningKey::EdDsa(k) => k.sign(signing_input.as_bytes()).to_bytes().to_vec(),
    };
    Ok(format!("{signing_input}.{}", b64::url_encode(sig)))
}

fn split(token: &str) -> Result<(&str, &str, &str), JwtError> {
    let mut parts = token.trim().splitn(3, '.');
    let (Some(h), Some(c), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Malformed("expected three dot-separated parts"));
    };
    if s.contains('.') {
        return Err(JwtError::Malformed("expected three dot-separated parts"));
    }
    Ok((h, c, s))
}

fn json_part(part: &str, what: &'static str) -> Result<Value, JwtError> {
    let bytes = b64::url_decode(part).map_err(|_| JwtError::Malformed(what))?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed(what))?;
    if v.is_object() {
        Ok(v)
    } else {
        Err(JwtError::Malformed(what))
    }
}

/// Decodes header and claims without checking anything. Use only for display or to pick a key.
pub fn decode_unverified(token: &str) -> Result<Decoded, JwtError> {
    let (h, c, _) = split(token)?;
    Ok(Decoded {
        header: json_part(h, "header")?,
        claims: json_part(c, "claims")?,
    })
}

/// Verifies the signature with `key` (the header's `alg` must match the key) and the time
/// claims: `exp` must be present and after `now`; `nbf`, when present, not after `now`.
/// `leeway` seconds are allowed on both.
pub fn verify(token: &str, key: &VerifyingKey, now: i64, leeway: i64) -> Result<Decoded, JwtError> {
    let (h, c, s) = split(token)?;
    let header = json_part(h, "header")?;
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    if alg != key.alg() {
        return Err(JwtError::Algorithm {
            found: alg.to_string(),
            expected: key.alg(),
        });
    }
    let sig = b64::url_decode(s).map_err(|_| JwtError::Malformed("signature"))?;
    let signing_input = &token.trim()[..h.len() + 1 + c.len()];
    let ok = match key {
        VerifyingKey::Es256(k) => crate::ec::verify(&k.ossl, signing_input.as_bytes(), &sig),
        VerifyingKey::EdDsa(k) => ed25519_dalek::Signature::from_slice(&sig)
            .map(|sig| k.verify_strict(signing_input.as_bytes(), &sig).is_ok())
            .unwrap_or(false),
    };
    if !ok {
        return Err(JwtError::Signature);
    }
    let claims = json_part(c, "claims")?;
    check_times(&claims, now, leeway)?;
    Ok(Decoded { header, claims })
}

/// Checks the time claims: `exp` must be present and after `now`; `nbf`, when present, not
/// after `now`; `leeway` seconds are allowed on both.
pub fn check_times(claims: &Value, now: i64, leeway: i64) -> Result<(), JwtError> {
    match claims.get("exp").and_then(Value::as_i64) {
        Some(exp) if exp + leeway > now => {}
        _ => return Err(JwtError::Expired),
    }
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_i64) {
        if nbf - leeway > now {
            return Err(JwtError::NotYetValid);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn es() -> SigningKey {
        SigningKey::es256(&p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng))
    }

    #[test]
    fn sign_verify_both_algs() {
        let ed = SigningKey::EdDsa(ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng));
        for key in [es(), ed] {
            let claims = json!({"role": "admin", "exp": 2000});
            let t = sign(&claims, Map::new(), &key).unwrap();
            let d = verify(&t, &key.verifying_key(), 1000, 0).unwrap();
            assert_eq!(d.claims, claims);
            assert_eq!(
                verify(&t, &key.verifying_key(), 2001, 0).unwrap_err(),
                JwtError::Expired
            );
            // forged: flip a claim byte, keep signature
            let mut parts: Vec<String> = t.split('.').map(String::from).collect();
            parts[1] = b64::url_encode(json!({"role": "admin", "exp": 9999}).to_string());
            assert_eq!(
                verify(&parts.join("."), &key.verifying_key(), 1000, 0).unwrap_err(),
                JwtError::Signature
            );
        }
    }

    #[test]
    fn wrong_key_and_alg_confusion() {
        let a = es();
        let b = es();
        let t = sign(&json!({"exp": 5}), Map::new(), &a).unwrap();
        assert_eq!(
            verify(&t, &b.verifying_key(), 1, 0).unwrap_err(),
            JwtError::Signature
        );
        let ed = SigningKey::EdDsa(ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng));
        assert!(matches!(
            verify(&t, &ed.verifying_key(), 1, 0),
            Err(JwtError::Algorithm { .. })
        ));
        assert!(matches!(
            verify("a.b", &a.verifying_key(), 1, 0),
            Err(JwtError::Malformed(_))
        ));
    }

    #[test]
    fn a_key_openssl_cannot_sign_with_gives_an_error_not_a_token() {
        // A P-384 key where a P-256 one belongs: OpenSSL signs, but r and s do not fit the
        // 32-byte ES256 encoding, the failure the old code turned into an empty signature.
        let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::SECP384R1).unwrap();
        let SigningKey::Es256(good) = es() else {
            unreachable!()
        };
        let bad = SigningKey::Es256(Es256SigningKey {
            ossl: openssl::ec::EcKey::generate(&group).unwrap(),
            public: good.public,
        });
        let err = sign(&json!({"exp": 5}), Map::new(), &bad).unwrap_err();
        assert!(
            std::error::Error::source(&err).is_some(),
            "the cause is kept"
        );
    }

    #[test]
    fn recorded_trustee_admin_token_decodes() {
        let t = "eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJpc3N1ZXIiLCJyb2xlIjoiYWRtaW4iLCJhdWQiOlsia2JzIl0sImlhdCI6MTc5NTU1MzI1MiwiZXhwIjoyMTEwOTEzMjUyfQ.A6RqTvTNajHr2fTDNFeAr2h2eOoNpwIY4rhcgZedNrhEdirSyw0FGcV7sI39dKzk38cjh9zk9EpOmttGuPsFCg";
        let d = decode_unverified(t).unwrap();
        assert_eq!(d.header["alg"], "EdDSA");
        assert_eq!(d.claims["role"], "admin");
        assert_eq!(d.claims["aud"][0], "kbs");
    }

    #[test]
    fn jwk_round_trip() {
        let k = es().verifying_key();
        assert_eq!(VerifyingKey::from_jwk(&k.to_jwk()), Some(k.clone()));
        assert_eq!(k.thumbprint().len(), 43);
    }
}
