//! End-to-end: the real coffer-server binary, real HTTP, a real SQLite file, the real CLI.

use coffer_integration::{exit_code, Exit, Server};
use coffer_protocol::jwe::{self, FlattenedJwe};
use coffer_protocol::jwt::{self, VerifyingKey};
use coffer_protocol::messages::Challenge;
use coffer_protocol::runtime_data::runtime_data_hash;
use coffer_protocol::{b64, HashAlgorithm, Problem, TeeKeyPair};
use serde_json::{json, Value};

const SECRET: &[u8] = b"anchor-test-secret-0123456789abcdef";

fn setup(config: Option<&str>) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), config);
    (dir, server)
}

fn store_secret(s: &Server, dir: &std::path::Path, path: &str, bytes: &[u8]) {
    let f = dir.join("secret.bin");
    std::fs::write(&f, bytes).unwrap();
    s.admin(&["set-resource", path, "--file", f.to_str().unwrap()]);
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A raw protocol session (what any Trustee-compatible guest does), for tests that need to
/// misbehave on purpose.
struct Guest {
    http: reqwest::Client,
    url: String,
    key: TeeKeyPair,
    cookie: Option<String>,
}

impl Guest {
    fn new(url: &str) -> Self {
        Guest {
            http: reqwest::Client::new(),
            url: url.to_string(),
            key: TeeKeyPair::generate(),
            cookie: None,
        }
    }

    async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        let mut rb = self
            .http
            .post(format!("{}/kbs/v0/{path}", self.url))
            .header("content-type", "application/json")
            .body(body);
        if let Some(c) = &self.cookie {
            rb = rb.header("cookie", format!("kbs-session-id={c}"));
        }
        rb.send().await.unwrap()
    }

    async fn auth(&mut self) -> String {
        let r = self
            .post("auth", r#"{"version":"0.4.0","tee":"sample","extra-params":{"supported-hash-algorithms":["sha256","sha384","sha512","sm3"]}}"#)
            .await;
        assert_eq!(r.status(), 200);
        let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
        let re_ok = cookie.starts_with("kbs-session-id=")
            && cookie.contains("; Expires=")
            && cookie.ends_with(" GMT");
        assert!(re_ok, "cookie {cookie}");
        let id = cookie["kbs-session-id=".len()..]
            .split(';')
            .next()
            .unwrap()
            .to_string();
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        self.cookie = Some(id);
        let ch: Challenge = r.json().await.unwrap();
        assert_eq!(b64::std_decode(&ch.nonce).unwrap().len(), 32);
        assert_eq!(ch.extra_params, json!(""));
        ch.nonce
    }

    fn attestation(&self, nonce: &str) -> Value {
        let jwk = self.key.public_jwk();
        let hash = runtime_data_hash(HashAlgorithm::Sha384, nonce, &jwk, "");
        json!({
            "init-data": null,
            "runtime-data": {"nonce": nonce, "tee-pubkey": jwk},
            "tee-evidence": {"primary_evidence": {"report_data": b64::std_encode(hash), "svn": "1"}, "additional_evidence": ""}
        })
    }

    async fn attest(&self, body: &Value) -> reqwest::Response {
        self.post("attest", body.to_string()).await
    }

    async fn get(&self, path: &str, bearer: Option<&str>) -> reqwest::Response {
        let mut rb = self
            .http
            .get(format!("{}/kbs/v0/resource/{path}", self.url));
        if let Some(c) = &self.cookie {
            rb = rb.header("cookie", format!("kbs-session-id={c}"));
        }
        if let Some(t) = bearer {
            rb = rb.bearer_auth(t);
        }
        rb.send().await.unwrap()
    }
}

async fn problem(r: reqwest::Response, status: u16, kind: &str) -> Problem {
    assert_eq!(r.status().as_u16(), status);
    assert_eq!(r.headers()["content-type"], "application/json");
    let p: Problem = r.json().await.unwrap();
    assert_eq!(p.kind_name(), kind, "{p:?}");
    assert!(p
        .kind_url
        .starts_with("https://github.com/confidential-containers/kbs/errors/"));
    p
}

#[test]
fn cli_happy_path_and_default_policy_denial() {
    let (dir, s) = setup(None);
    store_secret(&s, dir.path(), "default/test/key1", SECRET);

    // The shipped default policy never releases to the sample TEE.
    let out = s.coffer(&["get-resource", "default/test/key1"]);
    assert_eq!(
        out.status.code(),
        exit_code(Exit::Refused),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("PolicyDeny"), "{}", stderr(&out));
    assert!(out.stdout.is_empty());

    s.admin(&["set-resource-policy", "--allow-all"]);
    let out = s.coffer(&["get-resource", "kbs:///default/test/key1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, SECRET);

    let target = dir.path().join("out.key");
    let out = s.coffer(&[
        "get-resource",
        "default/test/key1",
        "-o",
        target.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&target).unwrap(), SECRET);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let out = s.coffer(&["get-resource", "default/test/missing"]);
    assert_eq!(
        out.status.code(),
        exit_code(Exit::NotFound),
        "{}",
        stderr(&out)
    );

    // Audit: the admin changes, the denials, and one release per success.
    let out = s.admin(&["audit", "--json"]);
    let rows = audit_rows(&out.stdout);
    let count = |action: &str, decision: &str| {
        rows.iter()
            .filter(|r| r["action"] == action && r["decision"] == decision)
            .count()
    };
    assert_eq!(count("release", "allow"), 2);
    assert!(count("release", "deny") >= 2);
    assert_eq!(count("admin:set-resource", "ok"), 1);
    assert_eq!(count("admin:set-resource-policy", "ok"), 1);
    let release = rows
        .iter()
        .find(|r| r["action"] == "release" && r["decision"] == "allow")
        .unwrap();
    assert_eq!(release["tee"], "sample");
    assert_eq!(release["resource"], "default/test/key1");
    assert_eq!(release["claims_digest"].as_str().unwrap().len(), 64);
    assert_eq!(release["session_id"].as_str().unwrap().len(), 32);
}

#[test]
fn custom_policy_by_path_and_get_resource_policy() {
    let (dir, s) = setup(None);
    store_secret(&s, dir.path(), "default/test/key1", SECRET);
    store_secret(&s, dir.path(), "default/test/key2", b"other");
    // Trustee's own policy from the wire recording, unchanged.
    let policy = "package policy\n\ndefault allow = false\n\nallow if {\n\tdata.plugin == \"resource\"\n\tdata[\"resource-path\"][0] == \"default\"\n\tdata[\"resource-path\"][1] == \"test\"\n\tdata[\"resource-path\"][2] == \"key1\"\n\tinput[\"submods\"][\"cpu0\"][\"ear.veraison.annotated-evidence\"][\"sample\"]\n}\n";
    let f = dir.path().join("p.rego");
    std::fs::write(&f, policy).unwrap();
    s.admin(&["set-resource-policy", "--file", f.to_str().unwrap()]);
    assert_eq!(
        String::from_utf8(s.admin(&["get-resource-policy"]).stdout).unwrap(),
        policy
    );
    assert_eq!(
        s.coffer(&["get-resource", "default/test/key1"]).stdout,
        SECRET
    );
    assert_eq!(
        s.coffer(&["get-resource", "default/test/key2"])
            .status
            .code(),
        exit_code(Exit::Refused)
    );

    // A policy that does not compile is refused and the old one stays.
    std::fs::write(&f, "package policy\nallow if {").unwrap();
    let key = s.admin_key();
    let out = s.coffer(&[
        "admin",
        "--key",
        key.to_str().unwrap(),
        "set-resource-policy",
        "--file",
        f.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        exit_code(Exit::Refused),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("PolicyEngineError"));
    assert_eq!(
        s.coffer(&["get-resource", "default/test/key1"]).stdout,
        SECRET
    );
}

#[test]
fn attestation_policy_and_reference_values_drive_ear_status() {
    let (dir, s) = setup(None);
    store_secret(&s, dir.path(), "default/test/key1", SECRET);
    s.admin(&["set-resource-policy", "--builtin", "affirming"]);
    assert_eq!(
        s.coffer(&["get-resource", "default/test/key1"])
            .status
            .code(),
        exit_code(Exit::Refused)
    );
    s.admin(&["set-reference-value", "launch_digest", r#"["abcde"]"#]);
    s.admin(&["set-reference-value", "svn", r#"["1"]"#]);
    s.admin(&["set-reference-value", "major_version", "1"]);
    s.admin(&["set-reference-value", "minimum_minor_version", "0"]);
    assert_eq!(
        String::from_utf8(s.admin(&["get-reference-value", "svn"]).stdout)
            .unwrap()
            .trim(),
        r#"["1"]"#
    );
    let out = s.coffer(&["get-resource", "default/test/key1"]);
    assert_eq!(out.stdout, SECRET, "{}", stderr(&out));

    // An uploaded attestation policy replaces the default one.
    let strict =
        "package policy\nimport rego.v1\ntrust_claims := {\"hardware\": 97}\nextensions := []\n";
    let f = dir.path().join("a.rego");
    std::fs::write(&f, strict).unwrap();
    s.admin(&["set-attestation-policy", "--file", f.to_str().unwrap()]);
    let token = String::from_utf8(s.coffer(&["attest"]).stdout).unwrap();
    let claims = jwt::decode_unverified(token.trim()).unwrap().claims;
    assert_eq!(claims["submods"]["cpu0"]["ear.status"], "contraindicated");
    assert_eq!(
        s.coffer(&["get-resource", "default/test/key1"])
            .status
            .code(),
        exit_code(Exit::Refused)
    );
}

#[tokio::test]
async fn replay_tamper_and_wrong_session_are_refused() {
    let (dir, s) = setup(None);
    store_secret(&s, dir.path(), "default/test/key1", SECRET);
    s.admin(&["set-resource-policy", "--allow-all"]);

    let mut g = Guest::new(&s.url);
    let nonce = g.auth().await;
    let att = g.attestation(&nonce);

    // Tampered report data.
    let mut bad = att.clone();
    bad["tee-evidence"]["primary_evidence"]["report_data"] = json!(b64::std_encode([0u8; 48]));
    let p = problem(g.attest(&bad).await, 401, "AttestationError").await;
    assert!(p.detail.contains("report_data"), "{}", p.detail);
    // Evidence bound to one key presented with another tee-pubkey.
    let mut swapped = att.clone();
    swapped["runtime-data"]["tee-pubkey"] = TeeKeyPair::generate().public_jwk();
    problem(g.attest(&swapped).await, 401, "AttestationError").await;

    let r = g.attest(&att).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("set-cookie"));
    let token: Value = r.json().await.unwrap();
    let token = token["token"].as_str().unwrap().to_string();

    // Replay: the old attestation on a new session (new nonce) is refused.
    let mut g2 = Guest::new(&s.url);
    g2.key = g.key.clone();
    g2.auth().await;
    let p = problem(g2.attest(&att).await, 401, "AttestationError").await;
    assert!(p.detail.contains("nonce"), "{}", p.detail);
    // ... and a resource request on that un-attested session has no token.
    problem(
        g2.get("default/test/key1", None).await,
        401,
        "TokenNotFound",
    )
    .await;

    // The attested session releases; the JWE opens with the TEE key only.
    let r = g.get("default/test/key1", None).await;
    assert_eq!(r.status(), 200);
    let jwe: FlattenedJwe = r.json().await.unwrap();
    assert_eq!(&jwe::decrypt(&g.key, &jwe).unwrap()[..], SECRET);
    assert!(jwe::decrypt(&TeeKeyPair::generate(), &jwe).is_err());

    // Bearer token instead of the cookie.
    let mut bearer = Guest::new(&s.url);
    bearer.key = g.key.clone();
    let r = bearer.get("default/test/key1", Some(&token)).await;
    assert_eq!(r.status(), 200);
    let jwe: FlattenedJwe = r.json().await.unwrap();
    assert_eq!(&jwe::decrypt(&g.key, &jwe).unwrap()[..], SECRET);
    // A forged bearer token (claims changed, signature kept) is refused.
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged_claims =
        b64::url_encode(json!({"exp": 9_999_999_999_i64, "iss": "coffer"}).to_string());
    parts[1] = &forged_claims;
    problem(
        bearer
            .get("default/test/key1", Some(&parts.join(".")))
            .await,
        401,
        "TokenVerifierError",
    )
    .await;

    // The token verifies with the published JWKS.
    let jwks: Value = reqwest::get(format!("{}/.well-known/jwks.json", s.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = VerifyingKey::from_jwk(&jwks["keys"][0]).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = jwt::verify(&token, &key, now, 0).unwrap().claims;
    let ev = &claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"];
    assert_eq!(ev["sample"]["svn"], "1");
    assert_eq!(ev["runtime_data_claims"]["nonce"], nonce.as_str());

    // Outcomes are counted: 3 refused (tamper, swapped key, replay), 1 issued, 2 releases.
    let text = reqwest::get(format!("{}/metrics", s.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "coffer_attestations_total{outcome=\"refused\",tee=\"sample\"} 3",
        "coffer_attestations_total{outcome=\"issued\",tee=\"sample\"} 1",
        "coffer_resource_releases_total{decision=\"allow\"} 2",
    ] {
        assert!(text.contains(line), "missing {line} in {text}");
    }
}

#[tokio::test]
async fn expired_session_is_refused() {
    let (_dir, s) = setup(Some("[attestation]\nsession_ttl_secs = 1\n"));
    let mut g = Guest::new(&s.url);
    let nonce = g.auth().await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let p = problem(
        g.attest(&g.attestation(&nonce)).await,
        401,
        "AttestationError",
    )
    .await;
    assert!(p.detail.contains("session not found"), "{}", p.detail);
}

#[tokio::test]
async fn malformed_requests_get_problem_bodies() {
    let (_dir, s) = setup(Some("[server]\nmax_body_bytes = 4096\n"));
    let mut g = Guest::new(&s.url);
    problem(g.post("auth", "{not json").await, 401, "AttestationError").await;
    problem(
        g.post("auth", r#"{"tee":"sample"}"#).await,
        401,
        "AttestationError",
    )
    .await;
    let p = problem(
        g.post(
            "auth",
            r#"{"version":"0.5.0","tee":"sample","extra-params":{}}"#,
        )
        .await,
        401,
        "AttestationError",
    )
    .await;
    assert!(p.detail.contains("Version Mismatch"), "{}", p.detail);
    let p = problem(
        g.post(
            "auth",
            r#"{"version":"0.4.0","tee":"snp","extra-params":{}}"#,
        )
        .await,
        401,
        "AttestationError",
    )
    .await;
    assert!(p.detail.contains("unsupported TEE"), "{}", p.detail);
    problem(
        g.post("auth", vec![b'x'; 5000]).await,
        413,
        "PayloadTooLarge",
    )
    .await;
    // attest without a cookie, then with missing fields
    problem(g.post("attest", "{}").await, 401, "AttestationError").await;
    let nonce = g.auth().await;
    let p = problem(
        g.post("attest", r#"{"runtime-data":{}}"#).await,
        401,
        "AttestationError",
    )
    .await;
    assert!(
        p.detail.contains("invalid attestation body"),
        "{}",
        p.detail
    );
    // A malformed attest does not consume the challenge: the honest attestation still works.
    assert_eq!(g.attest(&g.attestation(&nonce)).await.status(), 200);
    problem(
        g.get("default/test", None).await,
        401,
        "PluginInternalError",
    )
    .await;
    problem(g.post("nosuchplugin", "{}").await, 404, "PluginNotFound").await;
    let r = reqwest::get(format!("{}/nowhere", s.url)).await.unwrap();
    problem(r, 404, "InvalidRequestPath").await;
}

#[tokio::test]
async fn admin_calls_need_a_valid_token() {
    let (dir, s) = setup(None);
    let http = reqwest::Client::new();
    let res_url = format!("{}/kbs/v0/resource/default/test/key1", s.url);
    let pol_url = format!("{}/kbs/v0/resource-policy", s.url);
    // none
    problem(
        http.post(&res_url).body("x").send().await.unwrap(),
        401,
        "AdminAuthInitialization",
    )
    .await;
    problem(
        http.post(&pol_url).body("{}").send().await.unwrap(),
        401,
        "AdminAuthAccess",
    )
    .await;
    problem(
        http.get(format!("{}/coffer/v1/audit", s.url))
            .send()
            .await
            .unwrap(),
        401,
        "AdminAuthAccess",
    )
    .await;
    // forged: signed by another key
    let other = dir.path().join("other.key");
    let sk = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    std::fs::write(
        &other,
        sk.to_pkcs8_pem(Default::default()).unwrap().as_bytes(),
    )
    .unwrap();
    let forged = coffer::admin::mint_admin_token(
        &std::fs::read_to_string(&other).unwrap(),
        "coffer",
        "kbs",
        60,
    )
    .unwrap();
    let p = problem(
        http.post(&res_url)
            .bearer_auth(&forged)
            .body("x")
            .send()
            .await
            .unwrap(),
        401,
        "AdminAuthInitialization",
    )
    .await;
    assert!(p.detail.contains("signature"), "{}", p.detail);
    // expired: the right key, but exp in the past
    let key_pem = std::fs::read_to_string(s.admin_key()).unwrap();
    let expired = coffer::admin::mint_admin_token(&key_pem, "coffer", "kbs", -120).unwrap();
    let p = problem(
        http.post(&res_url)
            .bearer_auth(&expired)
            .body("x")
            .send()
            .await
            .unwrap(),
        401,
        "AdminAuthInitialization",
    )
    .await;
    assert!(p.detail.contains("expired"), "{}", p.detail);
    // wrong issuer
    let wrong = coffer::admin::mint_admin_token(&key_pem, "someone", "kbs", 60).unwrap();
    problem(
        http.post(&pol_url)
            .bearer_auth(&wrong)
            .body("{}")
            .send()
            .await
            .unwrap(),
        401,
        "AdminAuthAccess",
    )
    .await;
    // valid token works, and GET resource-policy answers like Trustee
    let good = s.admin_token();
    let r = http
        .post(&res_url)
        .bearer_auth(&good)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http.get(&pol_url).bearer_auth(&good).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!(["resource-policy"]));
    // none of the refused writes happened
    let rows = audit_rows(&s.admin(&["audit", "--json"]).stdout);
    assert_eq!(
        rows.iter()
            .filter(|r| r["action"] == "admin:set-resource")
            .count(),
        1
    );
}

#[test]
fn restart_keeps_state_and_secrets_are_sealed_on_disk() {
    let (dir, mut s) = setup(None);
    store_secret(&s, dir.path(), "default/test/key1", SECRET);
    s.admin(&["set-resource-policy", "--allow-all"]);
    s.restart();
    let out = s.coffer(&["get-resource", "default/test/key1"]);
    assert_eq!(out.stdout, SECRET, "{}", stderr(&out));
    s.stop();
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&s.data_dir).unwrap() {
        let p = entry.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        if p.to_string_lossy().contains("coffer.db") {
            assert!(!bytes.is_empty());
        }
        if bytes.windows(SECRET.len()).any(|w| w == SECRET) {
            found.push(p);
        }
    }
    assert!(found.is_empty(), "secret in plaintext in {found:?}");
    assert!(!s.log().contains("anchor-test-secret"));
}

#[tokio::test]
async fn ops_endpoints() {
    let (_dir, s) = setup(None);
    assert_eq!(
        reqwest::get(format!("{}/healthz", s.url))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        reqwest::get(format!("{}/readyz", s.url))
            .await
            .unwrap()
            .status(),
        200
    );
    let mut g = Guest::new(&s.url);
    g.auth().await;
    let text = reqwest::get(format!("{}/metrics", s.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            "coffer_http_requests_total{method=\"POST\",route=\"/kbs/v0/auth\",status=\"200\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("coffer_http_request_duration_seconds_bucket"));
}

#[test]
fn tls_listener_with_client_ca() {
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let (cert_pem, key_pem) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_pem, cert.cert.pem()).unwrap();
    std::fs::write(&key_pem, cert.key_pair.serialize_pem()).unwrap();
    let config = format!("[server.tls]\ncert = {:?}\nkey = {:?}\n", cert_pem, key_pem);
    let mut s = Server::start(dir.path(), Some(&config));
    s.url = s.url.replace("http://", "https://");
    std::fs::write(dir.path().join("secret.bin"), SECRET).unwrap();
    let cert_arg = cert_pem.to_str().unwrap();
    let key = s.admin_key();
    let secret_file = dir.path().join("secret.bin");
    for args in [
        vec![
            "--cert-file",
            cert_arg,
            "admin",
            "--key",
            key.to_str().unwrap(),
            "set-resource",
            "default/test/key1",
            "--file",
            secret_file.to_str().unwrap(),
        ],
        vec![
            "--cert-file",
            cert_arg,
            "admin",
            "--key",
            key.to_str().unwrap(),
            "set-resource-policy",
            "--allow-all",
        ],
    ] {
        let out = s.coffer(&args);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = s.coffer(&["--cert-file", cert_arg, "get-resource", "default/test/key1"]);
    assert_eq!(out.stdout, SECRET, "{}", stderr(&out));
    // Without the CA the client refuses the server, and plain HTTP is not served.
    let out = s.coffer(&["get-resource", "default/test/key1"]);
    assert_eq!(
        out.status.code(),
        exit_code(Exit::Unavailable),
        "{}",
        stderr(&out)
    );
    let plain = s.url.replace("https://", "http://");
    let out = std::process::Command::new(coffer_integration::binary("coffer"))
        .args(["--url", &plain, "get-resource", "default/test/key1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// The PAI-EAS flow: the gocryptfs password is a KBS resource; `coffer model decrypt --key`
/// attests, receives it and decrypts the model without the password touching disk.
#[test]
fn model_decrypt_with_key_from_kbs() {
    let (dir, s) = setup(None);
    let cipher = dir.path().join("cipher");
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../cryptfs/tests/fixtures/worked-example/cipher");
    assert!(std::process::Command::new("cp")
        .arg("-a")
        .arg(&fixture)
        .arg(&cipher)
        .status()
        .unwrap()
        .success());
    // The fixture copy keeps its one encrypted symlink as a text file; leave it out here.
    std::fs::remove_file(cipher.join("-x84MtGCr3E9mBgWbDI0cg")).unwrap();
    store_secret(
        &s,
        dir.path(),
        "default/aliyun/model-decryption-key",
        b"test\n",
    );
    s.admin(&["set-resource-policy", "--allow-all"]);
    let dest = dir.path().join("model");
    let out = s.coffer(&[
        "model",
        "decrypt",
        cipher.to_str().unwrap(),
        dest.to_str().unwrap(),
        "--key",
        "kbs:///default/aliyun/model-decryption-key",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["failures"], json!([]));
    assert_eq!(
        std::fs::read(dest.join("hello.txt")).unwrap(),
        b"Hello, gocryptfs!\n"
    );
    assert_eq!(
        std::fs::read(dest.join("sparse.bin")).unwrap(),
        vec![0u8; 8193]
    );

    // A wrong key from the KBS is a clear error and writes nothing.
    store_secret(
        &s,
        dir.path(),
        "default/aliyun/model-decryption-key",
        b"wrong\n",
    );
    let dest2 = dir.path().join("model2");
    let out = s.coffer(&[
        "model",
        "decrypt",
        cipher.to_str().unwrap(),
        dest2.to_str().unwrap(),
        "--key",
        "default/aliyun/model-decryption-key",
    ]);
    // Exit code 7: wrong model key.
    assert_eq!(out.status.code(), exit_code(Exit::WrongKey));
    assert!(
        stderr(&out).contains("wrong password") && stderr(&out).contains("gocryptfs.conf"),
        "{}",
        stderr(&out)
    );
    assert!(!dest2.exists());

    // A tampered block fails that file only, with exit code 6 and the block named.
    let f = cipher.join("u5t4RvePvKsKxKbIunmLEw");
    let mut b = std::fs::read(&f).unwrap();
    b[100] ^= 1;
    std::fs::write(&f, &b).unwrap();
    let dest3 = dir.path().join("model3");
    let out = s.coffer(&[
        "model",
        "decrypt",
        cipher.to_str().unwrap(),
        dest3.to_str().unwrap(),
        "--masterkey",
        "10138459-ff644b35-c2727f2b-ddd818ae-8ef8334a-b854762a-7802183f-4d31c703",
        "-q",
        "--threads",
        "1",
    ]);
    assert_eq!(
        out.status.code(),
        exit_code(Exit::Tampered),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("block 0"), "{}", stderr(&out));
    assert!(!dest3.join("5000.bin").exists());
    assert!(dest3.join("hello.txt").exists());

    // verify reports the same corruption and writes nothing.
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "test\n").unwrap();
    let out = s.coffer(&[
        "model",
        "verify",
        cipher.to_str().unwrap(),
        "--password-file",
        pw.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        exit_code(Exit::Tampered),
        "{}",
        stderr(&out)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let failures = v["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1);
    assert!(failures[0]["cipher_path"]
        .as_str()
        .unwrap()
        .ends_with("u5t4RvePvKsKxKbIunmLEw"));
    assert!(failures[0]["error"].as_str().unwrap().contains("block 0"));
    assert!(v["files"].as_u64().unwrap() >= 5);
}

/// Policies managed as files (a ConfigMap): installed at start-up; a broken file stops the
/// start with its name.
#[test]
fn policy_dir_is_installed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let pol = dir.path().join("policies");
    std::fs::create_dir(&pol).unwrap();
    std::fs::write(
        pol.join("resource-policy.rego"),
        "package policy\nimport rego.v1\ndefault allow := true\n",
    )
    .unwrap();
    let cfg = format!("[server]\npolicy_dir = {:?}\n", pol);
    let s = Server::start(dir.path(), Some(&cfg));
    store_secret(&s, dir.path(), "default/test/key1", SECRET);
    assert_eq!(
        s.coffer(&["get-resource", "default/test/key1"]).stdout,
        SECRET
    );
    drop(s);

    std::fs::write(
        pol.join("default_cpu.rego"),
        "package policy\nthis is not rego",
    )
    .unwrap();
    let out = std::process::Command::new(coffer_integration::binary("coffer-server"))
        .args([
            "--config",
            dir.path().join("coffer-server.toml").to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("default_cpu.rego"), "{err}");
}

/// The rows of a `coffer admin audit --json` page.
fn audit_rows(stdout: &[u8]) -> Vec<Value> {
    let page: Value = serde_json::from_slice(stdout).unwrap();
    page["entries"].as_array().unwrap().clone()
}
