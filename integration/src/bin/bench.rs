//! Handshake benchmark: starts `coffer-server` (the binary next to this one; build with
//! `--release`), stores a resource, then runs N concurrent clients that each repeat the
//! full guest flow (auth + attest + resource + JWE decrypt) with a fresh TEE key, and prints
//! handshakes/s, p50/p99 latency and the server's RSS idle and under load.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use coffer::evidence::{EvidenceProvider, SampleEvidence};
use coffer::{ClientError, KbsClient};
use coffer_integration::tdx_mint::{CollateralOptions, TdFields, TestPki};
use coffer_integration::Server;
use coffer_protocol::{ResourcePath, TeeKeyPair};

#[derive(Parser)]
#[command(about = "coffer-server handshake benchmark")]
struct Args {
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Measured duration, seconds (after a 2 s warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Evidence: `sample`, or `tdx` (quotes minted per handshake by the test PKI, verified by
    /// the server's real DCAP path with the test root and offline collateral).
    #[arg(long, default_value = "sample", value_parser = ["sample", "tdx"])]
    tee: String,
    /// Run this many replicas on one fresh PostgreSQL database (the machine's, or
    /// COFFER_TEST_PG_URL) instead of one server on SQLite; clients spread over them.
    #[arg(long)]
    postgres_replicas: Option<usize>,
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// TDX evidence minted in-process over the handshake's REPORTDATA.
struct MintedTdx(Arc<TestPki>);

#[async_trait::async_trait]
impl EvidenceProvider for MintedTdx {
    fn tee(&self) -> &str {
        "tdx"
    }

    async fn evidence(&self, report_data: &[u8]) -> Result<serde_json::Value, ClientError> {
        let mut td = TdFields::default();
        td.report_data[..report_data.len().min(64)]
            .copy_from_slice(&report_data[..report_data.len().min(64)]);
        let q = self.0.quote(&td);
        Ok(serde_json::json!({"cc_eventlog": null, "quote": coffer_protocol::b64::std_encode(&q)}))
    }
}

async fn one_handshake(
    http: &reqwest::Client,
    url: &str,
    path: &ResourcePath,
    pki: Option<Arc<TestPki>>,
) -> anyhow::Result<()> {
    let evidence: Box<dyn EvidenceProvider> = match pki {
        Some(p) => Box::new(MintedTdx(p)),
        None => Box::new(SampleEvidence),
    };
    let mut c = KbsClient::new(http.clone(), url, evidence, TeeKeyPair::generate());
    let secret = c.get_resource(path).await?;
    anyhow::ensure!(secret.len() == 32, "unexpected secret");
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let pki = (args.tee == "tdx").then(|| Arc::new(TestPki::new()));
    let config = match &pki {
        Some(p) => {
            std::fs::write(dir.path().join("root.der"), p.root_der())?;
            let coll = dir.path().join("collateral");
            std::fs::create_dir_all(&coll)?;
            std::fs::write(
                coll.join("test.json"),
                p.collateral_json(&CollateralOptions::current()),
            )?;
            Some(format!(
                "[dcap]\npccs_url = \"\"\nroot_ca_file = \"{}\"\ncollateral_dir = \"{}\"\n",
                dir.path().join("root.der").display(),
                coll.display()
            ))
        }
        None => None,
    };
    let servers: Vec<Server> = match args.postgres_replicas {
        None => vec![Server::start(dir.path(), config.as_deref())],
        Some(n) => {
            let url = Server::fresh_postgres();
            let keys = dir.path().join("keys");
            (0..n.max(1))
                .map(|i| Server::start_replica(&keys, &url, &format!("r{i}")))
                .collect()
        }
    };
    let server = &servers[0];
    let secret = dir.path().join("secret");
    std::fs::write(&secret, [7u8; 32])?;
    server.admin(&[
        "set-resource",
        "default/bench/key",
        "--file",
        secret.to_str().unwrap_or_default(),
    ]);
    server.admin(&["set-resource-policy", "--allow-all"]);
    let pids: Vec<u32> = servers.iter().map(|s| s.pid()).collect();
    // Let every replica's policy snapshot expire so all see the uploaded policy.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let idle_kib = pids
        .iter()
        .map(|p| rss_kib(*p, "VmRSS:"))
        .max()
        .unwrap_or(0);

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let path: ResourcePath = "default/bench/key".parse()?;
    let urls: Arc<Vec<String>> = Arc::new(servers.iter().map(|s| s.url.clone()).collect());
    let warmup_end = Instant::now() + Duration::from_secs(2);
    let end = warmup_end + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for worker in 0..args.concurrency {
        let (http, urls, path, pki) = (http.clone(), urls.clone(), path.clone(), pki.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut n = worker;
            while Instant::now() < end {
                let t = Instant::now();
                n += 1;
                let ok = one_handshake(&http, &urls[n % urls.len()], &path, pki.clone())
                    .await
                    .is_ok();
                if t >= warmup_end {
                    if ok {
                        lat.push(t.elapsed());
                    } else {
                        errors += 1;
                    }
                }
            }
            (lat, errors)
        }));
    }
    let mut peak_kib = 0;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if Instant::now() > warmup_end {
            for p in &pids {
                peak_kib = peak_kib.max(rss_kib(*p, "VmRSS:"));
            }
        }
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        lat.extend(l);
        errors += e;
    }
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let rate = lat.len() as f64 / args.seconds as f64;
    let (p50, p99) = (pct(0.50).as_secs_f64() * 1e3, pct(0.99).as_secs_f64() * 1e3);
    let store = match args.postgres_replicas {
        None => "1 server, SQLite".to_string(),
        Some(n) => format!("{n} replicas, PostgreSQL"),
    };
    let tee = &args.tee;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"store": store, "tee": tee, "concurrency": args.concurrency, "seconds": args.seconds, "handshakes": lat.len(), "errors": errors,
                "handshakes_per_s": rate, "p50_ms": p50, "p99_ms": p99, "rss_idle_mib": idle_kib as f64 / 1024.0, "rss_load_mib": peak_kib as f64 / 1024.0})
        );
    } else {
        println!("coffer-server handshake benchmark (auth + attest + resource + JWE decrypt, {tee} TEE, {store})");
        println!("  clients            {}", args.concurrency);
        println!(
            "  handshakes         {} in {} s ({} errors)",
            lat.len(),
            args.seconds,
            errors
        );
        println!("  handshakes/s       {rate:.0}");
        println!("  latency p50 / p99  {p50:.2} ms / {p99:.2} ms");
        println!(
            "  server RSS         {:.1} MiB idle, {:.1} MiB peak under load",
            idle_kib as f64 / 1024.0,
            peak_kib as f64 / 1024.0
        );
        println!("  vs Trustee (issue reference: 250/s, p99 60 ms, RSS 73 MB under load)");
        println!(
            "    throughput ratio {:.2}x, p99 ratio {:.2}x",
            rate / 250.0,
            p99 / 60.0
        );
    }
    Ok(())
}
