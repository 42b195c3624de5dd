//! DCAP collateral: the four signed items a quote is checked against, their validity
//! window, and assembly from Intel PCS / PCCS responses.

use dcap_qvl::QuoteCollateralV3;
use der::Decode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Digest;

/// Why collateral is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CollateralError {
    /// Not the expected JSON / DER.
    #[error("malformed collateral: {0}")]
    Malformed(String),
    /// One piece is outside its validity window at the verification time.
    #[error("collateral expired: {piece} is valid {not_before} .. {not_after}, verification time is {at}")]
    Expired {
        /// Which piece ("TCB info", "QE identity", "PCK CRL", "root CA CRL").
        piece: &'static str,
        /// Start of its window (RFC 3339).
        not_before: String,
        /// End of its window (RFC 3339).
        not_after: String,
        /// Verification time (RFC 3339).
        at: String,
    },
}

/// Which PCK CA issued the leaf; selects the PCK CRL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PckCa {
    /// "Intel SGX PCK Platform CA".
    Platform,
    /// "Intel SGX PCK Processor CA".
    Processor,
}

impl PckCa {
    /// Name used in PCS URLs (`ca=platform`).
    pub fn as_str(self) -> &'static str {
        match self {
            PckCa::Platform => "platform",
            PckCa::Processor => "processor",
        }
    }
}

/// The enclave type a quote and its collateral are for, in Intel's vocabulary (TCB info `id`,
/// PCS paths), which is not the KBS protocol's `tee`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuoteTee {
    /// A TD quote (v4 with a TD report, or v5).
    Tdx,
    /// An SGX enclave quote.
    Sgx,
}

impl QuoteTee {
    /// The TCB info `id` (`TDX`, `SGX`), also used in collateral cache keys.
    pub fn pcs_id(self) -> &'static str {
        match self {
            QuoteTee::Tdx => "TDX",
            QuoteTee::Sgx => "SGX",
        }
    }

    /// The path segment of Intel's PCS and PCCS APIs (`tdx`, `sgx`).
    pub fn pcs_path(self) -> &'static str {
        match self {
            QuoteTee::Tdx => "tdx",
            QuoteTee::Sgx => "sgx",
        }
    }
}

impl std::fmt::Display for QuoteTee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.pcs_id())
    }
}

/// What collateral a quote needs: enclave type, FMSPC and PCK CA.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CollateralKey {
    /// TDX or SGX.
    pub tee: QuoteTee,
    /// 12 upper-case hex digits.
    pub fmspc: String,
    /// PCK CA type.
    pub ca: PckCa,
}

impl std::fmt::Display for CollateralKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} fmspc {} ca {}",
            self.tee,
            self.fmspc,
            self.ca.as_str()
        )
    }
}

/// A validity window in unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Earliest time at which every piece is valid.
    pub not_before: i64,
    /// Latest time at which every piece is valid.
    pub not_after: i64,
}

/// One complete collateral bundle (dcap-qvl's `QuoteCollateralV3` shape), with its
/// validity windows, platform key and fingerprint computed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collateral {
    inner: QuoteCollateralV3,
    pieces: [(&'static str, i64, i64); 4],
    key: CollateralKey,
    fingerprint: [u8; 32],
}

#[derive(Deserialize)]
struct SignedJsonHead {
    id: Option<String>,
    fmspc: Option<String>,
    #[serde(rename = "issueDate")]
    issue_date: String,
    #[serde(rename = "nextUpdate")]
    next_update: String,
}

fn rfc3339(s: &str) -> Result<i64, CollateralError> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp())
        .map_err(|e| CollateralError::Malformed(format!("date {s:?}: {e}")))
}

/// RFC 3339 UTC text of unix seconds.
pub fn fmt_time(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| t.to_string())
}

fn crl_window(der_bytes: &[u8], piece: &str) -> Result<(i64, i64), CollateralError> {
    let crl = <x509_cert::crl::CertificateList>::from_der(der_bytes)
        .map_err(|e| CollateralError::Malformed(format!("{piece}: {e}")))?;
    let this = crl.tbs_cert_list.this_update.to_unix_duration().as_secs() as i64;
    let next = crl
        .tbs_cert_list
        .next_update
        .ok_or_else(|| CollateralError::Malformed(format!("{piece} has no nextUpdate")))?
        .to_unix_duration()
        .as_secs() as i64;
    Ok((this, next))
}

/// First certificate's subject CN in a PEM chain.
fn first_cert_cn(pem_chain: &str) -> Option<String> {
    let der = crate::pem::certificates(pem_chain.as_bytes())
        .into_iter()
        .next()?;
    crate::pem::subject_cn(&der)
}

impl Collateral {
    /// Wraps collateral after checking that its JSON and CRLs parse.
    pub fn new(inner: QuoteCollateralV3) -> Result<Self, CollateralError> {
        let pieces = Self::compute_pieces(&inner)?;
        let key = Self::compute_key(&inner)?;
        let json = serde_json::to_vec(&inner).unwrap_or_default();
        let fingerprint = sha2::Sha256::digest(&json).into();
        Ok(Collateral {
            inner,
            pieces,
            key,
            fingerprint,
        })
    }

    /// SHA-256 of the bundle's JSON form: identifies it in verification caches.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// Parses dcap-qvl's JSON form (hex CRLs and signatures, raw signed JSON text).
    pub fn from_json(text: &str) -> Result<Self, CollateralError> {
        let inner: QuoteCollateralV3 =
            serde_json::from_str(text).map_err(|e| CollateralError::Malformed(e.to_string()))?;
        Self::new(inner)
    }

    /// The JSON form, as accepted by [`Collateral::from_json`].
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.inner).unwrap_or_default()
    }

    /// The dcap-qvl value.
    pub fn as_dcap(&self) -> &QuoteCollateralV3 {
        &self.inner
    }

    fn head(text: &str, what: &str) -> Result<SignedJsonHead, CollateralError> {
        serde_json::from_str(text).map_err(|e| CollateralError::Malformed(format!("{what}: {e}")))
    }

    /// (piece, not_before, not_after) for the four signed items.
    fn compute_pieces(
        inner: &QuoteCollateralV3,
    ) -> Result<[(&'static str, i64, i64); 4], CollateralError> {
        let tcb = Self::head(&inner.tcb_info, "TCB info")?;
        let qe = Self::head(&inner.qe_identity, "QE identity")?;
        let pck = crl_window(&inner.pck_crl, "PCK CRL")?;
        let root = crl_window(&inner.root_ca_crl, "root CA CRL")?;
        Ok([
            (
                "TCB info",
                rfc3339(&tcb.issue_date)?,
                rfc3339(&tcb.next_update)?,
            ),
            (
                "QE identity",
                rfc3339(&qe.issue_date)?,
                rfc3339(&qe.next_update)?,
            ),
            ("PCK CRL", pck.0, pck.1),
            ("root CA CRL", root.0, root.1),
        ])
    }

    /// Intersection of the validity windows of all four items.
    pub fn window(&self) -> Window {
        let p = self.pieces;
        Window {
            not_before: p.iter().map(|x| x.1).max().unwrap_or(0),
            not_after: p.iter().map(|x| x.2).min().unwrap_or(0),
        }
    }

    /// Checks every item at `now`, naming the first one outside its window.
    pub fn check_time(&self, now: i64) -> Result<(), CollateralError> {
        for (piece, nb, na) in self.pieces {
            if now < nb || now > na {
                return Err(CollateralError::Expired {
                    piece,
                    not_before: fmt_time(nb),
                    not_after: fmt_time(na),
                    at: fmt_time(now),
                });
            }
        }
        Ok(())
    }

    /// Which quotes this bundle serves.
    pub fn key(&self) -> &CollateralKey {
        &self.key
    }

    fn compute_key(inner: &QuoteCollateralV3) -> Result<CollateralKey, CollateralError> {
        let tcb = Self::head(&inner.tcb_info, "TCB info")?;
        let tee = match tcb.id.as_deref() {
            Some("TDX") => QuoteTee::Tdx,
            Some("SGX") | None => QuoteTee::Sgx,
            Some(other) => {
                return Err(CollateralError::Malformed(format!(
                    "TCB info id {other:?} is neither TDX nor SGX"
                )))
            }
        };
        let fmspc = tcb
            .fmspc
            .ok_or_else(|| CollateralError::Malformed("TCB info has no fmspc".into()))?
            .to_ascii_uppercase();
        let cn = first_cert_cn(&inner.pck_crl_issuer_chain).unwrap_or_default();
        let ca = if cn.contains("Processor") {
            PckCa::Processor
        } else if cn.contains("Platform") {
            PckCa::Platform
        } else {
            return Err(CollateralError::Malformed(format!(
                "PCK CRL issuer {cn:?} is neither a Platform nor a Processor CA"
            )));
        };
        Ok(CollateralKey { tee, fmspc, ca })
    }

    /// Assembles collateral from the four PCS / PCCS responses.
    ///
    /// `tcb_response` and `qe_response` are the full response bodies (`{"tcbInfo":…,
    /// "signature":…}`); chains are the (URL-encoded) issuer-chain header values; CRLs are
    /// DER, hex text of DER, or PEM.
    pub fn from_pcs(parts: PcsParts<'_>) -> Result<Self, CollateralError> {
        let (tcb_info, tcb_sig) = signed_member(parts.tcb_response, "tcbInfo")?;
        let (qe_identity, qe_sig) = signed_member(parts.qe_response, "enclaveIdentity")?;
        Self::new(QuoteCollateralV3 {
            pck_crl_issuer_chain: url_decode(parts.pck_crl_chain)?,
            root_ca_crl: crl_der(parts.root_ca_crl)?,
            pck_crl: crl_der(parts.pck_crl)?,
            tcb_info_issuer_chain: url_decode(parts.tcb_chain)?,
            tcb_info,
            tcb_info_signature: tcb_sig,
            qe_identity_issuer_chain: url_decode(parts.qe_chain)?,
            qe_identity,
            qe_identity_signature: qe_sig,
            pck_certificate_chain: None,
        })
    }
}

/// The raw pieces fetched from a PCS / PCCS.
pub struct PcsParts<'a> {
    /// TCB info response body.
    pub tcb_response: &'a str,
    /// `TCB-Info-Issuer-Chain` header.
    pub tcb_chain: &'a str,
    /// QE identity response body.
    pub qe_response: &'a str,
    /// `SGX-Enclave-Identity-Issuer-Chain` header.
    pub qe_chain: &'a str,
    /// PCK CRL body.
    pub pck_crl: &'a [u8],
    /// `SGX-PCK-CRL-Issuer-Chain` header.
    pub pck_crl_chain: &'a str,
    /// Root CA CRL body.
    pub root_ca_crl: &'a [u8],
}

fn url_decode(s: &str) -> Result<String, CollateralError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| CollateralError::Malformed("bad %-escape in issuer chain".into()))?;
            out.push(h);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| CollateralError::Malformed("issuer chain is not UTF-8".into()))
}

fn crl_der(b: &[u8]) -> Result<Vec<u8>, CollateralError> {
    let text = std::str::from_utf8(b).ok().map(str::trim);
    if let Some(t) = text {
        if t.starts_with("-----BEGIN") {
            return crate::pem::blocks(t.as_bytes(), "X509 CRL")
                .into_iter()
                .next()
                .ok_or_else(|| CollateralError::Malformed("empty PEM CRL".into()));
        }
        if !t.is_empty() && t.bytes().all(|c| c.is_ascii_hexdigit()) {
            return hex::decode(t).map_err(|e| CollateralError::Malformed(e.to_string()));
        }
    }
    Ok(b.to_vec())
}

/// Extracts the exact text of `member` (the signed bytes) and the hex `signature`.
fn signed_member(body: &str, member: &str) -> Result<(String, Vec<u8>), CollateralError> {
    let parsed: Value = serde_json::from_str(body)
        .map_err(|e| CollateralError::Malformed(format!("{member} response: {e}")))?;
    let sig = parsed
        .get("signature")
        .and_then(Value::as_str)
        .ok_or_else(|| CollateralError::Malformed(format!("{member} response has no signature")))?;
    let sig = hex::decode(sig).map_err(|e| CollateralError::Malformed(e.to_string()))?;
    let raw = raw_member(body, member)
        .ok_or_else(|| CollateralError::Malformed(format!("response has no {member} object")))?;
    Ok((raw.to_string(), sig))
}

/// The raw text of a top-level object member, found by brace matching (strings aware).
fn raw_member<'a>(body: &'a str, member: &str) -> Option<&'a str> {
    let key = format!("\"{member}\"");
    let at = body.find(&key)? + key.len();
    let rest = &body[at..];
    let open = at + rest.find('{')?;
    let bytes = body.as_bytes();
    let (mut depth, mut in_str, mut esc) = (0usize, false, false);
    for (i, &c) in bytes.iter().enumerate().skip(open) {
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&body[open..=i]);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_member_keeps_exact_text() {
        let body = r#"{"tcbInfo":{"a":"}{","b":{"c":1}},"signature":"00ff"}"#;
        assert_eq!(
            raw_member(body, "tcbInfo"),
            Some(r#"{"a":"}{","b":{"c":1}}"#)
        );
        let (raw, sig) = signed_member(body, "tcbInfo").unwrap();
        assert_eq!(raw, r#"{"a":"}{","b":{"c":1}}"#);
        assert_eq!(sig, vec![0, 0xff]);
    }

    #[test]
    fn url_decoding() {
        assert_eq!(url_decode("a%20b%0A%2B").unwrap(), "a b\n+");
        assert!(url_decode("%zz").is_err());
    }
}
