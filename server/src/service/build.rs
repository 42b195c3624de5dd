//! Building a [`Kbs`] from the configuration, in the order a server starts: keys, database,
//! resource backends, verifiers, then the start-up policies.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::{Kbs, KbsError, SnapshotCache};
use crate::attestation::collateral::{root_ca, CollateralProvider, CollateralSourceError};
use crate::attestation::gpu::{GpuAttestation, GpuConfigError};
use crate::attestation::{DcapTeeVerifier, Verifiers};
use crate::clock::{Clock, ClockError};
use crate::config::{Config, KekSource};
use crate::keys::{self, KeyError};
use crate::metrics::Metrics;
use crate::policy::{PolicyEngine, PolicyError, TokenIssuer, RESOURCE_POLICY_ID};
use crate::secrets::aliyun::{AliyunKms, KmsSetupError};
use crate::secrets::kek_kms::{unwrap_or_create, KekKmsError, WrappedKekLocation};
use crate::secrets::{Kek, RoutedSecrets, SealedDbBackend, SecretBackend};
use crate::service::AdminAuth;
use crate::store::{self, PolicyKind, Store, StoreError};

/// Why the server could not start. Each variant names the step; the source says why.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A key file is missing, unreadable or malformed.
    #[error("loading keys")]
    Keys(#[source] KeyError),
    /// The database cannot be opened or migrated.
    #[error("opening database")]
    Store(#[source] StoreError),
    /// `[aliyun_kms]` cannot be used as a resource backend.
    #[error("Aliyun KMS backend")]
    Kms(#[source] KmsSetupError),
    /// `[aliyun_kms]` cannot be used to unwrap the KEK.
    #[error("Aliyun KMS client for the KEK")]
    KekKmsClient(#[source] KmsSetupError),
    /// `keys.kek_kms_key_id` without `[aliyun_kms]` (the configuration was not validated).
    #[error("keys.kek_kms_key_id needs [aliyun_kms]")]
    KekNeedsKms,
    /// The KEK cannot be unwrapped (or created) with KMS.
    #[error("unwrapping the KEK with Aliyun KMS")]
    Kek(#[source] KekKmsError),
    /// `dcap.root_ca_file` is unusable.
    #[error("dcap trust anchor")]
    DcapAnchor(#[source] CollateralSourceError),
    /// The trust anchor is not a DER certificate.
    #[error("dcap trust anchor is not a DER certificate")]
    DcapAnchorDer(#[source] openssl::error::ErrorStack),
    /// `dcap.collateral_dir` is unusable.
    #[error("dcap collateral")]
    DcapCollateral(#[source] CollateralSourceError),
    /// `[gpu]` is unusable.
    #[error("gpu verification")]
    Gpu(#[source] GpuConfigError),
    /// The clock cannot be read.
    #[error("reading the clock")]
    Clock(#[source] ClockError),
    /// The built-in policies cannot be stored.
    #[error("installing default policies")]
    DefaultPolicies(#[source] KbsError),
    /// A file of `server.policy_dir` is unusable.
    #[error("installing policies from server.policy_dir")]
    PolicyDir(#[source] PolicyDirError),
    /// The resource policy cannot be read for the start-up check.
    #[error("reading the resource policy")]
    ResourcePolicy(#[source] StoreError),
}

/// Why `server.policy_dir` could not be installed; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum PolicyDirError {
    /// The directory or a file cannot be read.
    #[error("{}", path.display())]
    Read {
        /// The directory or file.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// A file's name is not UTF-8, so it names no policy id.
    #[error("{}: the file name is not UTF-8", .0.display())]
    Name(PathBuf),
    /// A file does not compile.
    #[error("{}", path.display())]
    Compile {
        /// The file.
        path: PathBuf,
        /// What the policy engine said.
        source: PolicyError,
    },
    /// A policy cannot be stored.
    #[error("{}", path.display())]
    Store {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: KbsError,
    },
}

impl Kbs {
    /// The KBS `cfg` describes (a validated [`Config`]), over the database it names, reading
    /// every time from `clock`; the built-in policies and `server.policy_dir` are installed.
    pub async fn from_config(cfg: &Config, clock: Arc<dyn Clock>) -> Result<Kbs, StartError> {
        // The default SQLite file lives in the data directory.
        keys::create_data_dir(&cfg.server.data_dir).map_err(StartError::Keys)?;
        let store = store::open(&cfg.database_url(), cfg.pool_size())
            .await
            .map_err(StartError::Store)?;
        Self::with_store(cfg, clock, store).await
    }

    /// As [`Kbs::from_config`], over a `store` the caller opened (tests wrap one to inject
    /// failures; `database.*` is not read).
    pub async fn with_store(
        cfg: &Config,
        clock: Arc<dyn Clock>,
        store: Arc<dyn Store>,
    ) -> Result<Kbs, StartError> {
        let keys = keys::load_or_create(cfg).map_err(StartError::Keys)?;
        if let Some(p) = &keys.generated_admin_key {
            tracing::info!(path = %p.display(), "generated admin key pair; the private key (mode 0600) signs admin tokens: coffer admin --key {}", p.display());
        }
        let metrics = Metrics::new();
        let mut routes: Vec<(String, String, Arc<dyn SecretBackend>)> = Vec::new();
        if let Some(kms) = &cfg.aliyun_kms {
            let backend = AliyunKms::new(kms)
                .map_err(StartError::Kms)?
                .with_metrics(metrics.kms_requests.clone());
            tracing::info!(repository = %kms.repository, resource_type = %kms.resource_type, kms = %backend.describe(), "resources routed to Aliyun KMS");
            routes.push((
                kms.repository.clone(),
                kms.resource_type.clone(),
                Arc::new(backend),
            ));
        }
        let verifiers = verifiers(cfg, &store)?;
        let kek = match keys.kek.clone() {
            Some(k) => k,
            None => kms_kek(cfg, store.as_ref(), clock.as_ref()).await?,
        };
        let admin = if cfg.admin.deny_all {
            AdminAuth::deny_all()
        } else {
            AdminAuth::new(
                keys.admin_public,
                cfg.admin.issuer.clone(),
                cfg.admin.audience.clone(),
            )
            .with_max_ttl(secs_i64(cfg.admin.token_max_ttl_secs))
            .with_alibaba_tokens(
                cfg.admin
                    .accept_alibaba_tokens
                    .then_some(secs_i64(cfg.admin.alibaba_max_ttl())),
            )
        };
        let kbs = Kbs {
            secrets: Arc::new(RoutedSecrets {
                default: Arc::new(SealedDbBackend::new(store.clone(), kek, clock.clone())),
                routes,
            }),
            store,
            verifiers,
            policies: PolicyEngine::default(),
            tokens: TokenIssuer::new(
                keys.token_signing.clone(),
                cfg.attestation.token_issuer.clone(),
                secs_i64(cfg.attestation.token_ttl_secs),
            ),
            admin,
            clock,
            session_ttl_secs: secs_i64(cfg.attestation.session_ttl_secs),
            max_sessions: cfg.attestation.max_sessions,
            auths_since_count: AtomicU64::new(0),
            resource_path_dialect: cfg.attestation.resource_path_dialect,
            metrics,
            snapshots: SnapshotCache::new(std::time::Duration::from_millis(
                cfg.attestation.policy_cache_ms,
            )),
            audit_claims_max_bytes: cfg.audit.max_claims_bytes,
        };
        kbs.install_default_policies()
            .await
            .map_err(StartError::DefaultPolicies)?;
        if let Some(dir) = &cfg.server.policy_dir {
            let ids = kbs
                .install_policy_dir(dir)
                .await
                .map_err(StartError::PolicyDir)?;
            tracing::info!(dir = %dir.display(), ?ids, "policies installed from files");
        }
        kbs.warn_if_unmeasured()
            .await
            .map_err(StartError::ResourcePolicy)?;
        Ok(kbs)
    }

    /// Installs every `*.rego` of `dir` (see `server.policy_dir`), refusing the first that
    /// does not compile. Returns the installed ids.
    pub async fn install_policy_dir(&self, dir: &Path) -> Result<Vec<String>, PolicyDirError> {
        let read_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| PolicyDirError::Read { path, source }
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read_error(dir))? {
            let path = entry.map_err(read_error(dir))?.path();
            if path.extension().is_some_and(|x| x == "rego") {
                files.push(path);
            }
        }
        files.sort();
        let mut ids = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(read_error(&f))?;
            if let Err(source) = self.policies.check(&text) {
                return Err(PolicyDirError::Compile { path: f, source });
            }
            let Some(id) = f.file_stem().and_then(|s| s.to_str()).map(str::to_string) else {
                return Err(PolicyDirError::Name(f));
            };
            let kind = if id == RESOURCE_POLICY_ID {
                PolicyKind::Resource
            } else {
                PolicyKind::Attestation
            };
            let stored = async {
                let now = self.clock.now_secs()?;
                self.store.put_policy(&id, kind, &text, now).await?;
                Ok::<_, KbsError>(())
            };
            stored
                .await
                .map_err(|source| PolicyDirError::Store { path: f, source })?;
            ids.push(id);
        }
        self.snapshots.invalidate();
        Ok(ids)
    }
}

/// The built-in verifiers, TDX (and SGX on request) with their collateral, and the GPU
/// verifier when enabled.
fn verifiers(cfg: &Config, store: &Arc<dyn Store>) -> Result<Verifiers, StartError> {
    let mut verifiers = Verifiers::builtin();
    let root = root_ca(&cfg.dcap).map_err(StartError::DcapAnchor)?;
    let provider = Arc::new(
        CollateralProvider::new(&cfg.dcap, store.clone()).map_err(StartError::DcapCollateral)?,
    );
    tracing::info!(
        pccs = cfg.dcap.pccs_url.as_deref().unwrap_or("none (offline)"),
        offline_bundles = provider.offline_count(),
        custom_root = cfg.dcap.root_ca_file.is_some(),
        sgx = cfg.dcap.sgx,
        "tdx verifier enabled{}",
        if cfg.dcap.sgx {
            ", and sgx (dcap.sgx)"
        } else {
            ""
        }
    );
    let dcap = coffer_tdx::dcap::DcapVerifier::with_root(root);
    verifiers.add(Arc::new(
        DcapTeeVerifier::tdx(dcap.clone(), provider.clone()).map_err(StartError::DcapAnchorDer)?,
    ));
    // SGX is a second attack surface (another quote format, other claims) that most
    // deployments never use: only on request.
    if cfg.dcap.sgx {
        verifiers.add(Arc::new(
            DcapTeeVerifier::sgx(dcap, provider).map_err(StartError::DcapAnchorDer)?,
        ));
    }
    if cfg.gpu.enabled {
        let gpu = GpuAttestation::new(&cfg.gpu, store.clone()).map_err(StartError::Gpu)?;
        let (rims, ocsp) = gpu.offline_counts();
        tracing::info!(
            offline_rims = rims,
            offline_ocsp_responses = ocsp,
            rim_service = cfg.gpu.rim_service_url.is_some(),
            ocsp_responder = cfg.gpu.ocsp_url.is_some(),
            custom_roots = cfg.gpu.device_root_file.is_some() || cfg.gpu.rim_root_file.is_some(),
            "gpu verifier enabled"
        );
        verifiers.set_gpu(Arc::new(gpu));
    }
    Ok(verifiers)
}

/// The KEK kept wrapped by an Aliyun KMS key (`KekSource::AliyunKms`), created on first
/// start.
async fn kms_kek(cfg: &Config, store: &dyn Store, clock: &dyn Clock) -> Result<Kek, StartError> {
    let (
        Some(kms_cfg),
        KekSource::AliyunKms {
            key_id,
            wrapped_file,
        },
    ) = (&cfg.aliyun_kms, &cfg.keys.kek)
    else {
        return Err(StartError::KekNeedsKms);
    };
    let kms = AliyunKms::new(kms_cfg).map_err(StartError::KekKmsClient)?;
    let at = match wrapped_file {
        Some(path) => WrappedKekLocation::File(path),
        None => WrappedKekLocation::Database {
            store,
            now: clock.now_secs().map_err(StartError::Clock)?,
        },
    };
    let k = unwrap_or_create(&kms, key_id, at)
        .await
        .map_err(StartError::Kek)?;
    let kept = wrapped_file
        .as_ref()
        .map_or_else(|| "database".to_string(), |p| p.display().to_string());
    tracing::info!(kms_key = %key_id, wrapped_in = %kept, "KEK unwrapped by KMS");
    Ok(k)
}

/// A configured number of seconds as the signed seconds the store and tokens count in.
fn secs_i64(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX)
}
