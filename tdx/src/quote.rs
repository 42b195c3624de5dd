//! Intel DCAP quote layout (SGX v3, TDX v4 and v5) as byte slices.
//!
//! The parser keeps the quote's own bytes: Trustee's claims are hex of stored bytes, so
//! there is nothing to gain from decoding integers that the policy never sees as numbers.
//! Every length is checked before use; trailing padding after the signature data is
//! ignored, as real quote buffers carry it.

/// Header length, identical in v3, v4 and v5.
pub const HEADER_LEN: usize = 48;
/// SGX enclave report body length (also the QE report).
pub const SGX_REPORT_LEN: usize = 384;
/// TD report body, TDX 1.0.
pub const TD10_LEN: usize = 584;
/// TD report body, TDX 1.5.
pub const TD15_LEN: usize = 648;
/// TD report body, TDX 1.5 with the extended fields.
pub const TD15EX_LEN: usize = 885;
/// Intel's QE vendor id.
pub const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];
/// TEE type of SGX quotes.
pub const TEE_TYPE_SGX: u32 = 0;
/// TEE type of TDX quotes.
pub const TEE_TYPE_TDX: u32 = 0x81;

/// Why bytes are not a quote this crate understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    /// The buffer ends before a field.
    #[error("quote truncated: {what} needs bytes up to offset {needed}, quote has {len}")]
    Truncated {
        /// Field being read.
        what: &'static str,
        /// End offset required.
        needed: usize,
        /// Bytes available.
        len: usize,
    },
    /// Version / TEE type combination not accepted.
    #[error("unsupported quote version {version} for TEE type {tee_type:#x}")]
    UnsupportedVersion {
        /// Quote version.
        version: u16,
        /// TEE type.
        tee_type: u32,
    },
    /// Attestation key type other than ECDSA P-256.
    #[error("unsupported attestation key type {0} (only 2 = ECDSA P-256)")]
    KeyType(u16),
    /// A v5 body descriptor names an unknown type or a size not matching it.
    #[error("unsupported v5 body type {body_type} with size {size}")]
    BodyType {
        /// Body type.
        body_type: u16,
        /// Declared size.
        size: u32,
    },
    /// Certification data other than type 6 wrapping type 5.
    #[error("unsupported certification data type {0} (expected 6 wrapping 5)")]
    CertificationType(u16),
}

/// Kind of report body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// SGX enclave report (v3 or v5 type 1).
    Sgx,
    /// TD report, TDX 1.0 (v4 or v5 type 2).
    Td10,
    /// TD report, TDX 1.5 (v5 type 3).
    Td15,
    /// TD report, TDX 1.5 with extended fields (v5 type 4).
    Td15Ex,
}

impl BodyKind {
    /// Body length in bytes.
    pub fn size(self) -> usize {
        match self {
            BodyKind::Sgx => SGX_REPORT_LEN,
            BodyKind::Td10 => TD10_LEN,
            BodyKind::Td15 => TD15_LEN,
            BodyKind::Td15Ex => TD15EX_LEN,
        }
    }

    /// Whether this is a TD report.
    pub fn is_td(self) -> bool {
        !matches!(self, BodyKind::Sgx)
    }
}

/// A parsed quote: borrowed slices of the original buffer.
#[derive(Debug, Clone)]
pub struct Quote<'a> {
    raw: &'a [u8],
    version: u16,
    tee_type: u32,
    kind: BodyKind,
    /// v5 only: the 6-byte descriptor.
    descriptor: Option<&'a [u8]>,
    body_start: usize,
    signature_data: &'a [u8],
    qe_auth_data: &'a [u8],
    pck_chain: &'a [u8],
}

fn take<'a>(b: &'a [u8], at: usize, n: usize, what: &'static str) -> Result<&'a [u8], QuoteError> {
    let end = at.checked_add(n).ok_or(QuoteError::Truncated {
        what,
        needed: usize::MAX,
        len: b.len(),
    })?;
    b.get(at..end).ok_or(QuoteError::Truncated {
        what,
        needed: end,
        len: b.len(),
    })
}

fn u16_at(b: &[u8], at: usize, what: &'static str) -> Result<u16, QuoteError> {
    let s = take(b, at, 2, what)?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize, what: &'static str) -> Result<u32, QuoteError> {
    let s = take(b, at, 4, what)?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

impl<'a> Quote<'a> {
    /// Parses `raw`, which may carry trailing padding.
    pub fn parse(raw: &'a [u8]) -> Result<Self, QuoteError> {
        let version = u16_at(raw, 0, "header")?;
        take(raw, 0, HEADER_LEN, "header")?;
        let key_type = u16_at(raw, 2, "header")?;
        let tee_type = u32_at(raw, 4, "header")?;
        let (kind, descriptor, body_start) = match (version, tee_type) {
            (3, TEE_TYPE_SGX) => (BodyKind::Sgx, None, HEADER_LEN),
            (4, TEE_TYPE_TDX) => (BodyKind::Td10, None, HEADER_LEN),
            (5, TEE_TYPE_TDX) | (5, TEE_TYPE_SGX) => {
                let body_type = u16_at(raw, HEADER_LEN, "v5 body descriptor")?;
                let size = u32_at(raw, HEADER_LEN + 2, "v5 body descriptor")?;
                let kind = match body_type {
                    1 => BodyKind::Sgx,
                    2 => BodyKind::Td10,
                    3 => BodyKind::Td15,
                    4 => BodyKind::Td15Ex,
                    _ => return Err(QuoteError::BodyType { body_type, size }),
                };
                if size as usize != kind.size() || kind.is_td() != (tee_type == TEE_TYPE_TDX) {
                    return Err(QuoteError::BodyType { body_type, size });
                }
                let d = take(raw, HEADER_LEN, 6, "v5 body descriptor")?;
                (kind, Some(d), HEADER_LEN + 6)
            }
            _ => return Err(QuoteError::UnsupportedVersion { version, tee_type }),
        };
        if key_type != 2 {
            return Err(QuoteError::KeyType(key_type));
        }
        take(raw, body_start, kind.size(), "report body")?;
        let sig_len_at = body_start + kind.size();
        let sig_len = u32_at(raw, sig_len_at, "signature data length")? as usize;
        let signature_data = take(raw, sig_len_at + 4, sig_len, "signature data")?;
        let raw = &raw[..sig_len_at + 4 + sig_len];

        // signature (64) ‖ attestation key (64) ‖ then certification data.
        let mut at = 128;
        let qe_cert = if version == 3 {
            signature_data
        } else {
            let ty = u16_at(signature_data, at, "certification data type")?;
            if ty != 6 {
                return Err(QuoteError::CertificationType(ty));
            }
            let n = u32_at(signature_data, at + 2, "certification data size")? as usize;
            let inner = take(signature_data, at + 6, n, "QE report certification data")?;
            at = 0;
            inner
        };
        take(qe_cert, at, SGX_REPORT_LEN, "QE report")?;
        at += SGX_REPORT_LEN;
        take(qe_cert, at, 64, "QE report signature")?;
        at += 64;
        let auth_len = u16_at(qe_cert, at, "QE authentication data size")? as usize;
        let qe_auth_data = take(qe_cert, at + 2, auth_len, "QE authentication data")?;
        at += 2 + auth_len;
        let ty = u16_at(qe_cert, at, "PCK certification data type")?;
        if ty != 5 {
            return Err(QuoteError::CertificationType(ty));
        }
        let n = u32_at(qe_cert, at + 2, "PCK certification data size")? as usize;
        let pck_chain = take(qe_cert, at + 6, n, "PCK certificate chain")?;
        Ok(Quote {
            raw,
            version,
            tee_type,
            kind,
            descriptor,
            body_start,
            signature_data,
            qe_auth_data,
            pck_chain,
        })
    }

    /// The quote without trailing padding.
    pub fn bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// Quote version (3, 4 or 5).
    pub fn version(&self) -> u16 {
        self.version
    }

    /// TEE type (0 SGX, 0x81 TDX).
    pub fn tee_type(&self) -> u32 {
        self.tee_type
    }

    /// Whether this is a TDX quote.
    pub fn is_tdx(&self) -> bool {
        self.tee_type == TEE_TYPE_TDX
    }

    /// Body kind.
    pub fn kind(&self) -> BodyKind {
        self.kind
    }

    /// Header field by offset and length (within the 48 bytes).
    pub fn header_field(&self, off: usize, len: usize) -> &'a [u8] {
        &self.raw[off..off + len]
    }

    /// v5 body descriptor: (type bytes, size bytes) as stored.
    pub fn descriptor(&self) -> Option<(&'a [u8], &'a [u8])> {
        self.descriptor.map(|d| (&d[..2], &d[2..6]))
    }

    /// The report body.
    pub fn body(&self) -> &'a [u8] {
        &self.raw[self.body_start..self.body_start + self.kind.size()]
    }

    /// Body field by offset and length; `None` when the body is shorter (older TD report).
    pub fn body_field(&self, off: usize, len: usize) -> Option<&'a [u8]> {
        self.body().get(off..off + len)
    }

    /// Bytes covered by the attestation key's signature.
    pub fn signed_region(&self) -> &'a [u8] {
        &self.raw[..self.body_start + self.kind.size()]
    }

    /// Signature data (signature, key, certification data).
    pub fn signature_data(&self) -> &'a [u8] {
        self.signature_data
    }

    /// QE authentication data.
    pub fn qe_auth_data(&self) -> &'a [u8] {
        self.qe_auth_data
    }

    /// The PEM PCK chain (leaf, intermediate, root), possibly NUL-terminated.
    pub fn pck_chain_pem(&self) -> &'a [u8] {
        self.pck_chain
    }

    /// Offset of REPORTDATA from the start of the quote.
    pub fn report_data_offset(&self) -> usize {
        self.body_start
            + if self.kind.is_td() {
                td::REPORT_DATA
            } else {
                sgx::REPORT_DATA
            }
    }

    /// REPORTDATA (64 bytes) of the body.
    pub fn report_data(&self) -> &'a [u8] {
        let off = self.report_data_offset();
        &self.raw[off..off + 64]
    }

    /// MRCONFIGID (48 bytes) of a TD report; CONFIGID (64 bytes) of an SGX report.
    pub fn config_id(&self) -> &'a [u8] {
        if self.kind.is_td() {
            &self.body()[td::MR_CONFIG_ID..td::MR_CONFIG_ID + 48]
        } else {
            &self.body()[sgx::CONFIG_ID..sgx::CONFIG_ID + 64]
        }
    }

    /// RTMR `i` (0..4) of a TD report.
    pub fn rtmr(&self, i: usize) -> Option<&'a [u8]> {
        if !self.kind.is_td() || i > 3 {
            return None;
        }
        self.body_field(td::RTMR0 + 48 * i, 48)
    }
}

/// Offsets inside a TD report body.
pub mod td {
    /// TEE_TCB_SVN.
    pub const TCB_SVN: usize = 0;
    /// MRSEAM.
    pub const MR_SEAM: usize = 16;
    /// MRSIGNERSEAM.
    pub const MR_SIGNER_SEAM: usize = 64;
    /// SEAMATTRIBUTES.
    pub const SEAM_ATTRIBUTES: usize = 112;
    /// TDATTRIBUTES.
    pub const TD_ATTRIBUTES: usize = 120;
    /// XFAM.
    pub const XFAM: usize = 128;
    /// MRTD.
    pub const MR_TD: usize = 136;
    /// MRCONFIGID.
    pub const MR_CONFIG_ID: usize = 184;
    /// MROWNER.
    pub const MR_OWNER: usize = 232;
    /// MROWNERCONFIG.
    pub const MR_OWNER_CONFIG: usize = 280;
    /// RTMR0 (RTMR1..3 follow, 48 bytes each).
    pub const RTMR0: usize = 328;
    /// REPORTDATA.
    pub const REPORT_DATA: usize = 520;
    /// TEE_TCB_SVN2 (TDX 1.5).
    pub const TEE_TCB_SVN2: usize = 584;
    /// MRSERVICETD (TDX 1.5).
    pub const MR_SERVICETD: usize = 600;
}

/// Offsets inside an SGX report body.
pub mod sgx {
    /// CPUSVN.
    pub const CPU_SVN: usize = 0;
    /// MISCSELECT.
    pub const MISC_SELECT: usize = 16;
    /// ISVEXTPRODID.
    pub const ISV_EXT_PROD_ID: usize = 32;
    /// ATTRIBUTES (flags 8 ‖ xfrm 8).
    pub const ATTRIBUTES: usize = 48;
    /// MRENCLAVE.
    pub const MR_ENCLAVE: usize = 64;
    /// MRSIGNER.
    pub const MR_SIGNER: usize = 128;
    /// CONFIGID.
    pub const CONFIG_ID: usize = 192;
    /// ISVPRODID.
    pub const ISV_PROD_ID: usize = 256;
    /// ISVSVN.
    pub const ISV_SVN: usize = 258;
    /// CONFIGSVN.
    pub const CONFIG_SVN: usize = 260;
    /// ISVFAMILYID.
    pub const ISV_FAMILY_ID: usize = 304;
    /// REPORTDATA.
    pub const REPORT_DATA: usize = 320;
}
