//! Recording which model an instance loaded in the TD's runtime measurements, the way
//! guest-components' Attestation Agent records runtime events: one AAEL (attestation-agent
//! event log) record appended to `/run/attestation-agent/eventlog` and its SHA-384 digest
//! extended into RTMR3, so the next quote and event log show the event and a verifier can
//! replay it. Alibaba's PAI policy (`pai_default.rego`) reads exactly this event:
//! domain `trustiflux.alibaba.com`, operation `pai/load-model`, content
//! `{"model-id": ..., "hash": ...}`.
//!
//! Two ways, as in a guest:
//! - directly: Linux ≥ 6.16 exposes the TDX measurement registers in sysfs
//!   (`/sys/devices/virtual/misc/tdx_guest/measurements/rtmr3:sha384`); writing a 48-byte
//!   digest there extends RTMR3. coffer then appends the record to the AAEL file itself.
//! - through the Confidential Data Hub's REST API (`POST /aa/aael` with
//!   `{"domain", "operation", "content"}`), where an Attestation Agent already owns the log
//!   (a confidential-containers pod): it extends and logs.

use std::io::Write;
use std::path::{Path, PathBuf};

use coffer_tdx::eventlog::{aael_record, tagged_event, AAEL_MR_INDEX};
use serde::Deserialize;
use sha2::{Digest, Sha384};

use crate::ClientError;

/// Default sysfs directory of the TDX measurement registers (Linux ≥ 6.16).
pub const TSM_MEASUREMENTS_DIR: &str = "/sys/devices/virtual/misc/tdx_guest/measurements";
/// AAEL domain of PAI's model events.
pub const PAI_DOMAIN: &str = "trustiflux.alibaba.com";
/// AAEL operation of PAI's model events.
pub const PAI_LOAD_MODEL: &str = "pai/load-model";

/// The content of a `pai/load-model` event, as PAI's policy reads it.
pub fn load_model_content(model_id: &str, hash: &str) -> String {
    serde_json::json!({"model-id": model_id, "hash": hash}).to_string()
}

/// The RTMR an AAEL event goes to: CC measurement register 4 is RTMR3.
pub fn rtmr_index() -> u32 {
    AAEL_MR_INDEX - 1
}

/// Records an event directly: extends RTMR3 through `measurements_dir` with the event's
/// SHA-384 digest, then appends the record to `aael` (created with its directory if
/// missing) and syncs it. The register goes first, as the Attestation Agent does: a crash
/// in between leaves a log that does not replay (a verifier refuses it) rather than a log
/// claiming an event the register never saw.
pub fn record_direct(
    measurements_dir: &Path,
    aael: &Path,
    domain: &str,
    operation: &str,
    content: &str,
) -> Result<(), ClientError> {
    let err = |m: String| ClientError::Evidence(m);
    let record =
        aael_record(domain, operation, content).map_err(|e| err(format!("AAEL event: {e}")))?;
    let event =
        tagged_event(domain, operation, content).map_err(|e| err(format!("AAEL event: {e}")))?;
    let digest = Sha384::digest(&event);
    let reg = rtmr_path(measurements_dir);
    if !measurements_dir.is_dir() {
        return Err(err(format!(
            "{} does not exist: this kernel cannot extend RTMRs from user space (Linux 6.16 or later with the tdx_guest driver); use --cdh with a Confidential Data Hub instead",
            measurements_dir.display()
        )));
    }
    // One write of exactly 48 bytes: the kernel extends on each write.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&reg)
        .map_err(|e| err(format!("cannot open {}: {e}", reg.display())))?;
    f.write_all(&digest)
        .map_err(|e| err(format!("cannot extend {}: {e}", reg.display())))?;
    drop(f);
    if let Some(dir) = aael.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(aael)
        .map_err(|e| err(format!("cannot open {}: {e}", aael.display())))?;
    log.write_all(&record)
        .and_then(|_| log.sync_data())
        .map_err(|e| err(format!("cannot append to {}: {e}", aael.display())))?;
    Ok(())
}

/// The sysfs attribute of RTMR3's SHA-384 bank.
pub fn rtmr_path(measurements_dir: &Path) -> PathBuf {
    measurements_dir.join(format!("rtmr{}:sha384", rtmr_index()))
}

#[derive(Deserialize)]
struct CdhAnswer {
    success: serde_json::Value,
    #[serde(default)]
    message: Option<String>,
}

/// Records an event through the Confidential Data Hub's REST API at `base_url`
/// (`POST /aa/aael`): its Attestation Agent extends RTMR3 and writes the log.
pub async fn record_via_cdh(
    http: &reqwest::Client,
    base_url: &str,
    domain: &str,
    operation: &str,
    content: &str,
) -> Result<(), ClientError> {
    let url = format!("{}/aa/aael", base_url.trim_end_matches('/'));
    let unreachable = |source| ClientError::CdhUnreachable {
        url: url.clone(),
        source,
    };
    let resp = http
        .post(&url)
        .json(&serde_json::json!({"domain": domain, "operation": operation, "content": content}))
        .send()
        .await
        .map_err(unreachable)?;
    let status = resp.status();
    let body = resp.text().await.map_err(unreachable)?;
    let shown: String = body.chars().take(300).collect();
    if !status.is_success() {
        return Err(ClientError::Cdh {
            url,
            status: status.as_u16(),
            body: shown,
        });
    }
    // api-server-rest answers 200 with {"success":"false","message":...} when the platform
    // or the agent cannot record.
    match serde_json::from_str::<CdhAnswer>(&body) {
        Ok(a) if a.success == "true" || a.success == true => Ok(()),
        Ok(a) => Err(ClientError::Evidence(format!(
            "the Confidential Data Hub at {url} did not record the event: {}",
            a.message.unwrap_or(shown)
        ))),
        Err(_) => Err(ClientError::Evidence(format!(
            "the Confidential Data Hub at {url} answered {shown:?}, not a recording result"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_recording_extends_the_register_and_appends_the_record() {
        let t = tempfile::tempdir().unwrap();
        let mdir = t.path().join("measurements");
        std::fs::create_dir(&mdir).unwrap();
        std::fs::write(rtmr_path(&mdir), b"").unwrap();
        let aael = t.path().join("aa/eventlog");
        let content = load_model_content("qwen", "ab");
        record_direct(&mdir, &aael, PAI_DOMAIN, PAI_LOAD_MODEL, &content).unwrap();
        let ev = tagged_event(PAI_DOMAIN, PAI_LOAD_MODEL, &content).unwrap();
        assert_eq!(
            std::fs::read(rtmr_path(&mdir)).unwrap(),
            Sha384::digest(&ev).to_vec()
        );
        assert_eq!(
            std::fs::read(&aael).unwrap(),
            aael_record(PAI_DOMAIN, PAI_LOAD_MODEL, &content).unwrap()
        );
        assert!(rtmr_path(&mdir).ends_with("rtmr3:sha384"));
        let e = record_direct(&t.path().join("none"), &aael, "d", "o", "c").unwrap_err();
        assert!(e.to_string().contains("--cdh"), "{e}");
    }
}
