//! GPU evidence on a TD with NVIDIA GPUs in confidential-computing mode: for every device,
//! an SPDM attestation report answering the handshake's nonce and the device's
//! attestation certificate chain, sent as upstream guest-components sends them
//! (`additional_evidence` = `{"nvidia": {"device_evidence_list": [...]}}`).
//!
//! The devices are reached through a [`GpuDevices`] implementation: the NVIDIA driver
//! (NVML's confidential-computing calls) on a real system, a fake in tests.

use base64::Engine;
use serde_json::json;

use crate::ClientError;

/// One attestable device.
pub trait GpuDevice: Send + Sync {
    /// `HOPPER`, `BLACKWELL` or `LS10`.
    fn arch(&self) -> &str;
    /// Device UUID (`unknown` when the driver does not say).
    fn uuid(&self) -> String;
    /// A signed report answering `nonce` (NVML takes exactly 32 bytes).
    fn attestation_report(&self, nonce: &[u8; 32]) -> Result<Vec<u8>, ClientError>;
    /// The attestation certificate chain, PEM, leaf first.
    fn attestation_cert_chain(&self) -> Result<Vec<u8>, ClientError>;
}

/// Finds the attestable devices (GPUs first, then NVSwitches).
pub trait GpuDevices: Send + Sync {
    /// The devices; empty when the machine has none in CC mode.
    fn devices(&self) -> Result<Vec<Box<dyn GpuDevice>>, ClientError>;
}

/// The SPDM nonce for `report_data` (the runtime-data hash without additional evidence):
/// its first 32 bytes, zero-padded when shorter.
pub fn spdm_nonce(report_data: &[u8]) -> [u8; 32] {
    let mut n = [0u8; 32];
    let k = report_data.len().min(32);
    n[..k].copy_from_slice(&report_data[..k]);
    n
}

/// The `additional_evidence` string for `devices` answering `report_data`; empty when
/// there is no device (as guest-components sends it).
pub fn additional_evidence(
    devices: &dyn GpuDevices,
    report_data: &[u8],
) -> Result<String, ClientError> {
    let list = devices.devices()?;
    if list.is_empty() {
        return Ok(String::new());
    }
    let nonce = spdm_nonce(report_data);
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut entries = Vec::new();
    for d in &list {
        entries.push(json!({
            "arch": d.arch(),
            "uuid": d.uuid(),
            "evidence": b64.encode(d.attestation_report(&nonce)?),
            "certificate": b64.encode(d.attestation_cert_chain()?),
        }));
    }
    Ok(json!({"nvidia": {"device_evidence_list": entries}}).to_string())
}
