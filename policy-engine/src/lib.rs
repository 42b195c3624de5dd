//! Rego policies evaluated with regorus, with Trustee's inputs and outputs: the attestation
//! (appraisal) policy that turns annotated evidence into an EAR trust vector, and the
//! resource policy that turns token claims into `allow`. Used by `coffer-server` and by
//! `coffer policy test`, so a policy is tested with the same engine that will run it.
//!
//! Compiled engines are cached by the SHA-256 of the policy text, so a policy changed on
//! another replica is picked up at the next request without any invalidation message.

#![forbid(unsafe_code)]

mod appraisal;
mod resource;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub use appraisal::{ear_status, per_claim_rule, Appraisal, ClaimsForm, TRUST_VECTOR_KEYS};
pub use resource::{ResourcePathDialect, ResourceRequest, ResourceVerdict, UnknownDialect};

/// Built-in policies, installed when absent.
pub mod defaults {
    /// CPU appraisal policy (`default_cpu`).
    pub const ATTESTATION_CPU: &str = include_str!("../../policies/attestation/default_cpu.rego");
    /// GPU appraisal policy (`default_gpu`).
    pub const ATTESTATION_GPU: &str = include_str!("../../policies/attestation/default_gpu.rego");
    /// NVSwitch appraisal policy (`default_switch`).
    pub const ATTESTATION_SWITCH: &str =
        include_str!("../../policies/attestation/default_switch.rego");
    /// Default resource policy.
    pub const RESOURCE: &str = include_str!("../../policies/resource/default.rego");
    /// Allow everything (testing).
    pub const RESOURCE_ALLOW_ALL: &str = include_str!("../../policies/resource/allow_all.rego");
    /// Deny everything.
    pub const RESOURCE_DENY_ALL: &str = include_str!("../../policies/resource/deny_all.rego");
    /// Require an affirming token.
    pub const RESOURCE_AFFIRMING: &str = include_str!("../../policies/resource/affirming.rego");
}

/// Id of the resource policy (as in Trustee).
pub const RESOURCE_POLICY_ID: &str = "resource-policy";
/// Id of the attestation policy for CPU evidence (as in Trustee).
pub const CPU_POLICY_ID: &str = "default_cpu";
/// Id of the attestation policy for each GPU's submodule (`gpu0`, ...), as in Trustee.
pub const GPU_POLICY_ID: &str = "default_gpu";
/// Id of the attestation policy for each NVSwitch's submodule (`switch0`, ...).
pub const SWITCH_POLICY_ID: &str = "default_switch";
/// Id under which Alibaba Cloud's Trustee keeps its one attestation policy. When a policy
/// with this id exists it appraises CPU evidence instead of [`CPU_POLICY_ID`]: users of that
/// distribution upload `policy_id: "default"` and expect it to govern (upstream would store
/// it and never use it).
pub const ALIBABA_CPU_POLICY_ID: &str = "default";

/// Policy failures.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The Rego text does not compile.
    #[error("policy does not compile: {0}")]
    Compile(String),
    /// Evaluation failed.
    #[error("policy evaluation failed: {0}")]
    Eval(String),
    /// The policy produced something of the wrong shape.
    #[error("policy output invalid: {0}")]
    Output(String),
}

/// Compiles and evaluates policies, caching compiled engines.
#[derive(Default)]
pub struct PolicyEngine {
    cache: Mutex<HashMap<[u8; 32], Arc<regorus::Engine>>>,
    /// Engines with their `data` added and prepared. regorus re-analyses every module on the
    /// first evaluation after `add_data`, so adding a request's data to a fresh clone each
    /// time repeated that analysis per request; a prepared engine is cloned with its
    /// analysis and only gets the request's input.
    prepared: Mutex<HashMap<PreparedKey, PreparedEngine>>,
}

/// A prepared engine's key: the policy text's digest and what its data came from.
#[derive(Clone, PartialEq, Eq, Hash)]
enum PreparedKey {
    /// An appraisal policy with a reference-value snapshot (by address; the entry holds the
    /// snapshot, so the address cannot be reused while cached).
    Appraisal([u8; 32], usize),
    /// A resource policy with a request's data (JSON text).
    Resource([u8; 32], String),
}

struct PreparedEngine {
    engine: Arc<regorus::Engine>,
    /// Keeps the reference-value snapshot alive (and its address unique) while cached.
    _snapshot: Option<Arc<HashMap<String, Value>>>,
}

/// Runs regorus' analysis now (any evaluation does it first; the rule path here names no
/// rule, so nothing is evaluated).
fn prepare(mut engine: regorus::Engine) -> regorus::Engine {
    engine.set_input(regorus::Value::new_object());
    let _ = engine.eval_rule("data.policy.coffer_prepare_only".into());
    engine
}

const CACHE_LIMIT: usize = 64;

fn compile(text: &str) -> Result<regorus::Engine, PolicyError> {
    let add = |v1: bool| {
        let mut engine = regorus::Engine::new();
        engine.set_rego_v1(v1);
        engine
            .add_policy("policy.rego".into(), text.into())
            .map(|_| engine)
    };
    // `import rego.v1` already selects v1 semantics (and is refused in regorus' v1 mode).
    if text.lines().any(|l| l.trim() == "import rego.v1") {
        return add(false).map_err(|e| PolicyError::Compile(e.to_string()));
    }
    // Trustee's policies also come with v1 keywords but no import (`allow if { ... }`), and
    // in v0 (`allow { ... }`). Try v1 first: in v0 mode `allow if {` silently parses as
    // something else and can allow everything.
    match add(true) {
        Ok(engine) => Ok(engine),
        Err(v1_err) => {
            // A policy using `if` is meant as v1; reading it as v0 would change its meaning.
            if text.split_whitespace().any(|w| w == "if") {
                return Err(PolicyError::Compile(v1_err.to_string()));
            }
            add(false).map_err(|_| PolicyError::Compile(v1_err.to_string()))
        }
    }
}

/// Evaluates `data.policy.<rule>`; `None` when the policy does not declare it.
fn declared_rule(
    engine: &mut regorus::Engine,
    rule: &str,
) -> Result<Option<regorus::Value>, PolicyError> {
    match engine.eval_rule(format!("data.policy.{rule}")) {
        Ok(v) => Ok(Some(v)),
        // regorus' words for a path that names no rule; the only error that means "absent".
        Err(e) if e.to_string().contains("not a valid rule path") => Ok(None),
        Err(e) => Err(PolicyError::Eval(format!("rule {rule}: {e}"))),
    }
}

fn to_json(v: regorus::Value) -> Result<Value, PolicyError> {
    if v == regorus::Value::Undefined {
        return Ok(Value::Null);
    }
    serde_json::to_value(&v).map_err(|e| PolicyError::Output(e.to_string()))
}

impl PolicyEngine {
    /// Checks that `text` compiles and is in `package policy`.
    pub fn check(&self, text: &str) -> Result<(), PolicyError> {
        let engine = compile(text)?;
        let packages = engine
            .get_packages()
            .map_err(|e| PolicyError::Compile(e.to_string()))?;
        if !packages.iter().any(|p| p == "data.policy") {
            return Err(PolicyError::Compile(
                "policy must declare `package policy`".into(),
            ));
        }
        Ok(())
    }

    /// A clone of the prepared engine for `key`, made by `make` from the compiled policy on
    /// a miss.
    fn prepared_engine(
        &self,
        text: &str,
        key: PreparedKey,
        snapshot: Option<Arc<HashMap<String, Value>>>,
        make: impl FnOnce(regorus::Engine) -> Result<regorus::Engine, PolicyError>,
    ) -> Result<regorus::Engine, PolicyError> {
        if let Some(e) = self
            .prepared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok((*e.engine).clone());
        }
        let engine = Arc::new(prepare(make(self.engine(text)?)?));
        let mut cache = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(
            key,
            PreparedEngine {
                engine: engine.clone(),
                _snapshot: snapshot,
            },
        );
        Ok((*engine).clone())
    }

    fn engine(&self, text: &str) -> Result<regorus::Engine, PolicyError> {
        let key: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        if let Some(e) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok((**e).clone());
        }
        let compiled = Arc::new(compile(text)?);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, compiled.clone());
        Ok((*compiled).clone())
    }

    /// Evaluates an appraisal policy on `input` (the annotated evidence) with the given
    /// reference values available to `query_reference_value` and as `data.reference`.
    pub fn appraise(
        &self,
        text: &str,
        input: &Value,
        reference_values: Arc<HashMap<String, Value>>,
    ) -> Result<Appraisal, PolicyError> {
        let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        let key = PreparedKey::Appraisal(digest, Arc::as_ptr(&reference_values) as usize);
        let mut engine =
            self.prepared_engine(text, key, Some(reference_values.clone()), |mut engine| {
                let rvs = reference_values.clone();
                engine
                    .add_extension(
                        "query_reference_value".into(),
                        1,
                        Box::new(move |args: Vec<regorus::Value>| {
                            let name = args
                                .first()
                                .and_then(|a| a.as_string().ok())
                                .map(|s| s.to_string());
                            Ok(match name.and_then(|n| rvs.get(&n).cloned()) {
                                Some(v) => regorus::Value::from(v),
                                None => regorus::Value::Null,
                            })
                        }),
                    )
                    .map_err(|e| PolicyError::Eval(e.to_string()))?;
                let reference: Map<String, Value> = reference_values
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                engine
                    .add_data(regorus::Value::from(
                        serde_json::json!({ "reference": reference }),
                    ))
                    .map_err(|e| PolicyError::Eval(e.to_string()))?;
                Ok(engine)
            })?;
        engine.set_input(regorus::Value::from(input.clone()));
        let extensions = declared_rule(&mut engine, "extensions")?
            .map(to_json)
            .transpose()?
            .unwrap_or(Value::Null);
        if let Some(claims) = declared_rule(&mut engine, "trust_claims")? {
            return Appraisal::from_policy_output(to_json(claims)?, extensions);
        }
        // Alibaba's ear_broker: each declared claim rule must give an i8; an undeclared one
        // leaves its claim unset.
        let mut set = Vec::new();
        for claim in TRUST_VECTOR_KEYS {
            let rule = per_claim_rule(claim);
            let Some(v) = declared_rule(&mut engine, &rule)? else {
                continue;
            };
            if v == regorus::Value::Undefined {
                return Err(PolicyError::Output(format!(
                    "rule {rule} is declared but undefined for this evidence \
                     (give it a default, e.g. `default {rule} := 33`)"
                )));
            }
            set.push((claim, appraisal::claim_value(&rule, &to_json(v)?)?));
        }
        Appraisal::from_claims(set, extensions, ClaimsForm::PerClaim)
    }

    /// Evaluates a resource policy: `input` is the token claims, `data` carries `plugin`,
    /// `resource-path` and `query` (see [`resource_data`]). A missing or non-boolean `allow`
    /// is a denial.
    pub fn allow(&self, text: &str, input: &Value, data: &Value) -> Result<bool, PolicyError> {
        let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        let key = PreparedKey::Resource(digest, data.to_string());
        let mut engine = self.prepared_engine(text, key, None, |mut engine| {
            engine
                .add_data(regorus::Value::from(data.clone()))
                .map_err(|e| PolicyError::Eval(e.to_string()))?;
            Ok(engine)
        })?;
        engine.set_input(regorus::Value::from(input.clone()));
        let v = engine
            .eval_rule("data.policy.allow".into())
            .map_err(|e| PolicyError::Eval(e.to_string()))?;
        Ok(matches!(v, regorus::Value::Bool(true)))
    }
}

/// The `data` a resource policy sees for a request of `repo/type/tag` with `query`
/// parameters (Trustee's names: `plugin`, `resource-path`, `query`).
pub fn resource_data(segments: [&str; 3], query: Map<String, Value>) -> Value {
    serde_json::json!({ "plugin": "resource", "resource-path": segments, "query": query })
}
