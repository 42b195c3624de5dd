//! Requests as Alibaba's Trustee tooling (PAI-EAS) sends them, against the real
//! coffer-server binary over HTTP: path prefixes (`/api`, a release name), Alibaba's extra
//! KBS endpoints, its RVPS endpoints, role-less admin tokens and the `Attestation` header.

use std::process::Output;

use coffer_integration::{binary, Server};
use coffer_protocol::jwt::{self, SigningKey};
use coffer_protocol::messages::Challenge;
use coffer_protocol::runtime_data::runtime_data_hash;
use coffer_protocol::{b64, HashAlgorithm, Problem, TeeKeyPair};
use ed25519_dalek::pkcs8::DecodePrivateKey;
use serde_json::{json, Value};
use sha2::Digest;

const SECRET: &[u8] = b"alibaba-test-secret-0123456789abcdef";

fn store_secret(s: &Server, dir: &std::path::Path, path: &str, bytes: &[u8]) {
    let f = dir.join("secret.bin");
    std::fs::write(&f, bytes).unwrap();
    s.admin(&["set-resource", path, "--file", f.to_str().unwrap()]);
}

/// The real `coffer` CLI with an explicit `--url`.
fn coffer_at(url: &str, args: &[&str]) -> Output {
    std::process::Command::new(binary("coffer"))
        .arg("--url")
        .arg(url)
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An admin token as Alibaba's documented generator makes it: EdDSA, `iat` and `exp` only.
fn alibaba_token(s: &Server, ttl: i64) -> String {
    let pem = std::fs::read_to_string(s.admin_key()).unwrap();
    let sk = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem).unwrap();
    let t = now();
    jwt::sign(
        &json!({"iat": t, "exp": t + ttl}),
        Default::default(),
        &SigningKey::EdDsa(sk),
    )
    .unwrap()
}

async fn send(
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<String>,
) -> reqwest::Response {
    let mut rb = reqwest::Client::new().request(method, url);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if let Some(b) = body {
        rb = rb.header("content-type", "application/json").body(b);
    }
    rb.send().await.unwrap()
}

async fn problem(r: reqwest::Response, status: u16, kind: &str) -> Problem {
    assert_eq!(r.status().as_u16(), status);
    assert_eq!(r.headers()["content-type"], "application/json");
    let p: Problem = r.json().await.unwrap();
    assert_eq!(p.kind_name(), kind, "{p:?}");
    p
}

async fn ok_empty(r: reqwest::Response) {
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().is_empty());
}

fn sha384_b64url(text: &str) -> String {
    b64::url_encode(sha2::Sha384::digest(text.as_bytes()))
}

/// A sample-TEE handshake by hand; returns the attestation token and the TEE key.
async fn attest_sample(base: &str) -> (String, TeeKeyPair) {
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/kbs/v0/auth"))
        .header("content-type", "application/json")
        .body(r#"{"version":"0.4.0","tee":"sample","extra-params":{}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    // No Path attribute: the cookie's default path is the request's directory
    // (`<prefix>/kbs/v0`), which covers `/attest` and `/resource/...` under any prefix.
    assert!(!cookie.to_ascii_lowercase().contains("path="), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_string();
    let ch: Challenge = r.json().await.unwrap();
    let key = TeeKeyPair::generate();
    let jwk = key.public_jwk();
    let hash = runtime_data_hash(HashAlgorithm::Sha384, &ch.nonce, &jwk, "");
    let body = json!({
        "runtime-data": {"nonce": ch.nonce, "tee-pubkey": jwk},
        "tee-evidence": {"primary_evidence": {"report_data": b64::std_encode(hash), "svn": "1"}, "additional_evidence": ""}
    });
    let r = http
        .post(format!("{base}/kbs/v0/attest"))
        .header("content-type", "application/json")
        .header("cookie", session)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    (v["token"].as_str().unwrap().to_string(), key)
}

#[test]
fn real_client_through_api_and_release_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        dir.path(),
        Some("[server]\npath_prefixes = [\"/api\", \"/trustee\"]\n"),
    );
    store_secret(&s, dir.path(), "default/test/key1", SECRET);
    s.admin(&["set-resource-policy", "--allow-all"]);
    for prefix in ["/api", "/trustee", "/trustee/"] {
        let url = format!("{}{prefix}", s.url);
        let out = coffer_at(&url, &["get-resource", "default/test/key1"]);
        assert!(out.status.success(), "{prefix}: {}", stderr(&out));
        assert_eq!(out.stdout, SECRET, "{prefix}");
        // the admin CLI works through the prefix too
        let key = s.admin_key();
        let out = coffer_at(
            &url,
            &["admin", "--key", key.to_str().unwrap(), "list-resources"],
        );
        assert!(out.status.success(), "{prefix}: {}", stderr(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "default/test/key1\n");
    }
    // An unconfigured prefix is not the KBS.
    let out = coffer_at(
        &format!("{}/other", s.url),
        &["get-resource", "default/test/key1"],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("404"), "{}", stderr(&out));
    // The releases happened under the unprefixed route (one audit trail, one metric).
    let out = s.admin(&["audit", "--json"]);
    let rows = audit_rows(&out.stdout);
    let released = rows
        .iter()
        .filter(|r| r["action"] == "release" && r["decision"] == "allow")
        .count();
    assert_eq!(released, 3);
}

#[tokio::test]
async fn default_prefix_is_api_and_the_flag_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), None);
    store_secret(&s, dir.path(), "default/test/key1", SECRET);
    s.admin(&["set-resource-policy", "--allow-all"]);
    let out = coffer_at(
        &format!("{}/api", s.url),
        &["get-resource", "default/test/key1"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, SECRET);
    // Alibaba's gateway path for the RVPS: /api/rvps/<p> is /kbs/v0/rvps/<p>.
    let token = s.admin_token();
    let r = send(
        reqwest::Method::GET,
        format!("{}/api/rvps/query", s.url),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({}));
    // coffer's own admin API and JWKS follow the prefix (the CLI uses them); probes do not.
    let r = send(
        reqwest::Method::GET,
        format!("{}/api/coffer/v1/policies/resource-policy", s.url),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["kind"], "resource");
    let key = s.admin_key();
    let out = coffer_at(
        &format!("{}/api", s.url),
        &[
            "admin",
            "--key",
            key.to_str().unwrap(),
            "get-resource-policy",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("package policy"));
    let r = send(
        reqwest::Method::GET,
        format!("{}/api/.well-known/jwks.json", s.url),
        None,
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(r.json::<Value>().await.unwrap()["keys"].is_array());
    problem(
        send(
            reqwest::Method::GET,
            format!("{}/api/healthz", s.url),
            None,
            None,
        )
        .await,
        404,
        "InvalidRequestPath",
    )
    .await;
    drop(s);

    // --path-prefix replaces the configured list: the release name works, /api no longer.
    let dir2 = tempfile::tempdir().unwrap();
    let s2 = Server::start_with_args(dir2.path(), None, &["--path-prefix", "/my-release"]);
    store_secret(&s2, dir2.path(), "default/test/key1", SECRET);
    s2.admin(&["set-resource-policy", "--allow-all"]);
    let out = coffer_at(
        &format!("{}/my-release", s2.url),
        &["get-resource", "default/test/key1"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, SECRET);
    let out = coffer_at(
        &format!("{}/api", s2.url),
        &["get-resource", "default/test/key1"],
    );
    assert!(!out.status.success());

    // Bad prefixes are refused at start-up, naming the setting.
    for bad in ["api", "/api/", "/a/../b"] {
        let out = std::process::Command::new(binary("coffer-server"))
            .args(["--path-prefix", bad, "--check-config"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad}");
        assert!(
            stderr(&out).contains("server.path_prefixes"),
            "{bad}: {}",
            stderr(&out)
        );
    }
}

#[tokio::test]
async fn every_alibaba_endpoint_needs_an_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), None);
    use reqwest::Method;
    let calls = [
        (Method::GET, "/kbs/v0/attestation-policy/default_cpu", None),
        (Method::DELETE, "/kbs/v0/attestation-policy/x", None),
        (Method::GET, "/kbs/v0/attestation-policies", None),
        (Method::GET, "/kbs/v0/resources", None),
        (Method::GET, "/kbs/v0/rvps/query", None),
        (Method::POST, "/kbs/v0/rvps/register", Some("{}")),
        (
            Method::POST,
            "/kbs/v0/rvps/set_reference_value_list",
            Some("{}"),
        ),
        (Method::DELETE, "/kbs/v0/rvps/delete/x", None),
        (Method::POST, "/kbs/v0/attestation-policy", Some("{}")),
    ];
    for (m, path, body) in calls {
        for base in [s.url.clone(), format!("{}/api", s.url)] {
            let r = send(
                m.clone(),
                format!("{base}{path}"),
                None,
                body.map(String::from),
            )
            .await;
            let p = problem(r, 401, "AdminAuthAccess").await;
            assert!(
                p.detail.contains("admin token is required"),
                "{m} {path}: {}",
                p.detail
            );
        }
    }
}

#[tokio::test]
async fn attestation_policy_get_list_delete() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), None);
    let t = s.admin_token();
    let u = |p: &str| format!("{}/api/kbs/v0{p}", s.url);
    use reqwest::Method;

    let text = "package policy\nimport rego.v1\ndefault executables := 33\n";
    // Alibaba's upload body (base64url without padding, extra "type").
    let up = json!({"type": "rego", "policy_id": "pai-extra", "policy": b64::url_encode(text)});
    ok_empty(
        send(
            Method::POST,
            u("/attestation-policy"),
            Some(&t),
            Some(up.to_string()),
        )
        .await,
    )
    .await;

    let r = send(
        Method::GET,
        u("/attestation-policy/pai-extra"),
        Some(&t),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.text().await.unwrap(), b64::url_encode(text));

    let r = send(
        Method::GET,
        u("/attestation-policy/default_cpu"),
        Some(&t),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    let default_text =
        String::from_utf8(b64::url_decode(&r.text().await.unwrap()).unwrap()).unwrap();
    assert!(default_text.contains("package policy"));

    let r = send(Method::GET, u("/attestation-policies"), Some(&t), None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"default_cpu": sha384_b64url(&default_text), "pai-extra": sha384_b64url(text)})
    );
    // the resource policy is not an attestation policy
    problem(
        send(
            Method::GET,
            u("/attestation-policy/resource-policy"),
            Some(&t),
            None,
        )
        .await,
        404,
        "ResourceNotFound",
    )
    .await;

    // delete: once; the defaults can only be replaced
    ok_empty(
        send(
            Method::DELETE,
            u("/attestation-policy/pai-extra"),
            Some(&t),
            None,
        )
        .await,
    )
    .await;
    problem(
        send(
            Method::GET,
            u("/attestation-policy/pai-extra"),
            Some(&t),
            None,
        )
        .await,
        404,
        "ResourceNotFound",
    )
    .await;
    problem(
        send(
            Method::DELETE,
            u("/attestation-policy/pai-extra"),
            Some(&t),
            None,
        )
        .await,
        404,
        "ResourceNotFound",
    )
    .await;
    // Alibaba's `default` governs while it exists; deleting it hands CPU evidence back to
    // `default_cpu`, so it can go. `default_cpu` itself can only be replaced.
    let up = json!({"policy_id": "default", "policy": b64::url_encode(text)});
    ok_empty(
        send(
            Method::POST,
            u("/attestation-policy"),
            Some(&t),
            Some(up.to_string()),
        )
        .await,
    )
    .await;
    ok_empty(
        send(
            Method::DELETE,
            u("/attestation-policy/default"),
            Some(&t),
            None,
        )
        .await,
    )
    .await;
    for protected in ["default_cpu"] {
        let p = problem(
            send(
                Method::DELETE,
                u(&format!("/attestation-policy/{protected}")),
                Some(&t),
                None,
            )
            .await,
            401,
            "PolicyEngineError",
        )
        .await;
        assert!(p.detail.contains("cannot be deleted"), "{}", p.detail);
    }
    let r = send(Method::GET, u("/attestation-policies"), Some(&t), None).await;
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"default_cpu": sha384_b64url(&default_text)})
    );

    // the CLI's view of the same
    let out = s.admin(&["list-attestation-policies"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("default_cpu  sha384:{}\n", sha384_b64url(&default_text))
    );
    let out = s.admin(&["get-attestation-policy", "default_cpu"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), default_text);
    let f = dir.path().join("p.rego");
    std::fs::write(&f, text).unwrap();
    s.admin(&[
        "set-attestation-policy",
        "--id",
        "cli-one",
        "--file",
        f.to_str().unwrap(),
    ]);
    s.admin(&["delete-attestation-policy", "cli-one"]);
    let out = s.coffer(&[
        "admin",
        "--key",
        s.admin_key().to_str().unwrap(),
        "delete-attestation-policy",
        "default_cpu",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot be deleted"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn resources_list_names_with_gateway_filters() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), None);
    for p in ["default/test/key2", "default/test/key1", "other/cert/a"] {
        store_secret(&s, dir.path(), p, SECRET);
    }
    let t = s.admin_token();
    let list = |q: &'static str| {
        let url = format!("{}/api/kbs/v0/resources{q}", s.url);
        let t = t.clone();
        async move {
            let r = send(reqwest::Method::GET, url, Some(&t), None).await;
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["content-type"], "application/json");
            let body = r.text().await.unwrap();
            assert!(!body.contains(&b64::std_encode(SECRET)) && !body.contains("alibaba-test"));
            serde_json::from_str::<Value>(&body).unwrap()
        }
    };
    let e = |r: &str, t: &str, g: &str| json!({"repository_name": r, "resource_type": t, "resource_tag": g});
    assert_eq!(
        list("").await,
        json!([
            e("default", "test", "key1"),
            e("default", "test", "key2"),
            e("other", "cert", "a")
        ])
    );
    assert_eq!(
        list("?repository=other").await,
        json!([e("other", "cert", "a")])
    );
    assert_eq!(
        list("?type=test").await,
        json!([e("default", "test", "key1"), e("default", "test", "key2")])
    );
    assert_eq!(list("?repository=default&type=cert").await, json!([]));
    assert_eq!(
        list("?repository=&type=").await.as_array().unwrap().len(),
        3
    );

    let out = s.admin(&["list-resources", "--type", "test"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "default/test/key1\ndefault/test/key2\n"
    );
    s.admin(&["delete-resource", "other/cert/a"]);
    let out = s.admin(&["list-resources", "--repository", "other"]);
    assert!(out.stdout.is_empty());
}

/// `{"message": "<JSON text>"}` as Alibaba's RVPS tooling posts it.
fn register_body(values: Value) -> String {
    let message = json!({"version": "0.1.0", "type": "sample", "payload": b64::std_encode(values.to_string())});
    json!({"message": message.to_string()}).to_string()
}

async fn rvps_semantics(s: &Server) {
    let t = s.admin_token();
    let u = |p: &str| format!("{}/kbs/v0/rvps{p}", s.url);
    use reqwest::Method;
    let query = || async {
        let r = send(Method::GET, u("/query"), Some(&t), None).await;
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()
    };
    let register = |v: Value| {
        send(
            Method::POST,
            u("/register"),
            Some(&t),
            Some(register_body(v)),
        )
    };

    ok_empty(
        register(json!({"measurement.model.qwen2-7b": ["aa11", "bb22"], "flex": {"a": 1}})).await,
    )
    .await;
    assert_eq!(
        query().await,
        json!({"measurement.model.qwen2-7b": ["aa11", "bb22"], "flex": {"a": 1}})
    );
    // digest lists are merged (union, old order first); other values replace
    ok_empty(
        register(json!({"measurement.model.qwen2-7b": ["bb22", "cc33"], "flex": ["x"]})).await,
    )
    .await;
    assert_eq!(
        query().await,
        json!({"measurement.model.qwen2-7b": ["aa11", "bb22", "cc33"], "flex": ["x"]})
    );
    ok_empty(register(json!({"flex": ["y"]})).await).await;
    ok_empty(register(json!({"measurement.model.qwen2-7b": "single"})).await).await;
    assert_eq!(
        query().await,
        json!({"measurement.model.qwen2-7b": "single", "flex": ["x", "y"]})
    );
    // the policy-facing view (upstream endpoint) sees the same
    let r = send(
        Method::GET,
        format!("{}/kbs/v0/reference-value/flex", s.url),
        Some(&t),
        None,
    )
    .await;
    assert_eq!(r.json::<Value>().await.unwrap(), json!(["x", "y"]));
    // upstream's POST /reference-value (bare message) keeps replacing
    let bare = json!({"version": "0.1.0", "type": "sample", "payload": b64::std_encode(json!({"flex": ["z"]}).to_string())});
    let r = send(
        Method::POST,
        format!("{}/kbs/v0/reference-value", s.url),
        Some(&t),
        Some(bare.to_string()),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(query().await["flex"], json!(["z"]));

    // delete: 200 whether or not it exists
    ok_empty(send(Method::DELETE, u("/delete/flex"), Some(&t), None).await).await;
    ok_empty(send(Method::DELETE, u("/delete/flex"), Some(&t), None).await).await;
    assert_eq!(
        query().await,
        json!({"measurement.model.qwen2-7b": "single"})
    );
    s.admin(&["delete-reference-value", "measurement.model.qwen2-7b"]);
    assert_eq!(query().await, json!({}));
    let out = s.admin(&["list-reference-values"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "{}");

    // malformed registrations are refused with RvpsError
    for bad in [
        "{}".to_string(),
        json!({"message": "not json"}).to_string(),
        json!({"message": json!({"version": "0.2.0", "type": "sample", "payload": ""}).to_string()})
            .to_string(),
    ] {
        problem(send(Method::POST, u("/register"), Some(&t), Some(bad)).await, 401, "RvpsError").await;
    }
}

#[tokio::test]
async fn rvps_register_merge_query_delete_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), None);
    rvps_semantics(&s).await;
}

#[tokio::test]
async fn rvps_register_merge_query_delete_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start_replica(&data, &Server::fresh_postgres(), "pg");
    rvps_semantics(&s).await;
}

#[tokio::test]
async fn set_reference_value_list_is_validated_then_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), None);
    let t = s.admin_token();
    let url = format!("{}/api/rvps/set_reference_value_list", s.url);
    let post = |body: Value| {
        send(
            reqwest::Method::POST,
            url.clone(),
            Some(&t),
            Some(body.to_string()),
        )
    };
    let item = json!({
        "id": "kata-agent", "version": "3.2.0", "type": "binary",
        "provenance_info": {"type": "slsa-intoto-statements", "rekor_url": "https://rekor.sigstore.dev"},
        "operation_type": "add"
    });
    // valid: refused with 501, naming the value and the provenance coffer would have to fetch
    let r = post(json!({"rv_list": [item.clone()]})).await;
    let p = problem(r, 501, "RvpsError").await;
    assert!(
        p.detail.contains("measurement.binary.kata-agent")
            && p.detail.contains("rekor https://rekor.sigstore.dev")
            && p.detail.contains("rvps/register"),
        "{}",
        p.detail
    );
    let mut manifest = item.clone();
    manifest["provenance_info"]["type"] = json!("rv-release-manifest");
    manifest["provenance_source"] = json!({"protocol": "oci", "uri": "registry.example/rv:1"});
    manifest["rv_name"] = json!("my.rv");
    let p = problem(
        post(json!({"rv_list": [manifest.clone()]})).await,
        501,
        "RvpsError",
    )
    .await;
    assert!(
        p.detail.contains("\"my.rv\"") && p.detail.contains("oci registry.example/rv:1"),
        "{}",
        p.detail
    );

    // malformed: 400, naming the entry and the field
    let mut bad_op = item.clone();
    bad_op["operation_type"] = json!("replace");
    let mut no_source = manifest.clone();
    no_source
        .as_object_mut()
        .unwrap()
        .remove("provenance_source");
    let mut bad_type = item.clone();
    bad_type["provenance_info"]["type"] = json!("sbom");
    let mut blank_name = item.clone();
    blank_name["rv_name"] = json!("  ");
    let mut bad_proto = manifest.clone();
    bad_proto["provenance_source"]["protocol"] = json!("http");
    for (body, needle) in [
        (
            json!({"rv_list": [item.clone(), bad_op]}),
            "rv_list[1]: unsupported operation_type",
        ),
        (
            json!({"rv_list": [no_source]}),
            "requires provenance_source",
        ),
        (json!({"rv_list": [bad_type]}), "provenance_info.type"),
        (json!({"rv_list": [blank_name]}), "rv_name"),
        (
            json!({"rv_list": [bad_proto]}),
            "provenance_source.protocol",
        ),
        (json!({"rv_list": []}), "empty"),
        (json!({"list": []}), "rv_list"),
    ] {
        let p = problem(post(body).await, 400, "RvpsError").await;
        assert!(p.detail.contains(needle), "{needle}: {}", p.detail);
    }
}

#[tokio::test]
async fn alibaba_style_admin_tokens_only_when_enabled() {
    let path = "/kbs/v0/attestation-policies";
    // Off (the default): refused, and the detail names the setting.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), None);
    let tok = alibaba_token(&s, 7200);
    let p = problem(
        send(
            reqwest::Method::GET,
            format!("{}{path}", s.url),
            Some(&tok),
            None,
        )
        .await,
        401,
        "AdminAuthAccess",
    )
    .await;
    assert!(p.detail.contains("accept_alibaba_tokens"), "{}", p.detail);
    drop(s);

    // On: accepted through the gateway prefix, bounded in lifetime, audited as such.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        dir.path(),
        Some("[admin]\naccept_alibaba_tokens = true\nalibaba_token_max_ttl_secs = 10800\n"),
    );
    let tok = alibaba_token(&s, 7200);
    let r = send(
        reqwest::Method::GET,
        format!("{}/api{path}", s.url),
        Some(&tok),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    let up = json!({"policy_id": "ali", "policy": b64::url_encode("package policy\n")});
    ok_empty(
        send(
            reqwest::Method::POST,
            format!("{}/api/kbs/v0/attestation-policy", s.url),
            Some(&tok),
            Some(up.to_string()),
        )
        .await,
    )
    .await;
    let long = alibaba_token(&s, 4 * 3600);
    let p = problem(
        send(
            reqwest::Method::GET,
            format!("{}{path}", s.url),
            Some(&long),
            None,
        )
        .await,
        401,
        "AdminAuthAccess",
    )
    .await;
    assert!(p.detail.contains("at most 10800"), "{}", p.detail);
    let expired = alibaba_token(&s, -600);
    problem(
        send(
            reqwest::Method::GET,
            format!("{}{path}", s.url),
            Some(&expired),
            None,
        )
        .await,
        401,
        "AdminAuthAccess",
    )
    .await;
    // signed by another key: refused
    let other = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let forged = jwt::sign(
        &json!({"iat": now(), "exp": now() + 600}),
        Default::default(),
        &SigningKey::EdDsa(other),
    )
    .unwrap();
    problem(
        send(
            reqwest::Method::GET,
            format!("{}{path}", s.url),
            Some(&forged),
            None,
        )
        .await,
        401,
        "AdminAuthAccess",
    )
    .await;
    // coffer's own tokens keep working
    let r = send(
        reqwest::Method::GET,
        format!("{}{path}", s.url),
        Some(&s.admin_token()),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    let out = s.admin(&["audit", "--json"]);
    let rows = audit_rows(&out.stdout);
    let row = rows
        .iter()
        .find(|r| r["action"] == "admin:set-attestation-policy")
        .unwrap();
    assert_eq!(row["actor"], "alibaba-admin-token");
}

#[tokio::test]
async fn attestation_header_carries_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), None);
    store_secret(&s, dir.path(), "default/test/key1", SECRET);
    s.admin(&["set-resource-policy", "--allow-all"]);
    let base = format!("{}/api", s.url);
    let (token, key) = attest_sample(&base).await;
    let url = format!("{base}/kbs/v0/resource/default/test/key1");
    let http = reqwest::Client::new();

    // no cookie: the Attestation header alone is enough
    let r = http
        .get(&url)
        .header("Attestation", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let jwe: coffer_protocol::jwe::FlattenedJwe = r.json().await.unwrap();
    assert_eq!(
        &coffer_protocol::jwe::decrypt(&key, &jwe).unwrap()[..],
        SECRET
    );

    // it is consulted before Authorization: Bearer (a bad one wins over a good bearer)
    let r = http
        .get(&url)
        .header("Attestation", "not-a-token")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    problem(r, 401, "TokenVerifierError").await;
    // and without it the bearer still works
    let r = http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// The rows of a `coffer admin audit --json` page.
fn audit_rows(stdout: &[u8]) -> Vec<Value> {
    let page: Value = serde_json::from_slice(stdout).unwrap();
    page["entries"].as_array().unwrap().clone()
}
