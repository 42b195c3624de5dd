//! The GPU attestation report: an SPDM 1.1 GET_MEASUREMENTS request followed by the
//! MEASUREMENTS response (DSP0274), signed with the device's alias key.
//!
//! Parsed by lengths: fields are checked as they are read and bytes after the signature
//! are ignored (real reports from some drivers carry a trailing zero byte; the signature
//! covers everything before it, so a tail cannot change what was attested).

use crate::opaque::{OpaqueData, OpaqueError};

/// SPDM version 1.1, the only one NVIDIA devices speak in these reports.
pub const SPDM_VERSION_11: u8 = 0x11;
/// GET_MEASUREMENTS request code.
pub const GET_MEASUREMENTS: u8 = 0xE0;
/// MEASUREMENTS response code.
pub const MEASUREMENTS: u8 = 0x60;
/// Length of the GET_MEASUREMENTS request with a signature requested.
pub const REQUEST_LEN: usize = 37;
/// Raw ECDSA P-384 `r‖s` signature length.
pub const SIGNATURE_LEN: usize = 96;
/// SHA-384 digest length (every measurement value).
pub const DIGEST_LEN: usize = 48;

/// Why bytes are not a GPU attestation report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// The buffer ends before a field.
    #[error("GPU report truncated: {what} needs bytes up to offset {needed}, report has {len}")]
    Truncated {
        /// Field being read.
        what: &'static str,
        /// End offset required.
        needed: usize,
        /// Bytes available.
        len: usize,
    },
    /// A fixed header byte has another value.
    #[error("GPU report {what} is {found:#04x}, expected {expected:#04x}")]
    Header {
        /// Which byte.
        what: &'static str,
        /// Value found.
        found: u8,
        /// Value required.
        expected: u8,
    },
    /// A measurement block is malformed.
    #[error("GPU report measurement block {index}: {reason}")]
    Block {
        /// SPDM index of the block (or its position when the index is unreadable).
        index: u8,
        /// What is wrong.
        reason: String,
    },
    /// The measurement record holds another number of blocks than announced.
    #[error("GPU report announces {announced} measurement blocks, record holds {found}")]
    BlockCount {
        /// NumberOfBlocks.
        announced: u8,
        /// Blocks parsed.
        found: usize,
    },
    /// The opaque data is malformed.
    #[error("GPU report opaque data: {0}")]
    Opaque(#[from] OpaqueError),
}

/// One DMTF measurement block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measurement<'a> {
    /// SPDM index (1-based; RIM index + 1).
    pub index: u8,
    /// DMTF value type.
    pub value_type: u8,
    /// The measured value (a SHA-384 digest in every NVIDIA report).
    pub value: &'a [u8],
}

/// A parsed report borrowing the raw bytes.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    raw: &'a [u8],
    signed_len: usize,
    measurements: Vec<Measurement<'a>>,
    opaque: OpaqueData,
}

fn take<'a>(
    raw: &'a [u8],
    at: usize,
    n: usize,
    what: &'static str,
) -> Result<&'a [u8], ReportError> {
    raw.get(at..at + n).ok_or(ReportError::Truncated {
        what,
        needed: at + n,
        len: raw.len(),
    })
}

fn expect(what: &'static str, found: u8, expected: u8) -> Result<(), ReportError> {
    if found == expected {
        Ok(())
    } else {
        Err(ReportError::Header {
            what,
            found,
            expected,
        })
    }
}

fn u16_le(b: &[u8]) -> usize {
    usize::from(u16::from_le_bytes([b[0], b[1]]))
}

impl<'a> Report<'a> {
    /// Parses `raw` strictly: SPDM 1.1, GET_MEASUREMENTS with a signature requested,
    /// MEASUREMENTS with DMTF blocks, opaque TLVs, a 96-byte signature.
    pub fn parse(raw: &'a [u8]) -> Result<Self, ReportError> {
        let req = take(raw, 0, REQUEST_LEN, "GET_MEASUREMENTS request")?;
        expect("request SPDM version", req[0], SPDM_VERSION_11)?;
        expect("request code", req[1], GET_MEASUREMENTS)?;
        // Param1 bit 0: the responder must sign; an unsigned report proves nothing.
        expect("request param1 (signature requested)", req[2] & 1, 1)?;
        let head = take(raw, REQUEST_LEN, 8, "MEASUREMENTS header")?;
        expect("response SPDM version", head[0], SPDM_VERSION_11)?;
        expect("response code", head[1], MEASUREMENTS)?;
        let announced = head[4];
        let record_len =
            usize::from(head[5]) | usize::from(head[6]) << 8 | usize::from(head[7]) << 16;
        let record_at = REQUEST_LEN + 8;
        let record = take(raw, record_at, record_len, "measurement record")?;
        let measurements = parse_blocks(record)?;
        if measurements.len() != usize::from(announced) {
            return Err(ReportError::BlockCount {
                announced,
                found: measurements.len(),
            });
        }
        let mut at = record_at + record_len;
        take(raw, at, 32, "responder nonce")?;
        at += 32;
        let opaque_len = u16_le(take(raw, at, 2, "opaque data length")?);
        at += 2;
        let opaque = OpaqueData::parse(take(raw, at, opaque_len, "opaque data")?)?;
        at += opaque_len;
        take(raw, at, SIGNATURE_LEN, "signature")?;
        Ok(Report {
            raw,
            signed_len: at,
            measurements,
            opaque,
        })
    }

    /// The request nonce the verifier chose (bytes 4..36): the session binding.
    pub fn request_nonce(&self) -> &'a [u8] {
        &self.raw[4..36]
    }

    /// The bytes covered by the signature (request and response up to the signature).
    pub fn signed_bytes(&self) -> &'a [u8] {
        &self.raw[..self.signed_len]
    }

    /// The raw `r‖s` signature (big-endian, 48 + 48 bytes).
    pub fn signature(&self) -> &'a [u8] {
        &self.raw[self.signed_len..self.signed_len + SIGNATURE_LEN]
    }

    /// Measurement blocks in report order.
    pub fn measurements(&self) -> &[Measurement<'a>] {
        &self.measurements
    }

    /// The measurement with SPDM `index`, if present.
    pub fn measurement(&self, index: u8) -> Option<&Measurement<'a>> {
        self.measurements.iter().find(|m| m.index == index)
    }

    /// Decoded opaque data (driver/VBIOS versions, FWID, ...).
    pub fn opaque(&self) -> &OpaqueData {
        &self.opaque
    }
}

fn parse_blocks(record: &[u8]) -> Result<Vec<Measurement<'_>>, ReportError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < record.len() {
        let pos = u8::try_from(out.len() + 1).unwrap_or(u8::MAX);
        let bad = |reason: &str| ReportError::Block {
            index: pos,
            reason: reason.to_string(),
        };
        let head = record
            .get(at..at + 4)
            .ok_or_else(|| bad("truncated header"))?;
        let index = head[0];
        if head[1] != 0x01 {
            return Err(ReportError::Block {
                index,
                reason: format!("measurement specification {:#04x} is not DMTF", head[1]),
            });
        }
        let size = u16_le(&head[2..4]);
        let body = record
            .get(at + 4..at + 4 + size)
            .ok_or_else(|| bad("measurement longer than the record"))?;
        if body.len() < 3 {
            return Err(bad("DMTF measurement shorter than its header"));
        }
        let value_size = u16_le(&body[1..3]);
        if value_size + 3 != size {
            return Err(ReportError::Block {
                index,
                reason: format!("value size {value_size} does not fit measurement size {size}"),
            });
        }
        if out.iter().any(|m: &Measurement<'_>| m.index == index) {
            return Err(ReportError::Block {
                index,
                reason: "index appears twice".into(),
            });
        }
        out.push(Measurement {
            index,
            value_type: body[0],
            value: &body[3..],
        });
        at += 4 + size;
    }
    Ok(out)
}
