//! GPU and NVSwitch submodules of an attestation token: each device's evidence verified
//! (see [`crate::attestation::gpu`]) and appraised by the device policy of its class
//! (`default_gpu`, `default_switch`), as Trustee appraises `gpu0`, `switch0`, ....

use coffer_protocol::HashAlgorithm;
use serde_json::{Map, Value};

use super::error::{AttestError, PolicyEngineFailure, Unavailable};
use super::snapshot::PolicySnapshot;
use super::{Kbs, KbsError};
use crate::attestation::gpu::{GpuBinding, GpuEvidence};
use crate::attestation::VerifyError;

impl Kbs {
    /// Verifies the guest's GPU evidence and appraises each device; returns the token's
    /// extra submodules (empty without GPU evidence, or with GPU verification off).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn device_submods(
        &self,
        gpus: GpuEvidence,
        tee_pubkey: &Value,
        nonce: &str,
        alg: HashAlgorithm,
        primary_hash: &[u8],
        snapshot: &PolicySnapshot,
        now: i64,
    ) -> Result<Map<String, Value>, KbsError> {
        let mut out = Map::new();
        if gpus.is_empty() {
            return Ok(out);
        }
        let Some(gpu) = self.verifiers.gpu() else {
            tracing::info!(
                "GPU evidence accepted unverified: GPU verification is off (gpu.enabled)"
            );
            return Ok(out);
        };
        let binding = GpuBinding {
            alg,
            nonce,
            tee_pubkey,
            primary_hash,
        };
        let devices = gpu.verify(gpus, &binding, now).await.map_err(|e| match e {
            e @ VerifyError::Unavailable { .. } => {
                KbsError::StorageUnavailable(Unavailable::Verification(e))
            }
            e => KbsError::attest(AttestError::GpuVerification(e)),
        })?;
        for d in devices {
            let (policy, id) = match d.class {
                "switch" => (&snapshot.switch_policy, crate::policy::SWITCH_POLICY_ID),
                _ => (&snapshot.gpu_policy, crate::policy::GPU_POLICY_ID),
            };
            let appraisal = self
                .policies
                .appraise(policy, &d.annotated, snapshot.reference_values.clone())
                .map_err(|source| {
                    KbsError::PolicyEngineError(PolicyEngineFailure::Appraisal {
                        policy: id,
                        source,
                    })
                })?;
            tracing::debug!(submod = %d.submod, policy = id, status = appraisal.status, "device appraised");
            out.insert(d.submod, Value::Object(appraisal.submod(d.annotated)));
        }
        Ok(out)
    }
}
