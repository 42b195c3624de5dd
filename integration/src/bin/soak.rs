//! Soak run: many concurrent guests doing full handshakes (auth + attest + resource + JWE
//! decrypt) until a total is reached, while other tasks flood bare `POST /kbs/v0/auth` from
//! another source address (127.0.0.2, as an attacker on another host would). Reports failed
//! handshakes, the flood's answers by status, and the server's memory and database size
//! sampled through the run, so "bounded" is a measured claim.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use coffer::evidence::SampleEvidence;
use coffer::KbsClient;
use coffer_integration::Server;
use coffer_protocol::{ResourcePath, TeeKeyPair};

#[derive(Parser)]
#[command(about = "coffer-server soak run: handshakes under an /auth flood")]
struct Args {
    /// Concurrent handshaking guests.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Full handshakes to complete.
    #[arg(long, default_value_t = 10_000)]
    handshakes: u64,
    /// Concurrent tasks sending bare /auth requests from 127.0.0.2 while the guests run.
    #[arg(long, default_value_t = 8)]
    flood: usize,
    /// Extra server configuration (TOML file).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Bytes of the SQLite database and its WAL.
fn db_bytes(data_dir: &std::path::Path) -> u64 {
    ["coffer.db", "coffer.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(data_dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let config = match &args.config {
        Some(p) => Some(std::fs::read_to_string(p)?),
        None => None,
    };
    let server = Server::start(dir.path(), config.as_deref());
    let secret = dir.path().join("secret");
    std::fs::write(&secret, [7u8; 32])?;
    server.admin(&[
        "set-resource",
        "default/soak/key",
        "--file",
        &secret.display().to_string(),
    ]);
    server.admin(&["set-resource-policy", "--allow-all"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pid = server.pid();
    let data_dir = server.data_dir.clone();
    let (rss_start, db_start) = (rss_kib(pid), db_bytes(&data_dir));

    let started = Instant::now();
    let remaining = Arc::new(AtomicU64::new(args.handshakes));
    let failed = Arc::new(AtomicU64::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let guests = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let path: ResourcePath = "default/soak/key".parse()?;
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (http, url, path) = (guests.clone(), server.url.clone(), path.clone());
        let (remaining, failed, first_error) =
            (remaining.clone(), failed.clone(), first_error.clone());
        tasks.push(tokio::spawn(async move {
            while remaining
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                let mut c = KbsClient::new(
                    http.clone(),
                    &url,
                    Box::new(SampleEvidence),
                    TeeKeyPair::generate(),
                );
                match c.get_resource(&path).await {
                    Ok(s) if s.len() == 32 => {}
                    other => {
                        failed.fetch_add(1, Ordering::SeqCst);
                        let msg = match other {
                            Ok(_) => "wrong secret".to_string(),
                            Err(e) => e.to_string(),
                        };
                        first_error
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert(msg);
                    }
                }
            }
        }));
    }
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let statuses: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let attacker = reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .build()?;
    let mut flood = Vec::new();
    for _ in 0..args.flood {
        let (http, url, done, statuses) = (
            attacker.clone(),
            server.url.clone(),
            done.clone(),
            statuses.clone(),
        );
        flood.push(tokio::spawn(async move {
            let body = r#"{"version":"0.4.0","tee":"sample","extra-params":""}"#;
            while !done.load(Ordering::SeqCst) {
                let r = http
                    .post(format!("{url}/kbs/v0/auth"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let key = match r {
                    Ok(r) => r.status().as_u16().to_string(),
                    Err(_) => "connection error".into(),
                };
                *statuses
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(key)
                    .or_default() += 1;
            }
        }));
    }
    let (mut rss_peak, mut db_peak) = (rss_start, db_start);
    while tasks.iter().any(|t| !t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        rss_peak = rss_peak.max(rss_kib(pid));
        db_peak = db_peak.max(db_bytes(&data_dir));
    }
    done.store(true, Ordering::SeqCst);
    for t in tasks.into_iter().chain(flood) {
        t.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let (rss_end, db_end) = (rss_kib(pid), db_bytes(&data_dir));
    let failed = failed.load(Ordering::SeqCst);
    let statuses = statuses.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let flood_total: u64 = statuses.values().sum();
    let mib = |k: u64| k as f64 / 1024.0;
    let db_mib = |b: u64| b as f64 / 1_048_576.0;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "handshakes": args.handshakes, "failed": failed, "concurrency": args.concurrency,
                "seconds": secs, "flood_requests": flood_total, "flood_statuses": statuses,
                "rss_mib": {"start": mib(rss_start), "peak": mib(rss_peak), "end": mib(rss_end)},
                "db_mib": {"start": db_mib(db_start), "peak": db_mib(db_peak), "end": db_mib(db_end)},
                "first_error": *first_error.lock().unwrap_or_else(|p| p.into_inner()),
            })
        );
    } else {
        println!("coffer-server soak (sample TEE, SQLite)");
        println!(
            "  handshakes       {} by {} guests in {secs:.1} s, {failed} failed",
            args.handshakes, args.concurrency
        );
        println!("  /auth flood      {flood_total} requests from 127.0.0.2: {statuses:?}");
        println!(
            "  server RSS       {:.1} MiB start, {:.1} MiB peak, {:.1} MiB end",
            mib(rss_start),
            mib(rss_peak),
            mib(rss_end)
        );
        println!(
            "  database + WAL   {:.2} MiB start, {:.2} MiB peak, {:.2} MiB end",
            db_mib(db_start),
            db_mib(db_peak),
            db_mib(db_end)
        );
        if let Some(e) = &*first_error.lock().unwrap_or_else(|p| p.into_inner()) {
            println!("  first failure    {e}");
        }
    }
    anyhow::ensure!(failed == 0, "{failed} handshakes failed");
    Ok(())
}
