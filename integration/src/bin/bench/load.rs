//! The load generator and what it measures: N concurrent clients repeating the full guest
//! flow against a set of URLs, and the servers' CPU time and memory from /proc over the
//! measured window.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer::evidence::{EvidenceProvider, SampleEvidence};
use coffer::{ClientError, KbsClient};
use coffer_integration::tdx_mint::{TdFields, TestPki};
use coffer_protocol::{ResourcePath, TeeKeyPair};

/// One target under load: its URLs (clients spread over them) and its server processes.
pub(crate) struct Target {
    /// What the report calls it.
    pub name: String,
    /// Base URLs, one per replica.
    pub urls: Vec<String>,
    /// Server process ids, whose CPU time and RSS are read from /proc.
    pub pids: Vec<u32>,
    /// Command name of the database server's processes (`postgres`), whose CPU time is
    /// reported separately; the processes are listed when the measured window opens, after
    /// the warm-up has opened the connection pools.
    pub db_process: Option<&'static str>,
}

/// What one measured run found.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Measurement {
    /// Target name.
    pub target: String,
    /// Handshakes completed inside the measured window.
    pub handshakes: u64,
    /// Failed handshakes inside the window.
    pub errors: u64,
    /// The first failure's message, when there was one.
    pub first_error: Option<String>,
    /// Completed handshakes per second.
    pub handshakes_per_s: f64,
    /// Latency percentiles, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Server CPU time (user + system, every process of the target) per handshake, ms.
    pub server_cpu_ms_per_handshake: f64,
    /// Of which kernel (system) time, ms.
    pub server_sys_ms_per_handshake: f64,
    /// CPU time of the database server processes per handshake, ms (PostgreSQL runs only).
    pub db_cpu_ms_per_handshake: Option<f64>,
    /// Largest RSS of one server process before the load, MiB.
    pub rss_idle_mib: f64,
    /// Largest RSS of one server process under load, MiB.
    pub rss_load_mib: f64,
}

/// Load parameters.
pub(crate) struct Load {
    /// Concurrent clients.
    pub concurrency: usize,
    /// Warm-up before the measured window.
    pub warmup: Duration,
    /// Measured window.
    pub window: Duration,
    /// TDX evidence minted by this PKI, or the sample TEE when `None`.
    pub pki: Option<Arc<TestPki>>,
    /// The resource every handshake fetches.
    pub path: ResourcePath,
}

/// Reads `VmRSS`-style fields (KiB) of a process.
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// (user, system) CPU time of a process, in clock ticks, from /proc/PID/stat.
fn cpu_ticks(pid: u32) -> (u64, u64) {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return (0, 0);
    };
    // The command name may contain spaces and parentheses: fields follow the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of the man page, utime 14 and stime 15.
    let get = |i: usize| fields.get(i - 3).and_then(|v| v.parse().ok()).unwrap_or(0);
    (get(14), get(15))
}

fn ticks_per_second() -> f64 {
    rustix::param::clock_ticks_per_second() as f64
}

/// Every process whose command name is `name` (e.g. PostgreSQL's server and backends).
pub(crate) fn pids_named(name: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .collect()
}

fn total_ticks(pids: &[u32]) -> (u64, u64) {
    pids.iter()
        .map(|p| cpu_ticks(*p))
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// TDX evidence minted in-process over the handshake's REPORTDATA.
struct MintedTdx(Arc<TestPki>);

#[async_trait::async_trait]
impl EvidenceProvider for MintedTdx {
    fn tee(&self) -> coffer_protocol::Tee {
        coffer_protocol::Tee::Tdx
    }

    async fn evidence(&self, report_data: &[u8]) -> Result<serde_json::Value, ClientError> {
        let mut td = TdFields::default();
        let n = report_data.len().min(64);
        td.report_data[..n].copy_from_slice(&report_data[..n]);
        let q = self.0.quote(&td);
        Ok(serde_json::json!({"cc_eventlog": null, "quote": coffer_protocol::b64::std_encode(&q)}))
    }
}

/// One full guest flow: auth, attest, resource GET, JWE decrypt, with a fresh TEE key.
pub(crate) async fn one_handshake(
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

/// Runs the load against `target` and measures it. The CPU time is read at the edges of the
/// measured window and divided by the handshakes that completed inside it, so the figure
/// does not depend on how fast this load generator is.
pub(crate) async fn run(target: &Target, load: &Load) -> anyhow::Result<Measurement> {
    // Fail fast (one clear error) when the target cannot serve a single handshake.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(load.concurrency)
        .build()?;
    for url in &target.urls {
        one_handshake(&http, url, &load.path, load.pki.clone())
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "{}: a first handshake against {url} failed: {e:#}",
                    target.name
                )
            })?;
    }
    let idle_kib = target
        .pids
        .iter()
        .map(|p| status_kib(*p, "VmRSS:"))
        .max()
        .unwrap_or(0);
    let start = Instant::now();
    let warmup_end = start + load.warmup;
    let end = warmup_end + load.window;
    let urls = Arc::new(target.urls.clone());
    let mut tasks = Vec::new();
    for worker in 0..load.concurrency {
        let (http, urls, path, pki) = (
            http.clone(),
            urls.clone(),
            load.path.clone(),
            load.pki.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut first_error = None;
            let mut n = worker;
            loop {
                let t = Instant::now();
                if t >= end {
                    break;
                }
                n += 1;
                let result = one_handshake(&http, &urls[n % urls.len()], &path, pki.clone()).await;
                let done = Instant::now();
                if done >= warmup_end && done < end {
                    match result {
                        Ok(()) => lat.push(done - t),
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert_with(|| format!("{e:#}"));
                        }
                    }
                }
            }
            (lat, errors, first_error)
        }));
    }
    tokio::time::sleep_until(warmup_end.into()).await;
    let cpu_start = total_ticks(&target.pids);
    let db_pids = target.db_process.map(pids_named).unwrap_or_default();
    let db_start = total_ticks(&db_pids);
    let mut peak_kib = 0;
    while Instant::now() < end {
        tokio::time::sleep(
            Duration::from_millis(100).min(end.saturating_duration_since(Instant::now())),
        )
        .await;
        for p in &target.pids {
            peak_kib = peak_kib.max(status_kib(*p, "VmRSS:"));
        }
    }
    let cpu_end = total_ticks(&target.pids);
    let db_end = total_ticks(&db_pids);
    let mut lat = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for t in tasks {
        let (l, e, first) = t.await?;
        lat.extend(l);
        errors += e;
        first_error = first_error.or(first);
    }
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3
    };
    let n = lat.len() as u64;
    let per = |ticks: u64| {
        if n == 0 {
            0.0
        } else {
            ticks as f64 / ticks_per_second() * 1e3 / n as f64
        }
    };
    let user = cpu_end.0.saturating_sub(cpu_start.0);
    let sys = cpu_end.1.saturating_sub(cpu_start.1);
    Ok(Measurement {
        target: target.name.clone(),
        handshakes: n,
        errors,
        first_error,
        handshakes_per_s: n as f64 / load.window.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        server_cpu_ms_per_handshake: per(user + sys),
        server_sys_ms_per_handshake: per(sys),
        db_cpu_ms_per_handshake: (!db_pids.is_empty())
            .then(|| per((db_end.0 + db_end.1).saturating_sub(db_start.0 + db_start.1))),
        rss_idle_mib: idle_kib as f64 / 1024.0,
        rss_load_mib: peak_kib as f64 / 1024.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_reads_this_process() {
        // Burn some CPU so utime moves, then check the parser found the fields.
        let mut x = 0u64;
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        assert!(x != 1);
        let (u, _) = cpu_ticks(std::process::id());
        assert!(u > 0);
    }
}
