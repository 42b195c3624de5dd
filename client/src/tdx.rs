//! TDX evidence inside a TD: a quote from configfs-tsm (`/sys/kernel/config/tsm/report`)
//! carrying the handshake's REPORTDATA, plus the CC event log (ACPI CCEL and the
//! Attestation-Agent runtime log) when present.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use coffer_protocol::b64;
use serde_json::{json, Value};

use crate::evidence::EvidenceProvider;
use crate::ClientError;

/// Default configfs-tsm report directory.
pub const TSM_REPORT_DIR: &str = "/sys/kernel/config/tsm/report";
/// Default CCEL log area exposed by Linux.
pub const CCEL_PATH: &str = "/sys/firmware/acpi/tables/data/CCEL";
/// Default Attestation-Agent event log.
pub const AAEL_PATH: &str = "/run/attestation-agent/eventlog";
/// Legacy TDX guest device.
pub const TDX_GUEST_DEV: &str = "/dev/tdx_guest";

/// Where the TD's interfaces live (overridable for tests and unusual mounts).
#[derive(Debug, Clone)]
pub struct TdxPaths {
    /// configfs-tsm report directory.
    pub tsm_report_dir: PathBuf,
    /// CCEL log area.
    pub ccel: PathBuf,
    /// AAEL runtime event log.
    pub aael: PathBuf,
    /// Legacy TDX guest device (used when configfs-tsm is absent).
    pub tdx_guest: PathBuf,
}

impl Default for TdxPaths {
    fn default() -> Self {
        TdxPaths {
            tsm_report_dir: TSM_REPORT_DIR.into(),
            ccel: CCEL_PATH.into(),
            aael: AAEL_PATH.into(),
            tdx_guest: TDX_GUEST_DEV.into(),
        }
    }
}

impl TdxPaths {
    /// Whether this machine looks like a TD.
    pub fn detect(&self) -> bool {
        self.tsm_report_dir.is_dir() || self.tdx_guest.exists()
    }
}

/// The `tdx` evidence provider.
pub struct TdxEvidence {
    paths: TdxPaths,
}

impl TdxEvidence {
    /// Provider using `paths`.
    pub fn new(paths: TdxPaths) -> Self {
        TdxEvidence { paths }
    }
}

fn err(msg: impl Into<String>) -> ClientError {
    ClientError::Evidence(msg.into())
}

/// REPORTDATA for a digest: right-padded with zeros to 64 bytes; longer input is refused.
pub fn report_data_block(digest: &[u8]) -> Result<[u8; 64], ClientError> {
    if digest.len() > 64 {
        return Err(err(format!(
            "report data is {} bytes; TDX REPORTDATA holds at most 64",
            digest.len()
        )));
    }
    let mut out = [0u8; 64];
    out[..digest.len()].copy_from_slice(digest);
    Ok(out)
}

/// Removes the configfs entry when the request ends, whatever happened.
struct Entry(PathBuf);

impl Drop for Entry {
    fn drop(&mut self) {
        // On configfs rmdir removes the entry with its attributes; elsewhere it may fail
        // (a test tree), which is harmless.
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn read_attr(entry: &Path, name: &str) -> Result<String, ClientError> {
    let p = entry.join(name);
    // configfs creates attributes together with the directory; allow a short grace for
    // trees populated by a helper process.
    for _ in 0..200 {
        match std::fs::read_to_string(&p) {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => return Err(err(format!("cannot read {}: {e}", p.display()))),
        }
    }
    Err(err(format!(
        "{} does not exist: {} is not a configfs-tsm report directory",
        p.display(),
        entry
            .parent()
            .map(|d| d.display().to_string())
            .unwrap_or_default()
    )))
}

fn generation(entry: &Path) -> Result<u64, ClientError> {
    let g = read_attr(entry, "generation")?;
    g.trim()
        .parse()
        .map_err(|_| err(format!("configfs-tsm generation {g:?} is not a number")))
}

enum Attempt {
    Done(Vec<u8>),
    Retry(String),
}

fn tsm_attempt(dir: &Path, report_data: &[u8; 64]) -> Result<Attempt, ClientError> {
    let name = format!(
        "coffer-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    );
    let path = dir.join(name);
    std::fs::create_dir(&path).map_err(|e| {
        err(format!(
            "cannot create configfs-tsm entry {}: {e} (configfs mounted at /sys/kernel/config? running as root?)",
            path.display()
        ))
    })?;
    let entry = Entry(path);
    let provider = read_attr(&entry.0, "provider")?;
    if provider.trim() != "tdx_guest" {
        return Err(err(format!(
            "configfs-tsm provider is {:?}, not tdx_guest: this is not a TDX guest",
            provider.trim()
        )));
    }
    let before = generation(&entry.0)?;
    let inblob = entry.0.join("inblob");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&inblob)
        .map_err(|e| err(format!("cannot open {}: {e}", inblob.display())))?;
    f.write_all(report_data).map_err(|e| {
        err(format!(
            "cannot write REPORTDATA to {}: {e}",
            inblob.display()
        ))
    })?;
    drop(f);
    let outblob = entry.0.join("outblob");
    let quote = match std::fs::read(&outblob) {
        Ok(q) => q,
        Err(e) if e.raw_os_error() == Some(16) || e.raw_os_error() == Some(4) => {
            return Ok(Attempt::Retry(format!("{}: {e}", outblob.display())))
        }
        Err(e) if e.raw_os_error() == Some(5) => {
            return Err(err(format!(
                "quote generation failed ({e}): the host has no quote generation service (QGS)"
            )))
        }
        Err(e) => return Err(err(format!("cannot read {}: {e}", outblob.display()))),
    };
    let after = generation(&entry.0)?;
    if after != before + 1 {
        return Ok(Attempt::Retry(format!(
            "generation moved from {before} to {after}: another writer used the entry"
        )));
    }
    if quote.is_empty() {
        return Err(err(format!("{} is empty", outblob.display())));
    }
    Ok(Attempt::Done(quote))
}

/// A quote over `report_data` from configfs-tsm, retrying on EBUSY and write races.
pub fn tsm_quote(dir: &Path, report_data: &[u8; 64]) -> Result<Vec<u8>, ClientError> {
    if !dir.is_dir() {
        return Err(err(format!(
            "{} does not exist: configfs-tsm is unavailable (Linux >= 6.7 with the tdx_guest driver; mount configfs at /sys/kernel/config)",
            dir.display()
        )));
    }
    let mut last = String::new();
    for attempt in 0..5u64 {
        match tsm_attempt(dir, report_data)? {
            Attempt::Done(q) => return Ok(q),
            Attempt::Retry(why) => {
                last = why;
                std::thread::sleep(Duration::from_millis(50 * (attempt + 1)));
            }
        }
    }
    Err(err(format!(
        "configfs-tsm quote failed after 5 attempts: {last}"
    )))
}

/// A quote from configfs-tsm, or, when the kernel has none, from `/dev/tdx_guest` and the
/// host's quote generation service.
pub fn quote(paths: &TdxPaths, report_data: &[u8; 64]) -> Result<Vec<u8>, ClientError> {
    if !paths.tsm_report_dir.is_dir() && paths.tdx_guest.exists() {
        return crate::tdx_legacy::legacy_quote(&paths.tdx_guest, report_data);
    }
    tsm_quote(&paths.tsm_report_dir, report_data)
}

/// The CC event log to send: trimmed CCEL, then AAEL records, then the 0xFF end marker;
/// `None` when neither exists.
pub fn assemble_event_log(paths: &TdxPaths) -> Result<Option<Vec<u8>>, ClientError> {
    let ccel = match std::fs::read(&paths.ccel) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(err(format!("cannot read {}: {e}", paths.ccel.display()))),
    };
    let aael = match std::fs::read(&paths.aael) {
        Ok(b) if !b.is_empty() => Some(b),
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(err(format!("cannot read {}: {e}", paths.aael.display()))),
    };
    let mut log = match &ccel {
        Some(area) => coffer_tdx::eventlog::trim_log_area(area)
            .map_err(|e| err(format!("{}: {e}", paths.ccel.display())))?
            .to_vec(),
        None if aael.is_some() => coffer_tdx::eventlog::spec_id_header(),
        None => return Ok(None),
    };
    if let Some(a) = aael {
        log.extend_from_slice(&a);
    }
    log.extend_from_slice(&coffer_tdx::eventlog::END_MARKER);
    Ok(Some(log))
}

#[async_trait]
impl EvidenceProvider for TdxEvidence {
    fn tee(&self) -> coffer_protocol::Tee {
        coffer_protocol::Tee::Tdx
    }

    async fn evidence(&self, report_data: &[u8]) -> Result<Value, ClientError> {
        let block = report_data_block(report_data)?;
        let paths = self.paths.clone();
        let (quote, log) = tokio::task::spawn_blocking(move || {
            let q = quote(&paths, &block)?;
            let l = assemble_event_log(&paths)?;
            Ok::<_, ClientError>((q, l))
        })
        .await
        .map_err(|e| err(format!("quote task failed: {e}")))??;
        Ok(json!({
            "cc_eventlog": log.map(|l| b64::std_encode(&l)),
            "quote": b64::std_encode(&quote),
        }))
    }
}
