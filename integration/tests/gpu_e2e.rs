//! Confidential GPUs end to end without GPUs: the `coffer` client library attests from a
//! fake TD (configfs-tsm minting quotes under the test DCAP PKI) with a fake GPU (reports
//! minted under a test NVIDIA-shaped PKI, answering the live nonce); the real
//! `coffer-server` verifies both, appraises the GPU with the default GPU policy, and the
//! default resource policy decides the release.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use coffer::evidence::EvidenceProvider;
use coffer::gpu::{GpuDevice, GpuDevices};
use coffer::tdx::{TdxEvidence, TdxPaths};
use coffer::{ClientError, KbsClient};
use coffer_integration::fake_tsm::{FakeTsm, FakeTsmOptions};
use coffer_integration::gpu_mint::{GpuFields, GpuPki, DRIVER_RIM_INDICES, VBIOS_RIM_INDICES};
use coffer_integration::tdx_mint::{CollateralOptions, TdFields, TestPki};
use coffer_integration::Server;
use coffer_protocol::{ResourcePath, TeeKeyPair};
use serde_json::{json, Value};

const SECRET: &[u8] = b"gpu-model-key-0123456789";
const RES: &str = "default/aliyun/model-decryption-key";

/// How the fake GPU misbehaves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    None,
    FlippedBit,
    WrongNonce,
}

struct FakeGpu {
    pki: Arc<GpuPki>,
    fields: GpuFields,
    fault: Fault,
}

impl GpuDevice for FakeGpu {
    fn arch(&self) -> &str {
        "HOPPER"
    }
    fn uuid(&self) -> String {
        "GPU-00000000-test".into()
    }
    fn attestation_report(&self, nonce: &[u8; 32]) -> Result<Vec<u8>, ClientError> {
        let nonce = if self.fault == Fault::WrongNonce {
            [9u8; 32]
        } else {
            *nonce
        };
        let mut r = self.pki.report(&nonce, &self.fields);
        if self.fault == Fault::FlippedBit {
            r[300] ^= 0x01;
        }
        Ok(r)
    }
    fn attestation_cert_chain(&self) -> Result<Vec<u8>, ClientError> {
        Ok(self.pki.chain_pem())
    }
}

struct FakeGpus(Arc<GpuPki>, Fault);

impl GpuDevices for FakeGpus {
    fn devices(&self) -> Result<Vec<Box<dyn GpuDevice>>, ClientError> {
        Ok(vec![Box::new(FakeGpu {
            pki: self.0.clone(),
            fields: GpuFields::default(),
            fault: self.1,
        })])
    }
}

/// Which collateral the server gets.
struct Collateral {
    revoked: &'static [&'static str],
    /// Edits the fields the RIMs are made from (a mismatching golden value).
    rim_fields: fn(&mut GpuFields),
    with_ocsp: bool,
    /// RIM service base URL instead of a RIM directory.
    rim_service: Option<String>,
    /// OCSP responder URL; the device CA's answer then comes from it, not from a file.
    ocsp_url: Option<String>,
    /// Extra `[gpu]` lines.
    extra: String,
}

impl Default for Collateral {
    fn default() -> Self {
        Collateral {
            revoked: &[],
            rim_fields: |_| {},
            with_ocsp: true,
            rim_service: None,
            ocsp_url: None,
            extra: String::new(),
        }
    }
}

struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    server: Server,
    dcap: Arc<TestPki>,
    gpu: Arc<GpuPki>,
}

fn setup(gpu_section: Option<Collateral>) -> Setup {
    setup_with(Arc::new(GpuPki::new()), gpu_section)
}

fn setup_with(gpu: Arc<GpuPki>, gpu_section: Option<Collateral>) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let dcap = Arc::new(TestPki::new());
    let mut config = dcap.offline_dcap_config(&root, &CollateralOptions::current());
    match gpu_section {
        None => config.push_str("\n[gpu]\nenabled = false\n"),
        Some(c) => {
            std::fs::write(root.join("gpu-root.pem"), gpu.root_pem()).unwrap();
            std::fs::write(root.join("rim-root.pem"), gpu.rim_root_pem()).unwrap();
            let rims = root.join("rims");
            let ocsp = root.join("ocsp");
            std::fs::create_dir_all(&rims).unwrap();
            std::fs::create_dir_all(&ocsp).unwrap();
            let mut f = GpuFields::default();
            (c.rim_fields)(&mut f);
            let fields = GpuFields::default();
            if c.rim_service.is_none() {
                std::fs::write(
                    rims.join(format!("{}.xml", GpuPki::driver_rim_id(&fields))),
                    gpu.rim(&fields.driver_version, &DRIVER_RIM_INDICES, &f),
                )
                .unwrap();
                std::fs::write(
                    rims.join(format!("{}.xml", GpuPki::vbios_rim_id(&fields))),
                    gpu.rim("96.00.9F.00.01", &VBIOS_RIM_INDICES, &f),
                )
                .unwrap();
            }
            if c.with_ocsp {
                for (i, der) in gpu.ocsp_responses(&root, c.revoked).iter().enumerate() {
                    // Answer 0 is the device CA's: from the responder when one is set.
                    if i == 0 && c.ocsp_url.is_some() {
                        continue;
                    }
                    std::fs::write(ocsp.join(format!("{i}.der")), der).unwrap();
                }
            }
            config.push_str(&format!(
                "\n[gpu]\ndevice_root_file = \"{}\"\nrim_root_file = \"{}\"\nrim_dir = \"{}\"\nocsp_dir = \"{}\"\n",
                root.join("gpu-root.pem").display(),
                root.join("rim-root.pem").display(),
                rims.display(),
                ocsp.display()
            ));
            if let Some(url) = &c.ocsp_url {
                config.push_str(&format!("ocsp_url = \"{url}\"\n"));
            }
            config.push_str(&c.extra);
            if let Some(url) = &c.rim_service {
                config.push_str(&format!("rim_service_url = \"{url}\"\n"));
            }
        }
    }
    let server = Server::start(&root, Some(&config));
    let f = root.join("secret");
    std::fs::write(&f, SECRET).unwrap();
    server.admin(&["set-resource", RES, "--file", f.to_str().unwrap()]);
    Setup {
        _tmp: tmp,
        root,
        server,
        dcap,
        gpu,
    }
}

fn td(root: &Path, pki: Arc<TestPki>) -> FakeTsm {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    FakeTsm::start(
        &root.join(format!("td{n}")),
        FakeTsmOptions::default(),
        Arc::new(move |rd| {
            let f = TdFields {
                report_data: rd,
                ..TdFields::default()
            };
            pki.quote(&f)
        }),
    )
}

fn tdx_paths(s: &Setup, tsm: &FakeTsm) -> TdxPaths {
    TdxPaths {
        tsm_report_dir: tsm.report_dir().to_path_buf(),
        ccel: s.root.join("no-ccel"),
        aael: s.root.join("no-aael"),
        tdx_guest: s.root.join("no-tdx-guest"),
    }
}

fn client(s: &Setup, provider: Box<dyn EvidenceProvider>) -> KbsClient {
    KbsClient::new(
        reqwest::Client::new(),
        &s.server.url,
        provider,
        TeeKeyPair::generate(),
    )
}

fn payload(token: &str) -> Value {
    let p = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .unwrap(),
    )
    .unwrap()
}

async fn attempt(s: &Setup, fault: Fault) -> (Result<String, ClientError>, Option<Vec<u8>>) {
    let tsm = td(&s.root, s.dcap.clone());
    let mut c = client(s, Box::new(TdxEvidence::new(tdx_paths(s, &tsm))))
        .with_gpus(Box::new(FakeGpus(s.gpu.clone(), fault)));
    let token = c.attest().await;
    if token.is_err() {
        return (token, None);
    }
    let path: ResourcePath = RES.parse().unwrap();
    let secret = c.get_resource(&path).await.ok().map(|z| z.to_vec());
    (token, secret)
}

#[tokio::test]
async fn gpu_evidence_bound_to_the_nonce_is_verified_and_the_secret_released() {
    let s = setup(Some(Collateral::default()));
    let (token, secret) = attempt(&s, Fault::None).await;
    let claims = payload(&token.unwrap());
    let gpu = &claims["submods"]["gpu0"];
    assert_eq!(gpu["ear.status"], "affirming", "{gpu:#}");
    let nv = &gpu["ear.veraison.annotated-evidence"]["nvidia"];
    assert_eq!(nv["measres"], "success", "{nv:#}");
    assert_eq!(nv["x-nvidia-gpu-driver-rim-signature-verified"], true);
    assert_eq!(
        nv["x-nvidia-gpu-attestation-report-cert-chain"]["x-nvidia-cert-ocsp-status"],
        "good"
    );
    assert_eq!(nv["x-nvidia-attestation-warning"], Value::Null, "{nv:#}");
    assert_eq!(secret.as_deref(), Some(SECRET));
}

#[tokio::test]
async fn a_flipped_bit_in_the_gpu_report_fails_the_attestation() {
    let s = setup(Some(Collateral::default()));
    let (token, _) = attempt(&s, Fault::FlippedBit).await;
    let e = token.unwrap_err();
    assert_eq!(e.status(), Some(401), "{e}");
    assert!(e.to_string().contains("report signature"), "{e}");
}

#[tokio::test]
async fn a_gpu_report_for_another_nonce_fails_the_attestation() {
    let s = setup(Some(Collateral::default()));
    let (token, _) = attempt(&s, Fault::WrongNonce).await;
    let e = token.unwrap_err();
    assert_eq!(e.status(), Some(401), "{e}");
    assert!(e.to_string().contains("nonce"), "{e}");
}

#[tokio::test]
async fn a_revoked_gpu_certificate_is_refused_by_the_default_policies() {
    let s = setup(Some(Collateral {
        revoked: &["brom"],
        ..Collateral::default()
    }));
    let (token, secret) = attempt(&s, Fault::None).await;
    let claims = payload(&token.unwrap());
    let gpu = &claims["submods"]["gpu0"];
    let chain = &gpu["ear.veraison.annotated-evidence"]["nvidia"]
        ["x-nvidia-gpu-attestation-report-cert-chain"];
    assert_eq!(chain["x-nvidia-cert-ocsp-status"], "revoked", "{chain:#}");
    assert_eq!(chain["x-nvidia-cert-revocation-reason"], "keyCompromise");
    assert_eq!(gpu["ear.status"], "contraindicated");
    assert_eq!(secret, None);
}

#[tokio::test]
async fn a_measurement_differing_from_the_rim_is_refused_by_the_default_policies() {
    let s = setup(Some(Collateral {
        rim_fields: |f| f.measurements[22] = [0xee; 48],
        ..Collateral::default()
    }));
    let (token, secret) = attempt(&s, Fault::None).await;
    let claims = payload(&token.unwrap());
    let nv = &claims["submods"]["gpu0"]["ear.veraison.annotated-evidence"]["nvidia"];
    assert_eq!(nv["measres"], "failure");
    assert_eq!(nv["x-nvidia-mismatch-measurement-records"][0]["index"], 22);
    assert_eq!(claims["submods"]["gpu0"]["ear.status"], "warning");
    assert_eq!(secret, None);
}

#[tokio::test]
async fn missing_ocsp_answers_are_named_and_refused_by_the_default_policies() {
    let s = setup(Some(Collateral {
        with_ocsp: false,
        ..Collateral::default()
    }));
    let (token, secret) = attempt(&s, Fault::None).await;
    let claims = payload(&token.unwrap());
    let nv = &claims["submods"]["gpu0"]["ear.veraison.annotated-evidence"]["nvidia"];
    let w = nv["x-nvidia-attestation-warning"].as_str().unwrap();
    assert!(
        w.contains("no OCSP response for certificate \"GH100 A01 GSP BROM\""),
        "{w}"
    );
    assert_ne!(claims["submods"]["gpu0"]["ear.status"], "affirming");
    assert_eq!(secret, None);
}

#[tokio::test]
async fn without_gpu_verification_gpu_evidence_is_accepted_and_ignored() {
    let s = setup(None);
    let (token, secret) = attempt(&s, Fault::FlippedBit).await;
    let claims = payload(&token.unwrap());
    assert!(claims["submods"].get("gpu0").is_none(), "{claims:#}");
    // The TDX quote still binds the GPU evidence string the guest sent.
    let rd = &claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["runtime_data_claims"];
    assert!(rd["additional-evidence"]
        .as_str()
        .unwrap()
        .contains("device_evidence_list"));
    assert_eq!(secret.as_deref(), Some(SECRET));
}

/// Alibaba's attester puts `gpu_evidence` inside the TDX evidence, its reports answering
/// the first 32 bytes of the TDX runtime-data hash.
struct AlibabaTd {
    tdx: TdxEvidence,
    pki: Arc<GpuPki>,
    fault: Fault,
}

#[async_trait]
impl EvidenceProvider for AlibabaTd {
    fn tee(&self) -> coffer_protocol::Tee {
        coffer_protocol::Tee::Tdx
    }
    async fn evidence(&self, report_data: &[u8]) -> Result<Value, ClientError> {
        let mut ev = self.tdx.evidence(report_data).await?;
        let mut nonce = [0u8; 32];
        nonce.copy_from_slice(&report_data[..32]);
        if self.fault == Fault::WrongNonce {
            nonce = [3; 32];
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        ev["gpu_evidence"] = json!({
            "evidence_list": [{
                "index": 0, "uuid": "GPU-ali", "name": "NVIDIA H20",
                "driver_version": "550.90.07", "vbios_version": "96.00.9F.00.01",
                "attestation_report": b64.encode(self.pki.report(&nonce, &GpuFields::default())),
                "certificate": b64.encode(self.pki.chain_pem()),
                "cc_enabled": true
            }],
            "collection_time": "2026-12-02T00:00:00Z"
        });
        Ok(ev)
    }
}

#[tokio::test]
async fn alibaba_gpu_evidence_inside_the_tdx_evidence_is_verified() {
    let s = setup(Some(Collateral::default()));
    for (fault, ok) in [(Fault::None, true), (Fault::WrongNonce, false)] {
        let tsm = td(&s.root, s.dcap.clone());
        let provider = AlibabaTd {
            tdx: TdxEvidence::new(tdx_paths(&s, &tsm)),
            pki: s.gpu.clone(),
            fault,
        };
        let mut c = client(&s, Box::new(provider));
        let token = c.attest().await;
        if ok {
            let claims = payload(&token.unwrap());
            assert_eq!(
                claims["submods"]["gpu0"]["ear.status"], "affirming",
                "{claims:#}"
            );
            let path: ResourcePath = RES.parse().unwrap();
            assert_eq!(&c.get_resource(&path).await.unwrap()[..], SECRET);
        } else {
            let e = token.unwrap_err();
            assert!(e.to_string().contains("nonce"), "{e}");
        }
    }
}

/// NVIDIA's RIM service, emulated: `GET /v1/rim/<id>` → `{"id", "rim": base64 XML, ...}`.
#[tokio::test]
async fn rims_fetched_from_the_rim_service_are_cached_in_the_database() {
    use coffer_integration::http_stub::{serve, Reply};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let pki = Arc::new(GpuPki::new());
    let f = GpuFields::default();
    let served = [
        (
            GpuPki::driver_rim_id(&f),
            pki.rim(&f.driver_version, &DRIVER_RIM_INDICES, &f),
        ),
        (
            GpuPki::vbios_rim_id(&f),
            pki.rim("96.00.9F.00.01", &VBIOS_RIM_INDICES, &f),
        ),
    ];
    let hits = Arc::new(AtomicUsize::new(0));
    let down = Arc::new(AtomicBool::new(false));
    let (h, d) = (hits.clone(), down.clone());
    let url = serve(move |method, path| {
        if d.load(Ordering::SeqCst) {
            return Reply::new("503 Service Unavailable", "down");
        }
        let id = path.strip_prefix("/v1/rim/").unwrap_or_default();
        match served.iter().find(|(i, _)| i == id) {
            Some((id, xml)) if method == "GET" => {
                h.fetch_add(1, Ordering::SeqCst);
                let b64 = base64::engine::general_purpose::STANDARD.encode(xml);
                let body = json!({"id": id, "rim": b64, "sha256": "", "request_id": "1"});
                Reply::new("200 OK", body.to_string())
            }
            _ => Reply::new("404 Not Found", "{}"),
        }
    });
    let mut s = setup_with(
        pki,
        Some(Collateral {
            rim_service: Some(format!("{url}/v1/rim")),
            ..Collateral::default()
        }),
    );
    for _ in 0..2 {
        let (_, secret) = attempt(&s, Fault::None).await;
        assert_eq!(secret.as_deref(), Some(SECRET));
    }
    assert_eq!(hits.load(Ordering::SeqCst), 2, "each RIM fetched once");
    // With the service down and the process restarted, the database copy serves.
    down.store(true, Ordering::SeqCst);
    s.server.restart();
    let (_, secret) = attempt(&s, Fault::None).await;
    assert_eq!(secret.as_deref(), Some(SECRET));
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

/// An OCSP responder, emulated: `POST /` with `application/ocsp-request` → the DER answer.
#[tokio::test]
async fn ocsp_answers_fetched_from_the_responder_are_used_and_cached() {
    use coffer_integration::http_stub::{serve, Reply};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let pki = Arc::new(GpuPki::new());
    let tmp = tempfile::tempdir().unwrap();
    let brom_answer = pki.ocsp_responses(tmp.path(), &[]).remove(0);
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let url = serve(move |method, _path| {
        if method != "POST" {
            return Reply::new("405 Method Not Allowed", "");
        }
        h.fetch_add(1, Ordering::SeqCst);
        Reply {
            status: "200 OK",
            headers: vec![("Content-Type", "application/ocsp-response".into())],
            body: brom_answer.clone(),
        }
    });
    let s = setup_with(
        pki,
        Some(Collateral {
            ocsp_url: Some(url),
            ..Collateral::default()
        }),
    );
    for _ in 0..2 {
        let (token, secret) = attempt(&s, Fault::None).await;
        let claims = payload(&token.unwrap());
        let nv = &claims["submods"]["gpu0"]["ear.veraison.annotated-evidence"]["nvidia"];
        assert_eq!(
            nv["x-nvidia-gpu-attestation-report-cert-chain"]["x-nvidia-cert-ocsp-status"], "good",
            "{nv:#}"
        );
        assert_eq!(secret.as_deref(), Some(SECRET));
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "the answer is cached until nextUpdate"
    );
}

/// NRAS, emulated: `POST <base>/gpu` with `{nonce, arch, evidence_list, claims_version}`
/// answers a detached EAT signed by a key of the JWKS at `GET /jwks`.
fn nras_emulator(
    verdict: fn(&mut Value) -> bool,
    tamper: bool,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use coffer_integration::gpu_mint::{nras_good_device_claims, NrasSigner};
    use coffer_integration::http_stub::{serve_with_body, Reply};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let signer = NrasSigner::new();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let base = Arc::new(std::sync::Mutex::new(String::new()));
    let b = base.clone();
    let url = serve_with_body(move |method, path, body| {
        let iss = b.lock().unwrap().clone();
        match (method, path) {
            ("GET", "/jwks") => Reply::new("200 OK", signer.jwks.to_string()),
            ("POST", "/v4/attest/gpu") => {
                h.fetch_add(1, Ordering::SeqCst);
                let req: Value = serde_json::from_slice(body).unwrap_or_default();
                let nonce = req["nonce"].as_str().unwrap_or_default().to_string();
                assert_eq!(req["evidence_list"].as_array().map(Vec::len), Some(1));
                let mut claims = nras_good_device_claims();
                let result = verdict(&mut claims);
                let mut answer = signer.answer(
                    &iss,
                    &nonce,
                    claims,
                    result,
                    coffer_integration::tdx_mint::now(),
                );
                if tamper {
                    answer = answer.replacen("\"GPU-0\":\"ey", "\"GPU-0\":\"eY", 1);
                }
                Reply::new("200 OK", answer)
            }
            _ => Reply::new("404 Not Found", ""),
        }
    });
    *base.lock().unwrap() = url.clone();
    (url, hits)
}

fn nras_setup(
    verdict: fn(&mut Value) -> bool,
    tamper: bool,
) -> (Setup, Arc<std::sync::atomic::AtomicUsize>) {
    let (url, hits) = nras_emulator(verdict, tamper);
    let s = setup(Some(Collateral {
        with_ocsp: false,
        extra: format!("nras_url = \"{url}/v4/attest\"\nnras_jwks_url = \"{url}/jwks\"\n"),
        ..Collateral::default()
    }));
    (s, hits)
}

#[tokio::test]
async fn nras_verdicts_are_verified_and_decide_with_the_default_policies() {
    use std::sync::atomic::Ordering;
    let (s, hits) = nras_setup(|_| true, false);
    let (token, secret) = attempt(&s, Fault::None).await;
    let claims = payload(&token.unwrap());
    let nv = &claims["submods"]["gpu0"]["ear.veraison.annotated-evidence"]["nvidia"];
    assert_eq!(nv["x-nvidia-overall-att-result"], true, "{nv:#}");
    assert_eq!(claims["submods"]["gpu0"]["ear.status"], "affirming");
    assert_eq!(secret.as_deref(), Some(SECRET));
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // NRAS finds a measurement mismatch: the policy refuses.
    let (s, _) = nras_setup(
        |c| {
            c["measres"] = json!("failure");
            c["secboot"] = Value::Null;
            false
        },
        false,
    );
    let (token, secret) = attempt(&s, Fault::None).await;
    let claims = payload(&token.unwrap());
    assert_ne!(claims["submods"]["gpu0"]["ear.status"], "affirming");
    assert_eq!(secret, None);
}

#[tokio::test]
async fn a_tampered_nras_answer_fails_the_attestation() {
    let (s, _) = nras_setup(|_| true, true);
    let (token, _) = attempt(&s, Fault::None).await;
    let e = token.unwrap_err();
    assert_eq!(e.status(), Some(401), "{e}");
    assert!(e.to_string().contains("NRAS"), "{e}");
}
