//! `coffer policy test`: evaluates Rego policies on this machine with the engine
//! coffer-server runs (`coffer-policy`), on evidence recorded from a real attestation — the
//! EAR token `coffer attest` prints, its claims, or the annotated evidence alone — so a
//! policy can be tried before it is uploaded.

use std::collections::HashMap;

use base64::Engine;
use coffer_policy::{
    Appraisal, PolicyEngine, PolicyError, ResourcePathDialect, ResourceRequest, ResourceVerdict,
};
use coffer_protocol::{AuditAction, AuditEntry, ResourcePath};
use serde_json::{json, Map, Value};

/// Why a policy test could not run.
#[derive(Debug, thiserror::Error)]
pub enum PolicyTestError {
    /// The recorded input is not a token, token claims or annotated evidence.
    #[error("input: {0}")]
    Input(String),
    /// A policy does not compile or evaluate; `name` says which.
    #[error("{name}: {source}")]
    Policy {
        /// The policy's file name (or role).
        name: String,
        /// What regorus reported.
        source: PolicyError,
    },
}

/// What was recorded: the evidence an appraisal policy reads and, when the input was a
/// token or its claims, the claims a resource policy reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// Token claims (`{"submods": {"cpu0": ...}}`), when given.
    pub claims: Option<Value>,
    /// The annotated evidence (`input` of an appraisal policy).
    pub evidence: Value,
    /// Device submodules of a recorded token (`gpu0`, `switch0`, ...): name and annotated
    /// evidence (`{"nvidia": {...}}`).
    pub devices: Vec<(String, Value)>,
}

const EVIDENCE: &str = "ear.veraison.annotated-evidence";

impl Recorded {
    /// Reads an EAR token (JWT; its signature is not checked: this is a local test), token
    /// claims JSON, or annotated evidence JSON.
    pub fn parse(text: &str) -> Result<Self, PolicyTestError> {
        let text = text.trim();
        let json = match jwt_payload(text) {
            Some(p) => p?,
            None => serde_json::from_str::<Value>(text).map_err(|e| {
                PolicyTestError::Input(format!(
                    "neither an attestation token nor JSON ({e}); give the output of \
                     `coffer attest`, its claims, or annotated evidence"
                ))
            })?,
        };
        if !json.is_object() {
            return Err(PolicyTestError::Input("expected a JSON object".into()));
        }
        if json.get("submods").is_some() {
            let evidence = json
                .pointer(&format!("/submods/cpu0/{EVIDENCE}"))
                .cloned()
                .ok_or_else(|| {
                    PolicyTestError::Input(format!("token claims without submods.cpu0.{EVIDENCE}"))
                })?;
            let devices = json["submods"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(k, _)| *k != "cpu0")
                        .filter_map(|(k, v)| Some((k.clone(), v.get(EVIDENCE)?.clone())))
                        .collect()
                })
                .unwrap_or_default();
            return Ok(Recorded {
                claims: Some(json),
                evidence,
                devices,
            });
        }
        Ok(Recorded {
            claims: None,
            evidence: json,
            devices: Vec::new(),
        })
    }
}

impl Recorded {
    /// The input recorded in a coffer-server audit row of a successful attestation
    /// (`GET /coffer/v1/audit/{seq}`): its verified claims are the annotated evidence, and
    /// with its verdict and trust vector they rebuild the token claims a resource policy
    /// reads (policy extensions are not recorded).
    pub fn from_audit_row(row: &AuditEntry) -> Result<Self, PolicyTestError> {
        let seq = row.seq;
        if row.action != AuditAction::Attest {
            return Err(PolicyTestError::Input(format!(
                "audit row {seq} is not an attestation (action {}); pick a row with action attest",
                row.action
            )));
        }
        let evidence = row.claims.clone().filter(Value::is_object).ok_or_else(|| {
            PolicyTestError::Input(format!(
                "audit row {seq} has no recorded claims (a refused attestation, or one \
                     recorded before claims were kept)"
            ))
        })?;
        if evidence.get(ELIDED_KEY).is_some() {
            tracing::warn!(
                "audit row {seq}: {}",
                evidence[ELIDED_KEY]
                    .as_str()
                    .unwrap_or("claims were shortened")
            );
        }
        let claims = json!({"submods": {"cpu0": {
            "ear.status": row.verdict.as_deref().unwrap_or("none"),
            "ear.trustworthiness-vector": row.trust_vector.clone().unwrap_or(json!({})),
            "ear.appraisal-policy-id": "default",
            EVIDENCE: evidence.clone(),
        }}});
        // Audit rows keep the CPU claims only; device submodules are not recorded there.
        Ok(Recorded {
            claims: Some(claims),
            evidence,
            devices: Vec::new(),
        })
    }
}

/// The key coffer-server adds to recorded claims it had to shorten.
const ELIDED_KEY: &str = "coffer.audit-elided";

/// `Some` when `text` looks like a compact JWS: the decoded payload, or why it is unreadable.
fn jwt_payload(text: &str) -> Option<Result<Value, PolicyTestError>> {
    let parts: Vec<&str> = text.split('.').collect();
    if parts.len() != 3 || text.starts_with('{') || text.contains(char::is_whitespace) {
        return None;
    }
    let decode = |p: &str| {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p.trim_end_matches('='))
            .map_err(|e| PolicyTestError::Input(format!("token is not base64url: {e}")))?;
        serde_json::from_slice::<Value>(&bytes)
            .map_err(|e| PolicyTestError::Input(format!("token part is not JSON: {e}")))
    };
    Some(decode(parts[0]).and_then(|_| decode(parts[1])))
}

/// A Rego policy and the name errors use for it (its file name).
pub struct NamedPolicy<'a> {
    /// Shown in errors and reports.
    pub name: &'a str,
    /// The Rego text.
    pub text: &'a str,
}

/// What `coffer policy test` found.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The appraisal, when an attestation policy was given.
    pub appraisal: Option<Appraisal>,
    /// Each recorded device's appraisal (by submodule name), when devices were appraised.
    pub devices: Vec<(String, Appraisal)>,
    /// The resource path and the verdict, when a resource policy was given.
    pub resource: Option<(String, ResourceVerdict)>,
}

impl Report {
    /// The report as one JSON object (for `--json`).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if let Some(a) = &self.appraisal {
            m.insert(
                "attestation".into(),
                json!({"status": a.status, "trust_vector": a.trust_vector,
                       "extensions": a.extensions, "form": a.form.as_str()}),
            );
        }
        if !self.devices.is_empty() {
            let d: Map<String, Value> = self
                .devices
                .iter()
                .map(|(n, a)| {
                    (
                        n.clone(),
                        json!({"status": a.status, "trust_vector": a.trust_vector}),
                    )
                })
                .collect();
            m.insert("devices".into(), Value::Object(d));
        }
        if let Some((path, v)) = &self.resource {
            m.insert(
                "resource".into(),
                json!({"path": path, "allow": v.allow, "resource_path": v.dialect.as_str()}),
            );
        }
        Value::Object(m)
    }
}

/// Runs the given policies on `recorded`. With an attestation policy the evidence is
/// appraised afresh and the resource policy (if any) sees the claims of the token that
/// appraisal would produce; without one, the resource policy sees the recorded claims.
/// Recorded devices (`gpu0`, `switch0`, ...) are appraised afresh whenever an attestation
/// or GPU policy is given: GPUs with `gpu` (or the built-in `default_gpu`), NVSwitches with
/// the built-in `default_switch`, as the server does. `dialect` presents the resource path
/// as the server's `attestation.resource_path_dialect` does.
pub fn run(
    recorded: &Recorded,
    attestation: Option<NamedPolicy<'_>>,
    gpu: Option<NamedPolicy<'_>>,
    reference_values: HashMap<String, Value>,
    resource: Option<(NamedPolicy<'_>, &ResourcePath, Map<String, Value>)>,
    dialect: ResourcePathDialect,
) -> Result<Report, PolicyTestError> {
    let engine = PolicyEngine::default();
    let failed = |name: &str| {
        let name = name.to_string();
        move |source| PolicyTestError::Policy { name, source }
    };
    let mut claims = recorded.claims.clone();
    let rvs: std::sync::Arc<HashMap<String, Value>> = reference_values.into();
    let reappraise = attestation.is_some() || gpu.is_some();
    let mut devices = Vec::new();
    let mut device_submods = Map::new();
    if reappraise {
        let gpu = gpu.unwrap_or(NamedPolicy {
            name: "built-in default_gpu",
            text: coffer_policy::defaults::ATTESTATION_GPU,
        });
        engine.check(gpu.text).map_err(failed(gpu.name))?;
        for (name, evidence) in &recorded.devices {
            let p = if name.starts_with("switch") {
                NamedPolicy {
                    name: "built-in default_switch",
                    text: coffer_policy::defaults::ATTESTATION_SWITCH,
                }
            } else {
                NamedPolicy {
                    name: gpu.name,
                    text: gpu.text,
                }
            };
            let a = engine
                .appraise(p.text, evidence, rvs.clone())
                .map_err(failed(p.name))?;
            device_submods.insert(name.clone(), Value::Object(a.submod(evidence.clone())));
            devices.push((name.clone(), a));
        }
    }
    let appraisal = match attestation {
        Some(p) => {
            engine.check(p.text).map_err(failed(p.name))?;
            let a = engine
                .appraise(p.text, &recorded.evidence, rvs.clone())
                .map_err(failed(p.name))?;
            let mut submods = device_submods.clone();
            submods.insert(
                "cpu0".into(),
                Value::Object(a.submod(recorded.evidence.clone())),
            );
            claims = Some(json!({ "submods": submods }));
            Some(a)
        }
        None => None,
    };
    if let (None, Some(Value::Object(c))) = (&appraisal, claims.as_mut()) {
        if let Some(Value::Object(s)) = c.get_mut("submods") {
            s.extend(device_submods);
        }
    }
    let resource = match resource {
        Some((p, path, query)) => {
            let claims = claims.ok_or_else(|| {
                PolicyTestError::Input(
                    "a resource policy reads token claims: give a token (`coffer attest`) or \
                     its claims, or an attestation policy to appraise the evidence with"
                        .into(),
                )
            })?;
            engine.check(p.text).map_err(failed(p.name))?;
            let request = ResourceRequest {
                segments: path.segments(),
                query,
            };
            let verdict = engine
                .allow_resource(p.text, &claims, &request, dialect)
                .map_err(failed(p.name))?;
            Some((path.to_string(), verdict))
        }
        None => None,
    };
    Ok(Report {
        appraisal,
        devices,
        resource,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_protocol::Decision;

    fn evidence() -> Value {
        json!({"sample": {"svn": "1", "launch_digest": "abcde"}, "report_data": "x"})
    }

    #[test]
    fn audit_rows_are_recognised() {
        let row = AuditEntry {
            seq: 7,
            verdict: Some("affirming".into()),
            trust_vector: Some(json!({"executables": 3})),
            claims: Some(evidence()),
            has_claims: true,
            ..AuditEntry::new(0, AuditAction::Attest, Decision::Allow)
        };
        let r = Recorded::from_audit_row(&row).unwrap();
        assert_eq!(r.evidence, evidence());
        let claims = r.claims.unwrap();
        assert_eq!(claims["submods"]["cpu0"]["ear.status"], "affirming");
        assert_eq!(
            claims["submods"]["cpu0"]["ear.trustworthiness-vector"]["executables"],
            3
        );
        assert_eq!(claims["submods"]["cpu0"][EVIDENCE], evidence());
        for bad in [
            AuditEntry {
                seq: 1,
                claims: Some(evidence()),
                ..AuditEntry::new(0, AuditAction::Release, Decision::Allow)
            },
            AuditEntry {
                seq: 2,
                ..AuditEntry::new(0, AuditAction::Attest, Decision::Deny)
            },
        ] {
            assert!(matches!(
                Recorded::from_audit_row(&bad),
                Err(PolicyTestError::Input(_))
            ));
        }
    }

    #[test]
    fn inputs_are_recognised() {
        let claims =
            json!({"submods": {"cpu0": {"ear.status": "affirming", EVIDENCE: evidence()}}});
        let b64 = |v: &Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
        };
        let token = format!("{}.{}.c2ln", b64(&json!({"alg": "ES256"})), b64(&claims));
        let r = Recorded::parse(&format!("{token}\n")).unwrap();
        assert_eq!(r.claims.as_ref(), Some(&claims));
        assert_eq!(r.evidence, evidence());
        assert_eq!(Recorded::parse(&claims.to_string()).unwrap(), r);
        let e = Recorded::parse(&evidence().to_string()).unwrap();
        assert_eq!((e.claims, e.evidence), (None, evidence()));
        let with_gpu = json!({"submods": {
            "cpu0": {EVIDENCE: evidence()},
            "gpu0": {"ear.status": "warning", EVIDENCE: {"nvidia": {"measres": "failure"}}}}});
        let g = Recorded::parse(&with_gpu.to_string()).unwrap();
        assert_eq!(
            g.devices,
            vec![(
                "gpu0".to_string(),
                json!({"nvidia": {"measres": "failure"}})
            )]
        );
        for bad in ["a.b.c", "[1]", "{\"submods\": {}}", "nonsense"] {
            assert!(
                matches!(Recorded::parse(bad), Err(PolicyTestError::Input(_))),
                "{bad}"
            );
        }
    }
}
