//! The `tdx` and `sgx` verifiers: DCAP quote verification with collateral from the
//! [`CollateralProvider`], session binding, CC event-log replay, Trustee-shaped claims.

use std::sync::Arc;

use async_trait::async_trait;
use coffer_protocol::{b64, Tee};
use coffer_tdx::binding::{config_id_matches, init_data_digest, report_data_matches};
use coffer_tdx::claims::{dcap_claims, sgx_quote_claims, tcb_verification_claim, tdx_quote_claims};
use coffer_tdx::dcap::{DcapError, DcapVerifier};
use coffer_tdx::eventlog::EventLog;
use coffer_tdx::quote::Quote;
use serde_json::Value;

use super::collateral::{CollateralProvider, CollateralSourceError};
use super::{Binding, Verifier, VerifyError};

/// DCAP verifier for one TEE (`tdx` or `sgx`).
pub struct DcapTeeVerifier {
    tee: Tee,
    dcap: DcapVerifier,
    collateral: Arc<CollateralProvider>,
    /// The trust anchor, parsed once: every quote's PCK chain is checked against it before
    /// any collateral is fetched for the quote's platform.
    anchor: openssl::x509::X509,
}

/// Whether the quote's PCK certificates chain, signature by signature, to `anchor`.
///
/// The FMSPC that decides which collateral to fetch comes from the PCK leaf, and `/attest`
/// is unauthenticated: without this check anyone could make the server fetch collateral
/// for platforms they invent. Only signatures are checked here (cheap); dates, CRLs and
/// the rest are DCAP verification's, after collateral is at hand.
fn pck_chain_anchored(chain_pem: &[u8], anchor: &openssl::x509::X509) -> Result<(), PckChainError> {
    use openssl::x509::X509;
    let certs = coffer_tdx::pem::certificates(chain_pem)
        .iter()
        .map(|der| X509::from_der(der))
        .collect::<Result<Vec<_>, _>>()
        .map_err(PckChainError::Parse)?;
    if certs.len() < 2 {
        return Err(PckChainError::Short);
    }
    let signed_by = |cert: &X509, issuer: &X509| {
        issuer
            .public_key()
            .and_then(|k| cert.verify(&k))
            .unwrap_or(false)
    };
    for pair in certs.windows(2) {
        if !signed_by(&pair[0], &pair[1]) {
            return Err(PckChainError::Signature);
        }
    }
    match certs.last() {
        Some(last) if signed_by(last, anchor) => Ok(()),
        _ => Err(PckChainError::Anchor),
    }
}

/// Why a quote's PCK chain was refused before any collateral was fetched.
#[derive(Debug, thiserror::Error)]
enum PckChainError {
    #[error("a PCK chain certificate does not parse")]
    Parse(#[source] openssl::error::ErrorStack),
    #[error("the PCK chain needs the PCK certificate and its CA")]
    Short,
    #[error("the PCK chain's signatures do not verify")]
    Signature,
    #[error("the PCK chain does not lead to the trusted root CA")]
    Anchor,
}

impl DcapTeeVerifier {
    /// The `tdx` verifier; fails when the trust anchor is not a DER certificate.
    pub fn tdx(
        dcap: DcapVerifier,
        collateral: Arc<CollateralProvider>,
    ) -> Result<Self, openssl::error::ErrorStack> {
        Self::named(Tee::Tdx, dcap, collateral)
    }

    fn named(
        tee: Tee,
        dcap: DcapVerifier,
        collateral: Arc<CollateralProvider>,
    ) -> Result<Self, openssl::error::ErrorStack> {
        // Without the anchor the pre-fetch chain check would silently disappear.
        let anchor = openssl::x509::X509::from_der(dcap.root_der())?;
        Ok(DcapTeeVerifier {
            tee,
            dcap,
            collateral,
            anchor,
        })
    }

    /// The `sgx` verifier (quote v3, same chain and collateral logic).
    pub fn sgx(
        dcap: DcapVerifier,
        collateral: Arc<CollateralProvider>,
    ) -> Result<Self, openssl::error::ErrorStack> {
        Self::named(Tee::Sgx, dcap, collateral)
    }

    fn malformed(&self, reason: impl Into<String>) -> VerifyError {
        VerifyError::Malformed {
            tee: self.tee,
            reason: reason.into(),
        }
    }

    fn rejected(&self, reason: impl Into<String>) -> VerifyError {
        VerifyError::Rejected {
            tee: self.tee,
            reason: reason.into(),
        }
    }
}

#[async_trait]
impl Verifier for DcapTeeVerifier {
    fn tee(&self) -> Tee {
        self.tee
    }

    async fn verify(&self, evidence: &Value, binding: &Binding<'_>) -> Result<Value, VerifyError> {
        let quote_b64 = evidence
            .get("quote")
            .and_then(Value::as_str)
            .ok_or_else(|| self.malformed("missing string `quote`"))?;
        let raw =
            b64::std_decode(quote_b64).map_err(|_| self.malformed("`quote` is not base64"))?;
        if raw.is_empty() {
            return Err(self.malformed("`quote` is empty"));
        }
        let quote = Quote::parse(&raw).map_err(|e| self.malformed(e.to_string()))?;
        if quote.is_tdx() != (self.tee == Tee::Tdx) {
            return Err(self.malformed(format!(
                "quote is for TEE type {:#x}, not {}",
                quote.tee_type(),
                self.tee
            )));
        }
        let log_bytes = match evidence.get("cc_eventlog") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(
                b64::std_decode(s).map_err(|_| self.malformed("`cc_eventlog` is not base64"))?,
            ),
            Some(_) => return Err(self.malformed("`cc_eventlog` must be a base64 string")),
        };

        pck_chain_anchored(quote.pck_chain_pem(), &self.anchor)
            .map_err(|why| self.rejected(format!("{why}; no collateral fetched")))?;
        let key = self
            .dcap
            .collateral_key_for(&quote)
            .map_err(|e| self.rejected(e.to_string()))?;
        let t = binding.now;
        let collateral = self.collateral.get(&key, t).await.map_err(|e| match e {
            CollateralSourceError::Unavailable(reason) => VerifyError::Unavailable {
                tee: self.tee,
                reason,
            },
            other => self.rejected(other.to_string()),
        })?;
        let verified = self
            .dcap
            .verify(&raw, &collateral, t)
            .map_err(|e| match e {
                DcapError::Quote(q) => self.malformed(q.to_string()),
                other => self.rejected(other.to_string()),
            })?;

        if !report_data_matches(quote.report_data(), binding.report_data) {
            return Err(VerifyError::ReportDataMismatch { tee: self.tee });
        }
        if let Some(init) = binding.init_data {
            let digest = init_data_digest(&init.body).map_err(|e| self.malformed(e.to_string()))?;
            if !config_id_matches(quote.config_id(), &digest) {
                return Err(VerifyError::InitDataMismatch { tee: self.tee });
            }
        }

        let mut claims = if quote.is_tdx() {
            let log = match &log_bytes {
                Some(b) => {
                    let log = EventLog::parse(b)
                        .map_err(|e| self.malformed(format!("cc_eventlog: {e}")))?;
                    let rtmrs = [0, 1, 2, 3].map(|i| quote.rtmr(i).unwrap_or(&[]));
                    log.check_rtmrs(rtmrs)
                        .map_err(|e| self.rejected(e.to_string()))?;
                    Some(log)
                }
                None => None,
            };
            let pid = verified.platform_instance_id();
            tdx_quote_claims(&quote, log.as_ref(), pid.as_ref().map(|p| &p[..]))
        } else {
            sgx_quote_claims(&quote)
        };
        claims.extend(dcap_claims(&verified));
        claims.insert(
            "tcb_verification".into(),
            tcb_verification_claim(&verified, quote.is_tdx()),
        );
        // Trustee moves these two out of the TEE object (they are in quote.body too).
        claims.remove("report_data");
        claims.remove("init_data");
        Ok(Value::Object(claims))
    }
}
