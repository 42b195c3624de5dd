//! The device certificate chain (leaf = the alias key that signs reports, then the
//! per-device CA, NVIDIA's provisioner and identity CAs, the Device Identity root): path
//! validation to the pinned root with OpenSSL, the FWID the leaf certifies, and the
//! identity claims NVIDIA derives from the chain.
//!
//! Validity dates are not part of path validation (NVIDIA's verifier does the same): the
//! device certificates run to 9999, and an expiry is reported as a claim for policy.

use der::Decode;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Public};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::{X509StoreContext, X509};

/// TCG DICE TcbInfo (Hopper's FWID carrier).
const OID_TCB_INFO: &str = "2.23.133.5.4.1";
/// TCG DICE multi-TcbInfo (Blackwell's FWID carrier).
const OID_MULTI_TCB_INFO: &str = "2.23.133.5.4.1.1";

/// Why a chain is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The PEM holds no parsable certificate.
    #[error("certificate chain: {0}")]
    Malformed(String),
    /// Fewer certificates than a leaf and its issuer.
    #[error("certificate chain has {0} certificate(s); the attestation certificate and its issuers are needed")]
    TooShort(usize),
    /// Path validation to the pinned root failed.
    #[error("certificate chain does not lead to the pinned NVIDIA Device Identity root: {0}")]
    Untrusted(String),
    /// The leaf carries no FWID extension (it is not a device attestation certificate).
    #[error("attestation certificate {0:?} carries no FWID (TCG DICE TcbInfo) extension")]
    NoFwid(String),
}

/// A chain validated to the root.
#[derive(Debug, Clone)]
pub struct VerifiedChain {
    /// Leaf first, as sent (root included if it was sent).
    pub certs: Vec<X509>,
    /// The leaf's public key (verifies the report).
    pub leaf_key: PKey<Public>,
    /// The FWID the leaf certifies.
    pub fwid: Vec<u8>,
    /// Earliest notAfter of the chain (unix seconds).
    pub not_after: i64,
    /// Latest notBefore of the chain (unix seconds).
    pub not_before: i64,
}

/// The pinned root, parsed.
#[derive(Clone)]
pub struct DeviceRoot(X509);

impl std::fmt::Debug for DeviceRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DeviceRoot")
            .field(&subject_cn(&self.0).unwrap_or_default())
            .finish()
    }
}

impl DeviceRoot {
    /// NVIDIA's Device Identity CA (the production anchor).
    pub fn nvidia() -> Self {
        // The constant is a known-good PEM certificate checked by a unit test.
        Self::from_pem(crate::NVIDIA_DEVICE_ROOT_PEM).expect("built-in NVIDIA root parses")
    }

    /// Another root (tests, private PKIs).
    pub fn from_pem(pem: &[u8]) -> Result<Self, ChainError> {
        X509::from_pem(pem)
            .map(DeviceRoot)
            .map_err(|e| ChainError::Malformed(format!("root certificate: {e}")))
    }

    /// The root certificate.
    pub fn cert(&self) -> &X509 {
        &self.0
    }
}

/// Subject CN of a certificate.
pub fn subject_cn(c: &X509) -> Option<String> {
    c.subject_name()
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .and_then(|e| e.data().to_string().ok())
}

/// Subject CN of the first certificate of a PEM chain.
pub fn leaf_subject_cn(pem: &[u8]) -> Option<String> {
    X509::stack_from_pem(pem).ok()?.first().and_then(subject_cn)
}

fn unix(t: &openssl::asn1::Asn1TimeRef) -> i64 {
    let epoch = openssl::asn1::Asn1Time::from_unix(0).expect("epoch is representable");
    epoch
        .diff(t)
        .map(|d| i64::from(d.days) * 86_400 + i64::from(d.secs))
        .unwrap_or(0)
}

/// A certificate path validated to a root.
#[derive(Debug, Clone)]
pub struct Path {
    /// Leaf first, as sent (root included if it was sent).
    pub certs: Vec<X509>,
    /// Earliest notAfter of the path and root (unix seconds).
    pub not_after: i64,
    /// Latest notBefore of the path and root (unix seconds).
    pub not_before: i64,
}

/// Validates `pem` (leaf first, at least two certificates) to `root` by signatures and
/// X.509 rules, without dates.
pub fn verify_path(pem: &[u8], root: &X509) -> Result<Path, ChainError> {
    let certs = X509::stack_from_pem(pem).map_err(|e| ChainError::Malformed(e.to_string()))?;
    if certs.len() < 2 {
        return Err(ChainError::TooShort(certs.len()));
    }
    let mut store = X509StoreBuilder::new().map_err(|e| ChainError::Malformed(e.to_string()))?;
    store
        .add_cert(root.clone())
        .and_then(|_| store.set_flags(X509VerifyFlags::NO_CHECK_TIME))
        .map_err(|e| ChainError::Malformed(e.to_string()))?;
    let store = store.build();
    let mut untrusted = Stack::new().map_err(|e| ChainError::Malformed(e.to_string()))?;
    for c in &certs[1..] {
        untrusted
            .push(c.clone())
            .map_err(|e| ChainError::Malformed(e.to_string()))?;
    }
    let mut ctx = X509StoreContext::new().map_err(|e| ChainError::Malformed(e.to_string()))?;
    let (ok, why) = ctx
        .init(&store, &certs[0], &untrusted, |c| {
            let ok = c.verify_cert()?;
            Ok((ok, c.error().error_string().to_string()))
        })
        .map_err(|e| ChainError::Untrusted(e.to_string()))?;
    if !ok {
        return Err(ChainError::Untrusted(why));
    }
    // A sent root must be the pinned one, not merely a same-named certificate.
    if let Some(last) = certs.last() {
        let self_signed = last.issued(last) == openssl::x509::X509VerifyResult::OK;
        if self_signed && last.to_der().ok() != root.to_der().ok() {
            return Err(ChainError::Untrusted(
                "the chain ends in a self-signed certificate other than the pinned root".into(),
            ));
        }
    }
    let mut not_after = i64::MAX;
    let mut not_before = i64::MIN;
    for c in certs.iter().chain(std::iter::once(root)) {
        not_after = not_after.min(unix(c.not_after()));
        not_before = not_before.max(unix(c.not_before()));
    }
    Ok(Path {
        certs,
        not_after,
        not_before,
    })
}

/// Validates a device chain `pem` (leaf first) to `root` and extracts the leaf's key and
/// FWID.
pub fn verify_chain(pem: &[u8], root: &DeviceRoot) -> Result<VerifiedChain, ChainError> {
    let Path {
        certs,
        not_after,
        not_before,
    } = verify_path(pem, &root.0)?;
    let leaf = &certs[0];
    let leaf_key = leaf
        .public_key()
        .map_err(|e| ChainError::Malformed(format!("leaf public key: {e}")))?;
    let der = leaf
        .to_der()
        .map_err(|e| ChainError::Malformed(e.to_string()))?;
    let fwid =
        fwid_of(&der).ok_or_else(|| ChainError::NoFwid(subject_cn(leaf).unwrap_or_default()))?;
    Ok(VerifiedChain {
        certs,
        leaf_key,
        fwid,
        not_after,
        not_before,
    })
}

/// The FWID a device certificate certifies: Hopper puts it last in a TcbInfo extension,
/// Blackwell in the first `{hashAlg, digest}` of the 7th element of a multi-TcbInfo.
pub fn fwid_of(cert_der: &[u8]) -> Option<Vec<u8>> {
    let cert = x509_cert::Certificate::from_der(cert_der).ok()?;
    let exts = cert.tbs_certificate().extensions()?;
    for e in exts.iter() {
        let oid = e.extn_id.to_string();
        let value = e.extn_value.as_bytes();
        if oid == OID_TCB_INFO && value.len() >= 48 {
            return Some(value[value.len() - 48..].to_vec());
        }
        if oid == OID_MULTI_TCB_INFO {
            return blackwell_fwid(value);
        }
    }
    None
}

/// One DER TLV: (tag, contents, rest).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)?;
    let (len, hdr) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 3 {
            return None;
        }
        let len = b
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |a, x| a << 8 | usize::from(*x));
        (len, 2 + n)
    };
    let body = b.get(hdr..hdr + len)?;
    Some((tag, body, &b[hdr + len..]))
}

fn blackwell_fwid(value: &[u8]) -> Option<Vec<u8>> {
    // SEQUENCE OF TcbInfo; the first TcbInfo's [6] fwids: SEQUENCE OF {OID, OCTET STRING}.
    let (_, outer, _) = tlv(value)?;
    let (tag, tcb_info, _) = tlv(outer)?;
    let mut fields = if tag == 0x30 { tcb_info } else { outer };
    while !fields.is_empty() {
        let (tag, body, rest) = tlv(fields)?;
        if tag == 0xA6 {
            let (_, first_fwid, _) = tlv(body)?;
            let (_, _alg, after_alg) = tlv(first_fwid)?;
            let (tag, digest, _) = tlv(after_alg)?;
            return (tag == 0x04).then(|| digest.to_vec());
        }
        fields = rest;
    }
    None
}

/// `hwmodel` claim: the CN of the per-device CA (`GH100 A01 GSP BROM`).
pub fn hwmodel(chain: &VerifiedChain) -> Option<String> {
    chain.certs.get(1).and_then(subject_cn)
}

/// `ueid` claim: the leaf's serial number in decimal.
pub fn ueid(chain: &VerifiedChain) -> Option<String> {
    chain.certs[0]
        .serial_number()
        .to_bn()
        .ok()?
        .to_dec_str()
        .ok()
        .map(|s| s.to_string())
}
