//! The server's defaults against a hostile host (issue 13): what a default start refuses,
//! bounds and protects, checked on the real binaries.

use std::os::unix::fs::PermissionsExt;

use coffer_integration::Server;
use coffer_protocol::Problem;

async fn auth(base: &str, tee: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/kbs/v0/auth"))
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"version":"0.4.0","tee":"{tee}","extra-params":{{}}}}"#
        ))
        .send()
        .await
        .unwrap()
}

async fn problem(r: reqwest::Response, status: u16, kind: &str) -> Problem {
    assert_eq!(r.status().as_u16(), status);
    assert_eq!(r.headers()["content-type"], "application/json");
    let p: Problem = r.json().await.unwrap();
    assert_eq!(p.kind_name(), kind, "{p:?}");
    p
}

/// SGX is a second quote format and claim set most deployments never use: `/auth` for it is
/// refused unless `[dcap] sgx = true`.
#[tokio::test]
async fn sgx_is_refused_unless_configured() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), None);
    let p = problem(auth(&s.url, "sgx").await, 401, "AttestationError").await;
    assert!(p.detail.contains("unsupported TEE \"sgx\""), "{}", p.detail);
    assert!(
        !p.detail.contains("sgx,") && p.detail.contains("tdx"),
        "{}",
        p.detail
    );
    assert_eq!(auth(&s.url, "tdx").await.status(), 200);
    drop(s);

    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), Some("[dcap]\nsgx = true\n"));
    assert_eq!(auth(&s.url, "sgx").await.status(), 200);
}

/// Everything the server writes into its data directory is the owner's only, and so is
/// the directory.
#[test]
fn data_directory_and_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), None);
    // A write, so SQLite has its -wal and -shm files.
    s.set_resource("default/test/key", b"x");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&s.data_dir), 0o700);
    let mut names = Vec::new();
    for e in std::fs::read_dir(&s.data_dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(mode(&p), 0o600, "{name} is {:o}", mode(&p));
        names.push(name);
    }
    names.sort();
    for want in [
        "admin.key",
        "admin.pub",
        "coffer.db",
        "coffer.db-shm",
        "coffer.db-wal",
        "kek.hex",
        "token-signing.pem",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
}

/// `/auth` stores a row per call and needs no credentials: the table is bounded. A table
/// filled within the last 5 s answers 429 with a problem body; once its sessions are older,
/// a new `/auth` evicts the oldest (so a flood churns its own rows) and that session's
/// cookie no longer attests.
#[tokio::test]
async fn auth_beyond_the_session_bound_is_429() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        dir.path(),
        Some("[attestation]\nmax_sessions = 3\nsession_ttl_secs = 60\n"),
    );
    let mut cookies = Vec::new();
    for _ in 0..3 {
        let r = auth(&s.url, "sample").await;
        assert_eq!(r.status(), 200);
        cookies.push(r.headers()["set-cookie"].to_str().unwrap().to_string());
    }
    let r = auth(&s.url, "sample").await;
    assert_eq!(r.headers()["retry-after"], "60");
    let p = problem(r, 429, "TooManyRequests").await;
    assert!(p.detail.contains("retry later"), "{}", p.detail);
    assert!(s.log().contains("session limit reached"));
    // Older than the 5 s grace: one of them (the oldest; these share a second) makes room.
    std::thread::sleep(std::time::Duration::from_millis(6100));
    assert_eq!(auth(&s.url, "sample").await.status(), 200);
    let mut gone = 0;
    for c in &cookies {
        let r = reqwest::Client::new()
            .post(format!("{}/kbs/v0/attest", s.url))
            .header("cookie", c.split(';').next().unwrap())
            .body("{}")
            .send()
            .await
            .unwrap();
        let p = problem(r, 401, "AttestationError").await;
        gone += usize::from(p.detail.contains("session not found"));
    }
    assert_eq!(gone, 1);
}

/// Admin tokens live an hour at most unless configured otherwise; what `coffer admin
/// token` mints by default is accepted.
#[tokio::test]
async fn long_lived_admin_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), None);
    let key = std::fs::read_to_string(s.admin_key()).unwrap();
    let list = |tok: String| {
        let url = format!("{}/kbs/v0/resources", s.url);
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(tok)
                .send()
                .await
                .unwrap()
        }
    };
    let long = coffer::admin::mint_admin_token(&key, "coffer", "kbs", 7200).unwrap();
    let p = problem(list(long.clone()).await, 401, "AdminAuthAccess").await;
    assert!(
        p.detail.contains("at most 3600 s") && p.detail.contains("admin.token_max_ttl_secs"),
        "{}",
        p.detail
    );
    let out = s.coffer(&["admin", "--key", s.admin_key().to_str().unwrap(), "token"]);
    assert!(out.status.success());
    let minted = String::from_utf8(out.stdout).unwrap();
    assert_eq!(list(minted.trim().to_string()).await.status(), 200);
    drop(s);

    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), Some("[admin]\ntoken_max_ttl_secs = 86400\n"));
    let key = std::fs::read_to_string(s.admin_key()).unwrap();
    let long = coffer::admin::mint_admin_token(&key, "coffer", "kbs", 7200).unwrap();
    let r = reqwest::Client::new()
        .get(format!("{}/kbs/v0/resources", s.url))
        .bearer_auth(long)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// The shipped resource policy checks no measurement: the server says so at start, and
/// stops saying so once a policy that does is installed.
#[test]
fn unmeasured_resource_policy_is_warned_about_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(dir.path(), None);
    let warning = "releases secrets without checking any measurement";
    assert!(s.log().contains(warning), "{}", s.log());
    s.admin(&["set-resource-policy", "--affirming"]);
    s.restart();
    assert!(!s.log().contains(warning), "{}", s.log());
    s.admin(&["set-resource-policy", "--allow-all"]);
    assert!(s
        .log()
        .contains("the new resource policy releases secrets without checking"));
    s.restart();
    assert!(s.log().contains(warning));
}

/// Evidence sent over plain HTTP to a host that is not this machine is warned about.
#[test]
fn client_warns_about_plain_http_off_this_machine() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), None);
    let out = s.coffer(&["attest", "--tee", "sample"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("plain HTTP"), "{err}");
    // 0.0.0.0 is no loopback address (nothing listens on port 1 either).
    let out = std::process::Command::new(coffer_integration::binary("coffer"))
        .args(["--url", "http://0.0.0.0:1", "attest", "--tee", "sample"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("warning: sending evidence to http://0.0.0.0:1 over plain HTTP"),
        "{err}"
    );
}
