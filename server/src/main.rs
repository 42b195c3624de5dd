//! `coffer-server` binary: arguments → configuration → [`Kbs::from_config`] → HTTP(S)
//! listener, plus the two maintenance loops (session sweep, audit retention).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

use coffer_server::clock::SystemClock;
use coffer_server::config::Config;
use coffer_server::http::{app, AppState};
use coffer_server::service::Kbs;

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

    let kbs = Arc::new(Kbs::from_config(&cfg, Arc::new(SystemClock)).await?);
    spawn_maintenance(kbs.clone(), cfg.audit.clone());
    serve(kbs, &cfg).await
}

/// Purges expired sessions every minute and applies the audit retention every
/// `audit.prune_interval_secs` (and once at start).
fn spawn_maintenance(kbs: Arc<Kbs>, audit: coffer_server::config::AuditConfig) {
    let sweeper = kbs.clone();
    actix_web::rt::spawn(async move {
        let mut tick = actix_web::rt::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            if let Err(e) = sweeper.purge_expired_sessions().await {
                tracing::warn!(
                    error = &e as &(dyn std::error::Error + 'static),
                    "session sweep failed"
                );
            }
        }
    });
    actix_web::rt::spawn(async move {
        let mut tick = actix_web::rt::time::interval(std::time::Duration::from_secs(
            audit.prune_interval_secs,
        ));
        loop {
            tick.tick().await;
            match kbs.apply_audit_retention(&audit).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    removed = n,
                    max_age_secs = audit.max_age_secs,
                    max_rows = audit.max_rows,
                    "audit retention applied"
                ),
                Err(e) => tracing::warn!(
                    error = &e as &(dyn std::error::Error + 'static),
                    "audit retention failed"
                ),
            }
        }
    });
}

/// Serves `kbs` over HTTP or HTTPS until the process is stopped.
async fn serve(kbs: Arc<Kbs>, cfg: &Config) -> anyhow::Result<()> {
    let db_url = cfg.database_url();
    let workers = cfg.server.worker_threads();
    let state = actix_web::web::Data::new(AppState::new(kbs, &cfg.server));
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
