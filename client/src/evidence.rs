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

/// The TEEs this client collects evidence for.
pub const SUPPORTED: [Tee; 2] = [Tee::Tdx, Tee::Sample];

/// Which evidence to collect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeeChoice {
    /// TDX when the machine is a TD (configfs-tsm or /dev/tdx_guest present), otherwise the
    /// development-only `sample` TEE.
    Auto,
    /// This TEE (one of [`SUPPORTED`]).
    Only(Tee),
}

/// The provider `choice` selects; a TEE outside [`SUPPORTED`] is an
/// [`ClientError::Evidence`] error.
pub fn provider(
    choice: TeeChoice,
    paths: &crate::tdx::TdxPaths,
) -> Result<Box<dyn EvidenceProvider>, ClientError> {
    match choice {
        TeeChoice::Only(Tee::Tdx) => Ok(Box::new(crate::tdx::TdxEvidence::new(paths.clone()))),
        TeeChoice::Auto if paths.detect() => {
            Ok(Box::new(crate::tdx::TdxEvidence::new(paths.clone())))
        }
        TeeChoice::Auto => {
            tracing::warn!("no TEE detected (no configfs-tsm, no /dev/tdx_guest): using the sample TEE, which production policies refuse");
            Ok(Box::new(SampleEvidence))
        }
        TeeChoice::Only(Tee::Sample) => Ok(Box::new(SampleEvidence)),
        TeeChoice::Only(other) => Err(ClientError::Evidence(format!(
            "TEE {other} is not supported by this client (supported: auto, tdx, sample)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_supported_tee_gets_its_own_provider() {
        let paths = crate::tdx::TdxPaths {
            tsm_report_dir: "/nonexistent/tsm".into(),
            ccel: "/nonexistent/ccel".into(),
            aael: "/nonexistent/aael".into(),
            tdx_guest: "/nonexistent/tdx_guest".into(),
        };
        for tee in SUPPORTED {
            let p = provider(TeeChoice::Only(tee), &paths).unwrap();
            assert_eq!(p.tee(), tee);
        }
        assert_eq!(
            provider(TeeChoice::Auto, &paths).unwrap().tee(),
            Tee::Sample
        );
        assert!(matches!(
            provider(TeeChoice::Only(Tee::Snp), &paths),
            Err(ClientError::Evidence(_))
        ));
    }
}
