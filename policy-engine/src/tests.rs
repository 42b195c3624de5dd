//! The shipped policies and Trustee's own sample policies, evaluated with regorus.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};

use super::*;

fn sample_evidence() -> Value {
    json!({
        "report_data": "CUmtw4KF87qQJEA4nJIR2I9/bc4p6pEQqcjhyi0EauqcZ+S63fMyxxWucqZgDPwc",
        "runtime_data_claims": {"nonce": "n", "tee-pubkey": {}, "additional-evidence": ""},
        "sample": {"debug": false, "launch_digest": "abcde", "platform_version": {"major": 1, "minor": 4}, "svn": "1"},
    })
}

fn token_claims(evidence: Value, status: &str) -> Value {
    json!({"submods": {"cpu0": {"ear.status": status, "ear.veraison.annotated-evidence": evidence}}})
}

fn data(path: [&str; 3]) -> Value {
    resource_data(path, Default::default())
}

#[test]
fn default_cpu_without_reference_values_matches_trustee_recording() {
    // The recording shows executables 33, hardware 97, configuration 2 -> contraindicated.
    let e = PolicyEngine::default();
    let a = e
        .appraise(
            defaults::ATTESTATION_CPU,
            &sample_evidence(),
            Arc::new(HashMap::new()),
        )
        .unwrap();
    assert_eq!(a.trust_vector["executables"], 33);
    assert_eq!(a.trust_vector["hardware"], 97);
    assert_eq!(a.trust_vector["configuration"], 2);
    assert_eq!(a.status, "contraindicated");
    assert_eq!(a.extensions[0]["name"], "ear.trustee.identifiers");
}

#[test]
fn default_cpu_with_reference_values_affirms() {
    let e = PolicyEngine::default();
    let rvs: HashMap<String, Value> = [
        ("launch_digest", json!(["abcde"])),
        ("svn", json!(["1"])),
        ("major_version", json!(1)),
        ("minimum_minor_version", json!(0)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let a = e
        .appraise(defaults::ATTESTATION_CPU, &sample_evidence(), Arc::new(rvs))
        .unwrap();
    assert_eq!(
        (
            a.trust_vector["executables"].clone(),
            a.trust_vector["hardware"].clone()
        ),
        (json!(3), json!(2))
    );
    assert_eq!(a.status, "affirming");
}

#[test]
fn trustee_recorded_resource_policy_works_unchanged() {
    // Decoded from the resource-policy upload in shared/fixtures/trustee-wire/capture.txt
    // (Rego v1 keywords without `import rego.v1`).
    let policy = "package policy\n\ndefault allow = false\n\nallow if {\n\tdata.plugin == \"resource\"\n\tdata[\"resource-path\"][0] == \"default\"\n\tdata[\"resource-path\"][1] == \"test\"\n\tdata[\"resource-path\"][2] == \"key1\"\n\tinput[\"submods\"][\"cpu0\"][\"ear.veraison.annotated-evidence\"][\"sample\"]\n}\n";
    let e = PolicyEngine::default();
    e.check(policy).unwrap();
    let claims = token_claims(sample_evidence(), "contraindicated");
    assert!(e
        .allow(policy, &claims, &data(["default", "test", "key1"]))
        .unwrap());
    assert!(!e
        .allow(policy, &claims, &data(["default", "test", "key2"]))
        .unwrap());
}

#[test]
fn rego_v0_policies_compile() {
    let policy = "package policy\n\ndefault allow = false\n\nallow {\n\tinput.submods.cpu0[\"ear.status\"] == \"affirming\"\n}\n";
    let e = PolicyEngine::default();
    assert!(e
        .allow(
            policy,
            &token_claims(json!({}), "affirming"),
            &data(["a", "b", "c"])
        )
        .unwrap());
    assert!(!e
        .allow(
            policy,
            &token_claims(json!({}), "warning"),
            &data(["a", "b", "c"])
        )
        .unwrap());
}

#[test]
fn shipped_resource_policies() {
    let e = PolicyEngine::default();
    let sample = token_claims(sample_evidence(), "affirming");
    let tdx = token_claims(json!({"tdx": {"quote": {}}}), "warning");
    let d = data(["default", "aliyun", "model-decryption-key"]);
    assert!(!e.allow(defaults::RESOURCE, &sample, &d).unwrap());
    assert!(e.allow(defaults::RESOURCE, &tdx, &d).unwrap());
    assert!(e.allow(defaults::RESOURCE_ALLOW_ALL, &sample, &d).unwrap());
    assert!(!e.allow(defaults::RESOURCE_DENY_ALL, &tdx, &d).unwrap());
    assert!(e.allow(defaults::RESOURCE_AFFIRMING, &sample, &d).unwrap());
    assert!(!e.allow(defaults::RESOURCE_AFFIRMING, &tdx, &d).unwrap());
}

#[test]
fn bad_policies_are_refused() {
    let e = PolicyEngine::default();
    assert!(matches!(
        e.check("package policy\nallow if {"),
        Err(PolicyError::Compile(_))
    ));
    assert!(e.check("package other\ndefault allow := true").is_err());
    // a non-boolean allow denies
    assert!(!e
        .allow("package policy\nallow := \"yes\"", &json!({}), &json!({}))
        .unwrap());
}

#[test]
fn status_tiers() {
    assert_eq!(ear_status([0, 1, -1]), "none");
    assert_eq!(ear_status([2, 3, 0]), "affirming");
    assert_eq!(ear_status([2, 33]), "warning");
    assert_eq!(ear_status([2, 33, 97]), "contraindicated");
    assert_eq!(ear_status([-97]), "contraindicated");
    assert!(Appraisal::from_policy_output(json!({}), json!([])).is_err());
    assert!(Appraisal::from_policy_output(json!({"hardware": 300}), json!([])).is_err());
    assert!(Appraisal::from_policy_output(json!({"bogus": 2}), json!([])).is_err());
    // `extensions` is optional (undeclared), as in Trustee.
    let a = Appraisal::from_policy_output(json!({"hardware": 2}), Value::Null).unwrap();
    assert!(a.extensions.is_empty());
    assert_eq!(Value::Object(a.trust_vector), json!({"hardware": 2}));
    assert!(Appraisal::from_policy_output(json!({"hardware": 2}), json!("x")).is_err());
}
