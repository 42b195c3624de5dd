//! Evidence providers: what the TEE says about itself, bound to the handshake's report data.

use async_trait::async_trait;
use coffer_protocol::b64;
use serde_json::{json, Value};

use crate::ClientError;

/// Produces the `primary_evidence` for a TEE.
#[async_trait]
pub trait EvidenceProvider: Send + Sync {
    /// TEE name sent at `/auth`.
    fn tee(&self) -> &str;
    /// Evidence carrying `report_data` (the runtime-data hash).
    async fn evidence(&self, report_data: &[u8]) -> Result<Value, ClientError>;
}

/// The `sample` TEE (no hardware): development and tests only.
pub struct SampleEvidence;

#[async_trait]
impl EvidenceProvider for SampleEvidence {
    fn tee(&self) -> &str {
        "sample"
    }

    async fn evidence(&self, report_data: &[u8]) -> Result<Value, ClientError> {
        Ok(json!({"svn": "1", "report_data": b64::std_encode(report_data)}))
    }
}

/// Picks a provider by TEE name (`auto` detects; only `sample` exists so far).
pub fn provider(tee: &str) -> Result<Box<dyn EvidenceProvider>, ClientError> {
    match tee {
        "sample" | "auto" => Ok(Box::new(SampleEvidence)),
        other => Err(ClientError::Evidence(format!(
            "TEE {other:?} is not supported by this client (supported: sample)"
        ))),
    }
}
