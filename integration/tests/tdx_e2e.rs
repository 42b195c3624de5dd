//! TDX end to end without TDX hardware: the real `coffer` CLI asks a fake configfs-tsm for
//! a quote, which the test PKI mints over the REPORTDATA the client wrote; the real
//! `coffer-server` verifies it with the DCAP code path (test root configured), the default
//! TDX attestation policy and reference values, and releases the secret.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use coffer_integration::fake_tsm::{FakeTsm, FakeTsmOptions};
use coffer_integration::pccs_emulator::Pccs;
use coffer_integration::tdx_mint::{CollateralOptions, TdFields, TestPki, OLD_TEE_TCB_SVN};
use coffer_integration::{exit_code, Exit, Server};
use coffer_tdx::eventlog::EventLog;
use serde_json::Value;

const SECRET: &[u8] = b"model-key-0123456789abcdef";
const RES: &str = "default/aliyun/model-decryption-key";

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tdx/tests/fixtures")
        .join(rel)
}

struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    server: Server,
}

/// A server trusting `pki`'s root, with collateral from `dcap_extra` (TOML lines).
fn server(pki: &TestPki, coll: Option<&CollateralOptions>, dcap_extra: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    std::fs::write(root.join("root.der"), pki.root_der()).unwrap();
    let mut dcap = format!(
        "[dcap]\nroot_ca_file = \"{}\"\n",
        root.join("root.der").display()
    );
    if let Some(o) = coll {
        let dir = root.join("collateral");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("test.json"), pki.collateral_json(o)).unwrap();
        dcap.push_str(&format!("collateral_dir = \"{}\"\n", dir.display()));
    }
    dcap.push_str(dcap_extra);
    let server = Server::start(&root, Some(&dcap));
    let f = root.join("secret");
    std::fs::write(&f, SECRET).unwrap();
    server.admin(&["set-resource", RES, "--file", f.to_str().unwrap()]);
    server.admin(&["set-resource-policy", "--affirming"]);
    let td = TdFields::default();
    for (name, v) in [
        ("mr_td", hex::encode(td.mr_td)),
        ("rtmr_1", hex::encode(td.rtmrs[1])),
        ("rtmr_2", hex::encode(td.rtmrs[2])),
        ("xfam", hex::encode(td.xfam.to_le_bytes())),
    ] {
        server.admin(&["set-reference-value", name, &format!("[\"{v}\"]")]);
    }
    Setup {
        _tmp: tmp,
        root,
        server,
    }
}

fn offline(pki: &TestPki) -> Setup {
    server(
        pki,
        Some(&CollateralOptions::current()),
        "pccs_url = \"\"\n",
    )
}

/// A fake TD whose quotes come from `pki`, after `edit` has had its say.
fn td(
    root: &Path,
    pki: Arc<TestPki>,
    fields: TdFields,
    edit: fn(&TestPki, Vec<u8>) -> Vec<u8>,
) -> FakeTsm {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    FakeTsm::start(
        &root.join(format!("td{n}")),
        FakeTsmOptions::default(),
        Arc::new(move |rd| {
            let mut f = fields.clone();
            f.report_data = rd;
            edit(&pki, pki.quote(&f))
        }),
    )
}

fn unchanged(_: &TestPki, q: Vec<u8>) -> Vec<u8> {
    q
}

fn get(s: &Setup, tsm: &FakeTsm, ccel: Option<&str>) -> std::process::Output {
    let dir = tsm.report_dir().to_str().unwrap().to_string();
    let missing = s.root.join("no-such-log").display().to_string();
    let args = [
        "get-resource",
        RES,
        "--tee",
        "tdx",
        "--tsm-report-dir",
        &dir,
        "--ccel",
        ccel.unwrap_or(&missing),
        "--aael",
        &missing,
    ];
    s.server.coffer(&args)
}

fn token_claims(s: &Setup, tsm: &FakeTsm, extra: &[&str]) -> Value {
    let dir = tsm.report_dir().to_str().unwrap().to_string();
    let mut args = vec!["attest", "--tee", "tdx", "--tsm-report-dir", &dir];
    args.extend_from_slice(extra);
    let out = s.server.coffer(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let payload = token.trim().split('.').nth(1).unwrap().to_string();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn tdx_get_resource_releases_through_dcap_and_the_default_policy() {
    let pki = Arc::new(TestPki::new());
    let s = offline(&pki);
    let tsm = td(&s.root, pki.clone(), TdFields::default(), unchanged);
    let out = get(&s, &tsm, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, SECRET);
    assert_eq!(*tsm.inblob_lengths.lock().unwrap(), vec![64]);

    let claims = token_claims(&s, &tsm, &[]);
    let cpu = &claims["submods"]["cpu0"];
    assert_eq!(cpu["ear.status"], "affirming", "{cpu:#}");
    let tdx = &cpu["ear.veraison.annotated-evidence"]["tdx"];
    assert_eq!(tdx["tcb_status"], "UpToDate");
    assert_eq!(tdx["quote"]["header"]["tee_type"], "81000000");
    assert_eq!(tdx["quote"]["body"]["mr_td"], hex::encode([0x22u8; 48]));
    assert_eq!(tdx["td_attributes"]["debug"], false);
    assert!(tdx.get("report_data").is_none());
    // Alibaba Cloud Trustee's nested form of the same DCAP result.
    let tv = &tdx["tcb_verification"];
    assert_eq!(tv["tcb_status"], "UpToDate", "{tv:#}");
    assert_eq!(tv["tcb_status_code"], 0);
    assert_eq!(tv["tee_type"], 0x81);
    assert_eq!(tv["collateral_expired"], false);
    let tcb_date = chrono::DateTime::parse_from_rfc3339(tdx["tcb_date"].as_str().unwrap())
        .unwrap()
        .timestamp();
    assert_eq!(tv["tcb_level_date_tag"], tcb_date);
}

/// A policy written for Alibaba Cloud's Trustee (nested `tcb_verification` claims, a
/// minimum TCB date) decides releases here as it does there.
#[test]
fn alibaba_style_policy_on_tcb_verification_decides() {
    let pki = Arc::new(TestPki::new());
    let s = offline(&pki);
    let tsm = td(&s.root, pki.clone(), TdFields::default(), unchanged);
    let claims = token_claims(&s, &tsm, &[]);
    let tv =
        &claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["tdx"]["tcb_verification"];
    let tcb_date = tv["tcb_level_date_tag"].as_i64().unwrap();
    for (min_date, released) in [(tcb_date, true), (tcb_date + 1, false)] {
        let policy = format!(
            "package policy\nimport rego.v1\n\
             default hardware := 97\n\
             hardware := 2 if {{\n\
               input.tdx.tcb_verification.tcb_status_code == 0\n\
               not input.tdx.tcb_verification.collateral_expired\n\
               input.tdx.tcb_verification.tcb_level_date_tag >= {min_date}\n\
             }}\n\
             trust_claims := {{\"hardware\": hardware, \"executables\": 3, \"configuration\": 2}}\n\
             extensions := []\n"
        );
        let f = s.root.join("alibaba.rego");
        std::fs::write(&f, policy).unwrap();
        s.server
            .admin(&["set-attestation-policy", "--file", f.to_str().unwrap()]);
        let out = get(&s, &tsm, None);
        if released {
            assert_eq!(
                out.stdout,
                SECRET,
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        } else {
            assert_eq!(
                out.status.code(),
                exit_code(Exit::Refused),
                "released below the minimum TCB date"
            );
        }
    }
}

#[test]
fn policy_decides_on_debug_tds_and_unknown_mrtd() {
    let pki = Arc::new(TestPki::new());
    let s = offline(&pki);
    let mut fields = TdFields::default();
    fields.td_attributes |= 1;
    let tsm = td(&s.root, pki.clone(), fields, unchanged);
    let out = get(&s, &tsm, None);
    assert_eq!(
        out.status.code(),
        exit_code(Exit::Refused),
        "debug TD released"
    );
    let fields = TdFields {
        mr_td: [0x99; 48],
        ..Default::default()
    };
    let tsm = td(&s.root, pki.clone(), fields, unchanged);
    let out = get(&s, &tsm, None);
    assert_eq!(
        out.status.code(),
        exit_code(Exit::Refused),
        "unknown MRTD released"
    );
}

fn refused_with(s: &Setup, tsm: &FakeTsm, needle: &str) {
    let out = get(s, tsm, None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), exit_code(Exit::Refused), "{err}");
    assert!(err.contains(needle), "{err:?} lacks {needle:?}");
    assert!(out.stdout.is_empty());
}

#[test]
fn tampered_quotes_are_refused_with_specific_errors() {
    let pki = Arc::new(TestPki::new());
    let s = offline(&pki);
    // Bound to another session: REPORTDATA re-signed but wrong.
    let t = td(&s.root, pki.clone(), TdFields::default(), |p, q| {
        let mut q = q;
        q[568] ^= 1;
        p.resign(&q)
    });
    refused_with(&s, &t, "report_data does not match");
    // Body bit flipped after signing.
    let t = td(&s.root, pki.clone(), TdFields::default(), |_, mut q| {
        q[48 + 140] ^= 0x80;
        q
    });
    refused_with(&s, &t, "tdx evidence rejected");
    // Quote signature flipped.
    let t = td(&s.root, pki.clone(), TdFields::default(), |_, mut q| {
        q[640] ^= 0x80;
        q
    });
    refused_with(&s, &t, "tdx evidence rejected");
    // A byte of the PCK leaf certificate flipped.
    let t = td(&s.root, pki.clone(), TdFields::default(), |_, mut q| {
        let at = q.windows(10).position(|w| w == b"-----BEGIN").unwrap() + 300;
        q[at] = if q[at] == b'A' { b'B' } else { b'A' };
        q
    });
    refused_with(&s, &t, "tdx evidence rejected");
}

#[test]
fn expired_collateral_is_refused_naming_the_piece() {
    let pki = Arc::new(TestPki::new());
    let now = coffer_integration::tdx_mint::now();
    let old = CollateralOptions {
        issued: now - 40 * 86_400,
        next_update: now - 86_400,
        ..CollateralOptions::current()
    };
    let s = server(&pki, Some(&old), "pccs_url = \"\"\n");
    let t = td(&s.root, pki.clone(), TdFields::default(), unchanged);
    refused_with(&s, &t, "collateral expired: TCB info");
}

#[test]
fn event_log_is_replayed_and_its_events_reach_the_policy() {
    let pki = Arc::new(TestPki::new());
    let s = offline(&pki);
    let ccel = fixture("trustee/eventlog/CCEL_data_ovmf");
    let bytes = std::fs::read(&ccel).unwrap();
    let log = EventLog::parse(&bytes).unwrap();
    let fields = TdFields {
        rtmrs: log.replay().unwrap(),
        ..Default::default()
    };
    let events = log.to_trustee_json();
    let digest_of = |pred: &dyn Fn(&Value) -> bool| {
        events.iter().find(|e| pred(e)).unwrap()["digests"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let kernel = digest_of(&|e| {
        e["details"]["device_paths"]
            .as_array()
            .is_some_and(|p| p.iter().any(|x| x == "File(kernel)"))
    });
    let params = digest_of(&|e| e["details"]["string"] == "LOADED_IMAGE::LoadOptions");
    for (name, v) in [
        ("rtmr_1", hex::encode(fields.rtmrs[1])),
        ("rtmr_2", hex::encode(fields.rtmrs[2])),
        ("tdvfkernel", kernel),
        ("tdvfkernelparams", params),
    ] {
        s.server
            .admin(&["set-reference-value", name, &format!("[\"{v}\"]")]);
    }
    let t = td(&s.root, pki.clone(), fields, unchanged);
    let c = ccel.to_str().unwrap();
    let claims = token_claims(&s, &t, &["--ccel", c, "--aael", "/nonexistent"]);
    let cpu = &claims["submods"]["cpu0"];
    assert_eq!(
        cpu["ear.trustworthiness-vector"]["executables"], 3,
        "{cpu:#}"
    );
    let logs = &cpu["ear.veraison.annotated-evidence"]["tdx"]["uefi_event_logs"];
    assert_eq!(logs.as_array().unwrap().len(), 20);

    // The same log with a quote whose RTMRs it does not produce.
    let t = td(&s.root, pki.clone(), TdFields::default(), unchanged);
    let out = get(&s, &t, Some(c));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), exit_code(Exit::Refused), "{err}");
    assert!(err.contains("replay of RTMR"), "{err}");
}

#[test]
fn collateral_is_fetched_from_a_pccs_once_and_shared_through_the_database() {
    let pki = Arc::new(TestPki::new());
    let pccs = Pccs::start(pki.pcs_responses(&CollateralOptions::current()));
    let mut s = server(&pki, None, &format!("pccs_url = \"{}\"\n", pccs.url));
    let t = td(&s.root, pki.clone(), TdFields::default(), unchanged);
    let out = get(&s, &t, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(pccs.hits.load(std::sync::atomic::Ordering::SeqCst), 4);
    // Cached: in memory, then (after a restart) in the database.
    assert!(get(&s, &t, None).status.success());
    s.server.restart();
    pccs.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let out = get(&s, &t, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(pccs.hits.load(std::sync::atomic::Ordering::SeqCst), 4);
}

#[test]
fn unreachable_pccs_without_cache_is_a_retryable_503() {
    let pki = Arc::new(TestPki::new());
    let pccs = Pccs::start(pki.pcs_responses(&CollateralOptions::current()));
    pccs.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let s = server(&pki, None, &format!("pccs_url = \"{}\"\n", pccs.url));
    let t = td(&s.root, pki.clone(), TdFields::default(), unchanged);
    let out = get(&s, &t, None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), exit_code(Exit::Unavailable), "{err}");
    assert!(err.contains("TCB info") && err.contains("503"), "{err}");
}

#[test]
fn client_checks_the_configfs_provider_and_generation() {
    let pki = Arc::new(TestPki::new());
    let s = offline(&pki);
    let fake = |name: &str, opts: FakeTsmOptions| {
        let p = pki.clone();
        FakeTsm::start(
            &s.root.join(name),
            opts,
            Arc::new(move |rd| {
                p.quote(&TdFields {
                    report_data: rd,
                    ..Default::default()
                })
            }),
        )
    };
    let sev = fake(
        "sev",
        FakeTsmOptions {
            provider: "sev_guest\n".into(),
            ..Default::default()
        },
    );
    let out = get(&s, &sev, None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), exit_code(Exit::Success));
    assert!(err.contains("not tdx_guest"), "{err}");
    let racy = fake(
        "racy",
        FakeTsmOptions {
            generation_step: 2,
            ..Default::default()
        },
    );
    let out = get(&s, &racy, None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), exit_code(Exit::Success));
    assert!(err.contains("generation moved"), "{err}");
}

#[test]
fn platform_unknown_to_the_pccs_is_refused_naming_the_piece() {
    // The PCCS knows FMSPC 90C06F000000; this TD's PCK says 00806F050000.
    let served = TestPki::new();
    let pccs = Pccs::start(served.pcs_responses(&CollateralOptions::current()));
    let pki = Arc::new(TestPki::with_fmspc([0x00, 0x80, 0x6f, 0x05, 0, 0]));
    let s = server(&pki, None, &format!("pccs_url = \"{}\"\n", pccs.url));
    let t = td(&s.root, pki.clone(), TdFields::default(), unchanged);
    refused_with(&s, &t, "no collateral: TCB info");
}

#[test]
fn init_data_is_bound_through_mrconfigid() {
    use sha2::{Digest, Sha384};
    let pki = Arc::new(TestPki::new());
    let s = offline(&pki);
    let toml = "version = \"0.1.0\"\nalgorithm = \"sha384\"\n\n[data]\n\"policy.rego\" = \"package agent_policy\"\n";
    let good = s.root.join("initdata.toml");
    std::fs::write(&good, toml).unwrap();
    let other = s.root.join("other.toml");
    std::fs::write(&other, toml.replace("agent_policy", "other_policy")).unwrap();
    let mut fields = TdFields::default();
    fields
        .mr_config_id
        .copy_from_slice(&Sha384::digest(toml.as_bytes()));
    let t = td(&s.root, pki.clone(), fields, unchanged);
    let dir = t.report_dir().to_str().unwrap().to_string();
    let run = |init: &Path| {
        s.server.coffer(&[
            "get-resource",
            RES,
            "--tee",
            "tdx",
            "--tsm-report-dir",
            &dir,
            "--ccel",
            "/nonexistent",
            "--initdata",
            init.to_str().unwrap(),
        ])
    };
    let out = run(&good);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, SECRET);
    let out = run(&other);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), exit_code(Exit::Refused), "{err}");
    assert!(
        err.contains("does not match the supplied init-data"),
        "{err}"
    );
}

/// A server with the shipped resource policy and no reference values (the PAI-EAS flow):
/// offline collateral from `coll`, the secret stored, nothing else configured.
fn default_policy_server(pki: &TestPki, coll: &CollateralOptions) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let server = Server::start(&root, Some(&pki.offline_dcap_config(&root, coll)));
    let f = root.join("secret");
    std::fs::write(&f, SECRET).unwrap();
    server.admin(&["set-resource", RES, "--file", f.to_str().unwrap()]);
    Setup {
        _tmp: tmp,
        root,
        server,
    }
}

/// The host can start a debug TD and read its memory: the default resource policy never
/// releases to one, while a production TD gets the key without any reference value
/// registered, and an out-of-date TCB (cloud hosts lag on microcode) is accepted.
#[test]
fn default_resource_policy_refuses_debug_tds_and_needs_no_reference_values() {
    let pki = Arc::new(TestPki::new());
    let s = default_policy_server(&pki, &CollateralOptions::current());
    assert!(s
        .server
        .log()
        .contains("releases secrets without checking any measurement"));

    let tsm = td(&s.root, pki.clone(), TdFields::default(), unchanged);
    let out = get(&s, &tsm, None);
    assert_eq!(
        out.stdout,
        SECRET,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut debug = TdFields::default();
    debug.td_attributes |= 1;
    let tsm = td(&s.root, pki.clone(), debug, unchanged);
    let out = get(&s, &tsm, None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        exit_code(Exit::Refused),
        "debug TD released: {err}"
    );
    assert!(
        err.contains("PolicyDeny") || err.contains("denied"),
        "{err}"
    );
    assert!(out.stdout.is_empty());

    let old = TdFields {
        tee_tcb_svn: OLD_TEE_TCB_SVN,
        ..Default::default()
    };
    let tsm = td(&s.root, pki.clone(), old, unchanged);
    let claims = token_claims(&s, &tsm, &[]);
    assert_eq!(
        claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["tdx"]["tcb_status"],
        "OutOfDate"
    );
    let out = get(&s, &tsm, None);
    assert_eq!(
        out.stdout,
        SECRET,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The documented one-line change refuses OutOfDate too.
    let strict = coffer_server::policy::defaults::RESOURCE.replace(
        "refused_tcb_statuses := {\"Revoked\"}",
        "refused_tcb_statuses := {\"Revoked\", \"OutOfDate\"}",
    );
    let f = s.root.join("strict.rego");
    std::fs::write(&f, strict).unwrap();
    s.server
        .admin(&["set-resource-policy", "--file", f.to_str().unwrap()]);
    let out = get(&s, &tsm, None);
    assert_eq!(
        out.status.code(),
        exit_code(Exit::Refused),
        "out-of-date TCB released"
    );
}

/// A TD on a platform whose TCB level is revoked never gets the key.
#[test]
fn revoked_tcb_is_refused_by_default() {
    let pki = Arc::new(TestPki::new());
    let coll = CollateralOptions {
        old_level_status: "Revoked",
        ..CollateralOptions::current()
    };
    let s = default_policy_server(&pki, &coll);
    let revoked = TdFields {
        tee_tcb_svn: OLD_TEE_TCB_SVN,
        ..Default::default()
    };
    let tsm = td(&s.root, pki.clone(), revoked, unchanged);
    let out = get(&s, &tsm, None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        exit_code(Exit::Refused),
        "revoked TCB released: {err}"
    );
    assert!(out.stdout.is_empty());
    // The same platform at its current level is fine.
    let tsm = td(&s.root, pki.clone(), TdFields::default(), unchanged);
    assert_eq!(get(&s, &tsm, None).stdout, SECRET);
}

/// `/attest` needs no credentials, and the FMSPC comes from the caller's quote: a burst of
/// attestations for a platform the PCCS does not know makes one fetch, whose failure is
/// remembered, and no answer names the PCCS.
#[test]
fn collateral_failures_are_fetched_once_and_never_name_the_pccs() {
    let served = TestPki::new();
    let pccs = Pccs::start(served.pcs_responses(&CollateralOptions::current()));
    let pki = Arc::new(TestPki::with_fmspc([0x00, 0x80, 0x6f, 0x05, 0, 0]));
    let s = server(&pki, None, &format!("pccs_url = \"{}\"\n", pccs.url));
    let t = td(&s.root, pki.clone(), TdFields::default(), unchanged);
    let outs: Vec<std::process::Output> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8).map(|_| scope.spawn(|| get(&s, &t, None))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let pccs_addr = pccs.url.trim_start_matches("http://");
    for out in &outs {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), exit_code(Exit::Refused), "{err}");
        assert!(err.contains("no collateral: TCB info"), "{err}");
        assert!(!err.contains(pccs_addr), "PCCS address leaked: {err}");
    }
    assert_eq!(pccs.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    // The server log keeps the address for the operator.
    assert!(s.server.log().contains(pccs_addr));
}

/// An unreachable PCCS's address stays out of the 503 answer as well.
#[test]
fn unreachable_pccs_is_not_named_to_clients() {
    let pki = Arc::new(TestPki::new());
    let pccs = Pccs::start(pki.pcs_responses(&CollateralOptions::current()));
    pccs.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let s = server(&pki, None, &format!("pccs_url = \"{}\"\n", pccs.url));
    let t = td(&s.root, pki.clone(), TdFields::default(), unchanged);
    for _ in 0..3 {
        let out = get(&s, &t, None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), exit_code(Exit::Unavailable), "{err}");
        assert!(
            !err.contains(pccs.url.trim_start_matches("http://")),
            "{err}"
        );
    }
    assert_eq!(pccs.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// A quote whose PCK chain does not lead to the trusted root never makes the server fetch
/// collateral, whatever platform (FMSPC) it claims.
#[test]
fn invented_platforms_cost_no_collateral_fetch() {
    let trusted = Arc::new(TestPki::new());
    let pccs = Pccs::start(trusted.pcs_responses(&CollateralOptions::current()));
    let s = server(&trusted, None, &format!("pccs_url = \"{}\"\n", pccs.url));
    for fmspc in [
        [0x00, 0x80, 0x6f, 0x05, 0, 0],
        [0x11, 0x22, 0x33, 0x44, 0x55, 0x66],
    ] {
        let forger = Arc::new(TestPki::with_fmspc(fmspc));
        let t = td(&s.root, forger, TdFields::default(), unchanged);
        refused_with(
            &s,
            &t,
            "does not lead to the trusted root CA; no collateral fetched",
        );
    }
    assert_eq!(pccs.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}
