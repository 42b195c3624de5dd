//! `coffer-server` binary: configuration, key bootstrap, database, HTTP(S) listener.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

use coffer_server::attestation::Verifiers;
use coffer_server::config::Config;
use coffer_server::http::{app, AppState};
use coffer_server::metrics::Metrics;
use coffer_server::policy::{PolicyEngine, TokenIssuer};
use coffer_server::secrets::SealedDbBackend;
use coffer_server::service::{AdminAuth, Kbs, SnapshotCache};
use coffer_server::{keys, now_secs, store};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Trustee-compatible Key Broker Service with built-in attestation.
///
/// With no arguments it serves plain HTTP on 127.0.0.1:8080 and keeps everything (SQLite
/// database, key-encryption key, token-signing key, admin key pair) in ./coffer-data, which
/// it creates. The admin private key's path is logged on first start; use it with
/// `coffer admin --key PATH ...`.
#[derive(Parser, Debug)]
#[command(name = "coffer-server", version)]
struct Args {
    /// TOML configuration file (see coffer-server.example.toml).
    #[arg(long, short = 'c', env = "COFFER_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address, overriding server.listen.
    #[arg(long, env = "COFFER_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Data directory, overriding server.data_dir.
    #[arg(long, env = "COFFER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL, overriding database.url (sqlite://PATH).
    #[arg(long, env = "COFFER_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Path prefix under which the KBS API is served as well (repeatable, or comma-separated
    /// in the environment), replacing server.path_prefixes; e.g. `/api` (Alibaba's gateway) or
    /// `/<release>`. An empty value serves no prefix.
    #[arg(
        long = "path-prefix",
        env = "COFFER_PATH_PREFIXES",
        value_delimiter = ','
    )]
    path_prefixes: Option<Vec<String>>,
    /// HTTP worker threads, overriding server.workers (0 = one per CPU).
    #[arg(long)]
    workers: Option<usize>,
    /// Parse and validate the configuration, print "configuration ok" and exit (0 = valid).
    #[arg(long)]
    check_config: bool,
}

fn load_config(args: &Args) -> anyhow::Result<Config> {
    let mut cfg = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(l) = args.listen {
        cfg.server.listen = l;
    }
    if let Some(d) = &args.data_dir {
        cfg.server.data_dir = d.clone();
    }
    if let Some(u) = &args.database_url {
        cfg.database.url = Some(u.clone());
    }
    if let Some(p) = &args.path_prefixes {
        cfg.server.path_prefixes = p
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
    }
    if let Some(w) = args.workers {
        cfg.server.workers = w;
    }
    cfg.validate()?;
    Ok(cfg)
}

fn tls_config(tls: &coffer_server::config::TlsConfig) -> anyhow::Result<rustls::ServerConfig> {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(&tls.cert)
            .with_context(|| format!("TLS certificate {}", tls.cert.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .with_context(|| format!("TLS certificate {}: not PEM", tls.cert.display()))?;
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(&tls.key).with_context(|| format!("TLS key {}", tls.key.display()))?,
    ))
    .with_context(|| format!("TLS key {}: not PEM", tls.key.display()))?
    .with_context(|| format!("TLS key {}: no private key found", tls.key.display()))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS certificate and key do not match")
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let cfg = load_config(&args)?;
    if args.check_config {
        coffer_server::attestation::collateral::root_ca(&cfg.dcap).context("dcap trust anchor")?;
        if let Some(dir) = &cfg.dcap.collateral_dir {
            coffer_server::attestation::collateral::load_dir(dir).context("dcap collateral")?;
        }
        println!("configuration ok");
        return Ok(());
    }

    let keys = keys::load_or_create(&cfg).context("loading keys")?;
    if let Some(p) = &keys.generated_admin_key {
        tracing::info!(path = %p.display(), "generated admin key pair; the private key (mode 0600) signs admin tokens: coffer admin --key {}", p.display());
    }
    let workers = if cfg.server.workers == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    } else {
        cfg.server.workers
    };
    let db_url = cfg.database_url();
    let pool_size = cfg
        .database
        .max_connections
        .unwrap_or((workers as u32 * 2).clamp(4, 16));
    let store = store::open(&db_url, pool_size)
        .await
        .context("opening database")?;

    let metrics = Metrics::new();
    let mut routes: Vec<(
        String,
        String,
        Arc<dyn coffer_server::secrets::SecretBackend>,
    )> = Vec::new();
    if let Some(kms) = &cfg.aliyun_kms {
        let backend = coffer_server::secrets::aliyun::AliyunKms::new(kms)
            .context("Aliyun KMS backend")?
            .with_metrics(metrics.kms_requests.clone());
        tracing::info!(repository = %kms.repository, resource_type = %kms.resource_type, kms = %backend.describe(), "resources routed to Aliyun KMS");
        routes.push((
            kms.repository.clone(),
            kms.resource_type.clone(),
            Arc::new(backend),
        ));
    }
    let mut verifiers = Verifiers::builtin();
    {
        use coffer_server::attestation::collateral::{root_ca, CollateralProvider};
        use coffer_server::attestation::DcapTeeVerifier;
        let root = root_ca(&cfg.dcap).context("dcap trust anchor")?;
        let provider =
            Arc::new(CollateralProvider::new(&cfg.dcap, store.clone()).context("dcap collateral")?);
        tracing::info!(
            pccs = %cfg.dcap.pccs_url,
            offline_bundles = provider.offline_count(),
            custom_root = cfg.dcap.root_ca_file.is_some(),
            sgx = cfg.dcap.sgx,
            "tdx verifier enabled{}",
            if cfg.dcap.sgx { ", and sgx (dcap.sgx)" } else { "" }
        );
        let dcap = coffer_tdx::dcap::DcapVerifier::with_root(root);
        verifiers.add(Arc::new(
            DcapTeeVerifier::tdx(dcap.clone(), provider.clone())
                .context("dcap trust anchor is not a DER certificate")?,
        ));
        // SGX is a second attack surface (another quote format, other claims) that most
        // deployments never use: only on request.
        if cfg.dcap.sgx {
            verifiers.add(Arc::new(
                DcapTeeVerifier::sgx(dcap, provider)
                    .context("dcap trust anchor is not a DER certificate")?,
            ));
        }
    }
    if cfg.gpu.enabled {
        use coffer_server::attestation::gpu::GpuAttestation;
        let gpu = GpuAttestation::new(&cfg.gpu, store.clone()).context("gpu verification")?;
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
    let kek = match keys.kek.clone() {
        Some(k) => k,
        None => {
            let (Some(kms_cfg), Some(key_id)) = (&cfg.aliyun_kms, &cfg.keys.kek_kms_key_id) else {
                anyhow::bail!("keys.kek_kms_key_id needs [aliyun_kms]");
            };
            let kms = coffer_server::secrets::aliyun::AliyunKms::new(kms_cfg)
                .context("Aliyun KMS client for the KEK")?;
            use coffer_server::secrets::kek_kms::{unwrap_or_create, WrappedKekLocation};
            let at = match &cfg.keys.kek_wrapped_file {
                Some(path) => WrappedKekLocation::File(path),
                None => WrappedKekLocation::Database(store.as_ref()),
            };
            let k = unwrap_or_create(&kms, key_id, at)
                .await
                .context("unwrapping the KEK with Aliyun KMS")?;
            let kept = cfg
                .keys
                .kek_wrapped_file
                .as_ref()
                .map_or_else(|| "database".to_string(), |p| p.display().to_string());
            tracing::info!(kms_key = %key_id, wrapped_in = %kept, "KEK unwrapped by KMS");
            k
        }
    };
    let kbs = Arc::new(Kbs {
        secrets: Arc::new(coffer_server::secrets::RoutedSecrets {
            default: Arc::new(SealedDbBackend::new(store.clone(), kek)),
            routes,
        }),
        store,
        verifiers,
        policies: PolicyEngine::default(),
        tokens: TokenIssuer::new(
            keys.token_signing.clone(),
            cfg.attestation.token_issuer.clone(),
            cfg.attestation.token_ttl_secs as i64,
        ),
        admin: AdminAuth::new(
            keys.admin_public,
            cfg.admin.issuer.clone(),
            cfg.admin.audience.clone(),
            cfg.admin.deny_all,
        )
        .with_max_ttl(cfg.admin.token_max_ttl_secs.min(i64::MAX as u64) as i64)
        .with_alibaba_tokens(
            cfg.admin
                .accept_alibaba_tokens
                .then_some(cfg.admin.alibaba_max_ttl().min(i64::MAX as u64) as i64),
        ),
        session_ttl_secs: cfg.attestation.session_ttl_secs as i64,
        max_sessions: cfg.attestation.max_sessions,
        auths_since_count: Default::default(),
        resource_path_dialect: cfg.attestation.resource_path_dialect,
        metrics,
        snapshots: SnapshotCache::new(std::time::Duration::from_millis(
            cfg.attestation.policy_cache_ms,
        )),
        audit_claims_max_bytes: cfg.audit.max_claims_bytes,
    });
    kbs.install_default_policies()
        .await
        .context("installing default policies")?;
    if let Some(dir) = &cfg.server.policy_dir {
        let ids = kbs
            .install_policy_dir(dir)
            .await
            .map_err(anyhow::Error::msg)
            .context("installing policies from server.policy_dir")?;
        tracing::info!(dir = %dir.display(), ?ids, "policies installed from files");
    }
    kbs.warn_if_unmeasured()
        .await
        .context("reading the resource policy")?;

    let sweeper = kbs.clone();
    actix_web::rt::spawn(async move {
        let mut tick = actix_web::rt::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            if let Err(e) = sweeper.store.purge_expired_sessions(now_secs()).await {
                tracing::warn!(error = %e, "session sweep failed");
            }
        }
    });

    let pruner = kbs.clone();
    let audit = cfg.audit.clone();
    actix_web::rt::spawn(async move {
        let mut tick = actix_web::rt::time::interval(std::time::Duration::from_secs(
            audit.prune_interval_secs,
        ));
        let max_age_ms = (audit.max_age_secs.min(i64::MAX as u64 / 1000) as i64) * 1000;
        loop {
            tick.tick().await;
            let before = (audit.max_age_secs > 0).then(|| now_secs() * 1000 - max_age_ms);
            let keep = (audit.max_rows > 0).then_some(audit.max_rows);
            match pruner.store.prune_audit(before, keep).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    removed = n,
                    max_age_secs = audit.max_age_secs,
                    max_rows = audit.max_rows,
                    "audit retention applied"
                ),
                Err(e) => tracing::warn!(error = %e, "audit retention failed"),
            }
        }
    });

    let state = actix_web::web::Data::new(AppState {
        kbs,
        max_body_bytes: cfg.server.max_body_bytes,
        path_prefixes: cfg.server.path_prefixes.clone(),
    });
    let server = actix_web::HttpServer::new(move || app(state.clone())).workers(workers);
    let server = match &cfg.server.tls {
        Some(tls) => server.bind_rustls_0_23(cfg.server.listen, tls_config(tls)?),
        None => server.bind(cfg.server.listen),
    }
    .with_context(|| format!("cannot listen on {}", cfg.server.listen))?;
    let bound = server.addrs().first().copied().unwrap_or(cfg.server.listen);
    tracing::info!(
        listen = %bound,
        tls = cfg.server.tls.is_some(),
        data_dir = %cfg.server.data_dir.display(),
        path_prefixes = ?cfg.server.path_prefixes,
        database = %db_url.split("://").next().unwrap_or(""),
        "coffer-server ready"
    );
    server.run().await.context("HTTP server failed")
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_valid() {
        use clap::CommandFactory;
        super::Args::command().debug_assert();
    }
}
