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

/// Output of an appraisal policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Appraisal {
    /// Claim name → tier value (-128..=127), all eight present.
    pub trust_vector: Map<String, Value>,
    /// `{"name", "key", "value"}` extensions to attach to the submodule.
    pub extensions: Vec<Value>,
    /// `affirming`, `warning`, `contraindicated` or `none`.
    pub status: &'static str,
}

impl Appraisal {
    /// Validates raw policy output (`trust_claims`, `extensions`).
    pub fn from_policy_output(claims: Value, extensions: Value) -> Result<Self, PolicyError> {
        let given = match claims {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            other => {
                return Err(PolicyError::Output(format!(
                    "trust_claims must be an object, got {other}"
                )))
            }
        };
        let mut trust_vector = Map::new();
        for key in TRUST_VECTOR_KEYS {
            let v = match given.get(key) {
                None => 0,
                Some(v) => v
                    .as_i64()
                    .filter(|n| (-128..=127).contains(n))
                    .ok_or_else(|| {
                        PolicyError::Output(format!(
                            "trust claim {key} must be an integer in -128..127"
                        ))
                    })?,
            };
            trust_vector.insert(key.to_string(), json!(v));
        }
        if let Some(unknown) = given
            .keys()
            .find(|k| !TRUST_VECTOR_KEYS.contains(&k.as_str()))
        {
            return Err(PolicyError::Output(format!(
                "unknown trust claim {unknown}"
            )));
        }
        if trust_vector.values().all(|v| v.as_i64() == Some(0)) {
            return Err(PolicyError::Output(
                "at least one trust claim must be set".into(),
            ));
        }
        let extensions = match extensions {
            Value::Array(a) => a,
            Value::Null => {
                return Err(PolicyError::Output(
                    "extensions must be defined (may be [])".into(),
                ))
            }
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
        let status = ear_status(trust_vector.values().filter_map(Value::as_i64));
        Ok(Appraisal {
            trust_vector,
            extensions,
            status,
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
