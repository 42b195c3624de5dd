//! Evidence providers: what the TEE says about itself, bound to the handshake's report data.

use async_trait::async_trait;
use coffer_protocol::{b64, Tee};
use serde_json::{json, Value};

use crate::ClientError;

/// Produces the `primary_evidence` for a TEE.
#[async_trait]
pub trait EvidenceProvider: Send + Sync {
    /// TEE type sent at `/auth`.
    fn tee(&self) -> Tee;
    /// Evidence carrying `report_data` (the runtime-data hash).
    async fn evidence(&self, report_data: &[u8]) -> Result<Value, ClientError>;
}

/// The `sample` TEE (no hardware): development and tests only.
pub struct SampleEvidence;

#[async_trait]
impl EvidenceProvider for SampleEvidence {
    fn tee(&self) -> Tee {
        Tee::Sample
    }

    async fn evidence(&self, report_data: &[u8]) -> Result<Value, ClientError> {
        Ok(json!({"svn": "1", "report_data": b64::std_encode(report_data)}))
    }
}

/// Picks a provider by TEE name. `auto` uses TDX when the machine is a TD (configfs-tsm or
/// /dev/tdx_guest present) and otherwise the development-only `sample` TEE.
pub fn provider(
    tee: &str,
    paths: &crate::tdx::TdxPaths,
) -> Result<Box<dyn EvidenceProvider>, ClientError> {
    match tee {
        "tdx" => Ok(Box::new(crate::tdx::TdxEvidence::new(paths.clone()))),
        "auto" if paths.detect() => Ok(Box::new(crate::tdx::TdxEvidence::new(paths.clone()))),
        "auto" => {
            tracing::warn!("no TEE detected (no configfs-tsm, no /dev/tdx_guest): using the sample TEE, which production policies refuse");
            Ok(Box::new(SampleEvidence))
        }
        "sample" => Ok(Box::new(SampleEvidence)),
        other => Err(ClientError::Evidence(format!(
            "TEE {other:?} is not supported by this client (supported: auto, tdx, sample)"
        ))),
    }
}
