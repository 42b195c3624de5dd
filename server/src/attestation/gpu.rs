//! NVIDIA confidential GPUs and NVSwitches next to a TDX quote: reading the evidence in
//! both forms guests send, binding it to the session, verifying it with `coffer-gpu`, and
//! collecting its collateral (RIMs, OCSP responses) from files, the database cache shared
//! by replicas, or NVIDIA's services.
//!
//! What always fails an attestation: GPU evidence that does not parse, a report whose
//! signature, certificate chain or nonce binding is broken. Everything else (revocation,
//! RIMs, measurements, missing collateral) becomes claims in the device's EAR submodule
//! (`gpu0`, `gpu1`, ..., `switch0`, ...), appraised by the GPU policy; the resource
//! policy decides what a failing device means.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use coffer_gpu::evidence::{parse_alibaba, parse_upstream, DeviceEvidence};
use coffer_gpu::verify::{Authenticated, Collateral, GpuVerifier};
use coffer_protocol::{jcs, HashAlgorithm, Tee};
use openssl::x509::X509;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Digest;

use super::VerifyError;
use crate::store::Store;

/// `[gpu]`: NVIDIA GPU evidence verification.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GpuConfig {
    /// Verify GPU evidence. When off, GPU evidence is accepted as sent and ignored: the
    /// token carries no GPU submodules (see the README, "Confidential GPUs").
    pub enabled: bool,
    /// Device root (PEM); default: NVIDIA Device Identity CA, compiled in.
    pub device_root_file: Option<PathBuf>,
    /// RIM signing root (PEM); default: NVIDIA CoRIM signing Root CA, compiled in.
    pub rim_root_file: Option<PathBuf>,
    /// Directory of RIMs named `<RIM id>.xml` (e.g. `NV_GPU_DRIVER_GH100_550.90.07.xml`).
    pub rim_dir: Option<PathBuf>,
    /// Directory of DER OCSP responses (`*.der`) for device and RIM certificates.
    pub ocsp_dir: Option<PathBuf>,
    /// NVIDIA RIM service base URL (`https://rim.attestation.nvidia.com/v1/rim`); unset:
    /// RIMs come from `rim_dir` and the database only.
    pub rim_service_url: Option<String>,
    /// OCSP responder URL (`https://ocsp.ndis.nvidia.com`); unset: OCSP responses come
    /// from `ocsp_dir` and the database only.
    pub ocsp_url: Option<String>,
    /// NRAS base URL (`https://nras.attestation.nvidia.com/v4/attest`): when set, each GPU
    /// authenticated here is also appraised by NVIDIA's remote service and its verified
    /// device claims replace the local RIM/OCSP appraisal (network needed per attestation).
    pub nras_url: Option<String>,
    /// JWKS with NRAS's token keys; default NVIDIA's
    /// (`https://nras.attestation.nvidia.com/.well-known/jwks.json`).
    pub nras_jwks_url: Option<String>,
    /// HTTP timeout for one request to NVIDIA's services, seconds.
    pub timeout_secs: u64,
}

impl Default for GpuConfig {
    fn default() -> Self {
        GpuConfig {
            enabled: true,
            device_root_file: None,
            rim_root_file: None,
            rim_dir: None,
            ocsp_dir: None,
            rim_service_url: None,
            ocsp_url: None,
            nras_url: None,
            nras_jwks_url: None,
            timeout_secs: 10,
        }
    }
}

/// Why the GPU configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GpuConfigError {
    /// A file or directory cannot be read.
    #[error("gpu.{key} {path}: {reason}")]
    File {
        /// Config key.
        key: &'static str,
        /// Path.
        path: PathBuf,
        /// Cause.
        reason: String,
    },
    /// The HTTP client for NRAS, the RIM service or OCSP cannot be built (TLS set-up).
    #[error("gpu: cannot build the HTTP client")]
    Http(#[source] reqwest::Error),
}

/// Why the GPU evidence of an `/attest` call cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum GpuEvidenceError {
    /// `additional_evidence` is not a JSON object in a string.
    #[error("additional_evidence must be a JSON object serialised as a string")]
    NotAnObject,
    /// Additional evidence of a kind no verifier here reads.
    #[error("additional evidence for {0:?} is not supported")]
    Unsupported(String),
    /// The device evidence does not parse.
    #[error("{0}")]
    Device(#[source] coffer_gpu::evidence::EvidenceError),
    /// More devices than any machine has.
    #[error("GPU evidence lists {found} devices, at most {max} are accepted")]
    TooMany {
        /// Devices listed.
        found: usize,
        /// The bound.
        max: usize,
    },
}

/// Which form the evidence came in; decides the nonce it must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuForm {
    /// `additional_evidence` `{"nvidia": ...}`: nonce = first 32 bytes of
    /// H(JCS({"nonce", "tee-pubkey"})).
    Upstream,
    /// `gpu_evidence` inside the TDX evidence: nonce = first 32 bytes of the TDX
    /// runtime-data hash.
    Alibaba,
}

/// Devices a guest sent evidence for.
#[derive(Debug, Clone, Default)]
pub struct GpuEvidence {
    devices: Vec<(GpuForm, DeviceEvidence)>,
}

impl GpuEvidence {
    /// Reads `additional_evidence` (a JSON object as a string, or empty) and the primary
    /// evidence's `gpu_evidence`. Additional evidence for anything but `nvidia` is
    /// refused: no verifier for it exists here, and ignoring it would hide it from policy.
    pub fn read(additional: &str, primary: &Value) -> Result<Self, GpuEvidenceError> {
        let mut devices = Vec::new();
        if !additional.is_empty() {
            let extra: Value =
                serde_json::from_str(additional).map_err(|_| GpuEvidenceError::NotAnObject)?;
            let map = extra.as_object().ok_or(GpuEvidenceError::NotAnObject)?;
            for (name, value) in map {
                if name != "nvidia" {
                    return Err(GpuEvidenceError::Unsupported(name.clone()));
                }
                let list = parse_upstream(value).map_err(GpuEvidenceError::Device)?;
                devices.extend(list.into_iter().map(|d| (GpuForm::Upstream, d)));
            }
        }
        match primary.get("gpu_evidence") {
            None | Some(Value::Null) => {}
            Some(v) => {
                let list = parse_alibaba(v).map_err(GpuEvidenceError::Device)?;
                devices.extend(list.into_iter().map(|d| (GpuForm::Alibaba, d)));
            }
        }
        if devices.len() > coffer_gpu::evidence::MAX_DEVICES {
            return Err(GpuEvidenceError::TooMany {
                found: devices.len(),
                max: coffer_gpu::evidence::MAX_DEVICES,
            });
        }
        Ok(GpuEvidence { devices })
    }

    /// Whether no device is present.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }
}

/// What the GPU reports must be bound to.
pub struct GpuBinding<'a> {
    /// Session hash algorithm.
    pub alg: HashAlgorithm,
    /// Session nonce.
    pub nonce: &'a str,
    /// The guest's `tee-pubkey` JWK.
    pub tee_pubkey: &'a Value,
    /// The primary evidence's runtime-data hash (bound in REPORTDATA).
    pub primary_hash: &'a [u8],
}

impl GpuBinding<'_> {
    fn expected(&self, form: GpuForm) -> Vec<u8> {
        match form {
            GpuForm::Upstream => {
                let d = json!({"nonce": self.nonce, "tee-pubkey": self.tee_pubkey});
                self.alg.digest(jcs::canonicalize(&d).as_bytes())
            }
            GpuForm::Alibaba => self.primary_hash.to_vec(),
        }
    }
}

/// One device's EAR submodule name (`gpu0`, `switch0`) and annotated evidence
/// (`{"nvidia": claims}`).
#[derive(Debug, Clone)]
pub struct DeviceClaims {
    /// Submodule name.
    pub submod: String,
    /// EAR class: `gpu` or `switch` (selects the appraisal policy).
    pub class: &'static str,
    /// `{"nvidia": {...}}`.
    pub annotated: Value,
}

/// GPU verification with its collateral.
pub struct GpuAttestation {
    verifier: GpuVerifier,
    collateral: GpuCollateral,
    nras: Option<Nras>,
}

fn read_file(key: &'static str, path: &Path) -> Result<Vec<u8>, GpuConfigError> {
    std::fs::read(path).map_err(|e| GpuConfigError::File {
        key,
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

impl GpuAttestation {
    /// Builds the verifier and loads the offline collateral named by `cfg`.
    pub fn new(cfg: &GpuConfig, store: Arc<dyn Store>) -> Result<Self, GpuConfigError> {
        let device = match &cfg.device_root_file {
            Some(p) => read_file("device_root_file", p)?,
            None => coffer_gpu::NVIDIA_DEVICE_ROOT_PEM.to_vec(),
        };
        let rim = match &cfg.rim_root_file {
            Some(p) => read_file("rim_root_file", p)?,
            None => coffer_gpu::NVIDIA_RIM_ROOT_PEM.to_vec(),
        };
        let verifier =
            GpuVerifier::with_roots(&device, &rim).map_err(|e| GpuConfigError::File {
                key: "device_root_file/rim_root_file",
                path: PathBuf::new(),
                reason: e.to_string(),
            })?;
        let nras = match &cfg.nras_url {
            Some(url) => Some(Nras {
                url: url.trim_end_matches('/').to_string(),
                jwks_url: cfg
                    .nras_jwks_url
                    .clone()
                    .unwrap_or_else(|| NRAS_JWKS.to_string()),
                http: http_client(cfg)?,
                jwks: Mutex::new(None),
            }),
            None => None,
        };
        Ok(GpuAttestation {
            verifier,
            collateral: GpuCollateral::new(cfg, store)?,
            nras,
        })
    }

    /// Number of RIMs and OCSP responses loaded from files.
    pub fn offline_counts(&self) -> (usize, usize) {
        (self.collateral.rims.len(), self.collateral.ocsp.len())
    }

    /// Authenticates every device (failing the attestation on a broken report,
    /// signature, chain or binding), then appraises each with its collateral.
    pub async fn verify(
        &self,
        evidence: GpuEvidence,
        binding: &GpuBinding<'_>,
        now: i64,
    ) -> Result<Vec<DeviceClaims>, VerifyError> {
        let mut authenticated = Vec::new();
        for (i, (form, device)) in evidence.devices.into_iter().enumerate() {
            let nonce = binding.expected(form);
            let a = self
                .verifier
                .authenticate(i, device.clone(), &nonce)
                .map_err(|e| VerifyError::Rejected {
                    tee: Tee::Nvidia,
                    reason: e.to_string(),
                })?;
            authenticated.push((a, device, nonce));
        }
        let (mut gpus, mut switches) = (0, 0);
        let mut out = Vec::new();
        for (a, device, nonce) in &authenticated {
            let claims = match &self.nras {
                Some(nras) => {
                    let local = a.appraise(&self.verifier, &Collateral::default(), now);
                    nras.appraise(device, &nonce[..nonce.len().min(32)], local, now)
                        .await?
                }
                None => {
                    let collateral = self.collateral.collect(a, &self.verifier, now).await;
                    a.appraise(&self.verifier, &collateral, now)
                }
            };
            let (class, n) = if a.arch().is_gpu() {
                gpus += 1;
                ("gpu", gpus - 1)
            } else {
                switches += 1;
                ("switch", switches - 1)
            };
            out.push(DeviceClaims {
                submod: format!("{class}{n}"),
                class,
                annotated: json!({ "nvidia": claims }),
            });
        }
        Ok(out)
    }
}

/// Longest a fetched RIM is kept in the database before it is fetched again (RIMs do not
/// change; their signing certificates' revocation is checked on every use).
const RIM_CACHE_SECS: i64 = 30 * 24 * 3600;
/// Most collateral entries kept in memory.
const MEMORY_LIMIT: usize = 4096;

/// RIMs and OCSP responses: files first, then the database cache, then NVIDIA's services
/// when configured (answers are stored in the database for the other replicas).
struct GpuCollateral {
    rims: HashMap<String, String>,
    ocsp: Vec<Vec<u8>>,
    store: Arc<dyn Store>,
    http: Option<reqwest::Client>,
    rim_url: Option<String>,
    ocsp_url: Option<String>,
    /// key -> (body, not_after)
    memory: Mutex<HashMap<String, (String, i64)>>,
}

fn load_dir(
    key: &'static str,
    dir: &Path,
    ext: &str,
) -> Result<Vec<(String, Vec<u8>)>, GpuConfigError> {
    let entries = std::fs::read_dir(dir).map_err(|e| GpuConfigError::File {
        key,
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut out = Vec::new();
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some(ext) {
            continue;
        }
        let Some(stem) = p.file_stem().and_then(|s| s.to_str()) else {
            return Err(GpuConfigError::File {
                key,
                path: p.clone(),
                reason: "the file name is not UTF-8".into(),
            });
        };
        let stem = stem.to_string();
        out.push((stem, read_file(key, &p)?));
    }
    Ok(out)
}

/// The cache key of `c`'s OCSP answer; an error when the certificate cannot be encoded
/// (two such certificates must not share one key).
fn cert_key(c: &X509) -> Result<String, openssl::error::ErrorStack> {
    let der = c.to_der()?;
    Ok(format!(
        "nvidia/ocsp/{}",
        hex::encode(sha2::Sha256::digest(der))
    ))
}

/// The HTTP client for GPU collateral and NRAS, with the configured timeout.
fn http_client(cfg: &GpuConfig) -> Result<reqwest::Client, GpuConfigError> {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(cfg.timeout_secs.max(1)))
        .build()
        .map_err(GpuConfigError::Http)
}

impl GpuCollateral {
    fn new(cfg: &GpuConfig, store: Arc<dyn Store>) -> Result<Self, GpuConfigError> {
        let mut rims = HashMap::new();
        if let Some(dir) = &cfg.rim_dir {
            for (id, bytes) in load_dir("rim_dir", dir, "xml")? {
                let text = String::from_utf8(bytes).map_err(|_| GpuConfigError::File {
                    key: "rim_dir",
                    path: dir.join(format!("{id}.xml")),
                    reason: "not UTF-8".into(),
                })?;
                rims.insert(id, text);
            }
        }
        let mut ocsp = Vec::new();
        if let Some(dir) = &cfg.ocsp_dir {
            for (name, der) in load_dir("ocsp_dir", dir, "der")? {
                if openssl::ocsp::OcspResponse::from_der(&der).is_err() {
                    return Err(GpuConfigError::File {
                        key: "ocsp_dir",
                        path: dir.join(format!("{name}.der")),
                        reason: "not a DER OCSP response".into(),
                    });
                }
                ocsp.push(der);
            }
        }
        let online = cfg.rim_service_url.is_some() || cfg.ocsp_url.is_some();
        let http = if online {
            Some(http_client(cfg)?)
        } else {
            None
        };
        Ok(GpuCollateral {
            rims,
            ocsp,
            store,
            http,
            rim_url: cfg.rim_service_url.clone(),
            ocsp_url: cfg.ocsp_url.clone(),
            memory: Mutex::new(HashMap::new()),
        })
    }

    /// Whether a response loaded from `ocsp_dir` names `cert` (files come first: such a
    /// certificate is neither looked up in the cache nor fetched).
    fn file_answers(&self, cert: &X509, issuer: &X509) -> bool {
        let Ok(id) = openssl::ocsp::OcspCertId::from_cert(
            openssl::hash::MessageDigest::sha1(),
            cert,
            issuer,
        ) else {
            return false;
        };
        self.ocsp.iter().any(|der| {
            openssl::ocsp::OcspResponse::from_der(der)
                .ok()
                .and_then(|r| r.basic().ok())
                .is_some_and(|b| b.find_status(&id).is_some())
        })
    }

    fn remembered(&self, key: &str, now: i64) -> Option<String> {
        let m = self.memory.lock().ok()?;
        m.get(key)
            .filter(|(_, not_after)| *not_after > now)
            .map(|(b, _)| b.clone())
    }

    fn remember(&self, key: &str, body: &str, not_after: i64) {
        if let Ok(mut m) = self.memory.lock() {
            if m.len() >= MEMORY_LIMIT {
                m.clear();
            }
            m.insert(key.to_string(), (body.to_string(), not_after));
        }
    }

    /// A cached body for `key` (memory, then database).
    async fn cached(&self, key: &str, now: i64) -> Option<String> {
        if let Some(b) = self.remembered(key, now) {
            return Some(b);
        }
        match self.store.get_collateral(key, now).await {
            Ok(Some((body, not_after, _))) => {
                self.remember(key, &body, not_after);
                Some(body)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(key, error = %e, "GPU collateral cache read failed");
                None
            }
        }
    }

    async fn keep(&self, key: &str, body: &str, not_after: i64, now: i64) {
        self.remember(key, body, not_after);
        if let Err(e) = self.store.put_collateral(key, body, not_after, now).await {
            tracing::warn!(key, error = %e, "GPU collateral cache write failed");
        }
    }

    async fn rim(&self, id: &str, now: i64, problems: &mut Vec<String>) -> Option<String> {
        if let Some(t) = self.rims.get(id) {
            return Some(t.clone());
        }
        let key = format!("nvidia/rim/{id}");
        if let Some(t) = self.cached(&key, now).await {
            return Some(t);
        }
        let (Some(http), Some(base)) = (&self.http, &self.rim_url) else {
            return None;
        };
        match fetch_rim(http, base, id).await {
            Ok(text) => {
                self.keep(&key, &text, now + RIM_CACHE_SECS, now).await;
                Some(text)
            }
            Err(e) => {
                tracing::warn!(rim = id, error = %e, "RIM fetch failed");
                problems.push(format!("RIM {id} could not be fetched: {e}"));
                None
            }
        }
    }

    /// OCSP responses for `certs` (each issued by the next; the last by `root`), from the
    /// cache or the responder.
    async fn ocsp_for(
        &self,
        certs: &[X509],
        root: &X509,
        now: i64,
        out: &mut Vec<Vec<u8>>,
        problems: &mut Vec<String>,
    ) {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        for (i, cert) in certs.iter().enumerate() {
            let issuer = certs.get(i + 1).unwrap_or(root);
            if self.file_answers(cert, issuer) {
                continue;
            }
            let key = match cert_key(cert) {
                Ok(k) => k,
                Err(e) => {
                    problems.push(format!("a certificate cannot be encoded: {e}"));
                    continue;
                }
            };
            if let Some(body) = self.cached(&key, now).await {
                if let Ok(der) = b64.decode(body) {
                    out.push(der);
                    continue;
                }
            }
            let (Some(http), Some(url)) = (&self.http, &self.ocsp_url) else {
                continue;
            };
            match fetch_ocsp(http, url, cert, issuer, now).await {
                Ok((der, next_update)) => {
                    self.keep(&key, &b64.encode(&der), next_update, now).await;
                    out.push(der);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "OCSP fetch failed");
                    problems.push(format!("OCSP responder: {e}"));
                }
            }
        }
    }

    /// Everything `a` needs: its RIMs, OCSP responses for its chain (below the leaf) and
    /// for the RIMs' chains.
    async fn collect(&self, a: &Authenticated, v: &GpuVerifier, now: i64) -> Collateral {
        let mut c = Collateral {
            ocsp: self.ocsp.clone(),
            ..Collateral::default()
        };
        let (driver, firmware) = a.rim_ids();
        for id in [driver, firmware].into_iter().flatten() {
            if let Some(text) = self.rim(&id, now, &mut c.problems).await {
                c.rims.insert(id, text);
            }
        }
        let device_root = v.device_root();
        let below_root: Vec<X509> = a
            .chain()
            .certs
            .iter()
            .filter(|x| x.to_der().ok() != device_root.to_der().ok())
            .cloned()
            .collect();
        let mut ocsp = Vec::new();
        let mut problems = Vec::new();
        if below_root.len() > 1 {
            self.ocsp_for(&below_root[1..], device_root, now, &mut ocsp, &mut problems)
                .await;
        }
        for (id, text) in &c.rims {
            if let Ok(rim) = coffer_gpu::rim::Rim::parse(id, text) {
                let certs: Vec<X509> = rim
                    .certs
                    .iter()
                    .filter(|x| x.to_der().ok() != v.rim_root().to_der().ok())
                    .cloned()
                    .collect();
                self.ocsp_for(&certs, v.rim_root(), now, &mut ocsp, &mut problems)
                    .await;
            }
        }
        c.ocsp.extend(ocsp);
        c.problems.extend(problems);
        c
    }
}

/// Why a service answer is unusable (no URLs: those go to the log).
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("unreachable or failed: {0}")]
    Http(String),
    #[error("unusable answer: {0}")]
    Answer(String),
}

/// `GET <base>/<id>` → `{"id", "rim": base64 XML, ...}`; the id must be the one asked for.
async fn fetch_rim(http: &reqwest::Client, base: &str, id: &str) -> Result<String, FetchError> {
    use base64::Engine;
    let url = format!("{}/{id}", base.trim_end_matches('/'));
    let resp = http
        .get(&url)
        .send()
        .await
        .map_err(|e| FetchError::Http(e.without_url().to_string()))?;
    if !resp.status().is_success() {
        return Err(FetchError::Http(format!("HTTP {}", resp.status().as_u16())));
    }
    let body: Value = resp
        .json()
        .await
        .map_err(|e| FetchError::Answer(e.without_url().to_string()))?;
    if body.get("id").and_then(Value::as_str) != Some(id) {
        return Err(FetchError::Answer(
            "the answer is for another RIM id".into(),
        ));
    }
    let b64 = body
        .get("rim")
        .and_then(Value::as_str)
        .ok_or_else(|| FetchError::Answer("no `rim` string".into()))?;
    let xml = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| FetchError::Answer("`rim` is not base64".into()))?;
    String::from_utf8(xml).map_err(|_| FetchError::Answer("RIM is not UTF-8".into()))
}

/// POSTs an OCSP request for `cert` and returns the DER answer with the end of its
/// window (the caller's verification decides whether it is usable).
async fn fetch_ocsp(
    http: &reqwest::Client,
    url: &str,
    cert: &X509,
    issuer: &X509,
    now: i64,
) -> Result<(Vec<u8>, i64), FetchError> {
    let der = (|| {
        let id = openssl::ocsp::OcspCertId::from_cert(
            openssl::hash::MessageDigest::sha1(),
            cert,
            issuer,
        )?;
        let mut req = openssl::ocsp::OcspRequest::new()?;
        req.add_id(id)?;
        req.to_der()
    })()
    .map_err(|e| FetchError::Answer(e.to_string()))?;
    let resp = http
        .post(url)
        .header("Content-Type", "application/ocsp-request")
        .body(der)
        .send()
        .await
        .map_err(|e| FetchError::Http(e.without_url().to_string()))?;
    if !resp.status().is_success() {
        return Err(FetchError::Http(format!("HTTP {}", resp.status().as_u16())));
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| FetchError::Http(e.without_url().to_string()))?
        .to_vec();
    let status = coffer_gpu::revocation::cert_status(
        cert,
        issuer,
        &[],
        issuer,
        std::slice::from_ref(&body),
        now,
    );
    let next_update = match status {
        coffer_gpu::revocation::CertStatus::Good { next_update } => next_update,
        // Revoked or unknown answers are kept for an hour: the verdict is the responder's.
        _ => now + coffer_gpu::revocation::DEFAULT_TTL_SECS,
    };
    Ok((body, next_update))
}

/// NVIDIA's published NRAS token keys.
const NRAS_JWKS: &str = "https://nras.attestation.nvidia.com/.well-known/jwks.json";
/// How long fetched JWKS are used before they are fetched again, seconds.
const JWKS_TTL_SECS: i64 = 3600;

/// NVIDIA Remote Attestation Service client.
struct Nras {
    url: String,
    jwks_url: String,
    http: reqwest::Client,
    /// (JWKS, fetched at)
    jwks: Mutex<Option<(Value, i64)>>,
}

fn nras_unavailable(reason: impl std::fmt::Display) -> VerifyError {
    VerifyError::Unavailable {
        tee: Tee::Nvidia,
        reason: format!("NRAS: {reason}"),
    }
}

impl Nras {
    /// The issuer NRAS tokens must name: the scheme and authority of the base URL.
    fn issuer(&self) -> String {
        match reqwest::Url::parse(&self.url) {
            Ok(u) => u.origin().ascii_serialization(),
            Err(_) => self.url.clone(),
        }
    }

    async fn jwks(&self, now: i64) -> Result<Value, VerifyError> {
        if let Some((k, at)) = self.jwks.lock().ok().and_then(|g| g.clone()) {
            if now - at < JWKS_TTL_SECS {
                return Ok(k);
            }
        }
        let resp = self
            .http
            .get(&self.jwks_url)
            .send()
            .await
            .map_err(|e| nras_unavailable(e.without_url()))?;
        if !resp.status().is_success() {
            return Err(nras_unavailable(format!(
                "JWKS HTTP {}",
                resp.status().as_u16()
            )));
        }
        let k: Value = resp
            .json()
            .await
            .map_err(|e| nras_unavailable(e.without_url()))?;
        if let Ok(mut g) = self.jwks.lock() {
            *g = Some((k.clone(), now));
        }
        Ok(k)
    }

    /// Sends `device` to NRAS with `nonce` and returns NRAS's verified device claims on top
    /// of the local parsing claims (`arch`, `uuid`, `measurements`, `config`).
    async fn appraise(
        &self,
        device: &DeviceEvidence,
        nonce: &[u8],
        local: Value,
        now: i64,
    ) -> Result<Value, VerifyError> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let (path, arch) = match device.arch {
            coffer_gpu::evidence::Arch::Hopper => ("gpu", "HOPPER"),
            coffer_gpu::evidence::Arch::Blackwell => ("gpu", "BLACKWELL"),
            coffer_gpu::evidence::Arch::Ls10 => ("switch", "LS10"),
        };
        let nonce_hex = hex::encode(nonce);
        let body = json!({
            "nonce": nonce_hex,
            "arch": arch,
            "evidence_list": [{
                "evidence": b64.encode(&device.report),
                "certificate": b64.encode(&device.certificate_pem),
            }],
            "claims_version": "3.0",
        });
        let resp = self
            .http
            .post(format!("{}/{path}", self.url))
            .json(&body)
            .send()
            .await
            .map_err(|e| nras_unavailable(e.without_url()))?;
        if !resp.status().is_success() {
            return Err(nras_unavailable(format!("HTTP {}", resp.status().as_u16())));
        }
        let text = resp
            .text()
            .await
            .map_err(|e| nras_unavailable(e.without_url()))?;
        let jwks = self.jwks(now).await?;
        let devices =
            coffer_gpu::nras::verify_answer(&text, &jwks, &self.issuer(), &nonce_hex, now)
                .map_err(|e| VerifyError::Rejected {
                    tee: Tee::Nvidia,
                    reason: e.to_string(),
                })?;
        let [(_, claims)] =
            <[(String, Value); 1]>::try_from(devices).map_err(|_| VerifyError::Rejected {
                tee: Tee::Nvidia,
                reason: "NRAS answered for another number of devices than sent".into(),
            })?;
        let mut merged = match local {
            Value::Object(m) => m
                .into_iter()
                .filter(|(k, _)| ["arch", "uuid", "measurements", "config"].contains(&k.as_str()))
                .collect(),
            _ => serde_json::Map::new(),
        };
        if let Value::Object(c) = claims {
            merged.extend(c);
        }
        Ok(Value::Object(merged))
    }
}
