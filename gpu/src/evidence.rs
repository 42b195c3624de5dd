//! The JSON guests send for their GPUs and NVSwitches, in every encoding seen in the field:
//!
//! * upstream guest-components: `{"device_evidence_list": [{arch, uuid, evidence,
//!   certificate}]}` as the `nvidia` entry of `additional_evidence`; `evidence` is base64
//!   of the raw report (hex before late 2025), `certificate` base64 of the PEM chain;
//!   `arch` is `HOPPER`/`BLACKWELL`/`LS10` (`Hopper`/`Blackwell` in older attesters);
//! * NVIDIA's own tools: a bare array of `{arch, nonce, evidence, certificate}`;
//! * Alibaba's attester: `{"evidence_list": [{index, uuid, name, driver_version,
//!   vbios_version, attestation_report, certificate, cc_enabled}], "collection_time"}`
//!   inside the TDX evidence as `gpu_evidence`.

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

/// Most devices accepted in one attestation (8 GPUs and 4 NVSwitches in the largest
/// PPCIe systems, with room to spare); bounds the work an unauthenticated request causes.
pub const MAX_DEVICES: usize = 32;

/// Why the evidence JSON cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    /// Not one of the known shapes.
    #[error("GPU evidence is not in a known shape: {0}")]
    Shape(String),
    /// A device entry is unusable.
    #[error("GPU evidence entry {index}: {reason}")]
    Entry {
        /// Position in the list.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// More devices than [`MAX_DEVICES`].
    #[error("GPU evidence lists {0} devices, at most {MAX_DEVICES} are accepted")]
    TooMany(usize),
}

/// Device architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    /// H100/H200/H800/H20 (GH100).
    Hopper,
    /// B200 and siblings (GB100).
    Blackwell,
    /// NVSwitch (LS10).
    Ls10,
}

impl Arch {
    /// Reads the names attesters send (case as Trustee accepts them).
    pub fn from_wire(s: &str) -> Option<Self> {
        match s {
            "HOPPER" | "Hopper" => Some(Arch::Hopper),
            "BLACKWELL" | "Blackwell" => Some(Arch::Blackwell),
            "LS10" => Some(Arch::Ls10),
            _ => None,
        }
    }

    /// Trustee's claim value (`arch` of its local verifier).
    pub fn claim_name(self) -> &'static str {
        match self {
            Arch::Hopper => "Hopper",
            Arch::Blackwell => "Blackwell",
            Arch::Ls10 => "LS10",
        }
    }

    /// Whether the device is a GPU (EAR class `gpu`) rather than a switch (`switch`).
    pub fn is_gpu(self) -> bool {
        !matches!(self, Arch::Ls10)
    }
}

/// Evidence of one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEvidence {
    /// Architecture (from the entry; Alibaba's attester sends none, Hopper is assumed).
    pub arch: Arch,
    /// Device UUID as the attester reported it (`unknown` when it does not).
    pub uuid: String,
    /// Raw SPDM report.
    pub report: Vec<u8>,
    /// PEM certificate chain, leaf first.
    pub certificate_pem: Vec<u8>,
}

#[derive(Deserialize)]
struct UpstreamEntry {
    arch: String,
    #[serde(default)]
    uuid: Option<String>,
    evidence: String,
    certificate: String,
}

#[derive(Deserialize)]
struct AlibabaEntry {
    #[serde(default)]
    uuid: Option<String>,
    #[serde(default)]
    attestation_report: Option<String>,
    #[serde(default)]
    certificate: Option<String>,
}

/// Hex first (older attesters), then standard base64 (Trustee's order).
fn decode_report(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    hex::decode(s)
        .ok()
        .or_else(|| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .filter(|b| !b.is_empty())
}

/// Base64 of the PEM text (the attesters' encoding), or PEM text itself.
fn decode_chain(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.starts_with("-----BEGIN") {
        return Some(s.as_bytes().to_vec());
    }
    let b = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    b.windows(10).any(|w| w == b"-----BEGIN").then_some(b)
}

fn entry_err(index: usize, reason: impl Into<String>) -> EvidenceError {
    EvidenceError::Entry {
        index,
        reason: reason.into(),
    }
}

fn bounded(list: &[Value]) -> Result<(), EvidenceError> {
    if list.len() > MAX_DEVICES {
        return Err(EvidenceError::TooMany(list.len()));
    }
    Ok(())
}

/// Reads the `nvidia` value of upstream's `additional_evidence` (or NVIDIA's bare array).
pub fn parse_upstream(v: &Value) -> Result<Vec<DeviceEvidence>, EvidenceError> {
    let list = match v {
        Value::Array(a) => a,
        Value::Object(m) => m
            .get("device_evidence_list")
            .and_then(Value::as_array)
            .ok_or_else(|| EvidenceError::Shape("no `device_evidence_list` array".into()))?,
        _ => return Err(EvidenceError::Shape("not an object or array".into())),
    };
    bounded(list)?;
    list.iter()
        .enumerate()
        .map(|(i, e)| {
            let e: UpstreamEntry =
                serde_json::from_value(e.clone()).map_err(|err| entry_err(i, err.to_string()))?;
            let arch = Arch::from_wire(&e.arch)
                .ok_or_else(|| entry_err(i, format!("unknown arch {:?}", e.arch)))?;
            Ok(DeviceEvidence {
                arch,
                uuid: e.uuid.unwrap_or_else(|| "unknown".into()),
                report: decode_report(&e.evidence)
                    .ok_or_else(|| entry_err(i, "`evidence` is neither hex nor base64"))?,
                certificate_pem: decode_chain(&e.certificate)
                    .ok_or_else(|| entry_err(i, "`certificate` is not a (base64) PEM chain"))?,
            })
        })
        .collect()
}

/// Reads Alibaba's `tdx.gpu_evidence`. Entries without a report (`null`) are refused:
/// such a GPU proves nothing, and silently dropping it would hide it from policy.
pub fn parse_alibaba(v: &Value) -> Result<Vec<DeviceEvidence>, EvidenceError> {
    let list = v
        .get("evidence_list")
        .and_then(Value::as_array)
        .ok_or_else(|| EvidenceError::Shape("no `evidence_list` array".into()))?;
    bounded(list)?;
    list.iter()
        .enumerate()
        .map(|(i, e)| {
            let e: AlibabaEntry =
                serde_json::from_value(e.clone()).map_err(|err| entry_err(i, err.to_string()))?;
            let report = e
                .attestation_report
                .as_deref()
                .and_then(decode_report)
                .ok_or_else(|| entry_err(i, "`attestation_report` is missing or not base64"))?;
            let certificate_pem = e
                .certificate
                .as_deref()
                .and_then(decode_chain)
                .ok_or_else(|| entry_err(i, "`certificate` is missing or not a PEM chain"))?;
            // No `arch` field: the leaf's subject names the chip (`GB100 ...` on Blackwell).
            let arch = match crate::chain::leaf_subject_cn(&certificate_pem) {
                Some(cn) if cn.starts_with("GB") => Arch::Blackwell,
                _ => Arch::Hopper,
            };
            Ok(DeviceEvidence {
                arch,
                uuid: e.uuid.unwrap_or_else(|| "unknown".into()),
                report,
                certificate_pem,
            })
        })
        .collect()
}
