//! `coffer admin console` in real headless Chromium (Debian chromium + chromium-driver,
//! driven by selenium from the virtual environment scripts/install-deps.sh creates) against
//! a real coffer-server: integration/python/console_test.py loads every page, adds and
//! deletes a resource and a reference value, sees a syntax error at its line, tests a draft
//! on a recorded attestation, uploads it and finds its audit row, and exports CSV. Then the
//! server is asked whether the upload really happened. Screenshots are kept in
//! `<target dir>/test-artifacts/console/`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use coffer_integration::{artifact_dir, binary, python, Server};
use serde_json::Value;

const SECRET: &[u8] = b"audited-model-key";

struct Console(std::process::Child);

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the console on a free loopback port; returns it and the URL it printed.
fn console(s: &Server) -> (Console, String) {
    let mut child = Command::new(binary("coffer"))
        .args(["--url", &s.url, "admin", "--key"])
        .arg(s.admin_key())
        .args(["console", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .last()
        .unwrap_or_default()
        .to_string();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.contains("/?t="),
        "{line}"
    );
    (Console(child), url)
}

#[tokio::test]
async fn console_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), None);
    s.set_resource("default/model/key", SECRET);
    s.admin(&["set-resource-policy", "--allow-all"]);
    // One recorded attestation (sample TEE, svn "1") and one refusal.
    assert!(s
        .coffer(&["get-resource", "default/model/key"])
        .status
        .success());
    assert!(!s
        .coffer(&["get-resource", "default/model/absent"])
        .status
        .success());
    let (_console, url) = console(&s);

    // Without the printed token the console refuses, also to a forged Host (rebinding).
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let root = url.split("/?t=").next().unwrap();
    let r = http
        .get(format!("{root}/api/coffer/v1/audit"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http.get(format!("{root}/")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .get(&url)
        .header("host", "evil.example:80")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 303, "the token is traded for a cookie");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let r = http
        .get(format!("{root}/api/coffer/v1/audit"))
        .header("cookie", &pair)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "cross-site calls are refused");
    // The page itself holds no key and no token.
    let page = http
        .get(format!("{root}/app.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let key = std::fs::read_to_string(s.admin_key()).unwrap();
    let key_body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!page.contains(&key_body) && !page.contains("Bearer "));

    let shots = artifact_dir("console");
    let out = Command::new(python())
        .arg(format!(
            "{}/python/console_test.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(&url)
        .arg(&shots)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "browser test failed (screenshots in {}):\n{text}",
        shots.display()
    );
    for page in [
        "overview",
        "resources",
        "reference-values",
        "policy-error",
        "policy-test",
        "audit",
        "claims",
    ] {
        let png = shots.join(format!("console-{page}.png"));
        let bytes = std::fs::read(&png).unwrap_or_default();
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{}",
            png.display()
        );
    }

    // The upload reached the server, and was audited with the key's subject.
    let token = s.admin_token();
    let p: Value = reqwest::Client::new()
        .get(format!("{}/coffer/v1/policies/resource-policy", s.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        p["body"].as_str().unwrap().contains(r#"sample.svn == "1""#),
        "{p}"
    );
    let audit: Value = reqwest::Client::new()
        .get(format!(
            "{}/coffer/v1/audit?action=admin:set-resource-policy",
            s.url
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(audit["total"], 2, "the CLI's and the console's: {audit}");
    assert_eq!(audit["entries"][0]["actor"], "coffer");
    let deleted: Value = reqwest::Client::new()
        .get(format!(
            "{}/coffer/v1/audit?resource=default/model/uploaded",
            s.url
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = deleted["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["admin:delete-resource", "admin:set-resource"]);
}
