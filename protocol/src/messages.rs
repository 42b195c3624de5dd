//! The RCAR handshake messages (Request, Challenge, Attestation, token response).
//!
//! Field names and nesting follow each KBS protocol version (0.1.0 … 0.4.0) exactly as
//! Trustee and guest-components of that version put them on the wire. The typed
//! [`Attestation`] is the 0.4.0 body; [`AttestationParts`] reads and writes every version.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::jwe::JweShape;

/// The newest KBS protocol version (what a client speaks unless told otherwise).
pub const PROTOCOL_VERSION: &str = "0.4.0";

/// A published KBS protocol version. The server accepts all of them at once; the version
/// named at `/auth` decides the shape of every later message of that session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum ProtocolVersion {
    /// Trustee ≤ v0.9.0, guest-components v0.7–v0.9, Alibaba Trustee ≤ v1.5: string
    /// `extra-params`, string `tee-evidence`, legacy JWE.
    V0_1_0,
    /// Trustee/guest-components v0.10–v0.11: JSON `extra-params` and evidence, legacy JWE.
    V0_1_1,
    /// Trustee/guest-components v0.12–v0.13: RFC 7516 JWE.
    V0_2_0,
    /// Unreleased (Trustee main, June 2025): composite evidence.
    V0_3_0,
    /// Trustee/guest-components v0.14 on: `runtime-data` and `init-data`.
    #[default]
    V0_4_0,
}

/// A `version` string that is not one of [`ProtocolVersion::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported KBS protocol version {0:?} (accepted: {list})", list = ProtocolVersion::accepted_list())]
pub struct UnknownVersion(pub String);

impl ProtocolVersion {
    /// Every version, oldest first.
    pub const ALL: [ProtocolVersion; 5] = [
        ProtocolVersion::V0_1_0,
        ProtocolVersion::V0_1_1,
        ProtocolVersion::V0_2_0,
        ProtocolVersion::V0_3_0,
        ProtocolVersion::V0_4_0,
    ];

    /// The wire spelling, e.g. `0.1.0`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolVersion::V0_1_0 => "0.1.0",
            ProtocolVersion::V0_1_1 => "0.1.1",
            ProtocolVersion::V0_2_0 => "0.2.0",
            ProtocolVersion::V0_3_0 => "0.3.0",
            ProtocolVersion::V0_4_0 => PROTOCOL_VERSION,
        }
    }

    /// `0.1.0, 0.1.1, 0.2.0, 0.3.0, 0.4.0`.
    pub fn accepted_list() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }

    /// Layout of the resource Response: legacy up to 0.1.1, RFC 7516 from 0.2.0.
    pub fn jwe_shape(self) -> JweShape {
        if self <= ProtocolVersion::V0_1_1 {
            JweShape::Legacy
        } else {
            JweShape::Rfc7516
        }
    }

    /// `tee-evidence` is a JSON string holding the evidence text (0.1.0 only).
    pub fn evidence_is_string(self) -> bool {
        self == ProtocolVersion::V0_1_0
    }

    /// `tee-evidence` is `{primary_evidence, additional_evidence}` and the binding covers
    /// `additional-evidence` (0.3.0 on).
    pub fn composite_evidence(self) -> bool {
        self >= ProtocolVersion::V0_3_0
    }

    /// The key and nonce travel in `runtime-data` (0.4.0 on).
    pub fn has_runtime_data(self) -> bool {
        self >= ProtocolVersion::V0_4_0
    }
}

impl std::fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ProtocolVersion {
    type Err = UnknownVersion;

    /// Exact match; semver build metadata (`+...`) is ignored, as Trustee's check does.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let core = s.split_once('+').map_or(s, |(v, _)| v);
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == core)
            .ok_or_else(|| UnknownVersion(s.to_string()))
    }
}

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "kbs-session-id";

/// `POST /kbs/v0/auth` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// Protocol version; one of [`ProtocolVersion::ALL`] (kept as text so that an unknown
    /// version gets a precise answer rather than a parse error).
    pub version: String,
    /// Evidence type; a name outside kbs-types' set fails to parse.
    pub tee: crate::Tee,
    /// Free-form parameters: a string in 0.1.0 (PAI-EAS probes with `"foo"`), later an
    /// object listing `supported-hash-algorithms`.
    #[serde(rename = "extra-params", default)]
    pub extra_params: Value,
}

impl Request {
    /// A newest-version request for `tee` announcing the hash algorithms this crate
    /// implements.
    pub fn new(tee: crate::Tee) -> Self {
        Self::for_version(ProtocolVersion::default(), tee)
    }

    /// A request of protocol `version` for `tee`. 0.1.0 servers only parse a string
    /// `extra-params`, so it is `""` there; later versions list the supported hashes.
    pub fn for_version(version: ProtocolVersion, tee: crate::Tee) -> Self {
        let extra_params = if version == ProtocolVersion::V0_1_0 {
            json!("")
        } else {
            json!({"supported-hash-algorithms": ["sha256", "sha384", "sha512"]})
        };
        Request {
            version: version.as_str().to_string(),
            tee,
            extra_params,
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

/// `POST /kbs/v0/attest` body of protocol 0.4.0 (see [`AttestationParts`] for all versions).
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

/// Why an `/attest` body does not fit its protocol version.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// Not JSON, or a member is missing or of the wrong type.
    #[error("invalid attestation body for protocol {version}: {reason}")]
    Body {
        /// The session's protocol version.
        version: ProtocolVersion,
        /// What serde or the shape check said.
        reason: String,
    },
}

/// The members of an `/attest` body that matter, whatever the protocol version.
#[derive(Debug, Clone, PartialEq)]
pub struct AttestationParts {
    /// The TEE public key JWK, exactly as sent (the binding is computed over it).
    pub tee_pubkey: Value,
    /// The primary evidence as JSON (for 0.1.0, parsed from the string it travels in).
    pub evidence: Value,
    /// The device evidence map as JSON text, `""` when none (always `""` before 0.3.0).
    pub additional_evidence: String,
    /// `runtime-data.nonce` (0.4.0 only).
    pub nonce: Option<String>,
    /// `init-data` (0.4.0 only).
    pub init_data: Option<InitData>,
}

#[derive(Deserialize)]
struct TopKeyBody<E> {
    #[serde(rename = "tee-pubkey")]
    tee_pubkey: Value,
    #[serde(rename = "tee-evidence")]
    tee_evidence: E,
}

impl AttestationParts {
    /// Reads an `/attest` body of protocol `version`. Unknown members are ignored (no
    /// version refused them).
    pub fn parse(version: ProtocolVersion, body: &[u8]) -> Result<Self, MessageError> {
        let bad = |reason: String| MessageError::Body { version, reason };
        let serde = |e: serde_json::Error| bad(e.to_string());
        match version {
            ProtocolVersion::V0_1_0 => {
                let b: TopKeyBody<Value> = serde_json::from_slice(body).map_err(serde)?;
                let Value::String(text) = b.tee_evidence else {
                    return Err(bad(
                        "tee-evidence must be a string holding the evidence JSON".into(),
                    ));
                };
                let evidence = serde_json::from_str(&text)
                    .map_err(|e| bad(format!("tee-evidence string is not JSON: {e}")))?;
                Ok(AttestationParts {
                    tee_pubkey: b.tee_pubkey,
                    evidence,
                    additional_evidence: String::new(),
                    nonce: None,
                    init_data: None,
                })
            }
            ProtocolVersion::V0_1_1 | ProtocolVersion::V0_2_0 => {
                let b: TopKeyBody<Value> = serde_json::from_slice(body).map_err(serde)?;
                Ok(AttestationParts {
                    tee_pubkey: b.tee_pubkey,
                    evidence: b.tee_evidence,
                    additional_evidence: String::new(),
                    nonce: None,
                    init_data: None,
                })
            }
            ProtocolVersion::V0_3_0 => {
                let b: TopKeyBody<TeeEvidence> = serde_json::from_slice(body).map_err(serde)?;
                Ok(AttestationParts {
                    tee_pubkey: b.tee_pubkey,
                    evidence: b.tee_evidence.primary_evidence,
                    additional_evidence: b.tee_evidence.additional_evidence,
                    nonce: None,
                    init_data: None,
                })
            }
            ProtocolVersion::V0_4_0 => {
                let a: Attestation = serde_json::from_slice(body).map_err(serde)?;
                Ok(AttestationParts {
                    tee_pubkey: a.runtime_data.tee_pubkey,
                    evidence: a.tee_evidence.primary_evidence,
                    additional_evidence: a.tee_evidence.additional_evidence,
                    nonce: Some(a.runtime_data.nonce),
                    init_data: a.init_data,
                })
            }
        }
    }

    /// The `/attest` body of protocol `version`. `nonce` and `init_data` are only sent by
    /// 0.4.0; before 0.3.0 there is no place for additional evidence.
    pub fn to_body(&self, version: ProtocolVersion) -> Value {
        let composite = || {
            json!({
                "primary_evidence": self.evidence,
                "additional_evidence": self.additional_evidence,
            })
        };
        match version {
            ProtocolVersion::V0_1_0 => json!({
                "tee-pubkey": self.tee_pubkey,
                "tee-evidence": self.evidence.to_string(),
            }),
            ProtocolVersion::V0_1_1 | ProtocolVersion::V0_2_0 => json!({
                "tee-pubkey": self.tee_pubkey,
                "tee-evidence": self.evidence,
            }),
            ProtocolVersion::V0_3_0 => json!({
                "tee-pubkey": self.tee_pubkey,
                "tee-evidence": composite(),
            }),
            ProtocolVersion::V0_4_0 => json!({
                "init-data": self.init_data,
                "runtime-data": {
                    "nonce": self.nonce.clone().unwrap_or_default(),
                    "tee-pubkey": self.tee_pubkey,
                },
                "tee-evidence": composite(),
            }),
        }
    }
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
        assert_eq!(r.tee, crate::Tee::Sample);
        assert_eq!(r.extra_params["supported-hash-algorithms"][1], "sha384");
    }

    #[test]
    fn challenge_serialises_like_trustee() {
        let c: Challenge = serde_json::from_str(CHALLENGE).unwrap();
        assert_eq!(c.selected_hash_algorithm(), None);
        assert_eq!(serde_json::to_string(&c).unwrap(), CHALLENGE);
    }

    #[test]
    fn versions_parse_exactly() {
        for v in ProtocolVersion::ALL {
            assert_eq!(v.as_str().parse::<ProtocolVersion>(), Ok(v));
        }
        assert_eq!("0.1.0+build7".parse(), Ok(ProtocolVersion::V0_1_0));
        for bad in ["0.5.0", "0.0.1", "0.1", "v0.4.0", "", "0.4.0 "] {
            let e = bad.parse::<ProtocolVersion>().unwrap_err();
            assert!(
                e.to_string()
                    .contains("accepted: 0.1.0, 0.1.1, 0.2.0, 0.3.0, 0.4.0"),
                "{e}"
            );
        }
        assert_eq!(ProtocolVersion::default().as_str(), PROTOCOL_VERSION);
        assert_eq!(ProtocolVersion::V0_1_1.jwe_shape(), JweShape::Legacy);
        assert_eq!(ProtocolVersion::V0_2_0.jwe_shape(), JweShape::Rfc7516);
    }

    #[test]
    fn requests_per_version() {
        let r = serde_json::to_string(&Request::for_version(
            ProtocolVersion::V0_1_0,
            crate::Tee::Tdx,
        ))
        .unwrap();
        assert_eq!(r, r#"{"version":"0.1.0","tee":"tdx","extra-params":""}"#);
        let r = Request::for_version(ProtocolVersion::V0_1_1, crate::Tee::Tdx);
        assert_eq!(r.extra_params["supported-hash-algorithms"][1], "sha384");
    }

    #[test]
    fn attestation_bodies_per_version() {
        let jwk = json!({"kty":"RSA","alg":"RSA1_5","n":"wQ3","e":"AQAB"});
        let ev = json!({"svn":"1","report_data":"AAAA"});
        let parts = AttestationParts {
            tee_pubkey: jwk.clone(),
            evidence: ev.clone(),
            additional_evidence: String::new(),
            nonce: Some("N".into()),
            init_data: None,
        };
        // 0.1.0: evidence is a string holding JSON text.
        let b = parts.to_body(ProtocolVersion::V0_1_0);
        assert_eq!(b["tee-evidence"], json!(ev.to_string()));
        assert!(b.get("runtime-data").is_none());
        let back =
            AttestationParts::parse(ProtocolVersion::V0_1_0, b.to_string().as_bytes()).unwrap();
        assert_eq!(back.evidence, ev);
        assert_eq!(back.nonce, None);
        // An object where 0.1.0 wants a string is refused, and vice versa nothing breaks.
        let obj = parts.to_body(ProtocolVersion::V0_1_1);
        assert_eq!(obj["tee-evidence"], ev);
        let e = AttestationParts::parse(ProtocolVersion::V0_1_0, obj.to_string().as_bytes())
            .unwrap_err();
        assert!(e.to_string().contains("must be a string"), "{e}");
        let back =
            AttestationParts::parse(ProtocolVersion::V0_2_0, obj.to_string().as_bytes()).unwrap();
        assert_eq!(back.tee_pubkey, jwk);
        // 0.3.0: composite evidence, key on top.
        let b = parts.to_body(ProtocolVersion::V0_3_0);
        assert_eq!(b["tee-evidence"]["primary_evidence"], ev);
        assert_eq!(b["tee-evidence"]["additional_evidence"], "");
        assert_eq!(b["tee-pubkey"], jwk);
        assert!(AttestationParts::parse(ProtocolVersion::V0_3_0, b.to_string().as_bytes()).is_ok());
        // A 0.3.0 body is not a 0.4.0 one.
        assert!(
            AttestationParts::parse(ProtocolVersion::V0_4_0, b.to_string().as_bytes()).is_err()
        );
        // 0.4.0 round trip through the typed message.
        let b = parts.to_body(ProtocolVersion::V0_4_0);
        let typed: Attestation = serde_json::from_value(b.clone()).unwrap();
        assert_eq!(typed.runtime_data.nonce, "N");
        assert_eq!(
            AttestationParts::parse(ProtocolVersion::V0_4_0, b.to_string().as_bytes()).unwrap(),
            parts
        );
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
