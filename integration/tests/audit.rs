//! Audit records through the real server and CLI, on a SQLite file and on PostgreSQL:
//! attestations (client, session, TEE, verified claims, trust vector, verdict, reason),
//! releases and refusals, admin changes with the token's subject; the API's filters and
//! paging; `coffer admin audit` and `audit-show`; `coffer policy test --from-audit`; and the
//! retention the server applies by age and by row count.

use std::time::{Duration, Instant};

use coffer_integration::{exit_code, Exit, Server};
use serde_json::Value;

const SECRET: &[u8] = b"audited-model-key";

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn page(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn entries(p: &Value) -> Vec<Value> {
    p["entries"].as_array().unwrap().clone()
}

async fn get(s: &Server, query: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(format!("{}/coffer/v1/audit{query}", s.url))
        .bearer_auth(s.admin_token())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// One handshake whose evidence does not carry the nonce: refused, and recorded.
async fn refused_attestation(s: &Server) -> String {
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/kbs/v0/auth", s.url))
        .body(r#"{"version":"0.4.0","tee":"sample","extra-params":{}}"#)
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let id = cookie["kbs-session-id=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let key = coffer_protocol::TeeKeyPair::generate();
    let body = serde_json::json!({"runtime-data": {"nonce": "not-the-nonce", "tee-pubkey": key.public_jwk()},
        "tee-evidence": {"primary_evidence": {"svn": "1", "report_data": ""}, "additional_evidence": ""}});
    let r = http
        .post(format!("{}/kbs/v0/attest", s.url))
        .header("cookie", format!("kbs-session-id={id}"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    id
}

async fn records_filters_and_policy_test(s: &Server, dir: &std::path::Path) {
    s.set_resource("default/model/key", SECRET);
    s.admin(&["set-resource-policy", "--allow-all"]);
    let started = std::time::SystemTime::now();
    let out = s.coffer(&["get-resource", "default/model/key"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, SECRET);
    let out = s.coffer(&["get-resource", "default/model/missing"]);
    assert!(!out.status.success());
    let refused_session = refused_attestation(s).await;

    // Every row, newest first, with a total.
    let all = page(&s.admin(&["audit", "--json"]));
    let rows = entries(&all);
    assert_eq!(all["total"].as_i64().unwrap(), rows.len() as i64);
    let seqs: Vec<i64> = rows.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );

    // The successful attestation: client, session, TEE, verdict, trust vector, claims.
    let attests: Vec<&Value> = rows
        .iter()
        .filter(|r| r["action"] == "attest" && r["decision"] == "allow")
        .collect();
    assert_eq!(attests.len(), 2, "{rows:#?}");
    let a = attests[1];
    assert_eq!(a["tee"], "sample");
    assert_eq!(a["client_addr"], "127.0.0.1");
    assert_eq!(a["session_id"].as_str().unwrap().len(), 32);
    // The shipped CPU policy does not vouch for the sample TEE.
    assert_eq!(a["verdict"], "contraindicated");
    assert!(a["trust_vector"].is_object(), "{a}");
    assert_eq!(a["has_claims"], true);
    assert!(a.get("claims").is_none(), "listings leave claims out");
    // Its session's release is linked by the session id.
    let session = a["session_id"].as_str().unwrap();
    let (st, by_session) = get(s, &format!("?session={session}")).await;
    assert_eq!(st, 200);
    assert_eq!(by_session["total"], 2, "{by_session}");
    let release = &entries(&by_session)[0];
    assert_eq!(
        (release["action"].as_str(), release["decision"].as_str()),
        (Some("release"), Some("allow"))
    );
    assert_eq!(release["resource"], "default/model/key");
    assert_eq!(release["client_addr"], "127.0.0.1");
    // The refused one says why, and has no claims.
    let (_, refused) = get(s, &format!("?session={refused_session}")).await;
    let refused = &entries(&refused)[0];
    assert_eq!(
        (refused["action"].as_str(), refused["decision"].as_str()),
        (Some("attest"), Some("deny"))
    );
    assert!(
        refused["detail"].as_str().unwrap().contains("nonce"),
        "{refused}"
    );
    assert_eq!(refused["has_claims"], false);
    // The missing resource is a denial with its reason.
    let (_, missing) = get(s, "?resource=default/model/missing").await;
    assert_eq!(missing["total"], 1);
    assert_eq!(entries(&missing)[0]["decision"], "deny");
    assert_eq!(entries(&missing)[0]["detail"], "no such resource");
    // Admin changes carry the token's subject.
    let (_, admin) = get(s, "?action=admin").await;
    assert_eq!(admin["total"], 2);
    assert!(entries(&admin).iter().all(|r| r["actor"] == "coffer"));

    // Filters: decision, TEE, resource prefix, time range (RFC 3339 and ms), paging.
    let (_, denies) = get(s, "?decision=deny").await;
    assert_eq!(denies["total"], 2);
    let (_, none) = get(s, "?tee=tdx").await;
    assert_eq!(none["total"], 0);
    let (_, prefix) = get(s, "?resource=default/model/*").await;
    assert_eq!(prefix["total"], 3, "two releases, one admin change");
    let since = time::OffsetDateTime::from(started - Duration::from_secs(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (_, recent) = get(s, &format!("?since={since}&action=attest")).await;
    assert_eq!(recent["total"], 3);
    let (_, future) = get(s, "?since=4102444800000").await;
    assert_eq!(future["total"], 0);
    let (_, p1) = get(s, "?limit=2&offset=1").await;
    assert_eq!(p1["total"], all["total"]);
    assert_eq!(entries(&p1)[0]["seq"], rows[1]["seq"]);
    assert_eq!(entries(&p1).len(), 2);
    // Bad queries are refused with a problem body, not ignored.
    for q in [
        "?limit=0",
        "?since=yesterday",
        "?order=sideways",
        "?bogus=1",
    ] {
        let (st, body) = get(s, q).await;
        assert_eq!(st, 401, "{q}: {body}");
        assert!(
            body["type"].as_str().unwrap().ends_with("SerdeError"),
            "{q}"
        );
    }

    // One row with its claims; the CLI's table prints human times and the total.
    let seq = a["seq"].as_i64().unwrap();
    let one = page(&s.admin(&["audit-show", &seq.to_string()]));
    assert_eq!(one["claims"]["sample"]["svn"], "1", "{one}");
    assert!(one["claims"]["runtime_data_claims"].is_object());
    let out = s.admin(&["audit", "--since", "1h", "--decision", "deny"]);
    let table = String::from_utf8_lossy(&out.stdout);
    let year = time::OffsetDateTime::now_utc().year().to_string();
    assert!(
        table.lines().nth(1).unwrap().contains(&format!(" {year}-")),
        "{table}"
    );
    assert!(table.contains("no such resource"), "{table}");
    assert!(stderr(&out).contains("rows 1-2 of 2"), "{}", stderr(&out));
    let out = s.coffer(&[
        "admin",
        "--key",
        s.admin_key().to_str().unwrap(),
        "audit",
        "--since",
        "last tuesday",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--since"), "{}", stderr(&out));

    // coffer policy test --from-audit: the recorded claims under new policies.
    let strict = dir.join("strict.rego");
    std::fs::write(
        &strict,
        "package policy\ndefault allow = false\nallow if { input.submods.cpu0[\"ear.veraison.annotated-evidence\"].sample.svn == \"2\" }\n",
    )
    .unwrap();
    let key = s.admin_key();
    let policy_test = |extra: &[&str]| {
        let mut args = vec![
            "policy",
            "test",
            "--from-audit",
            extra[0],
            "--key",
            key.to_str().unwrap(),
        ];
        args.extend_from_slice(&extra[1..]);
        s.coffer(&args)
    };
    let seq_s = seq.to_string();
    let out = policy_test(&[
        &seq_s,
        "--resource-policy",
        strict.to_str().unwrap(),
        "--resource",
        "default/model/key",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        exit_code(Exit::Refused),
        "{}",
        stderr(&out)
    );
    let out = policy_test(&[
        &seq_s,
        "--attestation-policy",
        "../policies/attestation/default_cpu.rego",
        "--json",
    ]);
    let report = page(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        report["attestation"]["trust_vector"], a["trust_vector"],
        "the recorded claims appraise as the server did"
    );
    let release_seq = release["seq"].as_i64().unwrap().to_string();
    let out = policy_test(&[
        &release_seq,
        "--attestation-policy",
        "../policies/attestation/default_cpu.rego",
    ]);
    assert_eq!(out.status.code(), exit_code(Exit::Failure));
    assert!(
        stderr(&out).contains("not an attestation"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn records_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), None);
    records_filters_and_policy_test(&s, dir.path()).await;
}

#[tokio::test]
async fn records_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let url = Server::fresh_postgres();
    let s = Server::start_with_args(dir.path(), None, &["--database-url", &url]);
    records_filters_and_policy_test(&s, dir.path()).await;
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

fn retention(s: &Server) {
    for i in 0..6 {
        s.admin(&["set-reference-value", &format!("rv{i}"), "1"]);
    }
    // max_rows = 3: the server removes all but the newest three.
    wait_for("the row bound", || {
        let p = page(&s.admin(&["audit", "--json"]));
        p["total"] == 3
    });
    let rows = entries(&page(&s.admin(&["audit", "--json"])));
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["resource"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["rv5", "rv4", "rv3"]);
    assert!(s.log().contains("audit retention applied"));
    // max_age_secs = 8: then they age out.
    wait_for("the age bound", || {
        page(&s.admin(&["audit", "--json"]))["total"] == 0
    });
}

const RETENTION: &str = "[audit]\nmax_rows = 3\nmax_age_secs = 8\nprune_interval_secs = 1\n";

#[test]
fn retention_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    retention(&Server::start(dir.path(), Some(RETENTION)));
}

#[test]
fn retention_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let url = Server::fresh_postgres();
    retention(&Server::start_with_args(
        dir.path(),
        Some(RETENTION),
        &["--database-url", &url],
    ));
}
