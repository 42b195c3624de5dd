//! What an appraisal policy produces: the EAR (Entity Attestation Result) trust vector and
//! the status derived from it.

use serde_json::{json, Map, Value};

use super::PolicyError;

/// The eight AR4SI trustworthiness claims, in the order EAR lists them.
pub const TRUST_VECTOR_KEYS: [&str; 8] = [
    "instance-identity",
    "configuration",
    "executables",
    "file-system",
    "hardware",
    "runtime-opaque",
    "storage-opaque",
    "sourced-data",
];

/// Which output an appraisal policy declares.
///
/// Upstream Trustee (since commit 15d6fa96, Nov 2025) reads one object rule `trust_claims`;
/// Alibaba Cloud's distribution and every earlier upstream policy declare one integer rule
/// per claim (`executables`, `hardware`, `file_system`, ...). The form is told by whether
/// the policy declares `trust_claims`; a policy declaring both is read as `trust_claims`,
/// which gives the same vector because the rule names coincide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimsForm {
    /// `trust_claims := {"executables": 3, ...}` (hyphenated AR4SI names).
    TrustClaims,
    /// One rule per claim, named with `_` for `-` (`file_system`, `instance_identity`).
    PerClaim,
}

impl ClaimsForm {
    /// Name used in logs and `coffer policy test` output.
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimsForm::TrustClaims => "trust_claims",
            ClaimsForm::PerClaim => "per-claim",
        }
    }
}

/// The Rego rule that carries `claim` in the per-claim form (`file-system` → `file_system`).
pub fn per_claim_rule(claim: &str) -> String {
    claim.replace('-', "_")
}

/// Output of an appraisal policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Appraisal {
    /// Claim name → tier value (-128..=127). Only the claims the policy set, as EAR
    /// serialises them (an unset claim counts as 0 for the status).
    pub trust_vector: Map<String, Value>,
    /// `{"name", "key", "value"}` extensions to attach to the submodule.
    pub extensions: Vec<Value>,
    /// `affirming`, `warning`, `contraindicated` or `none`.
    pub status: &'static str,
    /// How the policy declared its claims.
    pub form: ClaimsForm,
}

pub(crate) fn claim_value(name: &str, v: &Value) -> Result<i64, PolicyError> {
    v.as_i64()
        .filter(|n| (-128..=127).contains(n))
        .ok_or_else(|| {
            PolicyError::Output(format!(
                "trust claim {name} must be an integer in -128..127, got {v}"
            ))
        })
}

impl Appraisal {
    /// Validates raw `trust_claims` / `extensions` output (extensions may be `null`:
    /// undeclared).
    pub fn from_policy_output(claims: Value, extensions: Value) -> Result<Self, PolicyError> {
        let given = match claims {
            Value::Object(m) => m,
            other => {
                return Err(PolicyError::Output(format!(
                    "trust_claims must be an object, got {other}"
                )))
            }
        };
        if let Some(unknown) = given
            .keys()
            .find(|k| !TRUST_VECTOR_KEYS.contains(&k.as_str()))
        {
            return Err(PolicyError::Output(format!(
                "unknown trust claim {unknown} (names are {})",
                TRUST_VECTOR_KEYS.join(", ")
            )));
        }
        let mut set = Vec::new();
        for key in TRUST_VECTOR_KEYS {
            if let Some(v) = given.get(key) {
                set.push((key, claim_value(key, v)?));
            }
        }
        if set.iter().all(|(_, v)| *v == 0) {
            return Err(PolicyError::Output(
                "at least one trust claim must be set".into(),
            ));
        }
        Self::from_claims(set, extensions, ClaimsForm::TrustClaims)
    }

    /// Builds an appraisal from the per-claim rules' values (`claim`, value) that were
    /// declared; `extensions` as in [`Appraisal::from_policy_output`].
    pub fn from_claims(
        set: Vec<(&str, i64)>,
        extensions: Value,
        form: ClaimsForm,
    ) -> Result<Self, PolicyError> {
        if set.is_empty() {
            return Err(PolicyError::Output(format!(
                "at least one policy claim must be set: the policy declares neither \
                 trust_claims nor any of the rules {}",
                TRUST_VECTOR_KEYS.map(per_claim_rule).join(", ")
            )));
        }
        let extensions = match extensions {
            Value::Array(a) => a,
            Value::Null => Vec::new(),
            other => {
                return Err(PolicyError::Output(format!(
                    "extensions must be a list, got {other}"
                )))
            }
        };
        for e in &extensions {
            if e.get("name").and_then(Value::as_str).is_none() {
                return Err(PolicyError::Output(
                    "every extension needs a string name".into(),
                ));
            }
        }
        let status = ear_status(set.iter().map(|(_, v)| *v));
        let trust_vector = set
            .into_iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        Ok(Appraisal {
            trust_vector,
            extensions,
            status,
            form,
        })
    }
}

impl Appraisal {
    /// The EAR submodule (`submods.cpu0` of a token) for `annotated_evidence` appraised
    /// as `self`: what a resource policy sees as `input.submods.cpu0`.
    pub fn submod(&self, annotated_evidence: Value) -> Map<String, Value> {
        let mut submod = Map::new();
        submod.insert("ear.status".into(), json!(self.status));
        submod.insert(
            "ear.trustworthiness-vector".into(),
            Value::Object(self.trust_vector.clone()),
        );
        submod.insert("ear.appraisal-policy-id".into(), json!("default"));
        submod.insert("ear.veraison.annotated-evidence".into(), annotated_evidence);
        for ext in &self.extensions {
            if let Some(name) = ext.get("name").and_then(Value::as_str) {
                submod.insert(
                    name.to_string(),
                    ext.get("value").cloned().unwrap_or(Value::Null),
                );
            }
        }
        submod
    }
}

/// The worst AR4SI tier among `values`: -1..1 none, 2..31 affirming, 32..95 warning,
/// 96.. contraindicated (same for negative values).
pub fn ear_status(values: impl IntoIterator<Item = i64>) -> &'static str {
    let rank = |v: i64| match v.abs() {
        0..=1 => 0,
        2..=31 => 1,
        32..=95 => 2,
        _ => 3,
    };
    match values.into_iter().map(rank).max().unwrap_or(0) {
        0 => "none",
        1 => "affirming",
        2 => "warning",
        _ => "contraindicated",
    }
}
