//! Handshake benchmark: starts `coffer-server` (the binary next to this one; build with
//! `--release`), stores a resource, then runs N concurrent clients that each repeat the
//! full guest flow (auth + attest + resource + JWE decrypt) with a fresh TEE key, and prints
//! handshakes/s, p50/p99 latency, the server's CPU time per handshake (from /proc) and its
//! RSS idle and under load. With `--trustee-kbs`, upstream Trustee's KBS gets the same load
//! in the same run, rounds alternating between the two, and the ratios are printed.

mod load;
mod trustee;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use coffer_integration::tdx_mint::{CollateralOptions, TestPki};
use coffer_integration::Server;
use coffer_protocol::ResourcePath;

use load::{Load, Measurement, Target};

/// The TEEs the benchmark can present evidence for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum BenchTee {
    /// Trustee's development TEE (no hardware, nothing verified).
    Sample,
    /// TDX quotes minted per handshake by the test PKI, verified by the server's real DCAP
    /// path with the test root and offline collateral.
    Tdx,
}

impl std::fmt::Display for BenchTee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BenchTee::Sample => "sample",
            BenchTee::Tdx => "tdx",
        })
    }
}

#[derive(Parser)]
#[command(about = "coffer-server handshake benchmark (optionally side by side with Trustee's KBS)")]
struct Args {
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Measured duration of one round, seconds (after a 2 s warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Rounds; with --trustee-kbs each round measures coffer-server, then Trustee's KBS.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Print one JSON object per measurement instead of text.
    #[arg(long)]
    json: bool,
    /// Evidence the clients present.
    #[arg(long, value_enum, default_value_t = BenchTee::Sample)]
    tee: BenchTee,
    /// Run this many replicas on one fresh PostgreSQL database (the machine's, or
    /// COFFER_TEST_PG_URL) instead of one server on SQLite; clients spread over them.
    #[arg(long)]
    postgres_replicas: Option<usize>,
    /// Also measure upstream Trustee's KBS binary at this path (built by
    /// scripts/build-trustee-kbs.sh; sample TEE only).
    #[arg(long)]
    trustee_kbs: Option<PathBuf>,
}

const RESOURCE: &str = "default/bench/key";

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.trustee_kbs.is_none() || args.tee == BenchTee::Sample,
        "--trustee-kbs measures the sample TEE only (Trustee's TDX verifier needs Intel's DCAP libraries)"
    );
    let dir = tempfile::tempdir()?;
    let pki = (args.tee == BenchTee::Tdx).then(|| Arc::new(TestPki::new()));
    // The session table's bound (10,000 by default: 33 new handshakes a second at the
    // 300 s session lifetime) is far below this load; what is measured is the handshake,
    // not the eviction of sessions younger than their lifetime.
    let mut config = "[attestation]\nmax_sessions = 1000000\n".to_string();
    config.push_str(&match &pki {
        Some(p) => {
            std::fs::write(dir.path().join("root.der"), p.root_der())?;
            let coll = dir.path().join("collateral");
            std::fs::create_dir_all(&coll)?;
            std::fs::write(
                coll.join("test.json"),
                p.collateral_json(&CollateralOptions::current()),
            )?;
            format!(
                "[dcap]\npccs_url = \"\"\nroot_ca_file = \"{}\"\ncollateral_dir = \"{}\"\n",
                dir.path().join("root.der").display(),
                coll.display()
            )
        }
        None => String::new(),
    });
    let servers: Vec<Server> = match args.postgres_replicas {
        None => vec![Server::start(dir.path(), Some(&config))],
        Some(n) => {
            let url = Server::fresh_postgres();
            let keys = dir.path().join("keys");
            (0..n.max(1))
                .map(|i| Server::start_replica_with(&keys, &url, &format!("r{i}"), Some(&config)))
                .collect()
        }
    };
    let secret_bytes = [7u8; 32];
    let secret = dir.path().join("secret");
    std::fs::write(&secret, secret_bytes)?;
    servers[0].admin(&[
        "set-resource",
        RESOURCE,
        "--file",
        secret.to_str().unwrap_or_default(),
    ]);
    servers[0].admin(&["set-resource-policy", "--allow-all"]);
    // Let every replica's policy snapshot expire so all see the uploaded policy.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let store = match args.postgres_replicas {
        None => "coffer-server (SQLite)".to_string(),
        Some(n) => format!("coffer-server ({n} replica(s), PostgreSQL)"),
    };
    let mut targets = vec![Target {
        name: store,
        urls: servers.iter().map(|s| s.url.clone()).collect(),
        pids: servers.iter().map(|s| s.pid()).collect(),
        db_process: args.postgres_replicas.map(|_| "postgres"),
    }];
    let trustee = match &args.trustee_kbs {
        Some(bin) => Some(trustee::start(bin, dir.path(), RESOURCE, &secret_bytes).await?),
        None => None,
    };
    if let Some(t) = &trustee {
        targets.push(Target {
            name: "Trustee KBS".into(),
            urls: vec![t.url.clone()],
            pids: vec![t.pid()],
            db_process: None,
        });
    }
    let load = Load {
        concurrency: args.concurrency,
        warmup: Duration::from_secs(2),
        window: Duration::from_secs(args.seconds),
        pki,
        path: RESOURCE.parse::<ResourcePath>()?,
    };
    if !args.json {
        println!(
            "handshake benchmark: auth + attest + resource + JWE decrypt, {} TEE, {} clients, {} s per round, {} round(s)",
            args.tee, args.concurrency, args.seconds, args.rounds
        );
    }
    let mut results: Vec<Vec<Measurement>> = vec![Vec::new(); targets.len()];
    for round in 0..args.rounds.max(1) {
        for (i, target) in targets.iter().enumerate() {
            let m = load::run(target, &load).await?;
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"round": round + 1, "tee": args.tee, "concurrency": args.concurrency, "measurement": m})
                );
            } else {
                print_measurement(round + 1, &m);
            }
            results[i].push(m);
        }
    }
    if !args.json && results.len() == 2 {
        print_ratios(&results[0], &results[1]);
    }
    Ok(())
}

fn print_measurement(round: usize, m: &Measurement) {
    println!("round {round}: {}", m.target);
    println!(
        "  handshakes          {} ({} errors), {:.0}/s",
        m.handshakes, m.errors, m.handshakes_per_s
    );
    println!(
        "  server CPU          {:.3} ms per handshake ({:.3} ms of it in the kernel)",
        m.server_cpu_ms_per_handshake, m.server_sys_ms_per_handshake
    );
    if let Some(e) = &m.first_error {
        println!("  first error         {e}");
    }
    if let Some(db) = m.db_cpu_ms_per_handshake {
        println!(
            "  PostgreSQL CPU      {db:.3} ms per handshake (all its processes on this machine)"
        );
    }
    println!(
        "  latency p50 / p99   {:.2} ms / {:.2} ms",
        m.p50_ms, m.p99_ms
    );
    println!(
        "  server RSS          {:.1} MiB idle, {:.1} MiB peak under load",
        m.rss_idle_mib, m.rss_load_mib
    );
}

/// Per-round ratios coffer / Trustee and their range over the rounds.
fn print_ratios(coffer: &[Measurement], trustee: &[Measurement]) {
    let range = |f: &dyn Fn(&Measurement, &Measurement) -> f64| {
        let v: Vec<f64> = coffer.iter().zip(trustee).map(|(c, t)| f(c, t)).collect();
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo, hi)
    };
    let safe = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    println!("coffer-server / Trustee KBS, same run (min – max over rounds):");
    let (lo, hi) =
        range(&|c, t| safe(c.server_cpu_ms_per_handshake, t.server_cpu_ms_per_handshake));
    println!("  server CPU per handshake  {lo:.2}x – {hi:.2}x");
    let (lo, hi) = range(&|c, t| safe(c.handshakes_per_s, t.handshakes_per_s));
    println!("  handshakes/s              {lo:.2}x – {hi:.2}x");
    let (lo, hi) = range(&|c, t| safe(c.p99_ms, t.p99_ms));
    println!("  p99 latency               {lo:.2}x – {hi:.2}x");
    let (lo, hi) = range(&|c, t| safe(c.rss_load_mib, t.rss_load_mib));
    println!("  RSS under load            {lo:.2}x – {hi:.2}x");
}
