//! The `sample` TEE: no hardware, evidence `{"svn": "1", "report_data": "<base64>"}`.
//! For development and tests only; the default resource policy refuses it.

use async_trait::async_trait;
use coffer_protocol::{b64, Tee};
use serde_json::{json, Value};
use sha2::{Digest, Sha384};

use super::{Binding, Verifier, VerifyError};

/// Verifier for the `sample` TEE.
pub struct SampleVerifier;

fn malformed(reason: impl Into<String>) -> VerifyError {
    VerifyError::Malformed {
        tee: Tee::Sample,
        reason: reason.into(),
    }
}

#[async_trait]
impl Verifier for SampleVerifier {
    fn tee(&self) -> Tee {
        Tee::Sample
    }

    async fn verify(&self, evidence: &Value, binding: &Binding<'_>) -> Result<Value, VerifyError> {
        let obj = evidence
            .as_object()
            .ok_or_else(|| malformed("evidence is not a JSON object"))?;
        let svn = obj
            .get("svn")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("missing string `svn`"))?;
        let report_data = obj
            .get("report_data")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("missing string `report_data`"))?;
        let report_data =
            b64::std_decode(report_data).map_err(|_| malformed("`report_data` is not base64"))?;
        // Trustee's sample attester sends the bare hash; accept it zero-padded to 64 bytes too.
        let expected = binding.report_data;
        let matches = report_data == expected
            || (report_data.len() == 64
                && report_data.starts_with(expected)
                && report_data[expected.len()..].iter().all(|b| *b == 0));
        if !matches {
            return Err(VerifyError::ReportDataMismatch { tee: Tee::Sample });
        }
        if let Some(init) = binding.init_data {
            if let Some(claimed) = obj.get("init_data").and_then(Value::as_str) {
                let digest = hex::encode(Sha384::digest(init.body.as_bytes()));
                if !claimed.eq_ignore_ascii_case(&digest) {
                    return Err(VerifyError::InitDataMismatch { tee: Tee::Sample });
                }
            }
        }
        Ok(json!({
            "debug": false,
            "launch_digest": "abcde",
            "platform_version": {"major": 1, "minor": 4},
            "svn": svn,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binding_is_checked() {
        let hash = vec![5u8; 48];
        let b = Binding {
            report_data: &hash,
            init_data: None,
            now: 0,
        };
        let ok = json!({"svn": "1", "report_data": b64::std_encode(&hash)});
        let claims = SampleVerifier.verify(&ok, &b).await.unwrap();
        assert_eq!(claims["svn"], "1");
        assert_eq!(claims["debug"], false);
        let mut padded = hash.clone();
        padded.resize(64, 0);
        assert!(SampleVerifier
            .verify(
                &json!({"svn": "1", "report_data": b64::std_encode(&padded)}),
                &b
            )
            .await
            .is_ok());
        let mut bad = hash.clone();
        bad[0] ^= 1;
        let e = SampleVerifier
            .verify(
                &json!({"svn": "1", "report_data": b64::std_encode(&bad)}),
                &b,
            )
            .await;
        assert!(matches!(e, Err(VerifyError::ReportDataMismatch { .. })));
        let e = SampleVerifier
            .verify(&json!({"report_data": "x"}), &b)
            .await;
        assert!(matches!(e, Err(VerifyError::Malformed { .. })));
    }
}
