//! Alibaba Cloud Trustee's policy files, unchanged, against the real coffer-server and
//! coffer CLI with TDX evidence from the test PKI (fake configfs-tsm): PAI's default
//! attestation policy with a `pai/load-model` AAEL event and `data.reference`, the helm
//! chart's default policy, Alibaba's resource policies reading `data["resource-path"]` as a
//! string, and `coffer policy test` agreeing with the server.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use coffer_integration::fake_tsm::{FakeTsm, FakeTsmOptions};
use coffer_integration::tdx_mint::{CollateralOptions, TdFields, TestPki};
use coffer_integration::{exit_code, Exit, Server};
use coffer_tdx::eventlog::{aael_record, spec_id_header, EventLog};
use serde_json::{json, Value};

const SECRET: &[u8] = b"model-key-0123456789abcdef";
const RES: &str = "default/aliyun/model-decryption-key";
const MODEL_HASH: &str = "9f2c4be1d0a34f6b8e7d5c3a1b0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a21";

fn alibaba(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../policy-engine/tests/fixtures/alibaba")
        .join(name)
}

struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    server: Server,
    pki: Arc<TestPki>,
}

fn setup() -> Setup {
    let pki = Arc::new(TestPki::new());
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let config = pki.offline_dcap_config(&root, &CollateralOptions::current());
    let server = Server::start(&root, Some(&config));
    let f = root.join("secret");
    std::fs::write(&f, SECRET).unwrap();
    server.admin(&["set-resource", RES, "--file", f.to_str().unwrap()]);
    Setup {
        _tmp: tmp,
        root,
        server,
        pki,
    }
}

/// A fake TD that recorded `events` (domain, operation, content) in its AAEL and whose
/// RTMR3 holds them. Returns the TD and the AAEL file.
fn td_with_events(s: &Setup, name: &str, events: &[(&str, &str, String)]) -> (FakeTsm, PathBuf) {
    let mut aael = Vec::new();
    for (d, o, c) in events {
        aael.extend_from_slice(&aael_record(d, o, c).unwrap());
    }
    let mut log = spec_id_header();
    log.extend_from_slice(&aael);
    let fields = TdFields {
        rtmrs: EventLog::parse(&log).unwrap().replay().unwrap(),
        ..Default::default()
    };
    let path = s.root.join(format!("{name}.aael"));
    std::fs::write(&path, &aael).unwrap();
    let pki = s.pki.clone();
    let tsm = FakeTsm::start(
        &s.root.join(name),
        FakeTsmOptions::default(),
        Arc::new(move |rd| {
            let mut f = fields.clone();
            f.report_data = rd;
            pki.quote(&f)
        }),
    );
    (tsm, path)
}

fn tdx_args<'a>(s: &'a Setup, tsm: &'a FakeTsm, aael: &'a Path) -> Vec<String> {
    vec![
        "--tee".into(),
        "tdx".into(),
        "--tsm-report-dir".into(),
        tsm.report_dir().display().to_string(),
        "--ccel".into(),
        s.root.join("no-ccel").display().to_string(),
        "--aael".into(),
        aael.display().to_string(),
    ]
}

fn run(s: &Setup, cmd: &[&str], tee: &[String]) -> std::process::Output {
    let mut args: Vec<&str> = cmd.to_vec();
    args.extend(tee.iter().map(String::as_str));
    s.server.coffer(&args)
}

/// `coffer attest` as the TD; the token it printed.
fn attest(s: &Setup, tee: &[String]) -> String {
    let out = run(s, &["attest"], tee);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn claims_of(token: &str) -> Value {
    let payload = token.trim().split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn model_load(hash: &str) -> (&'static str, &'static str, String) {
    (
        "trustiflux.alibaba.com",
        "pai/load-model",
        json!({"model-id": "qwen2-7b", "hash": hash}).to_string(),
    )
}

#[test]
fn pai_default_policy_releases_to_a_td_that_loaded_the_registered_model() {
    let s = setup();
    let p = |n: &str| alibaba(n).display().to_string();
    // Uploaded as Alibaba's users do: policy id "default"; RV named as the policy reads it.
    s.server.admin(&[
        "set-attestation-policy",
        "--file",
        &p("pai_default.rego"),
        "--id",
        "default",
    ]);
    s.server.admin(&[
        "set-reference-value",
        "measurement.model.qwen2-7b",
        &format!("[\"{MODEL_HASH}\"]"),
    ]);
    s.server.admin(&[
        "set-resource-policy",
        "--file",
        &p("kbs_default_resource_policy.rego"),
    ]);

    let (tsm, aael) = td_with_events(&s, "good", &[model_load(MODEL_HASH)]);
    let tee = tdx_args(&s, &tsm, &aael);
    let token = attest(&s, &tee);
    let cpu = &claims_of(&token)["submods"]["cpu0"];
    assert_eq!(
        cpu["ear.trustworthiness-vector"],
        json!({"configuration": 2, "executables": 3, "file-system": 2, "hardware": 2}),
        "{cpu:#}"
    );
    assert_eq!(cpu["ear.status"], "affirming");
    let event = &cpu["ear.veraison.annotated-evidence"]["tdx"]["uefi_event_logs"][0];
    assert_eq!(event["details"]["data"]["content"]["hash"], MODEL_HASH);

    let out = run(&s, &["get-resource", RES], &tee);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, SECRET);
    let log = s.server.log();
    let line = log
        .lines()
        .find(|l| l.contains("attestation appraised") && l.contains("policy=default "))
        .unwrap_or_else(|| panic!("no appraisal log line in:\n{log}"));
    assert!(line.contains("policy_form=per-claim"), "{line}");
    assert!(line.contains("protocol=0.4.0"), "{line}");
    assert!(line.contains("status=affirming"), "{line}");
    assert!(line.contains("tcb_status="), "{line}");

    // `coffer policy test` on the recorded token gives the server's verdicts.
    let tok = s.root.join("token.jwt");
    std::fs::write(&tok, &token).unwrap();
    let rv = s.root.join("rv.json");
    std::fs::write(
        &rv,
        json!({"measurement.model.qwen2-7b": [MODEL_HASH]}).to_string(),
    )
    .unwrap();
    let out = s.server.coffer(&[
        "policy",
        "test",
        "--input",
        tok.to_str().unwrap(),
        "--attestation-policy",
        &p("pai_default.rego"),
        "--reference-values",
        rv.to_str().unwrap(),
        "--resource-policy",
        &p("kbs_default_resource_policy.rego"),
        "--resource",
        RES,
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["attestation"]["trust_vector"],
        cpu["ear.trustworthiness-vector"]
    );
    assert_eq!(report["attestation"]["form"], "per-claim");
    assert_eq!(report["resource"]["allow"], true);

    // A TD that loaded another model: executables 33, which Alibaba's resource policy
    // refuses.
    let (tsm, aael) = td_with_events(&s, "other", &[model_load("ffff")]);
    let tee = tdx_args(&s, &tsm, &aael);
    let cpu = &claims_of(&attest(&s, &tee))["submods"]["cpu0"];
    assert_eq!(cpu["ear.trustworthiness-vector"]["executables"], 33);
    let out = run(&s, &["get-resource", RES], &tee);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), exit_code(Exit::Refused), "{err}");
    assert!(err.contains("PolicyDeny"), "{err}");
    assert!(s.server.log().contains("request refused"));
}

#[test]
fn chart_default_policy_and_a_string_path_resource_policy() {
    let s = setup();
    let p = |n: &str| alibaba(n).display().to_string();
    s.server.admin(&[
        "set-attestation-policy",
        "--file",
        &p("ear_default_policy_cpu.rego"),
        "--id",
        "default",
    ]);
    // Written for Alibaba's KBS: the path is "resource/<repo>/<type>/<tag>".
    let policy = s.root.join("split.rego");
    std::fs::write(
        &policy,
        "package policy\nimport rego.v1\ndefault allow := false\n\
         parts := split(data[\"resource-path\"], \"/\")\n\
         allow if {\n  parts[1] == \"default\"\n  parts[2] == \"aliyun\"\n\
           input.submods.cpu0[\"ear.trustworthiness-vector\"].hardware <= 32\n}\n",
    )
    .unwrap();
    s.server
        .admin(&["set-resource-policy", "--file", policy.to_str().unwrap()]);

    let (tsm, aael) = td_with_events(&s, "td", &[model_load(MODEL_HASH)]);
    let tee = tdx_args(&s, &tsm, &aael);
    let token = attest(&s, &tee);
    let cpu = &claims_of(&token)["submods"]["cpu0"];
    // No boot events or reference values: Alibaba's engine gives exactly this.
    assert_eq!(
        cpu["ear.trustworthiness-vector"],
        json!({"configuration": 36, "executables": 33, "file-system": 2, "hardware": 2}),
        "{cpu:#}"
    );
    assert_eq!(cpu["ear.status"], "warning");
    let out = run(&s, &["get-resource", RES], &tee);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, SECRET);
    assert!(s.server.log().contains("resource_path=alibaba"));
    // `coffer policy test` decides the same way, and pinned to upstream's form it cannot
    // evaluate the policy (exit 1), as the server would not.
    let tok = s.root.join("token.jwt");
    std::fs::write(&tok, &token).unwrap();
    let test = |dialect: &str| {
        s.server.coffer(&[
            "policy",
            "test",
            "--input",
            tok.to_str().unwrap(),
            "--resource-policy",
            policy.to_str().unwrap(),
            "--resource",
            RES,
            "--resource-path-dialect",
            dialect,
            "--json",
        ])
    };
    let out = test("auto");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["resource"],
        json!({"path": RES, "allow": true, "resource_path": "alibaba"})
    );
    assert_eq!(test("upstream").status.code(), exit_code(Exit::Failure));
    // Another repository: the same policy refuses.
    s.server.admin(&[
        "set-resource",
        "other/aliyun/key",
        "--file",
        s.root.join("secret").to_str().unwrap(),
    ]);
    let out = run(&s, &["get-resource", "other/aliyun/key"], &tee);
    assert_eq!(
        out.status.code(),
        exit_code(Exit::Refused),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn resource_path_dialect_can_be_pinned_in_the_config() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(
        tmp.path(),
        Some("[attestation]\nresource_path_dialect = \"upstream\"\n"),
    );
    let policy = tmp.path().join("split.rego");
    std::fs::write(
        &policy,
        "package policy\nimport rego.v1\ndefault allow := false\n\
         allow if { startswith(data[\"resource-path\"], \"resource/default/\") }\n",
    )
    .unwrap();
    let f = tmp.path().join("secret");
    std::fs::write(&f, SECRET).unwrap();
    server.admin(&["set-resource", RES, "--file", f.to_str().unwrap()]);
    server.admin(&["set-resource-policy", "--file", policy.to_str().unwrap()]);
    // Pinned to upstream's array, the string policy cannot evaluate: a policy error, not a
    // release.
    let out = server.coffer(&["get-resource", RES, "--tee", "sample"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("PolicyEngineError"), "{err}");
    // A bad dialect name is a config error naming the choices.
    let out = std::process::Command::new(coffer_integration::binary("coffer-server"))
        .args(["--check-config", "--config"])
        .arg({
            let c = tmp.path().join("bad.toml");
            std::fs::write(&c, "[attestation]\nresource_path_dialect = \"both\"\n").unwrap();
            c
        })
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("auto, upstream, alibaba"), "{err}");
}
