//! GPU claims as policies see them: Trustee's `ear_default_policy_gpu.rego` (unchanged)
//! and coffer's `default_gpu.rego` on the claims coffer's verifier produces for a minted
//! GPU, and `coffer policy test` on a token with a GPU submodule.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use coffer_gpu::evidence::{Arch, DeviceEvidence};
use coffer_gpu::verify::{Collateral, GpuVerifier};
use coffer_integration::gpu_mint::{GpuFields, GpuPki, DRIVER_RIM_INDICES, VBIOS_RIM_INDICES};
use coffer_integration::{binary, exit_code, Exit};
use coffer_policy::PolicyEngine;
use serde_json::{json, Value};

fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
}

fn trustee_gpu_policy() -> String {
    std::fs::read_to_string(repo(
        "policy-engine/tests/fixtures/trustee/ear_default_policy_gpu.rego",
    ))
    .unwrap()
}

/// Claims of a minted GPU verified with RIMs and OCSP answers (`revoked` as in
/// [`GpuPki::ocsp_responses`]).
fn claims(revoked: &[&str]) -> Value {
    let tmp = tempfile::tempdir().unwrap();
    let pki = GpuPki::new();
    let f = GpuFields::default();
    let nonce = [0x42u8; 32];
    let v = GpuVerifier::with_roots(&pki.root_pem(), &pki.rim_root_pem()).unwrap();
    let ev = DeviceEvidence {
        arch: Arch::Hopper,
        uuid: "GPU-1".into(),
        report: pki.report(&nonce, &f),
        certificate_pem: pki.chain_pem(),
    };
    let a = v.authenticate(0, ev, &nonce).unwrap();
    let mut rims = HashMap::new();
    rims.insert(
        GpuPki::driver_rim_id(&f),
        pki.rim(&f.driver_version, &DRIVER_RIM_INDICES, &f),
    );
    rims.insert(
        GpuPki::vbios_rim_id(&f),
        pki.rim("96.00.9F.00.01", &VBIOS_RIM_INDICES, &f),
    );
    let c = Collateral {
        ocsp: pki.ocsp_responses(tmp.path(), revoked),
        rims,
        problems: Vec::new(),
    };
    json!({"nvidia": a.appraise(&v, &c, coffer_integration::tdx_mint::now())})
}

fn status(policy: &str, input: &Value, rvs: &[(&str, Value)]) -> (&'static str, Value) {
    let rvs: HashMap<String, Value> = rvs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let a = PolicyEngine::default()
        .appraise(policy, input, Arc::new(rvs))
        .unwrap();
    (a.status, Value::Object(a.trust_vector))
}

#[test]
fn trustee_default_gpu_policy_affirms_a_verified_gpu_unchanged() {
    let good = claims(&[]);
    let (s, tv) = status(&trustee_gpu_policy(), &good, &[]);
    assert_eq!(s, "affirming", "{tv} {good:#}");
    assert_eq!(tv["hardware"], 2);
    assert_eq!(tv["executables"], 3);
    assert_eq!(tv["configuration"], 3);
    let allowed = [
        ("allowed_vbios_versions", json!(["96.00.9F.00.01"])),
        ("allowed_driver_versions", json!(["550.90.07"])),
    ];
    let (_, tv) = status(&trustee_gpu_policy(), &good, &allowed);
    assert_eq!(tv["configuration"], 2);
    let (s, _) = status(&trustee_gpu_policy(), &claims(&["brom"]), &[]);
    assert_eq!(s, "contraindicated");
}

#[test]
fn coffer_default_gpu_policy_is_at_least_as_strict_as_trustees() {
    let ours = coffer_policy::defaults::ATTESTATION_GPU;
    let trustee = trustee_gpu_policy();
    let good = claims(&[]);
    assert_eq!(status(ours, &good, &[]).0, "affirming");
    for revoked in [&["brom"][..], &["rim_signer"][..]] {
        let c = claims(revoked);
        assert_ne!(status(ours, &c, &[]).0, "affirming", "{revoked:?}");
        assert_ne!(status(&trustee, &c, &[]).0, "affirming", "{revoked:?}");
    }
    // Trustee's policy does not look at the driver RIM's chain; coffer's does.
    let mut driver_chain_revoked = good.clone();
    driver_chain_revoked["nvidia"]["x-nvidia-gpu-driver-rim-cert-chain"]
        ["x-nvidia-cert-ocsp-status"] = json!("revoked");
    assert_eq!(status(&trustee, &driver_chain_revoked, &[]).0, "affirming");
    assert_ne!(status(ours, &driver_chain_revoked, &[]).0, "affirming");
    // Nor at the nonce claim.
    let mut no_nonce = good.clone();
    no_nonce["nvidia"]["x-nvidia-gpu-attestation-report-nonce-match"] = json!(false);
    assert_ne!(status(ours, &no_nonce, &[]).0, "affirming");
}

#[test]
fn policy_test_appraises_recorded_gpu_submodules() {
    let tmp = tempfile::tempdir().unwrap();
    let cpu_evidence = json!({"sample": {"svn": "1", "launch_digest": "abcde"}});
    let token_claims = |gpu: Value| {
        json!({"submods": {
            "cpu0": {"ear.status": "affirming", "ear.veraison.annotated-evidence": cpu_evidence},
            "gpu0": {"ear.status": "affirming", "ear.veraison.annotated-evidence": gpu},
        }})
    };
    let run = |name: &str, gpu: Value, extra: &[&str]| {
        let input = tmp.path().join(name);
        std::fs::write(&input, token_claims(gpu).to_string()).unwrap();
        let trustee = repo("policy-engine/tests/fixtures/trustee/ear_default_policy_gpu.rego");
        let affirming = repo("policies/resource/affirming.rego");
        let mut args = vec![
            "policy",
            "test",
            "--input",
            input.to_str().unwrap(),
            "--gpu-policy",
            trustee.to_str().unwrap(),
            "--resource-policy",
            affirming.to_str().unwrap(),
            "--resource",
            "default/key/1",
            "--json",
        ];
        args.extend_from_slice(extra);
        Command::new(binary("coffer")).args(&args).output().unwrap()
    };
    let out = run("good.json", claims(&[]), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["devices"]["gpu0"]["status"], "affirming", "{r:#}");
    assert_eq!(r["resource"]["allow"], true);
    // The recorded token says affirming, but the evidence shows a revoked certificate:
    // the GPU is appraised afresh and the resource policy denies (exit code 3).
    let out = run("revoked.json", claims(&["brom"]), &[]);
    assert_eq!(
        out.status.code(),
        exit_code(Exit::Refused),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["devices"]["gpu0"]["status"], "contraindicated");
    assert_eq!(r["resource"]["allow"], false);
}
