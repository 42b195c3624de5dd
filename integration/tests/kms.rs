//! `default/aliyun/<secret>` resources come from Aliyun KMS: the real client code path
//! (ClientKey, signing, HTTPS with the instance CA) against the emulator.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use coffer_integration::{exit_code, kms_emulator, Exit, Server};

mod reqwest {
    /// The server's /metrics text (a tiny blocking GET for this sync test).
    pub(crate) fn blocking_get(base: &str) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            ::reqwest::get(format!("{base}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        })
    }
}

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/aliyun-kms")
}

fn config(port: u16, client_key: &Path) -> String {
    let d = data();
    format!(
        "[aliyun_kms]\nregion_id = \"cn-hangzhou\"\nkms_instance_id = \"kst-tst00000000000000000\"\nclient_key_file = {:?}\npassword_file = {:?}\ncert_pem_file = {:?}\nendpoint = \"127.0.0.1:{port}\"\n",
        client_key,
        d.join("password_test-id.json"),
        d.join("PrivateKmsCA_kst-tst00000000000000000.pem"),
    )
}

/// Starts coffer-server with `config` (written into `dir`) on `data_dir`, expects it to
/// refuse, and returns what it printed.
fn refused_start(config: &str, dir: &std::path::Path, data_dir: &std::path::Path) -> String {
    let cfg_path = dir.join("other.toml");
    std::fs::write(&cfg_path, config).unwrap();
    let out = std::process::Command::new(coffer_integration::binary("coffer-server"))
        .arg("--config")
        .arg(&cfg_path)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn secrets_come_from_kms() {
    let emu = kms_emulator::start(
        &data(),
        HashMap::from([(
            "model-decryption-key".to_string(),
            "kms-held-password".to_string(),
        )]),
    );
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        dir.path(),
        Some(&config(emu.port, &data().join("clientKey_test-id.json"))),
    );
    s.admin(&["set-resource-policy", "--allow-all"]);

    let out = s.coffer(&["get-resource", "kbs:///default/aliyun/model-decryption-key"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.log()
    );
    assert_eq!(out.stdout, b"kms-held-password");

    // A missing secret is a 404; the KMS backend is read-only.
    let out = s.coffer(&["get-resource", "default/aliyun/nope"]);
    assert_eq!(
        out.status.code(),
        exit_code(Exit::NotFound),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f = dir.path().join("v");
    std::fs::write(&f, "x").unwrap();
    let key = s.admin_key();
    let out = s.coffer(&[
        "admin",
        "--key",
        key.to_str().unwrap(),
        "set-resource",
        "default/aliyun/new",
        "--file",
        f.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("read-only"));

    // Transient 503s are retried with backoff.
    emu.fail_next.store(2, std::sync::atomic::Ordering::SeqCst);
    let out = s.coffer(&["get-resource", "default/aliyun/model-decryption-key"]);
    assert_eq!(
        out.stdout,
        b"kms-held-password",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let m = reqwest::blocking_get(&s.url);
    assert!(
        m.contains("coffer_kms_requests_total{outcome=\"retry\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("coffer_kms_requests_total{outcome=\"not_found\"} 1"),
        "{m}"
    );

    // Other repositories stay in the encrypted database.
    s.admin(&[
        "set-resource",
        "default/test/local",
        "--file",
        f.to_str().unwrap(),
    ]);
    assert_eq!(
        s.coffer(&["get-resource", "default/test/local"]).stdout,
        b"x"
    );
    assert!(!s.log().contains("kms-held-password"), "secret in the log");
}

#[test]
fn a_kms_answer_without_the_secret_releases_nothing() {
    let emu = kms_emulator::start(
        &data(),
        HashMap::from([("model-key".to_string(), "kms-held".to_string())]),
    );
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        dir.path(),
        Some(&config(emu.port, &data().join("clientKey_test-id.json"))),
    );
    s.admin(&["set-resource-policy", "--builtin", "allow-all"]);
    emu.omit_secret_data
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let out = s.coffer(&["get-resource", "default/aliyun/model-key"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), exit_code(Exit::Unavailable), "{stderr}");
    assert!(out.stdout.is_empty(), "released {:?}", out.stdout);
    assert!(stderr.contains("StorageUnavailable"), "{stderr}");
    // The next answer is whole again and is released.
    let out = s.coffer(&["get-resource", "default/aliyun/model-key"]);
    assert_eq!(
        out.stdout,
        b"kms-held",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn refused_credentials_are_a_clear_error() {
    let emu = kms_emulator::start(&data(), HashMap::from([("k".to_string(), "v".to_string())]));
    let dir = tempfile::tempdir().unwrap();
    // Same key material under an id the instance does not know.
    let ck: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(data().join("clientKey_test-id.json")).unwrap(),
    )
    .unwrap();
    let mut other = ck.clone();
    other["KeyId"] = "KAAP.unknown".into();
    let path = dir.path().join("clientKey_other.json");
    std::fs::write(&path, other.to_string()).unwrap();
    let s = Server::start(dir.path(), Some(&config(emu.port, &path)));
    s.admin(&["set-resource-policy", "--allow-all"]);
    let out = s.coffer(&["get-resource", "default/aliyun/k"]);
    assert_eq!(out.status.code(), exit_code(Exit::Refused));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("KMS 404 Unauthorized"), "{err}");
    assert_eq!(emu.served.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[test]
fn kek_wrapped_by_kms_in_a_file_is_never_stored_in_clear() {
    use coffer_integration::kms_emulator::KMS_KEY_ID;
    use std::sync::atomic::Ordering;
    let emu = kms_emulator::start(&data(), HashMap::new());
    let dir = tempfile::tempdir().unwrap();
    let wrapped_file = dir.path().join("data/kek.kms.json");
    let cfg = format!(
        "[keys]\nkek_kms_key_id = \"{KMS_KEY_ID}\"\nkek_wrapped_file = {wrapped_file:?}\n{}",
        config(emu.port, &data().join("clientKey_test-id.json"))
    );
    let mut s = Server::start(dir.path(), Some(&cfg));
    s.set_resource("default/test/k", "sealed-under-a-kms-kek");
    s.admin(&["set-resource-policy", "--allow-all"]);
    let get = |s: &Server| s.coffer(&["get-resource", "default/test/k"]);
    assert_eq!(get(&s).stdout, b"sealed-under-a-kms-kek");
    // First start: Encrypt, then a Decrypt round-trip check.
    assert_eq!(emu.crypto_calls.load(Ordering::SeqCst), 2);
    assert!(
        !s.data_dir.join("kek.hex").exists(),
        "plaintext KEK on disk"
    );
    let wrapped: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.data_dir.join("kek.kms.json")).unwrap()).unwrap();
    assert_eq!(wrapped["kms_key_id"], KMS_KEY_ID);
    assert_eq!(wrapped["algorithm"], "AES_GCM");

    // Restart: the KEK comes back from KMS Decrypt and opens the stored resource.
    s.restart();
    let out = get(&s);
    assert_eq!(out.stdout, b"sealed-under-a-kms-kek", "{}", s.log());
    assert_eq!(emu.crypto_calls.load(Ordering::SeqCst), 3);
    s.stop();

    // Another configured KMS key refuses to start, naming the file and both keys.
    let err = refused_start(
        &cfg.replace(KMS_KEY_ID, "key-other"),
        dir.path(),
        &s.data_dir,
    );
    assert!(
        err.contains("kek.kms.json") && err.contains("key-other") && err.contains(KMS_KEY_ID),
        "{err}"
    );
}

/// Without `kek_wrapped_file` the wrapped KEK lives in the database: a second server with its
/// own (empty) data directory on the same PostgreSQL database unwraps the same KEK and opens
/// what the first one stored; no KEK file exists anywhere.
#[test]
fn kek_wrapped_by_kms_is_shared_by_replicas_through_the_database() {
    use coffer_integration::kms_emulator::KMS_KEY_ID;
    use std::sync::atomic::Ordering;
    let emu = kms_emulator::start(&data(), HashMap::new());
    let url = Server::fresh_postgres();
    let cfg = format!(
        "[database]\nurl = {url:?}\n[keys]\nkek_kms_key_id = \"{KMS_KEY_ID}\"\n{}",
        config(emu.port, &data().join("clientKey_test-id.json"))
    );
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Server::start(a_dir.path(), Some(&cfg));
    // Encrypt, then the round-trip Decrypt.
    assert_eq!(emu.crypto_calls.load(Ordering::SeqCst), 2);
    a.set_resource("default/test/k", "one-kek-for-all-replicas");
    a.admin(&["set-resource-policy", "--allow-all"]);

    // B shares only the database: its data directory is its own and empty.
    let b = Server::start(b_dir.path(), Some(&cfg));
    assert_eq!(emu.crypto_calls.load(Ordering::SeqCst), 3, "B only unwraps");
    let out = b.coffer(&["get-resource", "default/test/k"]);
    assert_eq!(out.stdout, b"one-kek-for-all-replicas", "{}", b.log());
    for s in [&a, &b] {
        for name in ["kek.hex", "kek.kms.json"] {
            assert!(!s.data_dir.join(name).exists(), "{name} on disk");
        }
    }
    let row = std::process::Command::new("psql")
        .arg(&url)
        .arg("-qAtc")
        .arg("SELECT body FROM wrapped_keys WHERE name = 'kek'")
        .output()
        .unwrap();
    let row: serde_json::Value = serde_json::from_slice(&row.stdout).unwrap();
    assert_eq!(row["kms_key_id"], KMS_KEY_ID);
    assert_eq!(row["algorithm"], "AES_GCM");

    // A server configured with another KMS key refuses to start, naming the row and keys.
    let c_dir = tempfile::tempdir().unwrap();
    let err = refused_start(
        &cfg.replace(KMS_KEY_ID, "key-other"),
        c_dir.path(),
        &c_dir.path().join("data"),
    );
    assert!(
        err.contains("wrapped_keys") && err.contains("key-other") && err.contains(KMS_KEY_ID),
        "{err}"
    );
}

/// Two replicas starting at the same moment on an empty database may both create a KEK; the
/// one stored first wins and the other unwraps it, so both open the same resources.
#[test]
fn replicas_starting_together_agree_on_one_kek() {
    use coffer_integration::kms_emulator::KMS_KEY_ID;
    let emu = kms_emulator::start(&data(), HashMap::new());
    let url = Server::fresh_postgres();
    let cfg = format!(
        "[database]\nurl = {url:?}\n[keys]\nkek_kms_key_id = \"{KMS_KEY_ID}\"\n{}",
        config(emu.port, &data().join("clientKey_test-id.json"))
    );
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let servers: Vec<Server> = std::thread::scope(|scope| {
        let started: Vec<_> = dirs
            .iter()
            .map(|d| scope.spawn(|| Server::start(d.path(), Some(&cfg))))
            .collect();
        started.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let f = dirs[0].path().join("secret");
    std::fs::write(&f, "agreed").unwrap();
    servers[0].admin(&[
        "set-resource",
        "default/test/k",
        "--file",
        f.to_str().unwrap(),
    ]);
    servers[0].admin(&["set-resource-policy", "--allow-all"]);
    let out = servers[1].coffer(&["get-resource", "default/test/k"]);
    assert_eq!(out.stdout, b"agreed", "{}", servers[1].log());
}

const AK_ID: &str = "LTAI5tCofferTestKey";
const AK_SECRET: &str = "access-key-secret-never-logged";

fn access_key_config(port: u16) -> String {
    format!(
        "[aliyun_kms]\nregion_id = \"cn-hangzhou\"\ncert_pem_file = {:?}\nendpoint = \"127.0.0.1:{port}\"\n",
        data().join("PrivateKmsCA_kst-tst00000000000000000.pem"),
    )
}

fn access_key_emulator(secrets: &[(&str, &str)]) -> kms_emulator::Emulator {
    kms_emulator::start_with_access_keys(
        &data(),
        secrets
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        HashMap::from([(AK_ID.to_string(), AK_SECRET.to_string())]),
    )
}

#[test]
fn access_key_mode_reads_secrets_through_the_openapi() {
    let emu = access_key_emulator(&[("model-decryption-key", "kms-held-password")]);
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(
        dir.path(),
        Some(&access_key_config(emu.port)),
        &[
            ("ALIYUN_KMS_ACCESS_KEY_ID", AK_ID),
            ("ALIYUN_KMS_ACCESS_KEY_SECRET", AK_SECRET),
        ],
    );
    s.admin(&["set-resource-policy", "--allow-all"]);
    let out = s.coffer(&["get-resource", "kbs:///default/aliyun/model-decryption-key"]);
    assert_eq!(
        out.stdout,
        b"kms-held-password",
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.log()
    );
    // Each attempt is signed afresh (new nonce), so retried 503s go through.
    emu.fail_next.store(1, std::sync::atomic::Ordering::SeqCst);
    let out = s.coffer(&["get-resource", "default/aliyun/model-decryption-key"]);
    assert_eq!(out.stdout, b"kms-held-password", "{}", s.log());
    let out = s.coffer(&["get-resource", "default/aliyun/nope"]);
    assert_eq!(
        out.status.code(),
        exit_code(Exit::NotFound),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        *emu.rpc_rejections.lock().unwrap(),
        ["ServiceUnavailable", "Forbidden.ResourceNotFound"]
    );
    // An answer without SecretData is a failure, not an empty secret.
    emu.omit_secret_data
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let out = s.coffer(&["get-resource", "default/aliyun/model-decryption-key"]);
    assert_eq!(
        out.status.code(),
        exit_code(Exit::Unavailable),
        "{}",
        s.log()
    );
    assert!(out.stdout.is_empty());
    let log = s.log();
    assert!(
        log.contains("AccessKey LTAI5tCofferTestKey in cn-hangzhou"),
        "{log}"
    );
    assert!(
        !log.contains(AK_SECRET) && !log.contains("kms-held-password"),
        "{log}"
    );
}

#[test]
fn access_key_with_a_wrong_secret_is_refused_with_a_clear_error() {
    let emu = access_key_emulator(&[("k", "v")]);
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(
        dir.path(),
        Some(&access_key_config(emu.port)),
        &[
            ("ALIYUN_KMS_ACCESS_KEY_ID", AK_ID),
            ("ALIYUN_KMS_ACCESS_KEY_SECRET", "the-wrong-secret"),
        ],
    );
    s.admin(&["set-resource-policy", "--allow-all"]);
    let out = s.coffer(&["get-resource", "default/aliyun/k"]);
    assert_eq!(out.status.code(), exit_code(Exit::Refused));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SignatureDoesNotMatch") && err.contains("AccessKey secret does not match"),
        "{err}"
    );
    assert!(!err.contains("the-wrong-secret") && !s.log().contains("the-wrong-secret"));
    assert_eq!(emu.served.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[test]
fn access_key_mode_without_a_secret_in_the_environment_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, access_key_config(1)).unwrap();
    let out = std::process::Command::new(coffer_integration::binary("coffer-server"))
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--listen")
        .arg("127.0.0.1:0")
        .env("ALIYUN_KMS_ACCESS_KEY_ID", AK_ID)
        .env_remove("ALIYUN_KMS_ACCESS_KEY_SECRET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ALIYUN_KMS_ACCESS_KEY_SECRET"), "{err}");
}

/// The emulator's checks themselves, with requests signed by coffer's signer and then broken
/// one way at a time.
#[test]
fn emulator_enforces_the_openapi_signature_rules() {
    use coffer_server::secrets::aliyun_rpc::{self, AccessKey};
    let emu = access_key_emulator(&[("model-decryption-key", "kms-held-password")]);
    let ca = std::fs::read(data().join("PrivateKmsCA_kst-tst00000000000000000.pem")).unwrap();
    let mut b = ::reqwest::Client::builder().tls_built_in_root_certs(false);
    for c in ::reqwest::Certificate::from_pem_bundle(&ca).unwrap() {
        b = b.add_root_certificate(c);
    }
    let http = b.build().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let send = |query: String| -> (u16, serde_json::Value) {
        rt.block_on(async {
            let r = http
                .post(format!("https://127.0.0.1:{}/?{query}", emu.port))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json().await.unwrap())
        })
    };
    let key = AccessKey::new(AK_ID, AK_SECRET.to_string().into()).unwrap();
    let now = aliyun_rpc::timestamp(time::OffsetDateTime::now_utc());
    let stale =
        aliyun_rpc::timestamp(time::OffsetDateTime::now_utc() - time::Duration::minutes(20));
    // (what to change, expected status, expected code)
    type Edit = fn(&mut Vec<(&'static str, String)>);
    let cases: [(&str, Edit, u16, &str); 5] = [
        (
            "method",
            |p| set(p, "SignatureMethod", "HMAC-SHA256"),
            400,
            "InvalidSignatureMethod",
        ),
        (
            "version",
            |p| set(p, "SignatureVersion", "2.0"),
            400,
            "InvalidSignatureVersion",
        ),
        (
            "api version",
            |p| set(p, "Version", "2017-01-01"),
            400,
            "InvalidVersion",
        ),
        (
            "no nonce",
            |p| p.retain(|(k, _)| *k != "SignatureNonce"),
            400,
            "MissingSignatureNonce",
        ),
        (
            "unknown id",
            |p| set(p, "AccessKeyId", "LTAIunknown"),
            404,
            "InvalidAccessKeyId.NotFound",
        ),
    ];
    fn set(p: &mut [(&'static str, String)], k: &str, v: &str) {
        if let Some(e) = p.iter_mut().find(|(n, _)| *n == k) {
            e.1 = v.to_string();
        }
    }
    let params = |ts: &str, nonce: &str| -> Vec<(&'static str, String)> {
        aliyun_rpc::get_secret_value_params(AK_ID, "cn-hangzhou", "model-decryption-key", ts, nonce)
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect()
    };
    let sign = |p: &[(&'static str, String)], key: &AccessKey| {
        let borrowed: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
        aliyun_rpc::signed_query(key, &borrowed).unwrap()
    };
    for (what, edit, status, code) in cases {
        let mut p = params(&now, &aliyun_rpc::nonce());
        edit(&mut p);
        let (s, body) = send(sign(&p, &key));
        assert_eq!((s, body["Code"].as_str()), (status, Some(code)), "{what}");
    }
    // A valid request is served once; the same nonce again is refused.
    let valid = sign(&params(&now, &aliyun_rpc::nonce()), &key);
    let (s, body) = send(valid.clone());
    assert_eq!(
        (s, body["SecretData"].as_str()),
        (200, Some("kms-held-password"))
    );
    let (s, body) = send(valid.clone());
    assert_eq!(
        (s, body["Code"].as_str()),
        (400, Some("SignatureNonceUsed"))
    );
    // A parameter changed after signing, or a wrong secret: the HMAC does not match.
    let tampered = sign(&params(&now, &aliyun_rpc::nonce()), &key)
        .replace("SecretName=model-decryption-key", "SecretName=other");
    assert_eq!(send(tampered).1["Code"], "SignatureDoesNotMatch");
    let wrong = AccessKey::new(AK_ID, "not-the-secret".to_string().into()).unwrap();
    assert_eq!(
        send(sign(&params(&now, &aliyun_rpc::nonce()), &wrong)).1["Code"],
        "SignatureDoesNotMatch"
    );
    // An old timestamp is refused even with a valid signature.
    let (s, body) = send(sign(&params(&stale, &aliyun_rpc::nonce()), &key));
    assert_eq!(
        (s, body["Code"].as_str()),
        (400, Some("InvalidTimeStamp.Expired"))
    );
    assert_eq!(emu.served.load(std::sync::atomic::Ordering::SeqCst), 1);
}
