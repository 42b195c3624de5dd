//! Evidence verification: one [`Verifier`] per TEE type, selected by the `tee` named at
//! `/auth`.

pub mod collateral;
pub mod gpu;
mod sample;
mod tdx;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use coffer_protocol::messages::InitData;
use coffer_protocol::Tee;
use serde_json::Value;

pub use sample::SampleVerifier;
pub use tdx::DcapTeeVerifier;

/// Why evidence was refused.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The evidence does not have the TEE's shape.
    #[error("malformed {tee} evidence: {reason}")]
    Malformed {
        /// TEE type.
        tee: Tee,
        /// What is wrong.
        reason: String,
    },
    /// The evidence is not bound to this handshake (nonce / tee-pubkey).
    #[error("{tee} evidence report_data does not match the runtime data (nonce and tee-pubkey) of this session")]
    ReportDataMismatch {
        /// TEE type.
        tee: Tee,
    },
    /// The evidence is genuine-looking but failed verification (signature, chain,
    /// revocation, TCB, collateral, event log).
    #[error("{tee} evidence rejected: {reason}")]
    Rejected {
        /// TEE type.
        tee: Tee,
        /// Which check failed.
        reason: String,
    },
    /// A service needed for verification (collateral) cannot be reached; retry later.
    #[error("{tee} verification unavailable: {reason}")]
    Unavailable {
        /// TEE type.
        tee: Tee,
        /// What failed.
        reason: String,
    },
    /// The evidence is not bound to the supplied init-data.
    #[error("{tee} evidence does not match the supplied init-data")]
    InitDataMismatch {
        /// TEE type.
        tee: Tee,
    },
}

/// What a verifier needs to check the binding of evidence to the session, and the time.
pub struct Binding<'a> {
    /// The runtime-data hash (unpadded) the evidence must carry.
    pub report_data: &'a [u8],
    /// Init-data from the attestation request, if any.
    pub init_data: Option<&'a InitData>,
    /// Unix seconds of the attestation (the service's clock): collateral, certificates and
    /// CRLs are checked against it.
    pub now: i64,
}

/// Verifies one kind of TEE evidence and turns it into policy claims.
///
/// Contract: `verify` fails unless the evidence is genuine for [`Verifier::tee`] and carries
/// `binding.report_data`; a failure to reach a collateral source is
/// [`VerifyError::Unavailable`] (the caller answers 503 and the guest retries), every other
/// failure is final for this evidence.
#[async_trait]
pub trait Verifier: Send + Sync {
    /// The TEE named at `/auth` that this verifier serves; its name is the claims key.
    fn tee(&self) -> Tee;

    /// Checks `evidence` (the `primary_evidence` value) and its binding; returns the TEE
    /// claims that the attestation policy sees as `input.<tee>`.
    async fn verify(&self, evidence: &Value, binding: &Binding<'_>) -> Result<Value, VerifyError>;
}

/// The verifiers this server accepts, by TEE name, and the GPU verifier for devices
/// attached to them.
#[derive(Clone, Default)]
pub struct Verifiers(
    HashMap<Tee, Arc<dyn Verifier>>,
    Option<Arc<gpu::GpuAttestation>>,
);

impl Verifiers {
    /// The built-in set.
    pub fn builtin() -> Self {
        let mut v = Verifiers::default();
        v.add(Arc::new(SampleVerifier));
        v
    }

    /// Registers a verifier (replacing one for the same TEE).
    pub fn add(&mut self, v: Arc<dyn Verifier>) {
        self.0.insert(v.tee(), v);
    }

    /// Enables GPU evidence verification.
    pub fn set_gpu(&mut self, gpu: Arc<gpu::GpuAttestation>) {
        self.1 = Some(gpu);
    }

    /// The GPU verifier, when GPU verification is on.
    pub fn gpu(&self) -> Option<&Arc<gpu::GpuAttestation>> {
        self.1.as_ref()
    }

    /// The verifier for `tee`.
    pub fn get(&self, tee: Tee) -> Option<&Arc<dyn Verifier>> {
        self.0.get(&tee)
    }

    /// Names of the supported TEEs, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        let mut n: Vec<_> = self.0.keys().map(|t| t.name()).collect();
        n.sort_unstable();
        n
    }
}
