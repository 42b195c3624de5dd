//! The fixture vectors (real Intel-signed quotes with their collateral, event logs and
//! Trustee's expected claims) through coffer-tdx.

use std::path::PathBuf;

use coffer_tdx::claims::{dcap_claims, tcb_verification_claim, tdx_quote_claims};
use coffer_tdx::collateral::Collateral;
use coffer_tdx::dcap::{DcapError, DcapVerifier};
use coffer_tdx::eventlog::EventLog;
use coffer_tdx::quote::Quote;
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(dir().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn vectors() -> Value {
    serde_json::from_slice(&read("vectors.json")).unwrap()
}

fn verify_case(case: &Value, at: i64) -> Result<coffer_tdx::dcap::Verified, DcapError> {
    let quote = read(case["quote"].as_str().unwrap());
    let coll = Collateral::from_json(
        std::str::from_utf8(&read(case["collateral"].as_str().unwrap())).unwrap(),
    )?;
    let root = read(case["root_ca"].as_str().unwrap());
    DcapVerifier::with_root(root).verify(&quote, &coll, at)
}

#[test]
fn every_verification_case_gives_its_expected_result() {
    let v = vectors();
    for case in v["verification_cases"].as_array().unwrap() {
        let name = format!("{} ({})", case["quote"], case["root_ca"]);
        let at = case["verify_at_unix"].as_i64().unwrap();
        let expect = &case["expect"];
        let got = verify_case(case, at);
        if expect["ok"].as_bool().unwrap() {
            let ok = got.unwrap_or_else(|e| panic!("{name}: {e}"));
            let c = dcap_claims(&ok);
            assert_eq!(c["tcb_status"], expect["tcb_status"], "{name}");
            assert_eq!(c["advisory_ids"], expect["advisory_ids"], "{name}");
            assert_eq!(c["tcb_date"], expect["tcb_date"], "{name}");
            assert_eq!(c["tcb_eval_num"], expect["tcb_eval_data_number"], "{name}");
            assert_eq!(c["collateral_expiration_status"], "0");
            // Alibaba's nested form carries the same facts.
            let raw = read(case["quote"].as_str().unwrap());
            let tdx = Quote::parse(&raw).unwrap().is_tdx();
            let t = tcb_verification_claim(&ok, tdx);
            assert_eq!(t["tcb_status"], expect["tcb_status"], "{name}");
            let ids: Vec<&str> = expect["advisory_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(t["advisory_ids"], ids.join(","), "{name}");
            let tcb_date =
                chrono::DateTime::parse_from_rfc3339(expect["tcb_date"].as_str().unwrap())
                    .unwrap()
                    .timestamp();
            assert_eq!(t["tcb_level_date_tag"], tcb_date, "{name}");
            assert_eq!(
                t["tcb_eval_ref_num"], expect["tcb_eval_data_number"],
                "{name}"
            );
            let code = match expect["tcb_status"].as_str().unwrap() {
                "UpToDate" => 0,
                "SWHardeningNeeded" => 0xA007,
                "ConfigurationNeeded" => 0xA001,
                "OutOfDate" => 0xA002,
                "ConfigurationAndSWHardeningNeeded" => 0xA008,
                other => panic!("{name}: add the QVL code of {other}"),
            };
            assert_eq!(t["tcb_status_code"], code, "{name}");
            assert_eq!(t["collateral_expired"], false);
            assert_eq!(t["tee_type"], if tdx { 0x81 } else { 0 }, "{name}");
            assert_eq!(
                t["earliest_expiration_date"],
                chrono::DateTime::parse_from_rfc3339(
                    c["earliest_expiration_date"].as_str().unwrap()
                )
                .unwrap()
                .timestamp()
            );
            // One second after the window closes the same case must fail, naming the piece.
            let coll = Collateral::from_json(
                std::str::from_utf8(&read(case["collateral"].as_str().unwrap())).unwrap(),
            )
            .unwrap();
            let end = coll.window().not_after;
            match verify_case(case, end + 1) {
                Err(DcapError::Collateral(e)) => {
                    assert!(e.to_string().contains("expired"), "{name}: {e}")
                }
                other => panic!("{name}: after window: {other:?}"),
            }
            if let Err(e) = verify_case(case, end - 1) {
                panic!("{name}: last valid second: {e}");
            }
        } else {
            let err = match got {
                Ok(_) => panic!("{name}: verified but must fail"),
                Err(e) => e.to_string().to_lowercase(),
            };
            let want = expect["error_contains_ci"].as_str().unwrap().to_lowercase();
            assert!(err.contains(&want), "{name}: {err:?} lacks {want:?}");
        }
    }
}

#[test]
fn debug_td_is_verified_and_reported_for_policy() {
    let v = vectors();
    let case = v["verification_cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["quote"] == "trustee/tdx_quote_4.dat")
        .unwrap();
    verify_case(case, case["verify_at_unix"].as_i64().unwrap()).unwrap();
    let raw = read("trustee/tdx_quote_4.dat");
    let q = Quote::parse(&raw).unwrap();
    let c = tdx_quote_claims(&q, None, None);
    assert_eq!(c["td_attributes"]["debug"], true);
}

#[test]
fn parsed_fields_match_the_vectors() {
    let v = vectors();
    for (file, f) in v["quotes"].as_object().unwrap() {
        let raw = read(file);
        let q = Quote::parse(&raw).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(q.version() as u64, f["version"].as_u64().unwrap(), "{file}");
        assert_eq!(
            q.signed_region().len() as u64,
            f["signed_len"].as_u64().unwrap(),
            "{file}"
        );
        assert_eq!(
            (raw.len() - q.bytes().len()) as u64,
            f["trailing"].as_u64().unwrap(),
            "{file}"
        );
        assert_eq!(
            hex::encode(q.header_field(12, 16)),
            f["vendor_id"],
            "{file}"
        );
        assert_eq!(
            q.qe_auth_data().len() as u64,
            f["qe_auth_len"].as_u64().unwrap()
        );
        if q.is_tdx() {
            let c = tdx_quote_claims(&q, None, None);
            let b = &c["quote"]["body"];
            for (claim, key) in [
                ("mr_td", "mr_td"),
                ("mr_config_id", "mr_config_id"),
                ("rtmr_0", "rtmr0"),
                ("rtmr_3", "rtmr3"),
                ("report_data", "report_data"),
                ("td_attributes", "td_attributes"),
                ("xfam", "xfam"),
                ("tcb_svn", "tee_tcb_svn"),
                ("mrsigner_seam", "mr_signer_seam"),
            ] {
                assert_eq!(b[claim], f[key], "{file} {claim}");
            }
        } else {
            assert_eq!(hex::encode(q.report_data()), f["report_data"], "{file}");
        }
    }
}

#[test]
fn truncated_quotes_are_errors_and_padding_is_ignored() {
    for file in [
        "dcap-qvl/tdx_quote",
        "dcap-qvl/tdx_quote_td15ex",
        "dcap-qvl/sgx_quote",
        "go-tdx-guest/ccel/cos-113-tdx-quote.dat",
    ] {
        let raw = read(file);
        let used = Quote::parse(&raw).unwrap().bytes().len();
        for cut in 0..used {
            assert!(Quote::parse(&raw[..cut]).is_err(), "{file} cut at {cut}");
        }
        let mut padded = raw.clone();
        padded.extend_from_slice(&[0u8; 100]);
        assert_eq!(Quote::parse(&padded).unwrap().bytes().len(), used);
    }
}

#[test]
fn trustee_claims_for_quote_4_and_ccel() {
    let raw = read("trustee/tdx_quote_4.dat");
    let q = Quote::parse(&raw).unwrap();
    let log_bytes = read("trustee/CCEL_data");
    let log = EventLog::parse(&log_bytes).unwrap();
    let leaf = coffer_tdx::dcap::leaf_der(&q).unwrap();
    let ext = dcap_qvl::intel::parse_pck_extension(&leaf).unwrap();
    let got = Value::Object(tdx_quote_claims(
        &q,
        Some(&log),
        ext.platform_instance_id.as_deref(),
    ));
    let want: Value =
        serde_json::from_slice(&read("trustee/parse_tdx_claims_expected.json")).unwrap();
    for key in [
        "quote",
        "td_attributes",
        "report_data",
        "init_data",
        "platform_instance_id",
    ] {
        assert_eq!(got[key], want[key], "{key}");
    }
    assert_eq!(got["uefi_event_logs"], want["uefi_event_logs"]);
}

#[test]
fn event_logs_replay_to_their_vectors() {
    let v = vectors();
    for e in v["event_logs"].as_array().unwrap() {
        let file = e["eventlog"].as_str().unwrap();
        let bytes = read(file);
        let log = EventLog::parse(&bytes).unwrap_or_else(|err| panic!("{file}: {err}"));
        assert_eq!(
            log.events.len() as u64,
            e["events"].as_u64().unwrap(),
            "{file}"
        );
        if let Some(used) = e["log_bytes_used"].as_u64() {
            assert_eq!(log.used_len as u64, used, "{file}");
        }
        let regs = log.replay().unwrap();
        for (i, r) in regs.iter().enumerate() {
            assert_eq!(
                hex::encode(r),
                e["replayed"][format!("rtmr{i}")],
                "{file} rtmr{i}"
            );
        }
        if let Some(qf) = e["quote"].as_str() {
            let raw = read(qf);
            let q = Quote::parse(&raw).unwrap();
            let rtmrs = [0, 1, 2, 3].map(|i| q.rtmr(i).unwrap());
            log.check_rtmrs(rtmrs).unwrap();
            let other = read("trustee/tdx_quote_4.dat");
            let q4 = Quote::parse(&other).unwrap();
            assert!(log
                .check_rtmrs([0, 1, 2, 3].map(|i| q4.rtmr(i).unwrap()))
                .is_err());
        }
    }
}

#[test]
fn event_log_json_matches_trustee_parser_output() {
    for name in [
        "CCEL_data_ovmf",
        "CCEL_data_grub_gke",
        "CCEL_AAEL_alibabacloud",
    ] {
        let bytes = read(&format!("trustee/eventlog/{name}"));
        let log = EventLog::parse(&bytes).unwrap();
        let want: Value =
            serde_json::from_slice(&read(&format!("trustee/eventlog/{name}_out.json"))).unwrap();
        let want = want["uefi_event_logs"].as_array().unwrap();
        let got = log.to_trustee_json();
        assert_eq!(got.len(), want.len(), "{name}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            for key in [
                "index",
                "type_name",
                "digests",
                "details",
                "digest_matches_event",
            ] {
                assert_eq!(g[key], w[key], "{name} event {i} {key}");
            }
            if let Some(ev) = w.get("event") {
                assert_eq!(&g["event"], ev, "{name} event {i}");
            }
        }
    }
}

/// Deterministic mutation run over the real quotes and logs (the fuzz targets' bodies on
/// stable, without coverage guidance): parsers return errors, never panic.
#[test]
fn mutated_inputs_never_panic() {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let seeds = [
        read("dcap-qvl/tdx_quote"),
        read("dcap-qvl/sgx_quote"),
        read("dcap-qvl/tdx_quote_td15ex"),
        read("trustee/tdx_quote_5.dat"),
    ];
    for i in 0..8_000 {
        let mut q = seeds[i % seeds.len()].clone();
        for _ in 0..(1 + next() % 4) {
            let at = (next() as usize) % q.len();
            // Length fields (sizes near 632, 636+...) get whole-byte values, others bit flips.
            q[at] = if next() % 2 == 0 {
                next() as u8
            } else {
                q[at] ^ (1 << (next() % 8))
            };
        }
        if next() % 8 == 0 {
            let cut = (next() as usize) % q.len();
            q.truncate(cut);
        }
        if let Ok(p) = Quote::parse(&q) {
            let _ = tdx_quote_claims(&p, None, None);
            let _ = coffer_tdx::claims::sgx_quote_claims(&p);
            if i % 4 == 0 {
                let _ = coffer_tdx::dcap::collateral_key(&p);
            }
        }
    }
    let logs = [
        read("trustee/eventlog/CCEL_data_ovmf"),
        read("trustee/eventlog/CCEL_AAEL_alibabacloud"),
    ];
    for i in 0..5_000 {
        let mut l = logs[i % logs.len()].clone();
        let used = EventLog::parse(&l).unwrap().used_len;
        for _ in 0..(1 + next() % 4) {
            let at = (next() as usize) % used;
            l[at] = next() as u8;
        }
        if let Ok(log) = EventLog::parse(&l) {
            let _ = log.replay();
            let _ = log.to_trustee_json();
        }
    }
}

#[test]
fn synthetic_bindings_match_runtime_data_and_init_data() {
    use coffer_tdx::binding::{config_id_matches, init_data_digest, report_data_matches};
    use sha2::{Digest, Sha384};
    let raw = read("synthetic/quote.bin");
    let q = Quote::parse(&raw).unwrap();
    let rd = Sha384::digest(read("synthetic/runtime_data.json"));
    assert!(report_data_matches(q.report_data(), &rd));
    let mut other = rd.to_vec();
    other[0] ^= 1;
    assert!(!report_data_matches(q.report_data(), &other));
    let init = String::from_utf8(read("synthetic/initdata.toml")).unwrap();
    let digest = init_data_digest(&init).unwrap();
    assert!(config_id_matches(q.config_id(), &digest));
    let changed = init.replacen("algorithm", "algorithm ", 1);
    assert!(!config_id_matches(
        q.config_id(),
        &init_data_digest(&changed).unwrap()
    ));
}

#[test]
fn sgx_claims_have_trustee_layout() {
    let raw = read("dcap-qvl/sgx_quote");
    let q = Quote::parse(&raw).unwrap();
    let c = coffer_tdx::claims::sgx_quote_claims(&q);
    let rd = c["body"]["report_data"].as_str().unwrap();
    assert!(rd.starts_with(&hex::encode("Hello, world!")), "{rd}");
    assert_eq!(c["header"]["version"], "0300");
    assert_eq!(
        c["body"]["mr_enclave"].as_str().unwrap().len(),
        64,
        "32-byte MRENCLAVE"
    );
    assert!(c["body"]["mr_enclave"]
        .as_str()
        .unwrap()
        .starts_with("33d8736db756ed49"));
}
