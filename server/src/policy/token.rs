//! This server's EAR tokens: the signed JWT handed to the TEE, carrying the appraisal of its
//! evidence.

use coffer_policy::Appraisal;
use coffer_protocol::jwt::{self, SigningKey, VerifyingKey};
use coffer_protocol::ProtocolVersion;
use serde_json::{json, Map, Value};

/// Private claim naming the KBS protocol version of the handshake that earned the token.
/// A resource request with `Authorization: Bearer` has no session, and the version decides
/// the layout of the JWE it gets back (legacy for 0.1.x).
pub const PROTOCOL_VERSION_CLAIM: &str = "coffer.kbs-protocol-version";

/// Issues and verifies this server's attestation tokens.
pub struct TokenIssuer {
    key: SigningKey,
    verifying: VerifyingKey,
    kid: String,
    issuer: String,
    ttl_secs: i64,
}

impl TokenIssuer {
    /// An issuer signing with `key`.
    pub fn new(key: p256::ecdsa::SigningKey, issuer: String, ttl_secs: i64) -> Self {
        let key = SigningKey::es256(&key);
        let verifying = key.verifying_key();
        let kid = verifying.thumbprint();
        TokenIssuer {
            key,
            verifying,
            kid,
            issuer,
            ttl_secs,
        }
    }

    /// The public JWKS relying parties use to verify tokens.
    pub fn jwks(&self) -> Value {
        let mut jwk = self.verifying.to_jwk();
        jwk["kid"] = json!(self.kid);
        json!({ "keys": [jwk] })
    }

    /// Signs an EAR token for `annotated_evidence` appraised as `appraisal` (`cpu0`) and
    /// the appraised `devices` (`gpu0`, `switch0`, ...), earned by a handshake of protocol
    /// `version`. Fails only when the signing key cannot sign (no token is made then).
    pub fn issue(
        &self,
        annotated_evidence: Value,
        appraisal: &Appraisal,
        devices: Map<String, Value>,
        now: i64,
        version: ProtocolVersion,
    ) -> Result<String, jwt::SignError> {
        let mut submods = devices;
        submods.insert(
            "cpu0".into(),
            Value::Object(appraisal.submod(annotated_evidence)),
        );
        let claims = json!({
            "eat_profile": "tag:github.com,2024:confidential-containers/Trustee",
            "iat": now,
            "ear.verifier-id": {
                "developer": "https://github.com/coffer",
                "build": concat!("coffer-server ", env!("CARGO_PKG_VERSION")),
            },
            "submods": submods,
            "exp": now + self.ttl_secs,
            "iss": self.issuer,
            (PROTOCOL_VERSION_CLAIM): version.as_str(),
        });
        let mut header = Map::new();
        header.insert("kid".into(), json!(self.kid));
        header.insert("jwk".into(), self.verifying.to_jwk());
        jwt::sign(&claims, header, &self.key)
    }

    /// Verifies a token this server issued (signature, `exp`, `iss`) and returns its claims.
    pub fn verify(&self, token: &str, now: i64) -> Result<Value, jwt::JwtError> {
        let d = jwt::verify(token, &self.verifying, now, 0)?;
        self.check_issuer(&d.claims)?;
        Ok(d.claims)
    }

    /// Claims of a token read back from a session row: this server signed it and stored it
    /// itself, and the client never handled that copy, so the signature is not checked again
    /// (an ECDSA verification per release saved); `exp` and `iss` still are. A token a
    /// client presents (`Authorization`, `Attestation`) goes through [`Self::verify`].
    pub fn claims_of_stored(&self, token: &str, now: i64) -> Result<Value, jwt::JwtError> {
        let d = jwt::decode_unverified(token)?;
        jwt::check_times(&d.claims, now, 0)?;
        self.check_issuer(&d.claims)?;
        Ok(d.claims)
    }

    fn check_issuer(&self, claims: &Value) -> Result<(), jwt::JwtError> {
        let found = claims.get("iss").and_then(Value::as_str);
        if found == Some(self.issuer.as_str()) {
            Ok(())
        } else {
            Err(jwt::JwtError::Issuer {
                found: found.map(str::to_string),
                expected: self.issuer.clone(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_reject_foreign_keys() {
        let k = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let issuer = TokenIssuer::new(k, "coffer".into(), 300);
        let a = Appraisal::from_policy_output(json!({"hardware": 2}), json!([])).unwrap();
        let evidence = json!({"sample": {"svn": "1"}});
        let t = issuer
            .issue(evidence, &a, Map::new(), 1000, ProtocolVersion::V0_1_1)
            .unwrap();
        let claims = issuer.verify(&t, 1100).unwrap();
        assert_eq!(claims[PROTOCOL_VERSION_CLAIM], "0.1.1");
        assert_eq!(claims["submods"]["cpu0"]["ear.status"], "affirming");
        assert_eq!(claims["exp"], 1300);
        assert!(issuer.verify(&t, 1300).is_err());
        let other = TokenIssuer::new(
            p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng),
            "coffer".into(),
            300,
        );
        assert!(other.verify(&t, 1100).is_err());
        assert_eq!(issuer.jwks()["keys"][0]["kty"], "EC");
    }

    #[test]
    fn stored_tokens_still_expire_and_name_this_issuer() {
        let k = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let issuer = TokenIssuer::new(k.clone(), "coffer".into(), 300);
        let a = Appraisal::from_policy_output(json!({"hardware": 2}), json!([])).unwrap();
        let t = issuer
            .issue(
                json!({"sample": {}}),
                &a,
                Map::new(),
                1000,
                ProtocolVersion::V0_4_0,
            )
            .unwrap();
        assert_eq!(issuer.claims_of_stored(&t, 1100).unwrap()["iss"], "coffer");
        assert_eq!(
            issuer.claims_of_stored(&t, 1300).unwrap_err(),
            jwt::JwtError::Expired
        );
        let elsewhere = TokenIssuer::new(k.clone(), "other".into(), 300);
        assert!(matches!(
            elsewhere.claims_of_stored(&t, 1100),
            Err(jwt::JwtError::Issuer { found: Some(f), .. }) if f == "coffer"
        ));
        assert!(matches!(
            elsewhere.verify(&t, 1100),
            Err(jwt::JwtError::Issuer { .. })
        ));
        assert!(issuer.claims_of_stored("not.a-token", 1100).is_err());
    }
}
