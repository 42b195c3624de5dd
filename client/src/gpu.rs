//! GPU evidence on a TD with NVIDIA GPUs in confidential-computing mode: for every device,
//! an SPDM attestation report answering the handshake's nonce and the device's
//! attestation certificate chain, sent as upstream guest-components sends them
//! (`additional_evidence` = `{"nvidia": {"device_evidence_list": [...]}}`).
//!
//! The devices are reached through a [`GpuDevices`] implementation: the NVIDIA driver
//! (NVML's confidential-computing calls) on a real system, a fake in tests.

use std::sync::Arc;

use base64::Engine;
use nvml_wrapper::enums::device::DeviceArchitecture;
use nvml_wrapper::Nvml;
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

/// NVIDIA's driver through NVML (`libnvidia-ml.so`, loaded at run time: machines without
/// NVIDIA's driver have no devices). Hopper and Blackwell GPUs in confidential-computing
/// mode are listed; NVSwitches (reached through NSCQ, not NVML) are not.
pub struct NvmlDevices;

struct NvmlGpu {
    nvml: Arc<Nvml>,
    index: u32,
    arch: &'static str,
    uuid: String,
}

fn nvml_err(index: u32, what: &str, e: impl std::fmt::Display) -> ClientError {
    ClientError::Evidence(format!("GPU {index}: NVML {what}: {e}"))
}

impl GpuDevice for NvmlGpu {
    fn arch(&self) -> &str {
        self.arch
    }

    fn uuid(&self) -> String {
        self.uuid.clone()
    }

    fn attestation_report(&self, nonce: &[u8; 32]) -> Result<Vec<u8>, ClientError> {
        let d = self
            .nvml
            .device_by_index(self.index)
            .map_err(|e| nvml_err(self.index, "device", e))?;
        let r = d
            .confidential_compute_gpu_attestation_report(*nonce)
            .map_err(|e| nvml_err(self.index, "attestation report", e))?;
        Ok(r.attestation_report)
    }

    fn attestation_cert_chain(&self) -> Result<Vec<u8>, ClientError> {
        let d = self
            .nvml
            .device_by_index(self.index)
            .map_err(|e| nvml_err(self.index, "device", e))?;
        // The attestation chain starts at the alias key that signs reports; the plain
        // `certChain` lacks it and cannot verify a report.
        let c = d
            .confidential_compute_gpu_certificate()
            .map_err(|e| nvml_err(self.index, "certificate", e))?;
        Ok(c.attestation_cert_chain)
    }
}

impl GpuDevices for NvmlDevices {
    fn devices(&self) -> Result<Vec<Box<dyn GpuDevice>>, ClientError> {
        let nvml = match Nvml::init() {
            Ok(n) => Arc::new(n),
            Err(e) => {
                tracing::debug!(error = %e, "no NVIDIA driver: no GPU evidence");
                return Ok(Vec::new());
            }
        };
        let count = nvml
            .device_count()
            .map_err(|e| ClientError::Evidence(format!("NVML device count: {e}")))?;
        let mut out: Vec<Box<dyn GpuDevice>> = Vec::new();
        for index in 0..count {
            let d = nvml
                .device_by_index(index)
                .map_err(|e| nvml_err(index, "device", e))?;
            let arch = match d.architecture() {
                Ok(DeviceArchitecture::Hopper) => "HOPPER",
                Ok(DeviceArchitecture::Blackwell) => "BLACKWELL",
                _ => continue,
            };
            if !d.is_cc_enabled().unwrap_or(false) {
                tracing::info!(
                    gpu = index,
                    "GPU not in confidential-computing mode: no evidence sent for it"
                );
                continue;
            }
            let uuid = d.uuid().unwrap_or_else(|_| "unknown".into());
            out.push(Box::new(NvmlGpu {
                nvml: nvml.clone(),
                index,
                arch,
                uuid,
            }));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Fake {
        seen: Arc<Mutex<Vec<[u8; 32]>>>,
    }

    impl GpuDevice for Fake {
        fn arch(&self) -> &str {
            "HOPPER"
        }
        fn uuid(&self) -> String {
            "GPU-x".into()
        }
        fn attestation_report(&self, nonce: &[u8; 32]) -> Result<Vec<u8>, ClientError> {
            self.seen.lock().unwrap().push(*nonce);
            Ok(vec![1, 2, 3])
        }
        fn attestation_cert_chain(&self) -> Result<Vec<u8>, ClientError> {
            Ok(b"-----BEGIN CERTIFICATE-----\n".to_vec())
        }
    }

    struct Two(Arc<Mutex<Vec<[u8; 32]>>>);

    impl GpuDevices for Two {
        fn devices(&self) -> Result<Vec<Box<dyn GpuDevice>>, ClientError> {
            Ok((0..2)
                .map(|_| {
                    Box::new(Fake {
                        seen: self.0.clone(),
                    }) as Box<dyn GpuDevice>
                })
                .collect())
        }
    }

    struct NoDevices;

    impl GpuDevices for NoDevices {
        fn devices(&self) -> Result<Vec<Box<dyn GpuDevice>>, ClientError> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn evidence_answers_the_first_32_bytes_in_upstream_form() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let hash: Vec<u8> = (0..48).collect();
        let s = additional_evidence(&Two(seen.clone()), &hash).unwrap();
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        let list = v["nvidia"]["device_evidence_list"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["arch"], "HOPPER");
        assert_eq!(list[0]["evidence"], "AQID");
        let want: [u8; 32] = core::array::from_fn(|i| i as u8);
        assert_eq!(*seen.lock().unwrap(), vec![want, want]);
        assert_eq!(additional_evidence(&NoDevices, &hash).unwrap(), "");
    }

    #[test]
    fn without_nvidia_driver_there_are_no_devices() {
        // This machine has no libnvidia-ml: NVML cannot load, nothing is sent.
        if Nvml::init().is_err() {
            assert!(NvmlDevices.devices().unwrap().is_empty());
        }
    }
}
