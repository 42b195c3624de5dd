//! The report's opaque data: `type(u16 LE) ‖ size(u16 LE) ‖ value` records NVIDIA uses for
//! driver and VBIOS versions, the FWID, NVDEC0 state and the SKU fields that name RIMs.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

/// Why opaque data is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpaqueError {
    /// A record runs past the end.
    #[error("record of type {kind} at offset {offset} runs past the end")]
    Truncated {
        /// Record type.
        kind: u16,
        /// Offset of the record.
        offset: usize,
    },
    /// The same type appears twice: which value would count is ambiguous.
    #[error("record type {0} appears twice")]
    Duplicate(u16),
    /// A record every GPU report carries is absent.
    #[error("record type {kind} ({name}) is missing")]
    Missing {
        /// Record type.
        kind: u16,
        /// Its meaning.
        name: &'static str,
    },
    /// A record has a size its type does not allow.
    #[error("record type {kind} ({name}) has {size} bytes")]
    Size {
        /// Record type.
        kind: u16,
        /// Its meaning.
        name: &'static str,
        /// Size found.
        size: usize,
    },
}

/// Opaque record types (NVIDIA's numbering).
pub mod kind {
    /// Driver version, NUL-padded ASCII.
    pub const DRIVER_VERSION: u16 = 3;
    /// VBIOS version, 8 bytes.
    pub const VBIOS_VERSION: u16 = 6;
    /// NVDEC0 status: 0x55 disabled, 0xAA enabled.
    pub const NVDEC0_STATUS: u16 = 11;
    /// How often each measurement index was extended, 64 × u32 LE.
    pub const MEASUREMENT_COUNT: u16 = 12;
    /// Chip SKU (ASCII).
    pub const CHIP_SKU: u16 = 15;
    /// Project (ASCII).
    pub const PROJECT: u16 = 17;
    /// Project SKU (ASCII).
    pub const PROJECT_SKU: u16 = 18;
    /// FWID of the alias key (48 bytes), also in the leaf certificate.
    pub const FWID: u16 = 20;
    /// Switch PDIs (8 bytes each).
    pub const SWITCH_PDI: u16 = 22;
    /// Opaque data version (LE integer).
    pub const OPAQUE_DATA_VERSION: u16 = 34;
    /// Chip info (ASCII; Blackwell driver RIM id).
    pub const CHIP_INFO: u16 = 35;
    /// Feature flag (LE integer).
    pub const FEATURE_FLAG: u16 = 36;
}

/// How a record is shown to policies (Trustee's claim names and encodings).
enum Shape {
    Hex,
    Ascii,
    Vbios,
    Counts,
    LeInt,
    Pdis,
    /// One byte, lossy UTF-8 as Trustee shows it when valid ASCII, else hex.
    Status,
}

fn describe(kind: u16) -> Option<(&'static str, Shape)> {
    use Shape::*;
    Some(match kind {
        1 => ("cert_issuer_name", Hex),
        2 => ("cert_authority_key_identifier", Hex),
        3 => ("driver_version", Ascii),
        4 => ("gpu_info", Hex),
        5 => ("id_sku", Hex),
        6 => ("vbios_version", Vbios),
        7 => ("manufacturer_id", Hex),
        8 => ("tamper_detection", Hex),
        9 => ("smc", Hex),
        10 => ("vpr", Hex),
        11 => ("nvdec0_status", Status),
        12 => ("measurement_count", Counts),
        13 => ("cpr_info", Hex),
        14 => ("board_id", Hex),
        15 => ("chip_sku", Ascii),
        16 => ("chip_sku_mod", Ascii),
        17 => ("project", Ascii),
        18 => ("project_sku", Ascii),
        19 => ("project_sku_mod", Hex),
        20 => ("fwid", Hex),
        21 => ("protected_pcie_status", Status),
        22 => ("switch_pdi", Pdis),
        23 => ("floorswept_ports", Hex),
        24 => ("position_id", Hex),
        25 => ("lock_switch_status", Hex),
        32 => ("gpu_link_conn", Hex),
        33 => ("sys_enable_status", Hex),
        34 => ("opaque_data_version", LeInt),
        35 => ("chip_info", Ascii),
        36 => ("feature_flag", LeInt),
        _ => return None,
    })
}

/// Decoded opaque records by type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpaqueData {
    records: BTreeMap<u16, Vec<u8>>,
}

fn ascii(v: &[u8]) -> String {
    let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

fn le_int(v: &[u8]) -> u64 {
    v.iter()
        .take(8)
        .rev()
        .fold(0, |acc, b| acc << 8 | u64::from(*b))
}

impl OpaqueData {
    /// Parses the TLV records; duplicates are refused, unknown types kept (shown as
    /// `opaque_<type>` hex).
    pub fn parse(bytes: &[u8]) -> Result<Self, OpaqueError> {
        let mut records = BTreeMap::new();
        let mut at = 0;
        while at + 4 <= bytes.len() {
            let kind = u16::from_le_bytes([bytes[at], bytes[at + 1]]);
            let size = usize::from(u16::from_le_bytes([bytes[at + 2], bytes[at + 3]]));
            let value = bytes
                .get(at + 4..at + 4 + size)
                .ok_or(OpaqueError::Truncated { kind, offset: at })?;
            if records.insert(kind, value.to_vec()).is_some() {
                return Err(OpaqueError::Duplicate(kind));
            }
            at += 4 + size;
        }
        if at != bytes.len() {
            return Err(OpaqueError::Truncated {
                kind: 0,
                offset: at,
            });
        }
        let d = OpaqueData { records };
        if let Some(v) = d.get(kind::VBIOS_VERSION) {
            if v.len() < 5 {
                return Err(OpaqueError::Size {
                    kind: kind::VBIOS_VERSION,
                    name: "VBIOS version",
                    size: v.len(),
                });
            }
        }
        Ok(d)
    }

    /// The raw value of record `kind`.
    pub fn get(&self, kind: u16) -> Option<&[u8]> {
        self.records.get(&kind).map(Vec::as_slice)
    }

    /// ASCII value of record `kind` (NUL-trimmed).
    pub fn ascii(&self, kind: u16) -> Option<String> {
        self.get(kind).map(ascii)
    }

    /// Driver version, e.g. `550.90.07`.
    pub fn driver_version(&self) -> String {
        self.ascii(kind::DRIVER_VERSION).unwrap_or_default()
    }

    /// VBIOS version as NVIDIA writes it, e.g. `96.00.9F.00.01` (bytes 3, 2, 1, 0, then 4).
    pub fn vbios_version(&self) -> String {
        let v = self.get(kind::VBIOS_VERSION).unwrap_or(&[0; 5]);
        format!(
            "{:02X}.{:02X}.{:02X}.{:02X}.{:02X}",
            v[3], v[2], v[1], v[0], v[4]
        )
    }

    /// The FWID record, if present.
    pub fn fwid(&self) -> Option<&[u8]> {
        self.get(kind::FWID)
    }

    /// NVDEC0 status byte.
    pub fn nvdec0_status(&self) -> Option<u8> {
        self.get(kind::NVDEC0_STATUS)
            .and_then(|v| v.first().copied())
    }

    /// Switch PDIs (8-byte values, hex).
    pub fn switch_pdis(&self) -> Vec<String> {
        self.get(kind::SWITCH_PDI)
            .map(|v| v.chunks(8).map(hex::encode).collect())
            .unwrap_or_default()
    }

    /// Trustee's `config` claim object (names and encodings of its local verifier).
    pub fn config_claims(&self) -> Map<String, Value> {
        let mut m = Map::new();
        for (k, v) in &self.records {
            let Some((name, shape)) = describe(*k) else {
                m.insert(format!("opaque_{k}"), json!(hex::encode(v)));
                continue;
            };
            let value = match shape {
                Shape::Hex => json!(hex::encode(v)),
                Shape::Ascii => json!(ascii(v)),
                Shape::Vbios => json!(self.vbios_version().to_lowercase()),
                Shape::LeInt => json!(le_int(v)),
                Shape::Pdis => json!(self.switch_pdis()),
                Shape::Status => match v.as_slice() {
                    [b] if b.is_ascii() => json!((*b as char).to_string()),
                    _ => json!(hex::encode(v)),
                },
                Shape::Counts => {
                    let counts: Map<String, Value> = v
                        .chunks_exact(4)
                        .enumerate()
                        .map(|(i, c)| {
                            (
                                (i + 1).to_string(),
                                json!(u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                            )
                        })
                        .collect();
                    Value::Object(counts)
                }
            };
            m.insert(name.to_string(), value);
        }
        m
    }
}
