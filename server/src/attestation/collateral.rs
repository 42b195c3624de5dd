//! Where DCAP collateral comes from: offline files, the shared database cache, and a
//! PCS / PCCS over HTTPS — in that order, refreshed before it goes stale.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use coffer_tdx::collateral::{Collateral, CollateralKey, PcsParts};
use serde::Deserialize;

use crate::store::Store;

/// `[dcap]`: collateral sources and the trust anchor for TDX and SGX quotes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DcapConfig {
    /// PCS or PCCS base URL; empty for offline operation.
    pub pccs_url: String,
    /// `standard` or `early` TCB evaluation data.
    pub pccs_update: String,
    /// Root CA CRL URL; default: Intel's CRL distribution point for Intel PCS, else
    /// `<pccs_url>/sgx/certification/v4/rootcacrl`.
    pub root_ca_crl_url: Option<String>,
    /// Directory of collateral bundles (`*.json`, dcap-qvl `QuoteCollateralV3` form), used
    /// before any network source: the offline mode.
    pub collateral_dir: Option<PathBuf>,
    /// Trust anchor (DER or PEM); default: the Intel SGX Root CA compiled in.
    pub root_ca_file: Option<PathBuf>,
    /// Re-fetch collateral older than this many seconds (still-valid copies are kept if the
    /// fetch fails).
    pub refresh_secs: i64,
    /// HTTP timeout for one PCS/PCCS request, seconds.
    pub timeout_secs: u64,
}

impl Default for DcapConfig {
    fn default() -> Self {
        DcapConfig {
            pccs_url: INTEL_PCS.into(),
            pccs_update: "standard".into(),
            root_ca_crl_url: None,
            collateral_dir: None,
            root_ca_file: None,
            refresh_secs: 24 * 3600,
            timeout_secs: 10,
        }
    }
}

/// Intel's Provisioning Certification Service.
pub const INTEL_PCS: &str = "https://api.trustedservices.intel.com";
const INTEL_ROOT_CRL: &str = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";

/// Why no usable collateral could be produced.
#[derive(Debug, thiserror::Error)]
pub enum CollateralSourceError {
    /// Nothing configured holds collateral for this platform.
    #[error("no collateral: {0}")]
    Missing(String),
    /// The PCS/PCCS could not be reached or answered an error.
    #[error("collateral service: {0}")]
    Unavailable(String),
    /// A configured file or a fetched answer is unusable.
    #[error("{0}")]
    Invalid(String),
}

/// The trust anchor named by the config.
pub fn root_ca(cfg: &DcapConfig) -> Result<Vec<u8>, CollateralSourceError> {
    let Some(path) = &cfg.root_ca_file else {
        return Ok(coffer_tdx::INTEL_SGX_ROOT_CA_DER.to_vec());
    };
    let bytes = std::fs::read(path).map_err(|e| {
        CollateralSourceError::Invalid(format!("dcap.root_ca_file {}: {e}", path.display()))
    })?;
    if bytes.starts_with(b"-----BEGIN") {
        coffer_tdx::pem::certificates(&bytes)
            .into_iter()
            .next()
            .ok_or_else(|| {
                CollateralSourceError::Invalid(format!(
                    "dcap.root_ca_file {}: no certificate",
                    path.display()
                ))
            })
    } else {
        Ok(bytes)
    }
}

/// A cached bundle with its `not_after` and fetch time (unix seconds).
type Cached = (Arc<Collateral>, i64, i64);

/// Collateral lookup with caching.
pub struct CollateralProvider {
    files: HashMap<CollateralKey, Arc<Collateral>>,
    cfg: DcapConfig,
    http: Option<reqwest::Client>,
    store: Arc<dyn Store>,
    memory: Mutex<HashMap<CollateralKey, Cached>>,
}

fn key_text(k: &CollateralKey) -> String {
    format!("{}/{}/{}", k.tee, k.fmspc, k.ca.as_str())
}

/// Loads every `*.json` bundle in `dir`, keyed by what it serves.
pub fn load_dir(
    dir: &Path,
) -> Result<HashMap<CollateralKey, Arc<Collateral>>, CollateralSourceError> {
    let mut out = HashMap::new();
    let entries = std::fs::read_dir(dir).map_err(|e| {
        CollateralSourceError::Invalid(format!("dcap.collateral_dir {}: {e}", dir.display()))
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    for p in paths {
        let text = std::fs::read_to_string(&p)
            .map_err(|e| CollateralSourceError::Invalid(format!("{}: {e}", p.display())))?;
        let c = Collateral::from_json(&text)
            .map_err(|e| CollateralSourceError::Invalid(format!("{}: {e}", p.display())))?;
        out.insert(c.key().clone(), Arc::new(c));
    }
    Ok(out)
}

impl CollateralProvider {
    /// Builds the provider; reads `collateral_dir` now so bad files fail start-up.
    pub fn new(cfg: &DcapConfig, store: Arc<dyn Store>) -> Result<Self, CollateralSourceError> {
        let files = match &cfg.collateral_dir {
            Some(d) => load_dir(d)?,
            None => HashMap::new(),
        };
        let http = if cfg.pccs_url.is_empty() {
            None
        } else {
            Some(
                reqwest::Client::builder()
                    .timeout(std::time::Duration::from_secs(cfg.timeout_secs.max(1)))
                    .build()
                    .map_err(|e| CollateralSourceError::Invalid(format!("HTTP client: {e}")))?,
            )
        };
        Ok(CollateralProvider {
            files,
            cfg: cfg.clone(),
            http,
            store,
            memory: Mutex::new(HashMap::new()),
        })
    }

    /// Number of offline bundles loaded.
    pub fn offline_count(&self) -> usize {
        self.files.len()
    }

    /// Collateral for `key` usable at `now`. An expired offline bundle is still returned
    /// when nothing fresher exists, so verification names the expired piece.
    pub async fn get(
        &self,
        key: &CollateralKey,
        now: i64,
    ) -> Result<Arc<Collateral>, CollateralSourceError> {
        let file = self.files.get(key).cloned();
        if let Some(f) = &file {
            if f.check_time(now).is_ok() {
                return Ok(f.clone());
            }
        }
        let fresh = |fetched: i64| now - fetched < self.cfg.refresh_secs;
        let cached = self.memory.lock().ok().and_then(|m| m.get(key).cloned());
        if let Some((c, not_after, fetched)) = &cached {
            if *not_after > now && (fresh(*fetched) || self.http.is_none()) {
                return Ok(c.clone());
            }
        }
        let k = key_text(key);
        let stored = self
            .store
            .get_collateral(&k, now)
            .await
            .map_err(|e| CollateralSourceError::Unavailable(e.to_string()))?;
        let stored = match stored {
            Some((body, not_after, fetched)) => {
                let c = Collateral::from_json(&body)
                    .map_err(|e| CollateralSourceError::Invalid(format!("cached {k}: {e}")))?;
                let c = Arc::new(c);
                self.remember(key, &c, not_after, fetched);
                if fresh(fetched) || self.http.is_none() {
                    return Ok(c);
                }
                Some(c)
            }
            None => None,
        };
        match self.fetch(key).await {
            Ok(c) => {
                let w = c.window();
                self.store
                    .put_collateral(&k, &c.to_json(), w.not_after, now)
                    .await
                    .map_err(|e| CollateralSourceError::Unavailable(e.to_string()))?;
                let c = Arc::new(c);
                self.remember(key, &c, w.not_after, now);
                tracing::info!(collateral = %k, not_after = w.not_after, "DCAP collateral fetched");
                Ok(c)
            }
            Err(e) => {
                if let Some(c) = stored.or_else(|| cached.map(|x| x.0)) {
                    tracing::warn!(collateral = %k, error = %e, "collateral refresh failed; using the cached copy");
                    return Ok(c);
                }
                file.ok_or(e)
            }
        }
    }

    fn remember(&self, key: &CollateralKey, c: &Arc<Collateral>, not_after: i64, fetched: i64) {
        if let Ok(mut m) = self.memory.lock() {
            m.insert(key.clone(), (c.clone(), not_after, fetched));
        }
    }

    async fn get_text(
        &self,
        url: &str,
        header: &[&str],
        what: &str,
    ) -> Result<(Vec<u8>, String), CollateralSourceError> {
        let http = self.http.as_ref().ok_or_else(|| {
            CollateralSourceError::Missing(format!("{what}: no pccs_url configured"))
        })?;
        let r =
            http.get(url).send().await.map_err(|e| {
                CollateralSourceError::Unavailable(format!("{what}: GET {url}: {e}"))
            })?;
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            // The service is up but has nothing for this platform: not worth retrying.
            return Err(CollateralSourceError::Missing(format!(
                "{what}: {url} answered 404 (unknown platform?)"
            )));
        }
        if !r.status().is_success() {
            return Err(CollateralSourceError::Unavailable(format!(
                "{what}: GET {url}: HTTP {}",
                r.status()
            )));
        }
        let chain = header
            .iter()
            .find_map(|h| r.headers().get(*h))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if !header.is_empty() && chain.is_empty() {
            return Err(CollateralSourceError::Invalid(format!(
                "{what}: response from {url} has no {} header",
                header[0]
            )));
        }
        let body = r
            .bytes()
            .await
            .map_err(|e| CollateralSourceError::Unavailable(format!("{what}: {e}")))?;
        Ok((body.to_vec(), chain))
    }

    async fn fetch(&self, key: &CollateralKey) -> Result<Collateral, CollateralSourceError> {
        if self.http.is_none() {
            return Err(CollateralSourceError::Missing(format!(
                "{key} is not in collateral_dir and no pccs_url is configured"
            )));
        }
        let base = self.cfg.pccs_url.trim_end_matches('/');
        let tee = if key.tee == "TDX" { "tdx" } else { "sgx" };
        let update = &self.cfg.pccs_update;
        let (tcb, tcb_chain) = self
            .get_text(
                &format!(
                    "{base}/{tee}/certification/v4/tcb?fmspc={}&update={update}",
                    key.fmspc
                ),
                &["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"],
                "TCB info",
            )
            .await?;
        let (qe, qe_chain) = self
            .get_text(
                &format!("{base}/{tee}/certification/v4/qe/identity?update={update}"),
                &["SGX-Enclave-Identity-Issuer-Chain"],
                "QE identity",
            )
            .await?;
        let (pck_crl, pck_chain) = self
            .get_text(
                &format!(
                    "{base}/sgx/certification/v4/pckcrl?ca={}&encoding=der",
                    key.ca.as_str()
                ),
                &["SGX-PCK-CRL-Issuer-Chain"],
                "PCK CRL",
            )
            .await?;
        let root_url = self.cfg.root_ca_crl_url.clone().unwrap_or_else(|| {
            if base == INTEL_PCS {
                INTEL_ROOT_CRL.to_string()
            } else {
                format!("{base}/sgx/certification/v4/rootcacrl")
            }
        });
        let (root_crl, _) = self.get_text(&root_url, &[], "root CA CRL").await?;
        let text = |b: &[u8], what: &str| {
            String::from_utf8(b.to_vec())
                .map_err(|_| CollateralSourceError::Invalid(format!("{what} is not UTF-8")))
        };
        Collateral::from_pcs(PcsParts {
            tcb_response: &text(&tcb, "TCB info")?,
            tcb_chain: &tcb_chain,
            qe_response: &text(&qe, "QE identity")?,
            qe_chain: &qe_chain,
            pck_crl: &pck_crl,
            pck_crl_chain: &pck_chain,
            root_ca_crl: &root_crl,
        })
        .map_err(|e| CollateralSourceError::Invalid(format!("collateral from {base}: {e}")))
    }
}
