//! NVIDIA confidential-GPU evidence for coffer: Hopper and Blackwell GPUs and NVSwitches
//! in confidential-computing mode.
//!
//! * [`evidence`]: the JSON guests send (upstream's `additional_evidence`, NVIDIA's
//!   arrays, Alibaba's `gpu_evidence`).
//! * [`report`] / [`opaque`]: the SPDM GET_MEASUREMENTS report and its opaque data.
//! * [`chain`]: the device certificate chain to the pinned NVIDIA Device Identity root,
//!   the FWID it certifies.
//! * [`signature`]: ECDSA P-384 / SHA-384 with raw `r‖s` signatures.
//! * [`revocation`]: certificate status from cached OCSP responses, with their windows.
//! * [`rim`]: reference integrity manifests (signed SWID XML) and measurement comparison.
//! * [`verify`]: the verification procedure and the claims policies see.
//! * [`nras`]: NVIDIA Remote Attestation Service answers, verified.
//!
//! No I/O: collateral (OCSP responses, RIMs) is handed in by the caller, who fetches and
//! caches it; the caller's clock is passed in.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod chain;
pub mod evidence;
pub mod nras;
pub mod opaque;
pub mod report;
pub mod revocation;
pub mod rim;
pub mod signature;
pub mod verify;

/// NVIDIA Device Identity CA (the root of every GPU and NVSwitch device chain).
pub const NVIDIA_DEVICE_ROOT_PEM: &[u8] = include_bytes!("nvidia_device_root.pem");
/// NVIDIA CoRIM signing Root CA (the root of RIM signing chains).
pub const NVIDIA_RIM_ROOT_PEM: &[u8] = include_bytes!("nvidia_rim_root.pem");

#[cfg(test)]
mod tests {
    #[test]
    fn built_in_roots_parse() {
        let v = crate::verify::GpuVerifier::nvidia();
        assert_eq!(
            crate::chain::subject_cn(v.device_root()).as_deref(),
            Some("NVIDIA Device Identity CA")
        );
        assert_eq!(
            crate::chain::subject_cn(v.rim_root()).as_deref(),
            Some("NVIDIA CoRIM signing Root CA")
        );
    }
}
