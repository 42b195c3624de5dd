//! The real reports, certificate chains and RIMs published by Trustee and NVIDIA (see
//! `fixtures/README.md`), verified against NVIDIA's production roots.

use coffer_gpu::chain::ChainError;
use coffer_gpu::evidence::{parse_upstream, Arch, DeviceEvidence};
use coffer_gpu::report::Report;
use coffer_gpu::rim::{Rim, RimError};
use coffer_gpu::verify::{Collateral, GpuError, GpuVerifier};
use serde_json::{json, Value};

fn fixture(path: &str) -> Vec<u8> {
    let p = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn hex_fixture(path: &str) -> Vec<u8> {
    let text = String::from_utf8(fixture(path)).unwrap();
    hex::decode(text.trim()).unwrap()
}

fn hopper(report: &str, chain: &str) -> DeviceEvidence {
    DeviceEvidence {
        arch: Arch::Hopper,
        uuid: "unknown".into(),
        report: hex_fixture(report),
        certificate_pem: fixture(chain),
    }
}

const TRUSTEE_NONCE: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";
/// Trustee's CoCo CI run: the 48-byte SHA-384 runtime-data hash; the report carries its
/// first 32 bytes.
const COCO_REPORT_DATA_PREFIX: &str =
    "87d8e24ab336adafe228d49e83d745f6dba4ae505372b6a5704820856b343fec";

fn now() -> i64 {
    1_780_000_000
}

#[test]
fn trustee_hopper_report_authenticates_and_gives_trustee_claims() {
    let v = GpuVerifier::nvidia();
    let ev = hopper(
        "trustee/hopperAttestationReport.txt",
        "trustee/hopper_cert_chain_case1.txt",
    );
    let a = v
        .authenticate(0, ev, &hex::decode(TRUSTEE_NONCE).unwrap())
        .unwrap();
    let claims = a.appraise(&v, &Collateral::default(), now());
    let want: Value =
        serde_json::from_slice(&fixture("trustee/hopperAttestationReport-claims.txt")).unwrap();
    assert_eq!(claims["measurements"], want["measurements"]);
    assert_eq!(claims["config"], want["config"]);
    assert_eq!(claims["arch"], "Hopper");
    assert_eq!(claims["x-nvidia-gpu-driver-version"], "550.90.07");
    assert_eq!(claims["x-nvidia-gpu-vbios-version"], "96.00.9F.00.01");
    assert_eq!(claims["hwmodel"], "GH100 A01 GSP BROM");
    assert_eq!(claims["x-nvidia-gpu-arch-check"], true);
    assert_eq!(
        claims["x-nvidia-gpu-attestation-report-cert-chain"]["x-nvidia-cert-status"],
        "valid"
    );
    // No OCSP responses and no RIMs were given: nothing is claimed good, and the
    // warning names what is missing.
    assert_eq!(
        claims["x-nvidia-gpu-attestation-report-cert-chain"]["x-nvidia-cert-ocsp-status"],
        "unknown"
    );
    assert_eq!(claims["measres"], "failure");
    assert_eq!(claims["x-nvidia-gpu-driver-rim-fetched"], false);
    let warning = claims["x-nvidia-attestation-warning"].as_str().unwrap();
    assert!(
        warning.contains("NV_GPU_DRIVER_GH100_550.90.07"),
        "{warning}"
    );
    assert!(
        warning.contains("NV_GPU_VBIOS_1010_0200_882_96009F0001"),
        "{warning}"
    );
    assert!(warning.contains("no OCSP response"), "{warning}");
}

#[test]
fn trustee_signing_cert_fwid_matches_the_report() {
    let pem = fixture("trustee/hopper_signing_cert.pem");
    let der = openssl::x509::X509::from_pem(&pem)
        .unwrap()
        .to_der()
        .unwrap();
    let fwid = coffer_gpu::chain::fwid_of(&der).unwrap();
    assert!(hex::encode(&fwid).starts_with("f5c384aebb"));
    let raw = hex_fixture("trustee/hopperAttestationReport.txt");
    let r = Report::parse(&raw).unwrap();
    assert_eq!(r.opaque().fwid(), Some(fwid.as_slice()));
    assert_eq!(r.signed_bytes().len(), 4021);
    assert_eq!(raw.len(), 4117);
}

#[test]
fn coco_report_with_trailing_byte_authenticates_with_the_runtime_data_prefix() {
    let v = GpuVerifier::nvidia();
    let ev = hopper(
        "trustee/hopper_coco_report1.txt",
        "trustee/hopper_coco_certs1.txt",
    );
    assert_eq!(ev.report.len(), 4130);
    let a = v
        .authenticate(0, ev, &hex::decode(COCO_REPORT_DATA_PREFIX).unwrap())
        .unwrap();
    let claims = a.appraise(&v, &Collateral::default(), now());
    assert_eq!(claims["x-nvidia-gpu-driver-version"], "580.95.05");
    assert_eq!(claims["config"]["opaque_data_version"], 1);
    assert_eq!(claims["config"]["feature_flag"], 0);
}

#[test]
fn nvat_blackwell_report_authenticates_with_the_multi_tcb_info_fwid() {
    let v = GpuVerifier::nvidia();
    let raw = hex_fixture("nvat/blackwellAttestationReport.txt");
    let nonce = Report::parse(&raw).unwrap().request_nonce().to_vec();
    let ev = DeviceEvidence {
        arch: Arch::Blackwell,
        uuid: "unknown".into(),
        report: raw,
        certificate_pem: fixture("nvat/blackwellCertChain.txt"),
    };
    let a = v.authenticate(0, ev, &nonce).unwrap();
    assert_eq!(a.chain().fwid.len(), 48);
    let (driver, vbios) = a.rim_ids();
    assert!(driver.unwrap().starts_with("NV_GPU_CC_DRIVER_"));
    assert!(vbios.unwrap().starts_with("NV_GPU_VBIOS_"));
    let claims = a.appraise(&v, &Collateral::default(), now());
    assert_eq!(claims["hwmodel"], "GB100 A01 GSP BROM");
    assert_eq!(claims["x-nvidia-gpu-arch-check"], true);
    assert_eq!(claims["x-nvidia-gpu-driver-version"], "575.32");
}

#[test]
fn nvat_evidence_array_parses_and_authenticates() {
    let v = GpuVerifier::nvidia();
    let doc: Value = serde_json::from_slice(&fixture("nvat/hopper_evidence.json")).unwrap();
    let nonce = hex::decode(doc[0]["nonce"].as_str().unwrap()).unwrap();
    let devices = parse_upstream(&doc).unwrap();
    assert_eq!(devices.len(), 1);
    let a = v.authenticate(0, devices[0].clone(), &nonce).unwrap();
    let claims = a.appraise(&v, &Collateral::default(), now());
    assert_eq!(claims["x-nvidia-gpu-driver-version"], "590.12");
    assert_eq!(claims["config"]["feature_flag"], 2);
}

#[test]
fn nvat_switch_evidence_authenticates() {
    let v = GpuVerifier::nvidia();
    let doc: Value = serde_json::from_slice(&fixture("nvat/switch_evidence_ls10.json")).unwrap();
    let nonce = hex::decode(TRUSTEE_NONCE).unwrap();
    let devices = parse_upstream(&doc).unwrap();
    assert_eq!(devices[0].arch, Arch::Ls10);
    let a = v.authenticate(0, devices[0].clone(), &nonce).unwrap();
    let claims = a.appraise(&v, &Collateral::default(), now());
    assert_eq!(claims["x-nvidia-device-type"], "switch");
    assert!(claims["x-nvidia-switch-bios-version"].is_string());
}

#[test]
fn upstream_envelope_in_hex_and_base64_encodings() {
    use base64::Engine;
    let report = hex_fixture("trustee/hopperAttestationReport.txt");
    let chain = fixture("trustee/hopper_cert_chain_case1.txt");
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    for (arch, evidence) in [("Hopper", hex::encode(&report)), ("HOPPER", b64(&report))] {
        let doc = json!({"device_evidence_list": [
            {"arch": arch, "uuid": "GPU-1", "evidence": evidence, "certificate": b64(&chain)}
        ]});
        let d = parse_upstream(&doc).unwrap();
        assert_eq!(d[0].report, report);
        assert_eq!(d[0].certificate_pem, chain);
        assert_eq!(d[0].uuid, "GPU-1");
    }
}

#[test]
fn nvat_report_with_invalid_signature_is_refused() {
    let v = GpuVerifier::nvidia();
    let ev = hopper(
        "nvat/hopperAttestationReportInvalidSignature.txt",
        "nvat/hopperCertChain.txt",
    );
    let nonce = Report::parse(&ev.report).unwrap().request_nonce().to_vec();
    let e = v.authenticate(0, ev, &nonce).unwrap_err();
    assert!(matches!(e, GpuError::Signature { .. }), "{e}");
}

#[test]
fn flipped_bit_in_the_report_is_refused() {
    let v = GpuVerifier::nvidia();
    let mut ev = hopper(
        "trustee/hopperAttestationReport.txt",
        "trustee/hopper_cert_chain_case1.txt",
    );
    ev.report[500] ^= 1; // inside measurement block values
    let e = v
        .authenticate(0, ev, &hex::decode(TRUSTEE_NONCE).unwrap())
        .unwrap_err();
    assert!(matches!(e, GpuError::Signature { .. }), "{e}");
}

#[test]
fn wrong_nonce_is_refused() {
    let v = GpuVerifier::nvidia();
    let ev = hopper(
        "trustee/hopperAttestationReport.txt",
        "trustee/hopper_cert_chain_case1.txt",
    );
    let e = v.authenticate(0, ev, &[7u8; 48]).unwrap_err();
    assert!(matches!(e, GpuError::Nonce { .. }), "{e}");
}

#[test]
fn broken_chains_are_refused() {
    let v = GpuVerifier::nvidia();
    let nonce = hex::decode(TRUSTEE_NONCE).unwrap();
    let case = |n: u8| {
        let ev = hopper(
            "trustee/hopperAttestationReport.txt",
            &format!("trustee/hopper_cert_chain_case{n}.txt"),
        );
        v.authenticate(0, ev, &nonce).unwrap_err()
    };
    assert!(matches!(
        case(2),
        GpuError::Chain {
            source: ChainError::TooShort(1),
            ..
        }
    ));
    assert!(matches!(
        case(3),
        GpuError::Chain {
            source: ChainError::Untrusted(_),
            ..
        }
    ));
    let leafless = case(4);
    assert!(
        matches!(
            leafless,
            GpuError::Chain {
                source: ChainError::NoFwid(_),
                ..
            } | GpuError::Signature { .. }
        ),
        "{leafless}"
    );
}

#[test]
fn chain_to_another_root_is_refused() {
    let other = fixture("nvat/rim_root.crt");
    let v = GpuVerifier::with_roots(&other, &other).unwrap();
    let ev = hopper(
        "trustee/hopperAttestationReport.txt",
        "trustee/hopper_cert_chain_case1.txt",
    );
    let e = v
        .authenticate(0, ev, &hex::decode(TRUSTEE_NONCE).unwrap())
        .unwrap_err();
    assert!(
        matches!(
            e,
            GpuError::Chain {
                source: ChainError::Untrusted(_),
                ..
            }
        ),
        "{e}"
    );
}

const RIM_ID: &str = "NV_GPU_DRIVER_GH100_550.144.03";

fn rim_text(path: &str) -> String {
    String::from_utf8(fixture(path)).unwrap()
}

#[test]
fn genuine_driver_rim_signature_and_chain_verify() {
    let rim = Rim::parse(RIM_ID, &rim_text("nvat/NV_GPU_DRIVER_GH100_550.144.03.xml")).unwrap();
    assert_eq!(rim.version, "550.144.03");
    assert_eq!(rim.manufacturer_id.as_deref(), Some("5703"));
    assert_eq!(rim.certs.len(), 4);
    let active: Vec<u32> = rim
        .measurements
        .iter()
        .filter(|g| g.active)
        .map(|g| g.index)
        .collect();
    assert!(active.contains(&7) && active.contains(&21));
    rim.verify_signature().unwrap();
    let v = GpuVerifier::nvidia();
    coffer_gpu::rim::verify_rim_chain(&rim, v.rim_root()).unwrap();
}

#[test]
fn altered_rim_is_refused() {
    let text = rim_text("nvat/NV_GPU_DRIVER_GH100_550.144.03.xml");
    let altered = text.replacen(
        "4a5e4b3d501fe31f91bd8b6f2921b58437704a504dbedba971440e840c938c805612689ae3ac04b1009515a179063d49",
        "5a5e4b3d501fe31f91bd8b6f2921b58437704a504dbedba971440e840c938c805612689ae3ac04b1009515a179063d49",
        1,
    );
    assert_ne!(altered, text);
    let e = Rim::parse(RIM_ID, &altered)
        .unwrap()
        .verify_signature()
        .unwrap_err();
    assert!(matches!(e, RimError::Signature { .. }), "{e}");
}

#[test]
fn nvat_incorrect_signature_rim_is_refused() {
    let rim = Rim::parse(RIM_ID, &rim_text("nvat/incorrect_signature_driver_rim.xml")).unwrap();
    assert!(matches!(
        rim.verify_signature(),
        Err(RimError::Signature { .. })
    ));
}

#[test]
fn nvat_incorrect_cert_chain_rim_is_refused() {
    let rim = Rim::parse(
        RIM_ID,
        &rim_text("nvat/incorrect_cert_chain_driver_rim.xml"),
    )
    .unwrap();
    let v = GpuVerifier::nvidia();
    let chain = coffer_gpu::rim::verify_rim_chain(&rim, v.rim_root());
    assert!(matches!(chain, Err(RimError::Chain { .. })), "{chain:?}");
}
