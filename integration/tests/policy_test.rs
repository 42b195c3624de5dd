//! `coffer policy test` on evidence recorded from the real server: the local verdicts match
//! what coffer-server decides with the same policies, and bad inputs are named.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use coffer_integration::{binary, exit_code, Exit, Server};
use serde_json::Value;

const SECRET: &[u8] = b"policy-test-secret";
const RES: &str = "default/test/key1";

fn policies() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

fn policy_test(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(binary("coffer"))
        .args(["policy", "test"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn local_verdicts_match_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = Server::start(d, None);
    std::fs::write(d.join("secret"), SECRET).unwrap();
    s.admin(&[
        "set-resource",
        RES,
        "--file",
        d.join("secret").to_str().unwrap(),
    ]);
    s.admin(&["set-resource-policy", "--affirming"]);
    let rvs = r#"{"launch_digest": ["abcde"], "svn": ["1"], "major_version": 1, "minimum_minor_version": 0}"#;
    let rv: Value = serde_json::from_str(rvs).unwrap();
    for (name, value) in rv.as_object().unwrap() {
        s.admin(&["set-reference-value", name, &value.to_string()]);
    }
    let rv_file = write(d, "rv.json", rvs);
    let token_file = d.join("token.jwt");
    let out = s.coffer(&["attest"]);
    std::fs::write(&token_file, &out.stdout).unwrap();
    let token = token_file.to_str().unwrap();
    let server_claims: Value =
        coffer_protocol::jwt::decode_unverified(String::from_utf8(out.stdout).unwrap().trim())
            .unwrap()
            .claims;
    let server_cpu = &server_claims["submods"]["cpu0"];
    assert_eq!(server_cpu["ear.status"], "affirming", "{server_cpu:#}");

    // The shipped appraisal policy, run locally on the recorded evidence, gives the
    // server's trust vector.
    let cpu = policies().join("attestation/default_cpu.rego");
    let cpu = cpu.to_str().unwrap();
    let r = json_of(&policy_test(
        &[
            "--input",
            token,
            "--attestation-policy",
            cpu,
            "--reference-values",
            &rv_file,
            "--json",
        ],
        None,
    ));
    assert_eq!(r["attestation"]["status"], "affirming");
    assert_eq!(
        r["attestation"]["trust_vector"],
        server_cpu["ear.trustworthiness-vector"]
    );
    // Without the reference values the same evidence is not affirmed.
    let r = json_of(&policy_test(
        &["--input", token, "--attestation-policy", cpu, "--json"],
        None,
    ));
    assert_eq!(r["attestation"]["status"], "contraindicated");

    // Resource policies on the recorded token (stdin), as the server decides them.
    let token_text = std::fs::read_to_string(&token_file).unwrap();
    let affirming = policies().join("resource/affirming.rego");
    let deny_all = policies().join("resource/deny_all.rego");
    let out = policy_test(
        &[
            "--input",
            "-",
            "--resource-policy",
            affirming.to_str().unwrap(),
            "--resource",
            RES,
        ],
        Some(&token_text),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("on {RES}: allow")));
    assert_eq!(s.coffer(&["get-resource", RES]).stdout, SECRET);
    let out = policy_test(
        &[
            "--input",
            token,
            "--resource-policy",
            deny_all.to_str().unwrap(),
            "--resource",
            RES,
        ],
        None,
    );
    assert_eq!(out.status.code(), exit_code(Exit::Refused));
    assert!(String::from_utf8_lossy(&out.stderr).contains("denies default/test/key1"));

    // A stricter appraisal policy, tried locally first, then uploaded: the same verdict.
    let strict = write(
        d,
        "strict.rego",
        "package policy\nimport rego.v1\ntrust_claims := {\"hardware\": 97}\nextensions := []\n",
    );
    let out = policy_test(
        &[
            "--input",
            token,
            "--attestation-policy",
            &strict,
            "--resource-policy",
            affirming.to_str().unwrap(),
            "--resource",
            RES,
        ],
        None,
    );
    assert_eq!(
        out.status.code(),
        exit_code(Exit::Refused),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("contraindicated"));
    s.admin(&["set-attestation-policy", "--file", &strict]);
    assert_eq!(
        s.coffer(&["get-resource", RES]).status.code(),
        exit_code(Exit::Refused)
    );
}

#[test]
fn bad_inputs_and_policies_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let affirming = policies().join("resource/affirming.rego");
    let affirming = affirming.to_str().unwrap();
    let evidence = write(d, "evidence.json", r#"{"sample": {"svn": "1"}}"#);

    // Evidence alone cannot feed a resource policy.
    let out = policy_test(
        &[
            "--input",
            &evidence,
            "--resource-policy",
            affirming,
            "--resource",
            RES,
        ],
        None,
    );
    assert_eq!(out.status.code(), exit_code(Exit::Failure));
    assert!(String::from_utf8_lossy(&out.stderr).contains("reads token claims"));

    // A policy that does not compile is named.
    let broken = write(d, "broken.rego", "package policy\nallow if {\n");
    let out = policy_test(
        &["--input", &evidence, "--attestation-policy", &broken],
        None,
    );
    assert_eq!(out.status.code(), exit_code(Exit::Failure));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broken.rego") && err.contains("does not compile"),
        "{err}"
    );

    // Unreadable input names the file.
    let junk = write(d, "junk.txt", "not a token");
    let cpu = policies().join("attestation/default_cpu.rego");
    let out = policy_test(
        &[
            "--input",
            &junk,
            "--attestation-policy",
            cpu.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), exit_code(Exit::Failure));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("junk.txt") && err.contains("neither an attestation token nor JSON"),
        "{err}"
    );

    // A resource policy without a resource, or no policy at all, is a usage error.
    let out = policy_test(
        &["--input", &evidence, "--resource-policy", affirming],
        None,
    );
    assert_eq!(out.status.code(), exit_code(Exit::Usage));
    let out = policy_test(&["--input", &evidence], None);
    assert_eq!(out.status.code(), exit_code(Exit::Usage));
}
