//! Answers of coffer-server's own admin listings (`GET /coffer/v1/policies/{id}`,
//! `GET /coffer/v1/resources`), shared by the server that serves them and the client that
//! reads them. Trustee has no such endpoints; their shapes are coffer's.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A policy kind; serialised (database and JSON) as `attestation` or `resource`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    /// Attestation (appraisal) policy, producing trust claims.
    Attestation,
    /// Resource policy, producing `allow`.
    Resource,
}

impl PolicyKind {
    /// The stored and served spelling (`StoredPolicy::kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Attestation => "attestation",
            PolicyKind::Resource => "resource",
        }
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A policy kind name that is neither `attestation` nor `resource`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown policy kind {0:?} (attestation or resource)")]
pub struct UnknownPolicyKind(pub String);

impl FromStr for PolicyKind {
    type Err = UnknownPolicyKind;

    fn from_str(s: &str) -> Result<Self, UnknownPolicyKind> {
        match s {
            "attestation" => Ok(PolicyKind::Attestation),
            "resource" => Ok(PolicyKind::Resource),
            _ => Err(UnknownPolicyKind(s.to_string())),
        }
    }
}

/// A stored policy with its text (`GET /coffer/v1/policies/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPolicy {
    /// Policy id.
    pub id: String,
    /// Attestation or resource policy.
    pub kind: PolicyKind,
    /// Rego text.
    pub body: String,
    /// Unix seconds.
    pub updated_at: i64,
}

/// A stored resource's name, size and update time, never its value
/// (`GET /coffer/v1/resources`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceMeta {
    /// `repository/type/tag`.
    pub path: String,
    /// Size of the value in bytes.
    pub size: i64,
    /// Unix seconds of the last store.
    pub updated_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_answers_round_trip_byte_for_byte() {
        let policy = r#"{"id":"resource-policy","kind":"resource","body":"package policy\n","updated_at":1760000000}"#;
        let parsed: StoredPolicy = serde_json::from_str(policy).unwrap();
        assert_eq!(parsed.kind, PolicyKind::Resource);
        assert_eq!(serde_json::to_string(&parsed).unwrap(), policy);
        let meta = r#"[{"path":"default/key/1","size":32,"updated_at":1760000000}]"#;
        let parsed: Vec<ResourceMeta> = serde_json::from_str(meta).unwrap();
        assert_eq!(serde_json::to_string(&parsed).unwrap(), meta);
    }

    #[test]
    fn policy_kinds_are_a_closed_set() {
        for k in [PolicyKind::Attestation, PolicyKind::Resource] {
            assert_eq!(k.as_str().parse::<PolicyKind>(), Ok(k));
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
        }
        assert_eq!(
            "Resource".parse::<PolicyKind>(),
            Err(UnknownPolicyKind("Resource".into()))
        );
    }
}
