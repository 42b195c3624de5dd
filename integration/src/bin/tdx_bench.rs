//! DCAP verification benchmark: quote verifications per second per core with collateral
//! already in memory (the server's steady state), for a real Intel-signed quote at its
//! fixture time and for a quote minted by the test PKI.

use std::time::{Duration, Instant};

use clap::Parser;
use coffer_integration::tdx_mint::{now, CollateralOptions, TdFields, TestPki};
use coffer_tdx::collateral::Collateral;
use coffer_tdx::dcap::DcapVerifier;

#[derive(Parser)]
#[command(about = "DCAP quote verifications per second per core (cached collateral)")]
struct Args {
    /// Threads verifying in parallel (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// Seconds per case.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

fn fixture(rel: &str) -> anyhow::Result<Vec<u8>> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tdx/tests/fixtures")
        .join(rel);
    std::fs::read(&p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
}

/// Verifications per second over `threads` threads; `make` gives the verifier for each
/// verification (a fresh one measures the full DCAP path, a shared one the steady state).
fn run(
    threads: usize,
    secs: u64,
    make: &(dyn Fn() -> Option<DcapVerifier> + Sync),
    shared: &DcapVerifier,
    quote: &[u8],
    coll: &Collateral,
    at: i64,
) -> anyhow::Result<f64> {
    shared.verify(quote, coll, at)?;
    let end = Instant::now() + Duration::from_secs(secs);
    let total: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while Instant::now() < end {
                        let fresh = make();
                        let v = fresh.as_ref().unwrap_or(shared);
                        if v.verify(quote, coll, at).is_ok() {
                            n += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    Ok(total as f64 / secs as f64)
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let threads = a.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let intel_quote = fixture("dcap-qvl/tdx_quote")?;
    let intel_coll = Collateral::from_json(std::str::from_utf8(&fixture(
        "dcap-qvl/tdx_quote_collateral.json",
    )?)?)?;
    let intel_v = DcapVerifier::intel();
    let intel_at = 1_751_624_191;
    let intel_full = run(
        threads,
        a.seconds,
        &|| Some(DcapVerifier::intel()),
        &intel_v,
        &intel_quote,
        &intel_coll,
        intel_at,
    )?;
    let intel = run(
        threads,
        a.seconds,
        &|| None,
        &intel_v,
        &intel_quote,
        &intel_coll,
        intel_at,
    )?;
    let pki = TestPki::new();
    let coll = Collateral::from_json(&pki.collateral_json(&CollateralOptions::current()))?;
    let quote = pki.quote(&TdFields::default());
    let root = pki.root_der();
    let minted = run(
        threads,
        a.seconds,
        &|| None,
        &DcapVerifier::with_root(root.clone()),
        &quote,
        &coll,
        now(),
    )?;
    let per_core = |r: f64| r / threads as f64;
    if a.json {
        println!(
            "{}",
            serde_json::json!({"threads": threads, "seconds": a.seconds,
                "intel_quote_full_per_s": intel_full, "intel_quote_full_per_s_per_core": per_core(intel_full),
                "intel_quote_per_s": intel, "intel_quote_per_s_per_core": per_core(intel),
                "minted_quote_per_s": minted, "minted_quote_per_s_per_core": per_core(minted),
                "target_per_s_per_core": 1000})
        );
    } else {
        println!("DCAP quote verification (dcap-qvl, collateral cached, {threads} threads)");
        println!(
            "  first quote of a TD (full DCAP: chain, CRLs, TCB info, QE identity, QE report, quote)"
        );
        println!(
            "    Intel-signed TDX v4 quote {intel_full:.0}/s = {:.0}/s/core",
            per_core(intel_full)
        );
        println!("  steady state (TD already verified: quote signature + cached outcome)");
        println!(
            "    Intel-signed TDX v4 quote {intel:.0}/s = {:.0}/s/core ({:.2}x the 1000/s/core target)",
            per_core(intel),
            per_core(intel) / 1000.0
        );
        println!(
            "    test-PKI TDX v4 quote     {minted:.0}/s = {:.0}/s/core ({:.2}x)",
            per_core(minted),
            per_core(minted) / 1000.0
        );
    }
    Ok(())
}
