//! Alibaba Cloud Trustee's own policy files (tests/fixtures/alibaba), evaluated unchanged.
//! Expected vectors are what Alibaba's ear_broker gives (alibaba-trustee.md §1.4): per-claim
//! rules, unset claims left out, `data.reference` holding the reference values.

use std::collections::HashMap;
use std::sync::Arc;

use coffer_policy::{ClaimsForm, PolicyEngine, PolicyError, ResourcePathDialect, ResourceRequest};
use serde_json::{json, Value};

fn policy(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/alibaba")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn aael(domain: &str, operation: &str, content: Value) -> Value {
    let text = format!("{domain} {operation} {content}");
    json!({
        "type_name": "EV_EVENT_TAG", "index": 4,
        "digests": [{"alg": "SHA-384", "digest": "00"}],
        "details": {"unicode_name": "AAEL", "string": text,
                    "data": {"domain": domain, "operation": operation, "content": content}}
    })
}

fn ipl(text: &str, digest: &str) -> Value {
    json!({"type_name": "EV_IPL", "index": 2,
           "digests": [{"alg": "SHA-384", "digest": digest}],
           "details": {"string": text}})
}

fn boot_app(path: &str, digest: &str) -> Value {
    json!({"type_name": "EV_EFI_BOOT_SERVICES_APPLICATION", "index": 1,
           "digests": [{"alg": "SHA-384", "digest": digest}],
           "details": {"device_paths": [path]}})
}

fn tdx(events: Vec<Value>) -> Value {
    json!({
        "tdx": {
            "quote": {
                "header": {"tee_type": "81000000", "vendor_id": "939a7233f79c4ca9940a0db3957f0607"},
                "body": {"xfam": "e702060000000000", "mr_td": "aa"}
            },
            "uefi_event_logs": events,
        },
        "report_data": "", "runtime_data_claims": {}
    })
}

fn rvs(pairs: &[(&str, Value)]) -> Arc<HashMap<String, Value>> {
    Arc::new(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    )
}

fn model_event(hash: &str) -> Value {
    aael(
        "trustiflux.alibaba.com",
        "pai/load-model",
        json!({"model-id": "qwen2-7b", "hash": hash}),
    )
}

#[test]
fn pai_default_affirms_a_tdx_guest_whose_model_is_registered() {
    let e = PolicyEngine::default();
    let rv = rvs(&[("measurement.model.qwen2-7b", json!(["aa11", "bb22"]))]);
    let a = e
        .appraise(
            &policy("pai_default.rego"),
            &tdx(vec![model_event("aa11")]),
            rv,
        )
        .unwrap();
    assert_eq!(a.form, ClaimsForm::PerClaim);
    assert_eq!(
        Value::Object(a.trust_vector.clone()),
        json!({"configuration": 2, "executables": 3, "file-system": 2, "hardware": 2})
    );
    assert_eq!(a.status, "affirming");
    assert!(a.extensions.is_empty());
}

#[test]
fn pai_default_flags_an_unregistered_model() {
    let e = PolicyEngine::default();
    let text = policy("pai_default.rego");
    let rv = rvs(&[("measurement.model.qwen2-7b", json!(["aa11"]))]);
    let a = e
        .appraise(&text, &tdx(vec![model_event("ffff")]), rv.clone())
        .unwrap();
    assert_eq!(a.trust_vector["executables"], 33);
    assert_eq!(a.status, "warning");
    // No reference value for the model at all: the same.
    let a = e
        .appraise(&text, &tdx(vec![model_event("aa11")]), rvs(&[]))
        .unwrap();
    assert_eq!(a.trust_vector["executables"], 33);
    // As in Alibaba's Trustee, a guest that recorded no model load passes the `every`.
    let a = e.appraise(&text, &tdx(vec![]), rvs(&[])).unwrap();
    assert_eq!(a.trust_vector["executables"], 3);
}

#[test]
fn pai_default_on_non_tdx_evidence_keeps_its_defaults() {
    let e = PolicyEngine::default();
    let a = e
        .appraise(
            &policy("pai_default.rego"),
            &json!({"sample": {"svn": "1"}}),
            rvs(&[]),
        )
        .unwrap();
    assert_eq!(
        Value::Object(a.trust_vector),
        json!({"configuration": 36, "executables": 33, "file-system": 35, "hardware": 97})
    );
    assert_eq!(a.status, "contraindicated");
}

#[test]
fn chart_default_policy_appraises_tdx_boot_measurements() {
    let e = PolicyEngine::default();
    let text = policy("ear_default_policy_cpu.rego");
    // Without reference values: only hardware and file system are recognised.
    let events = vec![
        boot_app("PciRoot(0x0)/grubx64.efi", "g1"),
        boot_app("PciRoot(0x0)/shimx64.efi", "s1"),
        ipl("Kernel", "k1"),
        ipl("Initrd", "i1"),
        ipl("grub_cmd linux /vmlinuz root=/dev/vda", "c1"),
    ];
    let a = e.appraise(&text, &tdx(events.clone()), rvs(&[])).unwrap();
    assert_eq!(
        Value::Object(a.trust_vector),
        json!({"configuration": 36, "executables": 33, "file-system": 2, "hardware": 2})
    );
    assert_eq!(a.status, "warning");
    let rv = rvs(&[
        ("measurement.grub.SHA-384", json!(["g1"])),
        ("measurement.shim.SHA-384", json!(["s1"])),
        ("measurement.kernel.SHA-384", json!(["k1"])),
        ("measurement.initrd.SHA-384", json!(["i1"])),
        ("measurement.kernel_cmdline.SHA-384", json!(["c1"])),
        ("tdx.xfam", json!(["e702060000000000"])),
    ]);
    let a = e.appraise(&text, &tdx(events.clone()), rv).unwrap();
    assert_eq!(
        Value::Object(a.trust_vector),
        json!({"configuration": 2, "executables": 3, "file-system": 2, "hardware": 2})
    );
    assert_eq!(a.status, "affirming");
    // One kernel digest that is not registered.
    let mut tampered = events;
    tampered[2] = ipl("Kernel", "k2");
    let rv = rvs(&[
        ("measurement.grub.SHA-384", json!(["g1"])),
        ("measurement.shim.SHA-384", json!(["s1"])),
        ("measurement.kernel.SHA-384", json!(["k1"])),
        ("measurement.initrd.SHA-384", json!(["i1"])),
    ]);
    let a = e.appraise(&text, &tdx(tampered), rv).unwrap();
    assert_eq!(a.trust_vector["executables"], 33);
}

#[test]
fn per_claim_rules_follow_alibabas_engine() {
    let e = PolicyEngine::default();
    let input = json!({"tdx": {}});
    // Undeclared claims are left out; declared ones must be small integers.
    let a = e
        .appraise("package policy\nhardware := 2\n", &input, rvs(&[]))
        .unwrap();
    assert_eq!(Value::Object(a.trust_vector), json!({"hardware": 2}));
    let err = e
        .appraise("package policy\nhardware := 200\n", &input, rvs(&[]))
        .unwrap_err();
    assert!(
        matches!(err, PolicyError::Output(ref m) if m.contains("hardware")),
        "{err}"
    );
    let err = e
        .appraise(
            "package policy\nimport rego.v1\nhardware := 2 if { input.nothing }\n",
            &input,
            rvs(&[]),
        )
        .unwrap_err();
    assert!(err.to_string().contains("declared but undefined"), "{err}");
    let err = e
        .appraise("package policy\nx := 1\n", &input, rvs(&[]))
        .unwrap_err();
    assert!(
        err.to_string().contains("at least one policy claim"),
        "{err}"
    );
    // A policy with both forms is read as trust_claims, which agrees with its rules.
    let both = "package policy\nhardware := 2\nexecutables := 33\n\
                trust_claims := {\"hardware\": hardware, \"executables\": executables}\n";
    let a = e.appraise(both, &input, rvs(&[])).unwrap();
    assert_eq!(a.form, ClaimsForm::TrustClaims);
    assert_eq!(
        Value::Object(a.trust_vector),
        json!({"executables": 33, "hardware": 2})
    );
}

fn token(vector: Value) -> Value {
    json!({"submods": {"cpu0": {"ear.status": "affirming",
        "ear.trustworthiness-vector": vector,
        "ear.veraison.annotated-evidence": {"sample": {"productId": "aliyun"}}}}})
}

#[test]
fn alibaba_resource_policies_see_the_path_as_a_string() {
    let e = PolicyEngine::default();
    let req = ResourceRequest {
        segments: ["default", "aliyun", "model-decryption-key"],
        query: Default::default(),
    };
    assert_eq!(
        req.alibaba_data(),
        json!({"resource-path": "resource/default/aliyun/model-decryption-key"})
    );
    // Alibaba's default: all four core claims at most 32; the path is not consulted.
    let text = policy("kbs_default_resource_policy.rego");
    let good =
        token(json!({"configuration": 2, "executables": 3, "file-system": 2, "hardware": 2}));
    let bad =
        token(json!({"configuration": 36, "executables": 3, "file-system": 2, "hardware": 2}));
    for d in [ResourcePathDialect::Auto, ResourcePathDialect::Alibaba] {
        assert!(e.allow_resource(&text, &good, &req, d).unwrap().allow);
        assert!(!e.allow_resource(&text, &bad, &req, d).unwrap().allow);
    }
    // Alibaba's test policy splits the string: under upstream's array it cannot run, and
    // auto falls back to the string (4 parts, so its `count(path) == 3` denies, as there).
    let text = policy("kbs_test_policy_1.rego");
    let v = e
        .allow_resource(&text, &good, &req, ResourcePathDialect::Auto)
        .unwrap();
    assert_eq!(v.dialect, ResourcePathDialect::Alibaba);
    assert!(!v.allow);
    assert!(e
        .allow_resource(&text, &good, &req, ResourcePathDialect::Upstream)
        .is_err());
    // A string-dialect policy written for the 4-part path allows.
    let split = "package policy\nimport rego.v1\ndefault allow := false\n\
                 parts := split(data[\"resource-path\"], \"/\")\n\
                 allow if { parts[1] == \"default\"; parts[3] == \"model-decryption-key\" }\n";
    let v = e
        .allow_resource(split, &good, &req, ResourcePathDialect::Auto)
        .unwrap();
    assert_eq!((v.allow, v.dialect), (true, ResourcePathDialect::Alibaba));
    // Upstream's array form keeps working and decides first under auto.
    let array = "package policy\nimport rego.v1\ndefault allow := false\n\
                 allow if { data[\"resource-path\"][2] == \"model-decryption-key\"; data.plugin == \"resource\" }\n";
    let v = e
        .allow_resource(array, &good, &req, ResourcePathDialect::Auto)
        .unwrap();
    assert_eq!((v.allow, v.dialect), (true, ResourcePathDialect::Upstream));
    assert!(
        !e.allow_resource(array, &good, &req, ResourcePathDialect::Alibaba)
            .unwrap()
            .allow
    );
}
