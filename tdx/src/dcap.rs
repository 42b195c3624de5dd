//! DCAP quote verification: dcap-qvl with a pinned root and the caller's clock, plus
//! the checks Intel's QVL makes that dcap-qvl leaves out, precise collateral errors, and a
//! per-TD cache of verified outcomes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dcap_qvl::{verify::QuoteVerifier, QuoteClaims};
use sha2::{Digest, Sha256};

use crate::collateral::{Collateral, CollateralError, CollateralKey, PckCa, QuoteTee};
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

/// A successful verification: the TCB verdict, PCK identity and collateral dates.
#[derive(Debug, Clone)]
pub struct Verified {
    /// dcap-qvl's result. Its `report` may come from an earlier quote of the same TD (see
    /// [`DcapVerifier`]); claims about the body are read from the quote itself.
    pub(crate) claims: QuoteClaims,
}

impl Verified {
    /// The PCK's platform instance id (Platform CA certificates only).
    pub fn platform_instance_id(&self) -> Option<[u8; 16]> {
        self.claims.platform.pck.platform_instance_id
    }
}

/// Verifies quotes against one trust anchor.
///
/// Everything in a quote except REPORTDATA and the quote signature is the same for every
/// quote of one TD (header, measurements, attestation key, QE report, PCK chain). After one
/// full DCAP verification the verifier remembers the outcome under a digest of exactly
/// those bytes and of the collateral; a later quote identical outside REPORTDATA only needs
/// its own signature checked with the attestation key that was verified the first time.
/// A remembered outcome is used only inside the validity window of the collateral and
/// certificates it was computed from.
#[derive(Clone)]
pub struct DcapVerifier {
    root_der: Vec<u8>,
    outcomes: Arc<Mutex<HashMap<[u8; 32], CachedOutcome>>>,
    keys: Arc<Mutex<HashMap<[u8; 32], CollateralKey>>>,
}

impl std::fmt::Debug for DcapVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DcapVerifier").finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct CachedOutcome {
    claims: QuoteClaims,
    valid_from: i64,
    valid_until: i64,
}

/// Entries kept at most per cache; a full cache is cleared (TDs re-verify once).
const CACHE_LIMIT: usize = 4096;

fn insert_bounded<V>(m: &Mutex<HashMap<[u8; 32], V>>, k: [u8; 32], v: V) {
    if let Ok(mut m) = m.lock() {
        if m.len() >= CACHE_LIMIT {
            m.clear();
        }
        m.insert(k, v);
    }
}

fn outcome_key(quote: &Quote<'_>, collateral: &Collateral) -> [u8; 32] {
    let signed = quote.signed_region();
    let rd = quote.report_data_offset();
    let mut h = Sha256::new();
    h.update(collateral.fingerprint());
    h.update(&signed[..rd]);
    h.update(&signed[rd + 64..]);
    // Signature data after the 64-byte quote signature: key, QE report, chain.
    h.update(&quote.signature_data()[64..]);
    h.finalize().into()
}

fn quote_signature_ok(quote: &Quote<'_>) -> bool {
    use p256::ecdsa::signature::Verifier;
    let sd = quote.signature_data();
    let mut point = [0u8; 65];
    point[0] = 4;
    point[1..].copy_from_slice(&sd[64..128]);
    let (Ok(key), Ok(sig)) = (
        p256::ecdsa::VerifyingKey::from_sec1_bytes(&point),
        p256::ecdsa::Signature::from_slice(&sd[..64]),
    ) else {
        return false;
    };
    key.verify(quote.signed_region(), &sig).is_ok()
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
        tee: if quote.is_tdx() {
            QuoteTee::Tdx
        } else {
            QuoteTee::Sgx
        },
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
        DcapVerifier {
            root_der,
            outcomes: Arc::new(Mutex::new(HashMap::new())),
            keys: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The trust anchor (DER) quotes must chain to.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// Which collateral `quote` needs; remembered per PCK chain.
    pub fn collateral_key_for(&self, quote: &Quote<'_>) -> Result<CollateralKey, DcapError> {
        let id: [u8; 32] = Sha256::digest(quote.pck_chain_pem()).into();
        if let Some(k) = self.keys.lock().ok().and_then(|m| m.get(&id).cloned()) {
            return Ok(k);
        }
        let k = collateral_key(quote)?;
        insert_bounded(&self.keys, id, k.clone());
        Ok(k)
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
        let ok = outcome_key(&quote, collateral);
        let cached = self.outcomes.lock().ok().and_then(|m| m.get(&ok).cloned());
        if let Some(c) = cached {
            if c.valid_from <= now && now < c.valid_until {
                if !quote_signature_ok(&quote) {
                    return Err(DcapError::Rejected(
                        "quote signature does not verify with the attestation key".into(),
                    ));
                }
                return Ok(Verified { claims: c.claims });
            }
        }
        let claims = self.verify_fully(&quote, collateral, now)?;
        insert_bounded(
            &self.outcomes,
            ok,
            CachedOutcome {
                claims: claims.clone(),
                valid_from: claims.latest_issue_date as i64,
                valid_until: claims.earliest_expiration_date as i64,
            },
        );
        Ok(Verified { claims })
    }

    fn verify_fully(
        &self,
        quote: &Quote<'_>,
        collateral: &Collateral,
        now: i64,
    ) -> Result<QuoteClaims, DcapError> {
        let want = self.collateral_key_for(quote)?;
        let have = collateral.key();
        if want != *have {
            return Err(DcapError::CollateralMismatch(format!(
                "quote needs {want}, collateral is for {have}"
            )));
        }
        intel_name_checks(quote)?;
        let v = QuoteVerifier::new(self.root_der.clone())
            .allow_debug(true)
            .allow_service_td(true);
        let t = u64::try_from(now).map_err(|_| DcapError::Rejected("time before 1970".into()))?;
        let claims = v
            .verify_with_policy(
                quote.bytes(),
                collateral.as_dcap(),
                t,
                &dcap_qvl::QuotePolicy::claims_only(t),
            )
            .map_err(|e| DcapError::Rejected(format!("{e:#}")))?;
        let tcb_pce_id = tcb_info_pce_id(collateral)?;
        if !tcb_pce_id.eq_ignore_ascii_case(&hex::encode(&claims.platform.pck.pce_id)) {
            return Err(DcapError::CollateralMismatch(format!(
                "TCB info pceId {tcb_pce_id} differs from the PCK certificate's"
            )));
        }
        Ok(claims)
    }
}

/// Intel QVL's name check on the PCK leaf (dcap-qvl does not make it).
fn intel_name_checks(quote: &Quote<'_>) -> Result<(), DcapError> {
    let leaf = leaf_der(quote)?;
    let cn = pem::subject_cn(&leaf).unwrap_or_default();
    if !cn.contains("SGX PCK Certificate") {
        return Err(DcapError::PckChain(format!(
            "PCK leaf subject {cn:?} is not an SGX PCK Certificate"
        )));
    }
    Ok(())
}

fn tcb_info_pce_id(c: &Collateral) -> Result<String, DcapError> {
    let v: serde_json::Value = serde_json::from_str(&c.as_dcap().tcb_info)
        .map_err(|e| CollateralError::Malformed(format!("TCB info: {e}")))?;
    Ok(v.get("pceId")
        .and_then(|x| x.as_str())
        .unwrap_or("0000")
        .to_string())
}
