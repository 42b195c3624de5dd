//! DCAP quote verification: dcap-qvl with a pinned root and the caller's clock, plus
//! the checks Intel's QVL makes that dcap-qvl leaves out, and precise collateral errors.

use dcap_qvl::{verify::QuoteVerifier, QuoteClaims};

use crate::collateral::{Collateral, CollateralError, CollateralKey, PckCa};
use crate::pem;
use crate::quote::{Quote, QuoteError};

/// Why a quote failed DCAP verification. Every variant is terminal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DcapError {
    /// Not a parsable quote.
    #[error(transparent)]
    Quote(#[from] QuoteError),
    /// The collateral is unusable at the verification time.
    #[error(transparent)]
    Collateral(#[from] CollateralError),
    /// The quote's PCK chain cannot be read.
    #[error("PCK certificate chain: {0}")]
    PckChain(String),
    /// The collateral was issued for another platform.
    #[error("collateral mismatch: {0}")]
    CollateralMismatch(String),
    /// Signature, chain, revocation or TCB evaluation failed.
    #[error("quote rejected: {0}")]
    Rejected(String),
}

/// Verifies quotes against one trust anchor.
#[derive(Clone)]
pub struct DcapVerifier {
    root_der: Vec<u8>,
}

impl std::fmt::Debug for DcapVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DcapVerifier").finish_non_exhaustive()
    }
}

/// A successful verification: dcap-qvl's claims (TCB verdict, PCK identity, dates).
#[derive(Debug, Clone)]
pub struct Verified {
    /// The DCAP result.
    pub claims: QuoteClaims,
}

/// Which collateral a quote needs (TEE, FMSPC, PCK CA), read from its PCK leaf.
pub fn collateral_key(quote: &Quote<'_>) -> Result<CollateralKey, DcapError> {
    let leaf = leaf_der(quote)?;
    let ext = dcap_qvl::intel::parse_pck_extension(&leaf)
        .map_err(|e| DcapError::PckChain(format!("PCK leaf SGX extension: {e:#}")))?;
    let issuer = pem::issuer_cn(&leaf).unwrap_or_default();
    let ca = if issuer.contains("Processor") {
        PckCa::Processor
    } else if issuer.contains("Platform") {
        PckCa::Platform
    } else {
        return Err(DcapError::PckChain(format!(
            "PCK leaf issuer {issuer:?} is neither a Platform nor a Processor CA"
        )));
    };
    Ok(CollateralKey {
        tee: if quote.is_tdx() { "TDX" } else { "SGX" },
        fmspc: hex::encode_upper(ext.fmspc),
        ca,
    })
}

/// DER of the PCK leaf certificate in the quote.
pub fn leaf_der(quote: &Quote<'_>) -> Result<Vec<u8>, DcapError> {
    pem::certificates(quote.pck_chain_pem())
        .into_iter()
        .next()
        .ok_or_else(|| DcapError::PckChain("no certificate in the quote's PCK chain".into()))
}

impl DcapVerifier {
    /// Verifier anchored at the Intel SGX Root CA.
    pub fn intel() -> Self {
        Self::with_root(crate::INTEL_SGX_ROOT_CA_DER.to_vec())
    }

    /// Verifier anchored at another root (tests, private PKI).
    pub fn with_root(root_der: Vec<u8>) -> Self {
        DcapVerifier { root_der }
    }

    /// Verifies `raw` with `collateral` at unix time `now`.
    ///
    /// Debug TDs and service-TD bindings are accepted here and reported in the claims:
    /// policy decides on them, as in Trustee. Revoked TCBs, signature and chain failures,
    /// and collateral outside its window always fail.
    pub fn verify(
        &self,
        raw: &[u8],
        collateral: &Collateral,
        now: i64,
    ) -> Result<Verified, DcapError> {
        let quote = Quote::parse(raw)?;
        collateral.check_time(now)?;
        let want = collateral_key(&quote)?;
        let have = collateral.key()?;
        if want != have {
            return Err(DcapError::CollateralMismatch(format!(
                "quote needs {want}, collateral is for {have}"
            )));
        }
        self.intel_name_checks(&quote)?;
        let v = QuoteVerifier::new(self.root_der.clone())
            .allow_debug(true)
            .allow_service_td(true);
        let now = u64::try_from(now).map_err(|_| DcapError::Rejected("time before 1970".into()))?;
        let claims = v
            .verify_with_policy(
                quote.bytes(),
                collateral.as_dcap(),
                now,
                &dcap_qvl::QuotePolicy::claims_only(now),
            )
            .map_err(|e| DcapError::Rejected(format!("{e:#}")))?;
        let tcb_pce_id = tcb_info_pce_id(collateral)?;
        if !tcb_pce_id.eq_ignore_ascii_case(&hex::encode(&claims.platform.pck.pce_id)) {
            return Err(DcapError::CollateralMismatch(format!(
                "TCB info pceId {tcb_pce_id} differs from the PCK certificate's"
            )));
        }
        Ok(Verified { claims })
    }

    /// Intel QVL's name checks on the PCK leaf (dcap-qvl does not make them).
    fn intel_name_checks(&self, quote: &Quote<'_>) -> Result<(), DcapError> {
        let leaf = leaf_der(quote)?;
        let cn = pem::subject_cn(&leaf).unwrap_or_default();
        if !cn.contains("SGX PCK Certificate") {
            return Err(DcapError::PckChain(format!(
                "PCK leaf subject {cn:?} is not an SGX PCK Certificate"
            )));
        }
        Ok(())
    }
}

fn tcb_info_pce_id(c: &Collateral) -> Result<String, DcapError> {
    let v: serde_json::Value = serde_json::from_str(&c.as_dcap().tcb_info)
        .map_err(|e| CollateralError::Malformed(format!("TCB info: {e}")))?;
    Ok(v.get("pceId")
        .and_then(|x| x.as_str())
        .unwrap_or("0000")
        .to_string())
}
