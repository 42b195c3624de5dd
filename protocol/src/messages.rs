//! The RCAR handshake messages (Request, Challenge, Attestation, token response).
//!
//! Field names and nesting follow the KBS protocol version 0.4.0 exactly as Trustee and
//! guest-components put them on the wire.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The only KBS protocol version the handshake accepts.
pub const PROTOCOL_VERSION: &str = "0.4.0";

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "kbs-session-id";

/// `POST /kbs/v0/auth` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// Protocol version; must be exactly [`PROTOCOL_VERSION`].
    pub version: String,
    /// Evidence type, e.g. `sample` or `tdx`.
    pub tee: String,
    /// Free-form parameters; clients list `supported-hash-algorithms` here.
    #[serde(rename = "extra-params", default)]
    pub extra_params: Value,
}

impl Request {
    /// A request for `tee` announcing the hash algorithms this crate implements.
    pub fn new(tee: &str) -> Self {
        Request {
            version: PROTOCOL_VERSION.to_string(),
            tee: tee.to_string(),
            extra_params: serde_json::json!({
                "supported-hash-algorithms": ["sha256", "sha384", "sha512"]
            }),
        }
    }
}

/// `POST /kbs/v0/auth` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Challenge {
    /// Standard base64 of 32 random bytes; must be echoed in the runtime data.
    pub nonce: String,
    /// Trustee sends `""`; may carry `selected-hash-algorithm`.
    #[serde(rename = "extra-params", default)]
    pub extra_params: Value,
}

impl Challenge {
    /// The hash algorithm the server selected, if it named one.
    pub fn selected_hash_algorithm(&self) -> Option<&str> {
        self.extra_params.get("selected-hash-algorithm")?.as_str()
    }
}

/// Initial data the guest was launched with (e.g. a TOML document).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitData {
    /// Format name; `toml` is the only one the built-in attestation service reads.
    pub format: String,
    /// The document.
    pub body: String,
}

/// Data bound into the evidence: the challenge nonce and the key the secret is sealed to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuntimeData {
    /// The challenge nonce, verbatim.
    pub nonce: String,
    /// The TEE's public key as a JWK. Kept as raw JSON: the binding hash is computed over
    /// exactly what the client sent, including members this crate does not model.
    #[serde(rename = "tee-pubkey")]
    pub tee_pubkey: Value,
}

/// TEE evidence: the primary evidence and optional extra evidence (a JSON string).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TeeEvidence {
    /// TEE-specific evidence (sample: `{"svn": "1", "report_data": "<b64>"}`).
    pub primary_evidence: Value,
    /// Serialised JSON object of additional evidence, or empty.
    #[serde(default)]
    pub additional_evidence: String,
}

/// `POST /kbs/v0/attest` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attestation {
    /// Launch-time initial data, if any.
    #[serde(rename = "init-data", default)]
    pub init_data: Option<InitData>,
    /// Nonce and TEE public key.
    #[serde(rename = "runtime-data")]
    pub runtime_data: RuntimeData,
    /// The evidence.
    #[serde(rename = "tee-evidence")]
    pub tee_evidence: TeeEvidence,
}

/// `POST /kbs/v0/attest` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttestationToken {
    /// The EAR JWT.
    pub token: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    // Bodies copied byte for byte from shared/fixtures/trustee-wire/capture.txt.
    const AUTH: &str = r#"{"version":"0.4.0","tee":"sample","extra-params":{"supported-hash-algorithms":["sha256","sha384","sha512","sm3"]}}"#;
    const CHALLENGE: &str =
        r#"{"nonce":"AIP/7IvL2eGVTnc6IzW6hTSIzsuAeLiEFZCrYM/eRFU=","extra-params":""}"#;
    const ATTEST: &str = r#"{"init-data":null,"runtime-data":{"nonce":"AIP/7IvL2eGVTnc6IzW6hTSIzsuAeLiEFZCrYM/eRFU=","tee-pubkey":{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":"RlLPctALp76VldkuY1XB_ZFOwkmp5-IJShqrdUtmmLM","y":"jD2bwozUCB8gBH5I3BdRobu40z2NzqeMWnqTvGauU9A"}},"tee-evidence":{"primary_evidence":{"report_data":"CUmtw4KF87qQJEA4nJIR2I9/bc4p6pEQqcjhyi0EauqcZ+S63fMyxxWucqZgDPwc","svn":"1"},"additional_evidence":""}}"#;

    #[test]
    fn recorded_auth_parses() {
        let r: Request = serde_json::from_str(AUTH).unwrap();
        assert_eq!(r.version, PROTOCOL_VERSION);
        assert_eq!(r.tee, "sample");
        assert_eq!(r.extra_params["supported-hash-algorithms"][1], "sha384");
    }

    #[test]
    fn challenge_serialises_like_trustee() {
        let c: Challenge = serde_json::from_str(CHALLENGE).unwrap();
        assert_eq!(c.selected_hash_algorithm(), None);
        assert_eq!(serde_json::to_string(&c).unwrap(), CHALLENGE);
    }

    #[test]
    fn recorded_attestation_parses() {
        let a: Attestation = serde_json::from_str(ATTEST).unwrap();
        assert!(a.init_data.is_none());
        assert_eq!(a.runtime_data.tee_pubkey["crv"], "P-256");
        assert_eq!(a.tee_evidence.primary_evidence["svn"], "1");
        assert_eq!(a.tee_evidence.additional_evidence, "");
    }
}
