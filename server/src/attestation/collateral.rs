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
    /// PCS or PCCS base URL; `None` (written `pccs_url = ""`) for offline operation.
    #[serde(deserialize_with = "pccs_url")]
    pub pccs_url: Option<String>,
    /// Which TCB evaluation data the PCS/PCCS serves (`standard` or `early`).
    pub pccs_update: PccsUpdate,
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
    /// Also verify SGX enclaves (`tee: "sgx"`). Off by default: only TDX is accepted.
    pub sgx: bool,
    /// How long a failed collateral fetch for one platform (FMSPC) is remembered and
    /// answered from memory instead of asking the PCS/PCCS again, seconds.
    pub failure_cache_secs: u64,
    /// Most collateral fetches in flight at once (all platforms together).
    pub max_concurrent_fetches: usize,
}

/// Reads `dcap.pccs_url`: `""` is offline (`None`); anything else must be an http(s) URL,
/// refused while the file is parsed (the error names the key and the line).
fn pccs_url<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    if s.is_empty() {
        return Ok(None);
    }
    if s.starts_with("https://") || s.starts_with("http://") {
        Ok(Some(s))
    } else {
        Err(serde::de::Error::custom(format!(
            "dcap.pccs_url must be an http(s) URL or empty (offline), not {s:?}"
        )))
    }
}

impl Default for DcapConfig {
    fn default() -> Self {
        DcapConfig {
            pccs_url: Some(INTEL_PCS.into()),
            pccs_update: PccsUpdate::Standard,
            root_ca_crl_url: None,
            collateral_dir: None,
            root_ca_file: None,
            refresh_secs: 24 * 3600,
            timeout_secs: 10,
            sgx: false,
            failure_cache_secs: 60,
            max_concurrent_fetches: 4,
        }
    }
}

/// The `update` parameter of PCS/PCCS collateral requests: which TCB evaluation data
/// number the answers are from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PccsUpdate {
    /// The data Intel recommends for production (the default).
    #[default]
    Standard,
    /// The newest data, published before it becomes standard.
    Early,
}

impl PccsUpdate {
    /// The query value.
    pub fn as_str(self) -> &'static str {
        match self {
            PccsUpdate::Standard => "standard",
            PccsUpdate::Early => "early",
        }
    }
}

/// Intel's Provisioning Certification Service.
pub const INTEL_PCS: &str = "https://api.trustedservices.intel.com";
const INTEL_ROOT_CRL: &str = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";

/// Why no usable collateral could be produced. The texts reach clients (in `/attest`
/// answers), so they never name the PCS/PCCS address; that goes to the server log.
#[derive(Debug, Clone, thiserror::Error)]
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

/// Most platforms whose last fetch failure is remembered; the FMSPC comes from the quote,
/// which anyone can send, so the map must not grow with what callers invent.
const FAILURE_CACHE_LIMIT: usize = 1024;

/// Number of locks that serialise fetches per platform (a key hashes to one of them).
const FETCH_LOCK_STRIPES: usize = 64;

/// Collateral lookup with caching.
///
/// `/attest` is unauthenticated, so every path to the network is bounded: one fetch per
/// platform at a time (concurrent requests wait for it and share its result), a failed
/// fetch is remembered for `failure_cache_secs`, and at most `max_concurrent_fetches` run
/// at once overall.
pub struct CollateralProvider {
    files: HashMap<CollateralKey, Arc<Collateral>>,
    cfg: DcapConfig,
    http: Option<reqwest::Client>,
    store: Arc<dyn Store>,
    memory: Mutex<HashMap<CollateralKey, Cached>>,
    /// Platform -> (unix seconds until which the failure stands, the failure).
    failures: Mutex<HashMap<CollateralKey, (i64, CollateralSourceError)>>,
    fetch_locks: Vec<tokio::sync::Mutex<()>>,
    fetch_slots: tokio::sync::Semaphore,
    fetches: std::sync::atomic::AtomicU64,
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
        let http = if cfg.pccs_url.is_none() {
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
            failures: Mutex::new(HashMap::new()),
            fetch_locks: (0..FETCH_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            fetch_slots: tokio::sync::Semaphore::new(cfg.max_concurrent_fetches.max(1)),
            fetches: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// How many collateral fetches from the PCS/PCCS were started (tests, metrics).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn fetch_lock(&self, key: &CollateralKey) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        &self.fetch_locks[(h.finish() as usize) % FETCH_LOCK_STRIPES]
    }

    fn recent_failure(&self, key: &CollateralKey, now: i64) -> Option<CollateralSourceError> {
        let m = self.failures.lock().ok()?;
        m.get(key)
            .filter(|(until, _)| *until > now)
            .map(|(_, e)| e.clone())
    }

    fn remember_failure(&self, key: &CollateralKey, e: &CollateralSourceError, now: i64) {
        let ttl = self.cfg.failure_cache_secs as i64;
        if ttl <= 0 {
            return;
        }
        if let Ok(mut m) = self.failures.lock() {
            if m.len() >= FAILURE_CACHE_LIMIT {
                m.retain(|_, (until, _)| *until > now);
                if m.len() >= FAILURE_CACHE_LIMIT {
                    m.clear();
                }
            }
            m.insert(key.clone(), (now.saturating_add(ttl), e.clone()));
        }
    }

    fn forget_failure(&self, key: &CollateralKey) {
        if let Ok(mut m) = self.failures.lock() {
            m.remove(key);
        }
    }

    /// One network fetch, unless one failed recently; bounded by the fetch slots.
    async fn fetch_bounded(
        &self,
        key: &CollateralKey,
        now: i64,
    ) -> Result<Collateral, CollateralSourceError> {
        if let Some(e) = self.recent_failure(key, now) {
            return Err(e);
        }
        let wait = std::time::Duration::from_secs(self.cfg.timeout_secs.max(1));
        let _slot = match tokio::time::timeout(wait, self.fetch_slots.acquire()).await {
            Ok(Ok(slot)) => slot,
            _ => {
                return Err(CollateralSourceError::Unavailable(
                    "too many collateral fetches in progress".into(),
                ))
            }
        };
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let r = self.fetch(key).await;
        match &r {
            Ok(_) => self.forget_failure(key),
            Err(e) => self.remember_failure(key, e, now),
        }
        r
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
        let usable = |c: &Option<Cached>| match c {
            Some((c, not_after, fetched))
                if *not_after > now && (fresh(*fetched) || self.http.is_none()) =>
            {
                Some(c.clone())
            }
            _ => None,
        };
        let cached = self.memory.lock().ok().and_then(|m| m.get(key).cloned());
        if let Some(c) = usable(&cached) {
            return Ok(c);
        }
        // Requests for one platform queue here; the first fetches, the others then find its
        // result (or its remembered failure) instead of asking the PCCS again.
        let _one_at_a_time = self.fetch_lock(key).lock().await;
        let cached = self.memory.lock().ok().and_then(|m| m.get(key).cloned());
        if let Some(c) = usable(&cached) {
            return Ok(c);
        }
        let k = key_text(key);
        let stored = self.store.get_collateral(&k, now).await.map_err(|e| {
            tracing::error!(collateral = %k, error = %e, "collateral cache read failed");
            CollateralSourceError::Unavailable("collateral cache unavailable".into())
        })?;
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
        match self.fetch_bounded(key, now).await {
            Ok(c) => {
                let w = c.window();
                self.store
                    .put_collateral(&k, &c.to_json(), w.not_after, now)
                    .await
                    .map_err(|e| {
                        tracing::error!(collateral = %k, error = %e, "collateral cache write failed");
                        CollateralSourceError::Unavailable("collateral cache unavailable".into())
                    })?;
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
        let r = http.get(url).send().await.map_err(|e| {
            tracing::warn!(%url, error = %e, "collateral request failed");
            let why = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "cannot be reached"
            } else {
                "request failed"
            };
            CollateralSourceError::Unavailable(format!("{what}: the collateral service {why}"))
        })?;
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            tracing::warn!(%url, "collateral service answered 404");
            // The service is up but has nothing for this platform: not worth retrying.
            return Err(CollateralSourceError::Missing(format!(
                "{what}: the collateral service has none for this platform (404; unknown platform?)"
            )));
        }
        if !r.status().is_success() {
            tracing::warn!(%url, status = %r.status(), "collateral service answered an error");
            return Err(CollateralSourceError::Unavailable(format!(
                "{what}: the collateral service answered HTTP {}",
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
            tracing::warn!(%url, header = header[0], "collateral answer lacks its issuer chain");
            return Err(CollateralSourceError::Invalid(format!(
                "{what}: the collateral service's answer has no {} header",
                header[0]
            )));
        }
        let body = r.bytes().await.map_err(|e| {
            tracing::warn!(%url, error = %e, "collateral body read failed");
            CollateralSourceError::Unavailable(format!(
                "{what}: the collateral service's answer was cut short"
            ))
        })?;
        Ok((body.to_vec(), chain))
    }

    async fn fetch(&self, key: &CollateralKey) -> Result<Collateral, CollateralSourceError> {
        let (Some(pccs_url), Some(_)) = (&self.cfg.pccs_url, &self.http) else {
            return Err(CollateralSourceError::Missing(format!(
                "{key} is not in collateral_dir and no pccs_url is configured"
            )));
        };
        let base = pccs_url.trim_end_matches('/');
        let tee = key.tee.pcs_path();
        let update = self.cfg.pccs_update.as_str();
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
        .map_err(|e| {
            tracing::warn!(pccs = %base, error = %e, "fetched collateral is unusable");
            CollateralSourceError::Invalid(format!("collateral from the collateral service: {e}"))
        })
    }
}
