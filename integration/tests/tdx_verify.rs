//! Synthetic DCAP matrix: quotes and collateral minted by the test PKI, verified by the
//! same coffer-tdx code that verifies Intel's.

use coffer_integration::tdx_mint::{CollateralOptions, TdFields, TestPki};
use coffer_tdx::claims::{dcap_claims, tdx_quote_claims};
use coffer_tdx::collateral::Collateral;
use coffer_tdx::dcap::{DcapError, DcapVerifier};
use coffer_tdx::quote::Quote;

fn setup() -> (TestPki, Collateral, DcapVerifier) {
    let pki = TestPki::new();
    let coll = Collateral::from_json(&pki.collateral_json(&CollateralOptions::current())).unwrap();
    let v = DcapVerifier::with_root(pki.root_der());
    (pki, coll, v)
}

fn now() -> i64 {
    coffer_integration::tdx_mint::now()
}

#[test]
fn minted_quote_verifies_up_to_date() {
    let (pki, coll, v) = setup();
    let q = pki.quote(&TdFields::default());
    let ok = v.verify(&q, &coll, now()).unwrap();
    let c = dcap_claims(&ok);
    assert_eq!(c["tcb_status"], "UpToDate");
    assert_eq!(c["advisory_ids"], serde_json::json!([]));
    assert_eq!(c["fmspc"], "90c06f000000");
    // The same quote is worthless under Intel's root.
    let e = DcapVerifier::intel().verify(&q, &coll, now()).unwrap_err();
    assert!(matches!(e, DcapError::Rejected(_)), "{e}");
}

#[test]
fn flipped_bits_are_refused() {
    let (pki, coll, v) = setup();
    let q = pki.quote(&TdFields::default());
    // body (MRTD), header, quote signature, QE report, PCK chain (inside the leaf's base64)
    let pem_at = q.windows(10).position(|w| w == b"-----BEGIN").unwrap() + 200;
    for (what, at) in [
        ("body", 48 + 140),
        ("header user data", 30),
        ("signature", 640),
        ("qe report", 636 + 128 + 6 + 100),
        ("pck chain", pem_at),
    ] {
        let mut bad = q.clone();
        bad[at] ^= if what == "pck chain" { 0x01 } else { 0x80 };
        let e = v.verify(&bad, &coll, now());
        assert!(e.is_err(), "{what} flip accepted");
    }
}

#[test]
fn revoked_pck_is_refused() {
    let pki = TestPki::new();
    let mut o = CollateralOptions::current();
    o.revoke_pck = true;
    let coll = Collateral::from_json(&pki.collateral_json(&o)).unwrap();
    let e = DcapVerifier::with_root(pki.root_der())
        .verify(&pki.quote(&TdFields::default()), &coll, now())
        .unwrap_err();
    assert!(e.to_string().to_lowercase().contains("revoked"), "{e}");
}

#[test]
fn expired_and_not_yet_valid_collateral_name_the_piece() {
    let pki = TestPki::new();
    let q = pki.quote(&TdFields::default());
    let v = DcapVerifier::with_root(pki.root_der());
    let mut o = CollateralOptions::current();
    o.issued = now() - 40 * 86_400;
    o.next_update = now() - 10 * 86_400;
    let coll = Collateral::from_json(&pki.collateral_json(&o)).unwrap();
    let e = v.verify(&q, &coll, now()).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, DcapError::Collateral(_)), "{msg}");
    assert!(msg.contains("expired") && msg.contains("TCB info"), "{msg}");
    let mut o = CollateralOptions::current();
    o.issued = now() + 86_400;
    o.next_update = now() + 10 * 86_400;
    let coll = Collateral::from_json(&pki.collateral_json(&o)).unwrap();
    assert!(matches!(
        v.verify(&q, &coll, now()),
        Err(DcapError::Collateral(_))
    ));
}

#[test]
fn collateral_for_another_platform_is_refused() {
    let pki = TestPki::new();
    let mut o = CollateralOptions::current();
    o.fmspc = [0x00, 0x80, 0x6f, 0x05, 0, 0];
    let coll = Collateral::from_json(&pki.collateral_json(&o)).unwrap();
    let e = DcapVerifier::with_root(pki.root_der())
        .verify(&pki.quote(&TdFields::default()), &coll, now())
        .unwrap_err();
    assert!(matches!(e, DcapError::CollateralMismatch(_)), "{e}");
}

#[test]
fn tcb_levels_give_statuses_and_debug_is_left_to_policy() {
    let (pki, coll, v) = setup();
    // An older TDX module SVN falls to the OutOfDate level with its advisory.
    let mut td = TdFields::default();
    td.tee_tcb_svn[0] = 4;
    let c = dcap_claims(&v.verify(&pki.quote(&td), &coll, now()).unwrap());
    assert_eq!(c["tcb_status"], "OutOfDate");
    assert_eq!(c["advisory_ids"], serde_json::json!(["INTEL-SA-00106"]));
    // Below every level: terminal.
    td.tee_tcb_svn[0] = 1;
    let e = v.verify(&pki.quote(&td), &coll, now()).unwrap_err();
    assert!(e.to_string().to_lowercase().contains("tcb"), "{e}");
    // DEBUG TD: verified, reported for the policy.
    let mut td = TdFields::default();
    td.td_attributes |= 1;
    let raw = pki.quote(&td);
    v.verify(&raw, &coll, now()).unwrap();
    let q = Quote::parse(&raw).unwrap();
    assert_eq!(
        tdx_quote_claims(&q, None, None)["td_attributes"]["debug"],
        true
    );
}

#[test]
fn wrong_vendor_id_is_refused_even_when_resigned() {
    let (pki, coll, v) = setup();
    let mut q = pki.quote(&TdFields::default());
    q[12] ^= 1;
    let q = pki.resign(&q);
    assert!(v.verify(&q, &coll, now()).is_err());
}

#[test]
fn remembered_outcomes_still_check_every_quote() {
    let (pki, coll, v) = setup();
    let mut td = TdFields::default();
    let first = pki.quote(&td);
    v.verify(&first, &coll, now()).unwrap();
    // Same TD, new REPORTDATA: answered from the cache, signature still checked.
    td.report_data = [7; 64];
    let second = pki.quote(&td);
    assert_eq!(
        dcap_claims(&v.verify(&second, &coll, now()).unwrap())["tcb_status"],
        "UpToDate"
    );
    let mut forged = second.clone();
    forged[568] ^= 1; // REPORTDATA changed without re-signing
    let e = v.verify(&forged, &coll, now()).unwrap_err();
    assert!(e.to_string().contains("signature"), "{e}");
    let mut bad_sig = second.clone();
    bad_sig[640] ^= 1;
    assert!(v.verify(&bad_sig, &coll, now()).is_err());
    // Any other body change is a different TD: full verification (here: no TCB level).
    let mut low = TdFields::default();
    low.tee_tcb_svn[0] = 1;
    assert!(v.verify(&pki.quote(&low), &coll, now()).is_err());
    // New collateral (the PCK now revoked) is not answered from the cache.
    let mut o = CollateralOptions::current();
    o.revoke_pck = true;
    let revoked = Collateral::from_json(&pki.collateral_json(&o)).unwrap();
    assert!(v.verify(&second, &revoked, now()).is_err());
    // Outside the collateral window the cache does not help either.
    let end = coll.window().not_after;
    assert!(v.verify(&second, &coll, end + 1).is_err());
}

#[test]
fn kbs_runtime_data_hash_is_what_the_synthetic_quote_carries() {
    use coffer_protocol::runtime_data::{runtime_data_hash, HashAlgorithm};
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tdx/tests/fixtures/synthetic");
    let rd: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("runtime_data.json")).unwrap()).unwrap();
    let hash = runtime_data_hash(
        HashAlgorithm::Sha384,
        rd["nonce"].as_str().unwrap(),
        &rd["tee-pubkey"],
        rd["additional-evidence"].as_str().unwrap(),
    );
    let raw = std::fs::read(dir.join("quote.bin")).unwrap();
    let q = Quote::parse(&raw).unwrap();
    assert!(coffer_tdx::binding::report_data_matches(
        q.report_data(),
        &hash
    ));
}
