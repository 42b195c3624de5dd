//! Three coffer-server processes on one PostgreSQL database: no sticky sessions, a nonce
//! is single-use across replicas, and a replica killed under load loses nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use coffer::evidence::SampleEvidence;
use coffer::KbsClient;
use coffer_integration::Server;
use coffer_protocol::jwe::{self, FlattenedJwe};
use coffer_protocol::runtime_data::runtime_data_hash;
use coffer_protocol::{b64, HashAlgorithm, ResourcePath, TeeKeyPair};
use serde_json::{json, Value};

const SECRET: &[u8] = b"replicated-model-key";

fn cluster(dir: &std::path::Path) -> Vec<Server> {
    let url = Server::fresh_postgres();
    let data = dir.join("shared-keys");
    // The first start generates the keys the others then load.
    let first = Server::start_replica(&data, &url, "a");
    let mut all = vec![first];
    all.push(Server::start_replica(&data, &url, "b"));
    all.push(Server::start_replica(&data, &url, "c"));
    all[0].set_resource("default/model/key", SECRET);
    all[1].admin(&["set-resource-policy", "--allow-all"]);
    all
}

fn cookie(r: &reqwest::Response) -> String {
    let c = r.headers()["set-cookie"].to_str().unwrap();
    c["kbs-session-id=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn handshake_steps_on_different_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let r = cluster(dir.path());
    let http = reqwest::Client::new();
    let key = TeeKeyPair::generate();
    // auth on A
    let resp = http
        .post(format!("{}/kbs/v0/auth", r[0].url))
        .body(r#"{"version":"0.4.0","tee":"sample","extra-params":{}}"#)
        .send()
        .await
        .unwrap();
    let id = cookie(&resp);
    let nonce = resp.json::<Value>().await.unwrap()["nonce"]
        .as_str()
        .unwrap()
        .to_string();
    let jwk = key.public_jwk();
    let hash = runtime_data_hash(HashAlgorithm::Sha384, &nonce, &jwk, "");
    let body = json!({"runtime-data": {"nonce": nonce, "tee-pubkey": jwk},
        "tee-evidence": {"primary_evidence": {"svn": "1", "report_data": b64::std_encode(hash)}, "additional_evidence": ""}})
    .to_string();
    // the same attestation to B and C at once: exactly one succeeds
    let send = |url: String| {
        let (http, body, id) = (http.clone(), body.clone(), id.clone());
        async move {
            http.post(format!("{url}/kbs/v0/attest"))
                .header("cookie", format!("kbs-session-id={id}"))
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let (b, c) = tokio::join!(send(r[1].url.clone()), send(r[2].url.clone()));
    // The loser either lost the race for the nonce (401) or, arriving after the winner,
    // was handed the winner's token for the same session (Trustee's behaviour): it can
    // never mint a second token from the same nonce.
    assert!(b == 200 || c == 200, "{b} {c}");
    // resource on C with the session made on A and attested on B or C
    let resp = http
        .get(format!("{}/kbs/v0/resource/default/model/key", r[2].url))
        .header("cookie", format!("kbs-session-id={id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let jwe: FlattenedJwe = resp.json().await.unwrap();
    assert_eq!(&jwe::decrypt(&key, &jwe).unwrap()[..], SECRET);
    // every replica counted at most one issued token for this nonce
    let mut issued = 0;
    for s in &r {
        let m = reqwest::get(format!("{}/metrics", s.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        issued += m
            .lines()
            .find(|l| l.starts_with("coffer_attestations_total{outcome=\"issued\""))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0);
    }
    assert_eq!(issued, 1, "one nonce, one token");
}

#[tokio::test]
async fn replica_killed_under_load_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = cluster(dir.path());
    let urls: Arc<Vec<String>> = Arc::new(r.iter().map(|s| s.url.clone()).collect());
    let path: ResourcePath = "default/model/key".parse().unwrap();
    let successes = Arc::new(AtomicUsize::new(0));
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for worker in 0..6 {
        let (urls, path, successes, http) =
            (urls.clone(), path.clone(), successes.clone(), http.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0..15 {
                // Each handshake starts on some replica and moves on when one fails.
                let mut ok = false;
                for attempt in 0..10 {
                    let url = &urls[(worker + n + attempt) % urls.len()];
                    let mut c = KbsClient::new(
                        http.clone(),
                        url,
                        Box::new(SampleEvidence),
                        TeeKeyPair::generate(),
                    );
                    if let Ok(secret) = c.get_resource(&path).await {
                        assert_eq!(&secret[..], SECRET);
                        ok = true;
                        break;
                    }
                }
                assert!(ok, "a client never got its secret");
                successes.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    // kill replica B once the load is running
    while successes.load(Ordering::SeqCst) < 20 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    r[1].stop();
    for t in tasks {
        t.await.unwrap();
    }
    let total = successes.load(Ordering::SeqCst);
    assert_eq!(total, 6 * 15);
    let out = r[0].admin(&["audit", "--json", "--limit", "1000"]);
    let rows = audit_rows(&out.stdout);
    let releases = rows
        .iter()
        .filter(|x| x["action"] == "release" && x["decision"] == "allow")
        .count();
    // Every success has its release row. A release the killed replica had already audited
    // but whose answer the kill cut off is also recorded (the server cannot know the answer
    // was lost; an audit log must not miss a release), so there may be up to one extra row
    // per handshake in flight on the killed replica, never fewer rows than successes.
    assert!(
        releases >= total,
        "a success has no release row: {releases} < {total}"
    );
    assert!(
        releases - total <= 6,
        "more extra rows than in-flight handshakes: {releases} vs {total}"
    );
    let mut seqs: Vec<i64> = rows.iter().map(|x| x["seq"].as_i64().unwrap()).collect();
    seqs.dedup();
    assert_eq!(seqs.len(), rows.len(), "no duplicated audit rows");
}

/// Database gone (dropped under the running server): requests get 503 with a problem
/// body, readiness fails, liveness still answers, and nothing panics.
#[tokio::test]
async fn database_down_gives_503_problem() {
    let dir = tempfile::tempdir().unwrap();
    let url = Server::fresh_postgres();
    let s = Server::start_replica(&dir.path().join("keys"), &url, "solo");
    assert_eq!(
        reqwest::get(format!("{}/readyz", s.url))
            .await
            .unwrap()
            .status(),
        200
    );
    let (base, name) = url.rsplit_once('/').unwrap();
    let out = std::process::Command::new("psql")
        .arg(format!("{base}/test"))
        .arg("-qc")
        .arg(format!("DROP DATABASE {name} WITH (FORCE)"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/kbs/v0/auth", s.url))
        .body(r#"{"version":"0.4.0","tee":"sample","extra-params":{}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let p: Value = r.json().await.unwrap();
    assert!(
        p["type"].as_str().unwrap().ends_with("/StorageUnavailable"),
        "{p}"
    );
    assert!(
        !p["detail"].as_str().unwrap().contains("postgres://"),
        "no connection details leak: {p}"
    );
    assert_eq!(
        reqwest::get(format!("{}/readyz", s.url))
            .await
            .unwrap()
            .status(),
        503
    );
    assert_eq!(
        reqwest::get(format!("{}/healthz", s.url))
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(!s.log().contains("panicked"));
}

/// The rows of a `coffer admin audit --json` page.
fn audit_rows(stdout: &[u8]) -> Vec<Value> {
    let page: Value = serde_json::from_slice(stdout).unwrap();
    page["entries"].as_array().unwrap().clone()
}
