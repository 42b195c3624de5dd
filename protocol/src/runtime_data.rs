//! The binding between a handshake and the evidence: the hash of the runtime data.
//!
//! From protocol 0.3.0:
//! `report_data = HASH(JCS({"additional-evidence": ..., "nonce": ..., "tee-pubkey": ...}))`;
//! before it (0.1.0 – 0.2.0) the object is `{"nonce": ..., "tee-pubkey": ...}`. Old
//! implementations serialized with serde_json's sorted maps, which for these objects is
//! byte-identical to RFC 8785, so JCS serves every version. The digest is zero-padded to
//! the TEE's report-data size where the TEE has one.

use serde_json::{json, Value};
use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::jcs;
use crate::messages::ProtocolVersion;

/// Hash algorithms a KBS may select for the runtime-data binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashAlgorithm {
    /// SHA-256.
    Sha256,
    /// SHA-384 (the default when the server selects none).
    #[default]
    Sha384,
    /// SHA-512.
    Sha512,
}

impl HashAlgorithm {
    /// Name as used in `supported-hash-algorithms` / `selected-hash-algorithm`.
    pub fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha256 => "sha256",
            HashAlgorithm::Sha384 => "sha384",
            HashAlgorithm::Sha512 => "sha512",
        }
    }

    /// Parses a name (case-insensitive); unknown names (e.g. `sm3`) give `None`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "sha256" => Some(HashAlgorithm::Sha256),
            "sha384" => Some(HashAlgorithm::Sha384),
            "sha512" => Some(HashAlgorithm::Sha512),
            _ => None,
        }
    }

    /// Digest of `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            HashAlgorithm::Sha256 => Sha256::digest(data).to_vec(),
            HashAlgorithm::Sha384 => Sha384::digest(data).to_vec(),
            HashAlgorithm::Sha512 => Sha512::digest(data).to_vec(),
        }
    }
}

/// The JSON object whose canonical form is hashed.
pub fn runtime_data_claims(nonce: &str, tee_pubkey: &Value, additional_evidence: &str) -> Value {
    json!({
        "additional-evidence": additional_evidence,
        "nonce": nonce,
        "tee-pubkey": tee_pubkey,
    })
}

/// The runtime-data hash (not padded).
pub fn runtime_data_hash(
    alg: HashAlgorithm,
    nonce: &str,
    tee_pubkey: &Value,
    additional_evidence: &str,
) -> Vec<u8> {
    let claims = runtime_data_claims(nonce, tee_pubkey, additional_evidence);
    alg.digest(jcs::canonicalize(&claims).as_bytes())
}

/// The object bound into the evidence of a protocol `version` handshake.
/// `additional_evidence` only exists from 0.3.0 and is ignored before.
pub fn binding_claims(
    version: ProtocolVersion,
    nonce: &str,
    tee_pubkey: &Value,
    additional_evidence: &str,
) -> Value {
    if version.composite_evidence() {
        runtime_data_claims(nonce, tee_pubkey, additional_evidence)
    } else {
        json!({"nonce": nonce, "tee-pubkey": tee_pubkey})
    }
}

/// The runtime-data hash (not padded) of a protocol `version` handshake.
pub fn binding_hash(
    version: ProtocolVersion,
    alg: HashAlgorithm,
    nonce: &str,
    tee_pubkey: &Value,
    additional_evidence: &str,
) -> Vec<u8> {
    let claims = binding_claims(version, nonce, tee_pubkey, additional_evidence);
    alg.digest(jcs::canonicalize(&claims).as_bytes())
}

/// Zero-pads (or truncates) `hash` to `len` bytes, as TEEs with fixed report data do.
pub fn pad_report_data(hash: &[u8], len: usize) -> Vec<u8> {
    let mut out = hash.to_vec();
    out.resize(len, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::b64;

    #[test]
    fn recorded_trustee_binding() {
        // From shared/fixtures/trustee-wire/capture.txt, part A.
        let jwk = json!({"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW",
            "x":"RlLPctALp76VldkuY1XB_ZFOwkmp5-IJShqrdUtmmLM",
            "y":"jD2bwozUCB8gBH5I3BdRobu40z2NzqeMWnqTvGauU9A"});
        let h = runtime_data_hash(
            HashAlgorithm::Sha384,
            "AIP/7IvL2eGVTnc6IzW6hTSIzsuAeLiEFZCrYM/eRFU=",
            &jwk,
            "",
        );
        assert_eq!(
            b64::std_encode(h),
            "CUmtw4KF87qQJEA4nJIR2I9/bc4p6pEQqcjhyi0EauqcZ+S63fMyxxWucqZgDPwc"
        );
    }

    #[test]
    fn binding_object_per_version() {
        // A guest-components JWK as sent (kty first); the hashed form has sorted members.
        let jwk = json!({"kty":"RSA","alg":"RSA1_5","n":"wQ3","e":"AQAB"});
        let old =
            r#"{"nonce":"k0r=","tee-pubkey":{"alg":"RSA1_5","e":"AQAB","kty":"RSA","n":"wQ3"}}"#;
        let new = r#"{"additional-evidence":"","nonce":"k0r=","tee-pubkey":{"alg":"RSA1_5","e":"AQAB","kty":"RSA","n":"wQ3"}}"#;
        for v in ProtocolVersion::ALL {
            let want = if v < ProtocolVersion::V0_3_0 {
                old
            } else {
                new
            };
            assert_eq!(
                jcs::canonicalize(&binding_claims(v, "k0r=", &jwk, "")),
                want,
                "{v}"
            );
            assert_eq!(
                binding_hash(v, HashAlgorithm::Sha384, "k0r=", &jwk, ""),
                Sha384::digest(want.as_bytes()).to_vec(),
                "{v}"
            );
        }
        // Additional evidence only counts from 0.3.0.
        assert_eq!(
            binding_hash(
                ProtocolVersion::V0_2_0,
                HashAlgorithm::Sha384,
                "n",
                &jwk,
                "{}"
            ),
            binding_hash(
                ProtocolVersion::V0_2_0,
                HashAlgorithm::Sha384,
                "n",
                &jwk,
                ""
            )
        );
        assert_ne!(
            binding_hash(
                ProtocolVersion::V0_3_0,
                HashAlgorithm::Sha384,
                "n",
                &jwk,
                "{}"
            ),
            binding_hash(
                ProtocolVersion::V0_3_0,
                HashAlgorithm::Sha384,
                "n",
                &jwk,
                ""
            )
        );
        // The 0.4.0 recording still matches through the versioned entry point.
        let ec = json!({"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW",
            "x":"RlLPctALp76VldkuY1XB_ZFOwkmp5-IJShqrdUtmmLM",
            "y":"jD2bwozUCB8gBH5I3BdRobu40z2NzqeMWnqTvGauU9A"});
        assert_eq!(
            b64::std_encode(binding_hash(
                ProtocolVersion::V0_4_0,
                HashAlgorithm::Sha384,
                "AIP/7IvL2eGVTnc6IzW6hTSIzsuAeLiEFZCrYM/eRFU=",
                &ec,
                ""
            )),
            "CUmtw4KF87qQJEA4nJIR2I9/bc4p6pEQqcjhyi0EauqcZ+S63fMyxxWucqZgDPwc"
        );
    }

    #[test]
    fn names() {
        assert_eq!(
            HashAlgorithm::from_name("SHA512"),
            Some(HashAlgorithm::Sha512)
        );
        assert_eq!(HashAlgorithm::from_name("sm3"), None);
        assert_eq!(HashAlgorithm::default(), HashAlgorithm::Sha384);
        assert_eq!(pad_report_data(&[1, 2], 4), vec![1, 2, 0, 0]);
    }
}
