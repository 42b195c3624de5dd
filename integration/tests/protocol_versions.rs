//! Every KBS protocol version (0.1.0, 0.1.1, 0.2.0, 0.3.0, 0.4.0) against one real
//! coffer-server: the real `coffer` CLI speaking each version, and raw HTTP checks of each
//! version's wire shapes. Bodies, binding objects and legacy JWE decryption are written out
//! by hand here (not taken from coffer-protocol), so a shape that drifts fails.

use coffer_integration::{exit_code, Exit, Server};
use coffer_protocol::jwe::{self, FlattenedJwe};
use coffer_protocol::jwk::RsaAlg;
use coffer_protocol::jwt;
use coffer_protocol::{b64, Problem, TeeKeyPair};
use openssl::pkey::Private;
use openssl::rsa::{Padding, Rsa};
use openssl::symm::{decrypt_aead, Cipher};
use serde_json::{json, Value};
use sha2::{Digest, Sha384};

const SECRET: &[u8] = b"anchor-test-secret-0123456789abcdef";
const VERSIONS: [&str; 5] = ["0.1.0", "0.1.1", "0.2.0", "0.3.0", "0.4.0"];
const ACCEPTED: &str = "0.1.0, 0.1.1, 0.2.0, 0.3.0, 0.4.0";
const LEGACY_PROTECTED: &str = r#"{"alg":"RSA1_5","enc":"A256GCM"}"#;

/// A server holding `default/test/key1`, releasing to any attested TEE.
fn setup() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), None);
    let f = dir.path().join("secret.bin");
    std::fs::write(&f, SECRET).unwrap();
    s.admin(&[
        "set-resource",
        "default/test/key1",
        "--file",
        f.to_str().unwrap(),
    ]);
    s.admin(&["set-resource-policy", "--allow-all"]);
    (dir, s)
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn cli_gets_resource_with_every_protocol_version() {
    let (dir, s) = setup();
    for v in VERSIONS {
        let out = s.coffer(&["--protocol-version", v, "get-resource", "default/test/key1"]);
        assert!(out.status.success(), "{v}: {}", stderr(&out));
        assert_eq!(out.stdout, SECRET, "{v}");

        // The token proves which version the CLI spoke and what it bound.
        let out = s.coffer(&["attest", "--protocol-version", v]);
        assert!(out.status.success(), "{v}: {}", stderr(&out));
        let token = String::from_utf8(out.stdout).unwrap();
        let claims = jwt::decode_unverified(token.trim()).unwrap().claims;
        assert_eq!(claims["coffer.kbs-protocol-version"], v);
        let rd =
            &claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["runtime_data_claims"];
        assert_eq!(
            rd.get("additional-evidence").is_some(),
            v >= "0.3.0",
            "{v}: {rd}"
        );
        let want_alg = if v < "0.2.0" {
            "RSA1_5"
        } else {
            "ECDH-ES+A256KW"
        };
        assert_eq!(rd["tee-pubkey"]["alg"], want_alg, "{v}");
    }

    // 0.1.x needs an RSA key: an EC key file is refused before anything is sent.
    let ec = dir.path().join("ec.pem");
    std::fs::write(
        &ec,
        TeeKeyPair::generate().to_pkcs8_pem().unwrap().as_bytes(),
    )
    .unwrap();
    let out = s.coffer(&[
        "--protocol-version",
        "0.1.1",
        "get-resource",
        "default/test/key1",
        "--tee-key-file",
        ec.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        exit_code(Exit::Failure),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("RSA"), "{}", stderr(&out));
    // ... and an RSA key file is used with RSA1_5.
    let rsa = dir.path().join("rsa.pem");
    let pem = TeeKeyPair::generate_rsa(2048, RsaAlg::RsaOaep256)
        .unwrap()
        .to_pkcs8_pem()
        .unwrap();
    std::fs::write(&rsa, pem.as_bytes()).unwrap();
    let out = s.coffer(&[
        "--protocol-version",
        "0.1.0",
        "get-resource",
        "default/test/key1",
        "--tee-key-file",
        rsa.to_str().unwrap(),
    ]);
    assert_eq!(out.stdout, SECRET, "{}", stderr(&out));
    // Unknown versions are a usage error listing the accepted ones.
    let out = s.coffer(&["--protocol-version", "0.5.0", "attest"]);
    assert_eq!(out.status.code(), exit_code(Exit::Usage));
    assert!(stderr(&out).contains("0.1.1"), "{}", stderr(&out));
}

/// A raw guest of any version: one session cookie, bodies written by the test.
struct Guest {
    http: reqwest::Client,
    url: String,
    cookie: Option<String>,
}

impl Guest {
    fn new(url: &str) -> Self {
        Guest {
            http: reqwest::Client::new(),
            url: url.to_string(),
            cookie: None,
        }
    }

    async fn post(&self, path: &str, body: String) -> reqwest::Response {
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

    /// `/auth` for `version`; returns the nonce after checking the Challenge's shape.
    async fn auth(&mut self, version: &str) -> String {
        let extra = if version == "0.1.0" {
            json!("")
        } else {
            json!({"supported-hash-algorithms": ["sha256", "sha384", "sha512"]})
        };
        let body = json!({"version": version, "tee": "sample", "extra-params": extra});
        let r = self.post("auth", body.to_string()).await;
        assert_eq!(r.status(), 200, "{version}");
        let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
        self.cookie = Some(
            cookie["kbs-session-id=".len()..]
                .split(';')
                .next()
                .unwrap()
                .to_string(),
        );
        let ch: Value = r.json().await.unwrap();
        assert_eq!(ch["extra-params"], json!(""), "{version}");
        let nonce = ch["nonce"].as_str().unwrap().to_string();
        assert_eq!(b64::std_decode(&nonce).unwrap().len(), 32);
        nonce
    }

    async fn attest(&self, body: &Value) -> reqwest::Response {
        self.post("attest", body.to_string()).await
    }

    async fn get(&self, bearer: Option<&str>) -> reqwest::Response {
        let mut rb = self
            .http
            .get(format!("{}/kbs/v0/resource/default/test/key1", self.url));
        if let Some(c) = &self.cookie {
            rb = rb.header("cookie", format!("kbs-session-id={c}"));
        }
        if let Some(t) = bearer {
            rb = rb.bearer_auth(t);
        }
        rb.send().await.unwrap()
    }

    async fn get_jwe(&self, bearer: Option<&str>) -> Value {
        let r = self.get(bearer).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/json");
        let v: Value = r.json().await.unwrap();
        let mut members: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        members.sort_unstable();
        assert_eq!(
            members,
            ["ciphertext", "encrypted_key", "iv", "protected", "tag"]
        );
        v
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

/// A guest-components 0.1.x TEE key: RSA-2048, JWK `{kty, alg: RSA1_5, n, e}`.
fn rsa1_5_key() -> (Rsa<Private>, Value, String) {
    let k = Rsa::generate(2048).unwrap();
    let n = b64::url_encode(k.n().to_vec());
    let e = b64::url_encode(k.e().to_vec());
    let jwk = json!({"kty": "RSA", "alg": "RSA1_5", "n": n, "e": e});
    // The sorted compact form both sides hash.
    let sorted = format!(r#"{{"alg":"RSA1_5","e":"{e}","kty":"RSA","n":"{n}"}}"#);
    (k, jwk, sorted)
}

/// SHA-384 of `{"nonce":N,"tee-pubkey":K}` (0.1.0 – 0.2.0), standard base64.
fn old_binding(nonce: &str, sorted_jwk: &str) -> String {
    b64::std_encode(Sha384::digest(format!(
        r#"{{"nonce":"{nonce}","tee-pubkey":{sorted_jwk}}}"#
    )))
}

/// SHA-384 of `{"additional-evidence":"","nonce":N,"tee-pubkey":K}` (0.3.0 on).
fn new_binding(nonce: &str, sorted_jwk: &str) -> String {
    b64::std_encode(Sha384::digest(format!(
        r#"{{"additional-evidence":"","nonce":"{nonce}","tee-pubkey":{sorted_jwk}}}"#
    )))
}

fn sorted_ec(jwk: &Value) -> String {
    format!(
        r#"{{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        jwk["x"].as_str().unwrap(),
        jwk["y"].as_str().unwrap()
    )
}

fn sample(report_data: &str) -> Value {
    json!({"svn": "1", "report_data": report_data})
}

fn unwrap_cek(key: &Rsa<Private>, jwe: &Value) -> Vec<u8> {
    let ek = b64::url_decode(jwe["encrypted_key"].as_str().unwrap()).unwrap();
    assert_eq!(ek.len(), 256);
    let mut cek = vec![0u8; 256];
    let n = key.private_decrypt(&ek, &mut cek, Padding::PKCS1).unwrap();
    assert_eq!(n, 32);
    cek.truncate(32);
    cek
}

/// Opens a legacy (0.1.x) Response by hand: raw JSON header, RSA PKCS#1 v1.5 content key,
/// AES-256-GCM without AAD over ciphertext‖tag, empty `tag`.
fn open_legacy(key: &Rsa<Private>, jwe: &Value) -> Vec<u8> {
    assert_eq!(jwe["protected"], LEGACY_PROTECTED);
    assert_eq!(jwe["tag"], "");
    let cek = unwrap_cek(key, jwe);
    let iv = b64::url_decode(jwe["iv"].as_str().unwrap()).unwrap();
    assert_eq!(iv.len(), 12);
    let ct = b64::url_decode(jwe["ciphertext"].as_str().unwrap()).unwrap();
    assert_eq!(ct.len(), SECRET.len() + 16);
    let (body, tag) = ct.split_at(ct.len() - 16);
    decrypt_aead(Cipher::aes_256_gcm(), &cek, Some(&iv), &[], body, tag).unwrap()
}

/// Opens an RFC 7516 Response to an RSA1_5 key by hand: base64url header as AAD, tag apart.
fn open_rfc_rsa(key: &Rsa<Private>, jwe: &Value) -> Vec<u8> {
    let protected = jwe["protected"].as_str().unwrap();
    assert_eq!(
        b64::url_decode(protected).unwrap(),
        LEGACY_PROTECTED.as_bytes()
    );
    let cek = unwrap_cek(key, jwe);
    let iv = b64::url_decode(jwe["iv"].as_str().unwrap()).unwrap();
    let tag = b64::url_decode(jwe["tag"].as_str().unwrap()).unwrap();
    assert_eq!(tag.len(), 16);
    let ct = b64::url_decode(jwe["ciphertext"].as_str().unwrap()).unwrap();
    assert_eq!(ct.len(), SECRET.len());
    decrypt_aead(
        Cipher::aes_256_gcm(),
        &cek,
        Some(&iv),
        protected.as_bytes(),
        &ct,
        &tag,
    )
    .unwrap()
}

#[tokio::test]
async fn pai_eas_connectivity_check() {
    let (_dir, s) = setup();
    let r = reqwest::Client::new()
        .post(format!("{}/kbs/v0/auth", s.url))
        .header("content-type", "application/json")
        .body(r#"{"version":"0.1.0","tee":"tdx","extra-params":"foo"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .starts_with("kbs-session-id="));
    let text = r.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    let members: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(members.len(), 2, "{text}");
    assert_eq!(body["extra-params"], json!(""), "{text}");
    assert!(text.contains(r#""extra-params":"""#), "{text}");
    assert_eq!(
        b64::std_decode(body["nonce"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
}

#[tokio::test]
async fn v0_1_0_wire_shapes() {
    let (_dir, s) = setup();
    let (key, jwk, sorted) = rsa1_5_key();
    let mut g = Guest::new(&s.url);
    let nonce = g.auth("0.1.0").await;
    let good = old_binding(&nonce, &sorted);

    // Evidence as an object (the 0.1.1 form) is not 0.1.0.
    let p = problem(
        g.attest(&json!({"tee-pubkey": jwk, "tee-evidence": sample(&good)}))
            .await,
        401,
        "AttestationError",
    )
    .await;
    assert!(p.detail.contains("must be a string"), "{}", p.detail);
    // Evidence bound with the 0.3.0+ object (with additional-evidence) does not match.
    let p = problem(
        g.attest(&json!({"tee-pubkey": jwk,
            "tee-evidence": sample(&new_binding(&nonce, &sorted)).to_string()}))
            .await,
        401,
        "AttestationError",
    )
    .await;
    assert!(p.detail.contains("report_data"), "{}", p.detail);
    // A 0.4.0 body on a 0.1.0 session is refused with a clear error.
    let p = problem(
        g.attest(&json!({"runtime-data": {"nonce": nonce, "tee-pubkey": jwk},
            "tee-evidence": {"primary_evidence": sample(&good), "additional_evidence": ""}}))
            .await,
        401,
        "AttestationError",
    )
    .await;
    assert!(p.detail.contains("protocol 0.1.0"), "{}", p.detail);

    // The 0.1.0 form: tee-evidence is a string holding the evidence JSON; `kty` unchecked
    // (the binding covers the JWK as sent).
    let body = json!({"tee-pubkey": jwk, "tee-evidence": sample(&good).to_string()});
    assert!(body["tee-evidence"].is_string());
    let r = g.attest(&body).await;
    assert_eq!(r.status(), 200);
    let token: Value = r.json().await.unwrap();
    let token = token["token"].as_str().unwrap().to_string();
    assert_eq!(
        jwt::decode_unverified(&token).unwrap().claims["coffer.kbs-protocol-version"],
        "0.1.0"
    );

    let jwe = g.get_jwe(None).await;
    assert_eq!(open_legacy(&key, &jwe), SECRET);
    // With the token as bearer and no session, the shape is still legacy.
    let bearer = Guest::new(&s.url);
    let jwe = bearer.get_jwe(Some(&token)).await;
    assert_eq!(open_legacy(&key, &jwe), SECRET);
}

#[tokio::test]
async fn v0_1_1_and_v0_2_0_differ_only_in_the_jwe() {
    let (_dir, s) = setup();
    let (key, jwk, sorted) = rsa1_5_key();
    for version in ["0.1.1", "0.2.0"] {
        let mut g = Guest::new(&s.url);
        let nonce = g.auth(version).await;
        // Same body in both: key on top, evidence as a JSON value, old binding object.
        let body =
            json!({"tee-pubkey": jwk, "tee-evidence": sample(&old_binding(&nonce, &sorted))});
        let r = g.attest(&body).await;
        assert_eq!(r.status(), 200, "{version}");
        let jwe = g.get_jwe(None).await;
        if version == "0.1.1" {
            assert_eq!(open_legacy(&key, &jwe), SECRET);
        } else {
            assert_eq!(open_rfc_rsa(&key, &jwe), SECRET);
        }
    }

    // 0.1.1 can only be served to RSA1_5: an EC key attests but the release is refused.
    let ec = TeeKeyPair::generate();
    let ec_jwk = ec.public_jwk();
    let mut g = Guest::new(&s.url);
    let nonce = g.auth("0.1.1").await;
    let r = g
        .attest(&json!({"tee-pubkey": ec_jwk,
            "tee-evidence": sample(&old_binding(&nonce, &sorted_ec(&ec_jwk)))}))
        .await;
    assert_eq!(r.status(), 200);
    let p = problem(g.get(None).await, 401, "JweError").await;
    assert!(p.detail.contains("RSA1_5"), "{}", p.detail);
    // ... while 0.2.0 serves the same EC key with an RFC 7516 JWE.
    let mut g = Guest::new(&s.url);
    let nonce = g.auth("0.2.0").await;
    let r = g
        .attest(&json!({"tee-pubkey": ec_jwk,
            "tee-evidence": sample(&old_binding(&nonce, &sorted_ec(&ec_jwk)))}))
        .await;
    assert_eq!(r.status(), 200);
    let jwe = g.get_jwe(None).await;
    let header: Value =
        serde_json::from_slice(&b64::url_decode(jwe["protected"].as_str().unwrap()).unwrap())
            .unwrap();
    assert_eq!(header["alg"], "ECDH-ES+A256KW");
    assert_eq!(header["epk"]["crv"], "P-256");
    let jwe: FlattenedJwe = serde_json::from_value(jwe).unwrap();
    assert_eq!(&jwe::decrypt(&ec, &jwe).unwrap()[..], SECRET);
}

#[tokio::test]
async fn v0_3_0_composite_evidence() {
    let (_dir, s) = setup();
    let k = TeeKeyPair::generate();
    let jwk = k.public_jwk();
    let sorted = sorted_ec(&jwk);
    let mut g = Guest::new(&s.url);
    let nonce = g.auth("0.3.0").await;
    let composite = |rd: String, extra: &str| {
        json!({"tee-pubkey": jwk,
            "tee-evidence": {"primary_evidence": sample(&rd), "additional_evidence": extra}})
    };
    // The pre-0.3.0 binding object (no additional-evidence) does not match.
    let p = problem(
        g.attest(&composite(old_binding(&nonce, &sorted), "")).await,
        401,
        "AttestationError",
    )
    .await;
    assert!(p.detail.contains("report_data"), "{}", p.detail);
    // Device evidence this server cannot verify is refused by name.
    let p = problem(
        g.attest(&composite(
            new_binding(&nonce, &sorted),
            r#"{"sampledevice":{"svn":"2"}}"#,
        ))
        .await,
        401,
        "AttestationError",
    )
    .await;
    assert!(p.detail.contains("sampledevice"), "{}", p.detail);
    // The 0.4.0 body (key inside runtime-data) is not 0.3.0.
    let p = problem(
        g.attest(&json!({"runtime-data": {"nonce": nonce, "tee-pubkey": jwk},
            "tee-evidence": {"primary_evidence": sample(&new_binding(&nonce, &sorted)), "additional_evidence": ""}}))
            .await,
        401,
        "AttestationError",
    )
    .await;
    assert!(p.detail.contains("tee-pubkey"), "{}", p.detail);

    let r = g.attest(&composite(new_binding(&nonce, &sorted), "")).await;
    assert_eq!(r.status(), 200);
    let jwe: FlattenedJwe = serde_json::from_value(g.get_jwe(None).await).unwrap();
    assert_eq!(&jwe::decrypt(&k, &jwe).unwrap()[..], SECRET);
}

#[tokio::test]
async fn all_versions_interleave_on_one_server() {
    let (_dir, s) = setup();
    let (rsa, rsa_jwk, rsa_sorted) = rsa1_5_key();
    let ec = TeeKeyPair::generate();
    let ec_jwk = ec.public_jwk();
    let ec_sorted = sorted_ec(&ec_jwk);

    // Open one session per version before any of them attests.
    let mut guests = Vec::new();
    for v in VERSIONS {
        let mut g = Guest::new(&s.url);
        let nonce = g.auth(v).await;
        guests.push((v, g, nonce));
    }
    // Attest newest first, so no session can lean on the one opened just before it.
    for (v, g, nonce) in guests.iter().rev() {
        let body = match *v {
            "0.1.0" => json!({"tee-pubkey": rsa_jwk,
                "tee-evidence": sample(&old_binding(nonce, &rsa_sorted)).to_string()}),
            "0.1.1" => json!({"tee-pubkey": rsa_jwk,
                "tee-evidence": sample(&old_binding(nonce, &rsa_sorted))}),
            "0.2.0" => json!({"tee-pubkey": ec_jwk,
                "tee-evidence": sample(&old_binding(nonce, &ec_sorted))}),
            "0.3.0" => json!({"tee-pubkey": ec_jwk,
                "tee-evidence": {"primary_evidence": sample(&new_binding(nonce, &ec_sorted)),
                                 "additional_evidence": ""}}),
            _ => json!({"init-data": null,
                "runtime-data": {"nonce": nonce, "tee-pubkey": ec_jwk},
                "tee-evidence": {"primary_evidence": sample(&new_binding(nonce, &ec_sorted)),
                                 "additional_evidence": ""}}),
        };
        let r = g.attest(&body).await;
        assert_eq!(r.status(), 200, "{v}: {}", r.text().await.unwrap());
    }
    // Fetch in a mixed order, twice; each session keeps its own layout.
    for round in 0..2 {
        for i in [2usize, 0, 4, 1, 3] {
            let (v, g, _) = &guests[i];
            let jwe = g.get_jwe(None).await;
            let plain = match *v {
                "0.1.0" | "0.1.1" => open_legacy(&rsa, &jwe),
                _ => {
                    let jwe: FlattenedJwe = serde_json::from_value(jwe).unwrap();
                    jwe::decrypt(&ec, &jwe).unwrap().to_vec()
                }
            };
            assert_eq!(plain, SECRET, "{v} round {round}");
        }
    }
    // Replaying a finished 0.1.0 attestation on a fresh 0.1.0 session is refused.
    let mut late = Guest::new(&s.url);
    let nonce = late.auth("0.1.0").await;
    let stale = json!({"tee-pubkey": rsa_jwk,
        "tee-evidence": sample(&old_binding(&guests[0].2, &rsa_sorted)).to_string()});
    problem(late.attest(&stale).await, 401, "AttestationError").await;
    let fresh = json!({"tee-pubkey": rsa_jwk,
        "tee-evidence": sample(&old_binding(&nonce, &rsa_sorted)).to_string()});
    assert_eq!(late.attest(&fresh).await.status(), 200);
}

#[tokio::test]
async fn unknown_versions_name_the_accepted_set() {
    let (_dir, s) = setup();
    let g = Guest::new(&s.url);
    for (version, mismatch) in [
        ("0.5.0", true),
        ("0.0.1", true),
        ("1.0", false),
        ("x", false),
    ] {
        let body = json!({"version": version, "tee": "sample", "extra-params": ""});
        let p = problem(
            g.post("auth", body.to_string()).await,
            401,
            "AttestationError",
        )
        .await;
        assert!(p.detail.contains(ACCEPTED), "{version}: {}", p.detail);
        assert!(p.detail.contains(version), "{version}: {}", p.detail);
        assert_eq!(
            p.detail.contains("Version Mismatch"),
            mismatch,
            "{version}: {}",
            p.detail
        );
    }
    // A version that is not a string is a malformed Request, not a panic.
    let p = problem(
        g.post("auth", r#"{"version":4,"tee":"sample"}"#.into())
            .await,
        401,
        "AttestationError",
    )
    .await;
    assert!(p.detail.contains("invalid request body"), "{}", p.detail);
}

#[tokio::test]
async fn v0_1_0_handshake_spans_postgres_replicas() {
    // The version lives in the session row, so each step may land on another replica.
    let dir = tempfile::tempdir().unwrap();
    let db = Server::fresh_postgres();
    let data = dir.path().join("shared-keys");
    let a = Server::start_replica(&data, &db, "a");
    let b = Server::start_replica(&data, &db, "b");
    let f = dir.path().join("secret.bin");
    std::fs::write(&f, SECRET).unwrap();
    a.admin(&[
        "set-resource",
        "default/test/key1",
        "--file",
        f.to_str().unwrap(),
    ]);
    b.admin(&["set-resource-policy", "--allow-all"]);

    let (key, jwk, sorted) = rsa1_5_key();
    let mut on_a = Guest::new(&a.url);
    let nonce = on_a.auth("0.1.0").await;
    let on_b = Guest {
        cookie: on_a.cookie.clone(),
        ..Guest::new(&b.url)
    };
    let body = json!({"tee-pubkey": jwk,
        "tee-evidence": sample(&old_binding(&nonce, &sorted)).to_string()});
    assert_eq!(on_b.attest(&body).await.status(), 200);
    // Released in the legacy layout by either replica.
    let jwe = on_a.get_jwe(None).await;
    assert_eq!(open_legacy(&key, &jwe), SECRET);
    let jwe = on_b.get_jwe(None).await;
    assert_eq!(open_legacy(&key, &jwe), SECRET);
}
