//! Reference integrity manifests (RIMs): NVIDIA's signed SWID documents (TCG RIM-IM)
//! listing the golden measurements of one driver or VBIOS version.
//!
//! A RIM is checked like NVIDIA's verifier does: the enveloped XML signature (Canonical
//! XML 1.1, ECDSA P-384 / SHA-384) with the signing certificate from `KeyInfo`, and that
//! certificate's chain to the pinned RIM root. Revocation of the RIM chain is
//! [`crate::revocation`]'s; comparing measurements is [`compare`]'s.

pub mod xml;

use base64::Engine;
use openssl::hash::MessageDigest;
use openssl::x509::X509;

use xml::{canonicalize, scope_of, Element, Scope};

/// XML-DSig namespace.
const DSIG_NS: &str = "http://www.w3.org/2000/09/xmldsig#";
const C14N11: &str = "http://www.w3.org/2006/12/xml-c14n11";
const C14N10: &str = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const ECDSA_SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384";
const SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#sha384";

/// Why a RIM is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RimError {
    /// Not XML, or not a RIM.
    #[error("RIM {id}: {reason}")]
    Malformed {
        /// RIM id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// The XML signature does not verify.
    #[error("RIM {id}: signature: {reason}")]
    Signature {
        /// RIM id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// The signing certificate does not chain to the RIM root.
    #[error("RIM {id}: certificate chain: {reason}")]
    Chain {
        /// RIM id.
        id: String,
        /// What is wrong.
        reason: String,
    },
}

/// One golden measurement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Golden {
    /// RIM index (0-based; the report's SPDM index minus one).
    pub index: u32,
    /// Name in the RIM.
    pub name: String,
    /// Whether the measurement is to be compared.
    pub active: bool,
    /// Accepted values.
    pub alternatives: Vec<Vec<u8>>,
}

/// A parsed RIM.
#[derive(Debug, Clone)]
pub struct Rim {
    /// The id it was looked up by.
    pub id: String,
    /// `Meta@colloquialVersion` (driver `550.90.07`, VBIOS `96.00.9F.00.01`).
    pub version: String,
    /// `Meta@FirmwareManufacturerId` (`oemid` claim).
    pub manufacturer_id: Option<String>,
    /// Measurements in document order.
    pub measurements: Vec<Golden>,
    /// `KeyInfo` certificates, signer first.
    pub certs: Vec<X509>,
    root: Element,
}

fn malformed(id: &str, reason: impl Into<String>) -> RimError {
    RimError::Malformed {
        id: id.to_string(),
        reason: reason.into(),
    }
}

fn sig_err(id: &str, reason: impl Into<String>) -> RimError {
    RimError::Signature {
        id: id.to_string(),
        reason: reason.into(),
    }
}

impl Rim {
    /// A RIM with no measurements (the driver side of an NVSwitch comparison).
    pub(crate) fn empty() -> Self {
        Rim {
            id: String::new(),
            version: String::new(),
            manufacturer_id: None,
            measurements: Vec::new(),
            certs: Vec::new(),
            root: Element {
                name: String::new(),
                attrs: Vec::new(),
                children: Vec::new(),
            },
        }
    }

    /// Parses the XML of RIM `id` (structure only; see [`Rim::verify_signature`]).
    pub fn parse(id: &str, text: &str) -> Result<Self, RimError> {
        let root = xml::parse(text).map_err(|e| malformed(id, e.to_string()))?;
        if root.local_name() != "SoftwareIdentity" {
            return Err(malformed(id, "root element is not SoftwareIdentity"));
        }
        let meta = root
            .child("Meta")
            .ok_or_else(|| malformed(id, "no Meta element"))?;
        let version = meta
            .attr("colloquialVersion")
            .ok_or_else(|| malformed(id, "Meta has no colloquialVersion"))?
            .to_string();
        let manufacturer_id = meta
            .attrs
            .iter()
            .find(|(k, _)| k.rsplit(':').next() == Some("FirmwareManufacturerId"))
            .map(|(_, v)| v.clone());
        let payload = root
            .child("Payload")
            .ok_or_else(|| malformed(id, "no Payload element"))?;
        let mut measurements = Vec::new();
        for r in payload.elements().filter(|e| e.local_name() == "Resource") {
            if r.attr("type") != Some("Measurement") {
                continue;
            }
            let index: u32 = r
                .attr("index")
                .and_then(|i| i.parse().ok())
                .ok_or_else(|| malformed(id, "Resource without a numeric index"))?;
            let n: usize = r
                .attr("alternatives")
                .and_then(|i| i.parse().ok())
                .ok_or_else(|| malformed(id, format!("Resource {index} without alternatives")))?;
            let mut alternatives = Vec::new();
            for k in 0..n {
                let want = format!("Hash{k}");
                let value = r
                    .attrs
                    .iter()
                    .find(|(a, _)| a.rsplit(':').next() == Some(want.as_str()))
                    .map(|(_, v)| v)
                    .ok_or_else(|| malformed(id, format!("Resource {index} lacks {want}")))?;
                alternatives.push(
                    hex::decode(value).map_err(|_| {
                        malformed(id, format!("Resource {index} {want} is not hex"))
                    })?,
                );
            }
            measurements.push(Golden {
                index,
                name: r.attr("name").unwrap_or_default().to_string(),
                active: r
                    .attr("active")
                    .is_some_and(|a| a.eq_ignore_ascii_case("true")),
                alternatives,
            });
        }
        if measurements.is_empty() {
            return Err(malformed(id, "no measurements"));
        }
        let certs = signature_element(&root)
            .and_then(|s| s.child("KeyInfo"))
            .and_then(|k| k.child("X509Data"))
            .map(|d| {
                d.elements()
                    .filter(|e| e.local_name() == "X509Certificate")
                    .filter_map(|e| {
                        let b64: String = e.text().split_whitespace().collect();
                        let der = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
                        X509::from_der(&der).ok()
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Rim {
            id: id.to_string(),
            version,
            manufacturer_id,
            measurements,
            certs,
            root,
        })
    }

    /// Verifies the enveloped signature with the first `KeyInfo` certificate's key.
    pub fn verify_signature(&self) -> Result<(), RimError> {
        let id = &self.id;
        let sig =
            signature_element(&self.root).ok_or_else(|| sig_err(id, "no Signature element"))?;
        let signed_info = sig
            .child("SignedInfo")
            .ok_or_else(|| sig_err(id, "no SignedInfo"))?;
        let c14n = signed_info
            .child("CanonicalizationMethod")
            .and_then(|c| c.attr("Algorithm"))
            .unwrap_or_default();
        if c14n != C14N11 && c14n != C14N10 {
            return Err(sig_err(
                id,
                format!("canonicalization {c14n:?} is not supported"),
            ));
        }
        let method = signed_info
            .child("SignatureMethod")
            .and_then(|c| c.attr("Algorithm"))
            .unwrap_or_default();
        if method != ECDSA_SHA384 {
            return Err(sig_err(
                id,
                format!("signature method {method:?} is not ecdsa-sha384"),
            ));
        }
        let refs: Vec<&Element> = signed_info
            .elements()
            .filter(|e| e.local_name() == "Reference")
            .collect();
        let [reference] = refs.as_slice() else {
            return Err(sig_err(id, "exactly one Reference is required"));
        };
        // Only the whole document may be signed: a reference to a fragment would leave
        // the measurements outside the signature.
        if reference.attr("URI") != Some("") {
            return Err(sig_err(
                id,
                "the Reference must cover the whole document (URI=\"\")",
            ));
        }
        let transforms: Vec<&str> = reference
            .child("Transforms")
            .map(|t| t.elements().filter_map(|e| e.attr("Algorithm")).collect())
            .unwrap_or_default();
        if transforms.first() != Some(&ENVELOPED)
            || transforms[1..].iter().any(|t| *t != C14N11 && *t != C14N10)
        {
            return Err(sig_err(
                id,
                format!("unsupported transforms {transforms:?}"),
            ));
        }
        let digest_method = reference
            .child("DigestMethod")
            .and_then(|c| c.attr("Algorithm"))
            .unwrap_or_default();
        if digest_method != SHA384 {
            return Err(sig_err(
                id,
                format!("digest method {digest_method:?} is not sha384"),
            ));
        }
        let b64 = |e: Option<&Element>| {
            let text: String = e
                .map(Element::text)
                .unwrap_or_default()
                .split_whitespace()
                .collect();
            base64::engine::general_purpose::STANDARD.decode(text).ok()
        };
        let want = b64(reference.child("DigestValue"))
            .ok_or_else(|| sig_err(id, "DigestValue is not base64"))?;
        let is_sig = |e: &Element| std::ptr::eq(e, sig);
        let doc = canonicalize(&self.root, &Scope::new(), &is_sig);
        let have = openssl::hash::hash(MessageDigest::sha384(), doc.as_bytes())
            .map_err(|e| sig_err(id, e.to_string()))?;
        if have.as_ref() != want.as_slice() {
            return Err(sig_err(
                id,
                "document digest does not match DigestValue (the RIM was altered)",
            ));
        }
        let sig_scope = scope_of(&scope_of(&Scope::new(), &self.root), sig);
        let si = canonicalize(signed_info, &sig_scope, &|_| false);
        let value = b64(sig.child("SignatureValue"))
            .ok_or_else(|| sig_err(id, "SignatureValue is not base64"))?;
        let signer = self
            .certs
            .first()
            .ok_or_else(|| sig_err(id, "no signing certificate in KeyInfo"))?;
        if !ecdsa_p384_ok(signer, si.as_bytes(), &value) {
            return Err(sig_err(
                id,
                "SignatureValue does not verify with the signing certificate",
            ));
        }
        Ok(())
    }
}

/// The `ds:Signature` child of the root.
fn signature_element(root: &Element) -> Option<&Element> {
    let scope = scope_of(&Scope::new(), root);
    root.elements().find(|e| {
        let s = scope_of(&scope, e);
        e.local_name() == "Signature" && s.get(e.prefix()).map(String::as_str) == Some(DSIG_NS)
    })
}

/// Whether `sig` (raw `r‖s`, 96 bytes) is an ECDSA signature of SHA-384(`data`) by the
/// key of `cert`.
pub(crate) fn ecdsa_p384_ok(cert: &X509, data: &[u8], sig: &[u8]) -> bool {
    let Ok(key) = cert.public_key() else {
        return false;
    };
    crate::signature::verify_raw_p384(&key, data, sig)
}

/// One golden measurement that the report does not reproduce.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mismatch {
    /// RIM index.
    pub index: u32,
    /// Which RIM (`Driver` or `VBIOS`).
    #[serde(rename = "measurementSource")]
    pub source: &'static str,
    /// First golden value (hex).
    #[serde(rename = "goldenValue")]
    pub golden: String,
    /// The report's value (hex; empty when the report lacks the block).
    #[serde(rename = "runtimeValue")]
    pub runtime: String,
}

/// Why two RIMs cannot be compared with a report at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompareError {
    /// An index is active in both RIMs: which one governs is ambiguous.
    #[error("RIM index {0} is active in both the driver and the VBIOS RIM")]
    IndexConflict(u32),
    /// NVDEC0 status is neither disabled (0x55) nor enabled (0xAA).
    #[error("NVDEC0 status {0:#04x} is neither 0x55 nor 0xAA")]
    Nvdec0(u8),
}

/// Index whose measurement depends on NVDEC0 being enabled.
const NVDEC0_INDEX: u32 = 35;

/// Compares the active golden values of the driver and VBIOS RIMs with the report's
/// measurements (`measured(spdm_index)`): RIM index i is SPDM block i + 1; a missing block
/// is a mismatch; index 35 is skipped when NVDEC0 is disabled.
pub fn compare<'m>(
    driver: &Rim,
    vbios: &Rim,
    measured: impl Fn(u32) -> Option<&'m [u8]>,
    nvdec0: Option<u8>,
) -> Result<Vec<Mismatch>, CompareError> {
    for d in driver.measurements.iter().filter(|g| g.active) {
        if vbios
            .measurements
            .iter()
            .any(|v| v.active && v.index == d.index)
        {
            return Err(CompareError::IndexConflict(d.index));
        }
    }
    let mut out = Vec::new();
    for (rim, source) in [(driver, "Driver"), (vbios, "VBIOS")] {
        for g in rim.measurements.iter().filter(|g| g.active) {
            if g.index == NVDEC0_INDEX {
                match nvdec0 {
                    Some(0x55) => continue,
                    Some(0xAA) => {}
                    Some(other) => return Err(CompareError::Nvdec0(other)),
                    None => return Err(CompareError::Nvdec0(0)),
                }
            }
            let runtime = measured(g.index + 1);
            if !runtime.is_some_and(|r| g.alternatives.iter().any(|a| a == r)) {
                out.push(Mismatch {
                    index: g.index,
                    source,
                    golden: g.alternatives.first().map(hex::encode).unwrap_or_default(),
                    runtime: runtime.map(hex::encode).unwrap_or_default(),
                });
            }
        }
    }
    Ok(out)
}

/// Verifies a RIM's `KeyInfo` chain to `root` (dates not checked here; see
/// [`crate::chain`]). Returns (earliest notAfter, latest notBefore) of the chain.
pub fn verify_rim_chain(rim: &Rim, root: &X509) -> Result<(i64, i64), RimError> {
    let pem: Vec<u8> = rim
        .certs
        .iter()
        .filter_map(|c| c.to_pem().ok())
        .flatten()
        .collect();
    let chain = crate::chain::verify_path(&pem, root).map_err(|e| RimError::Chain {
        id: rim.id.clone(),
        reason: e.to_string(),
    })?;
    Ok((chain.not_after, chain.not_before))
}
