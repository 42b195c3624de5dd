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
    let tdx = token_claims(tdx_claims(false, "UpToDate"), "warning");
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

fn tdx_claims(debug: bool, tcb_status: &str) -> Value {
    json!({"tdx": {
        "quote": {"body": {"mr_td": "22"}},
        "td_attributes": {"debug": debug, "septve_disable": true},
        "tcb_status": tcb_status,
    }})
}

fn sgx_claims(flags: &str, tcb_status: &str) -> Value {
    json!({"sgx": {
        "body": {"attributes.flags": flags, "mr_enclave": "00"},
        "tcb_status": tcb_status,
    }})
}

/// The host can start a debug TEE and read its memory, so the default policy never
/// releases to one; nor to `sample`, a revoked TCB, or a TEE it does not know. It needs no
/// reference values (the PAI-EAS flow registers none) and accepts an out-of-date TCB.
#[test]
fn default_resource_policy_refuses_what_the_host_could_exploit() {
    let e = PolicyEngine::default();
    let d = data(["default", "aliyun", "model-decryption-key"]);
    let allows = |evidence: Value, status: &str| {
        e.allow(defaults::RESOURCE, &token_claims(evidence, status), &d)
            .unwrap()
    };
    // Released without reference values (contraindicated appraisal): the PAI-EAS flow.
    assert!(allows(tdx_claims(false, "UpToDate"), "contraindicated"));
    assert!(allows(tdx_claims(false, "OutOfDate"), "warning"));
    assert!(allows(tdx_claims(false, "SWHardeningNeeded"), "warning"));
    assert!(
        !allows(tdx_claims(true, "UpToDate"), "affirming"),
        "debug TD"
    );
    assert!(
        !allows(tdx_claims(false, "Revoked"), "affirming"),
        "revoked"
    );
    let mut no_status = tdx_claims(false, "x");
    no_status["tdx"]
        .as_object_mut()
        .unwrap()
        .remove("tcb_status");
    assert!(!allows(no_status, "affirming"), "no TCB status");
    let mut no_attrs = tdx_claims(false, "UpToDate");
    no_attrs["tdx"]
        .as_object_mut()
        .unwrap()
        .remove("td_attributes");
    assert!(!allows(no_attrs, "affirming"), "no TD attributes");

    // SGX: ATTRIBUTES.DEBUG is bit 1 of the first byte.
    assert!(allows(
        sgx_claims("0500000000000000", "UpToDate"),
        "warning"
    ));
    assert!(allows(
        sgx_claims("0100000000000000", "OutOfDate"),
        "warning"
    ));
    for debug in ["0700000000000000", "0300000000000000", "0f00000000000000"] {
        assert!(
            !allows(sgx_claims(debug, "UpToDate"), "affirming"),
            "{debug}"
        );
    }
    assert!(!allows(
        sgx_claims("0500000000000000", "Revoked"),
        "affirming"
    ));
    assert!(!allows(sgx_claims("05", "UpToDate"), "affirming"));

    // Never the sample TEE, never an unknown TEE, never another plugin.
    assert!(!allows(sample_evidence(), "affirming"));
    assert!(!allows(
        json!({"snp": {"tcb_status": "UpToDate"}}),
        "affirming"
    ));
    let mut both = sample_evidence();
    both["tdx"] = tdx_claims(false, "UpToDate")["tdx"].clone();
    assert!(!allows(both, "affirming"), "sample claims alongside tdx");
    let other = json!({"plugin": "other", "resource-path": ["a", "b", "c"], "query": {}});
    let tdx = token_claims(tdx_claims(false, "UpToDate"), "affirming");
    assert!(!e.allow(defaults::RESOURCE, &tdx, &other).unwrap());
}

/// The one-line change the policy's comment documents makes `OutOfDate` refused.
#[test]
fn default_resource_policy_can_refuse_out_of_date() {
    let strict = defaults::RESOURCE.replace(
        "refused_tcb_statuses := {\"Revoked\"}",
        "refused_tcb_statuses := {\"Revoked\", \"OutOfDate\", \"OutOfDateConfigurationNeeded\"}",
    );
    assert_ne!(strict, defaults::RESOURCE);
    let e = PolicyEngine::default();
    let d = data(["default", "aliyun", "model-decryption-key"]);
    let c = token_claims(tdx_claims(false, "OutOfDate"), "warning");
    assert!(!e.allow(&strict, &c, &d).unwrap());
    let c = token_claims(tdx_claims(false, "UpToDate"), "warning");
    assert!(e.allow(&strict, &c, &d).unwrap());
}
