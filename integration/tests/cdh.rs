//! Inside a confidential-containers pod: `coffer model decrypt --key ... --cdh URL` takes the
//! gocryptfs password from the guest's Confidential Data Hub (emulated, attesting to the
//! real coffer-server), so the container never attests and the password never touches disk.

use std::path::Path;
use std::sync::atomic::Ordering;

use coffer_integration::cdh_emulator::Cdh;
use coffer_integration::{exit_code, Exit, Server};
use serde_json::Value;

const RES: &str = "kbs:///default/aliyun/model-decryption-key";

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A cipher directory made by `coffer model encrypt` from a small model tree.
fn encrypted_model(s: &Server, dir: &Path) -> std::path::PathBuf {
    let plain = dir.join("plain");
    std::fs::create_dir_all(plain.join("tokenizer")).unwrap();
    std::fs::write(plain.join("model.safetensors"), vec![7u8; 300_000]).unwrap();
    std::fs::write(plain.join("tokenizer/vocab.json"), b"{\"a\": 1}").unwrap();
    let pw = dir.join("pw");
    std::fs::write(&pw, "cdh-password\n").unwrap();
    let cipher = dir.join("cipher");
    let out = s.coffer(&[
        "model",
        "encrypt",
        plain.to_str().unwrap(),
        cipher.to_str().unwrap(),
        "--password-file",
        pw.to_str().unwrap(),
        "--scryptn",
        "10",
        "-q",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::remove_file(pw).unwrap();
    cipher
}

#[test]
fn model_key_through_the_confidential_data_hub() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = Server::start(d, None);
    let cipher = encrypted_model(&s, d);
    let secret = d.join("secret");
    std::fs::write(&secret, "cdh-password\n").unwrap();
    s.admin(&["set-resource", RES, "--file", secret.to_str().unwrap()]);
    std::fs::remove_file(&secret).unwrap();
    s.admin(&["set-resource-policy", "--allow-all"]);
    let cdh = Cdh::start(&s.url);

    // The coffer CLI points at a KBS that does not exist: only the CDH may be asked.
    let decrypt = |dest: &Path, cdh_url: &str| {
        std::process::Command::new(coffer_integration::binary("coffer"))
            .args(["--url", "http://127.0.0.1:9", "model", "decrypt"])
            .arg(&cipher)
            .arg(dest)
            .args(["--key", RES, "--cdh", cdh_url, "--json"])
            .output()
            .unwrap()
    };
    let dest = d.join("model");
    let out = decrypt(&dest, &cdh.url);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["files"], 2);
    assert_eq!(
        std::fs::read(dest.join("model.safetensors")).unwrap(),
        vec![7u8; 300_000]
    );
    assert_eq!(cdh.hits.load(Ordering::SeqCst), 1);

    // The KBS refuses (policy): the CDH's HTTP 500 and its reason reach the user, exit 5,
    // nothing is written.
    s.admin(&["set-resource-policy", "--deny-all"]);
    let dest2 = d.join("model2");
    let out = decrypt(&dest2, &cdh.url);
    assert_eq!(
        out.status.code(),
        exit_code(Exit::Unavailable),
        "{}",
        stderr(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains("Confidential Data Hub")
            && err.contains("HTTP 500")
            && err.contains("PolicyDeny"),
        "{err}"
    );
    assert!(!dest2.exists());

    // A URL that is not a CDH (404) and a CDH that is not running are named as such.
    let out = decrypt(&dest2, &format!("{}/not-the-api", cdh.url));
    assert_eq!(
        out.status.code(),
        exit_code(Exit::NotFound),
        "{}",
        stderr(&out)
    );
    let out = decrypt(&dest2, "http://127.0.0.1:9");
    assert_eq!(out.status.code(), exit_code(Exit::Unavailable));
    assert!(
        stderr(&out).contains("cannot reach the Confidential Data Hub at http://127.0.0.1:9/cdh/resource/default/aliyun/model-decryption-key"),
        "{}",
        stderr(&out)
    );
    assert!(!dest2.exists());

    // --cdh only makes sense with --key.
    let out = std::process::Command::new(coffer_integration::binary("coffer"))
        .args(["model", "decrypt"])
        .arg(&cipher)
        .arg(&dest2)
        .args(["--masterkey", "00", "--cdh", &cdh.url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), exit_code(Exit::Usage));
}
