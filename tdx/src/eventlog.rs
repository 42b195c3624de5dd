//! TCG2 "crypto agile" CC event logs (the ACPI CCEL log area, plus Attestation-Agent
//! runtime entries): parsing, trimming, RTMR replay and Trustee's JSON view.

use base64::Engine;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha384};

mod aael;
mod details;

pub use aael::{aael_record, spec_id_header, tagged_event, AaelError, AAEL_MR_INDEX, EV_EVENT_TAG};

/// SHA-384 algorithm id in TCG logs.
pub const ALG_SHA384: u16 = 0x000C;
/// EV_NO_ACTION: never extended.
pub const EV_NO_ACTION: u32 = 3;

/// Why bytes are not a usable event log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventLogError {
    /// Ends inside a record.
    #[error("event log truncated at offset {0}")]
    Truncated(usize),
    /// The first record is not a Spec ID event.
    #[error("event log does not start with a TCG Spec ID event")]
    NoSpecId,
    /// A digest uses an algorithm the Spec ID event does not declare.
    #[error("event at offset {offset} uses undeclared digest algorithm {alg:#06x}")]
    UnknownAlgorithm {
        /// Record offset.
        offset: usize,
        /// Algorithm id.
        alg: u16,
    },
    /// The log declares no SHA-384 bank, so it cannot be replayed into RTMRs.
    #[error("event log has no SHA-384 digests")]
    NoSha384,
    /// Replay does not give the quote's RTMR.
    #[error("event log replay of RTMR{index} does not match the quote")]
    RtmrMismatch {
        /// RTMR index 0..3.
        index: usize,
    },
}

/// One measured event.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    /// CC measurement register index (0 MRTD, 1..4 RTMR0..3).
    pub mr_index: u32,
    /// TCG event type.
    pub event_type: u32,
    /// (algorithm id, digest) pairs.
    pub digests: Vec<(u16, &'a [u8])>,
    /// Event data.
    pub data: &'a [u8],
}

impl Event<'_> {
    /// The SHA-384 digest, if the event has one.
    pub fn sha384(&self) -> Option<&[u8]> {
        self.digests
            .iter()
            .find(|(alg, _)| *alg == ALG_SHA384)
            .map(|(_, d)| *d)
    }
}

/// A parsed event log.
#[derive(Debug, Clone)]
pub struct EventLog<'a> {
    /// Events after the Spec ID header, in log order.
    pub events: Vec<Event<'a>>,
    /// Bytes used by the header and the events (the rest is padding).
    pub used_len: usize,
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, EventLogError> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or(EventLogError::Truncated(at))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, EventLogError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(EventLogError::Truncated(at))
}

fn slice(b: &[u8], at: usize, n: usize) -> Result<&[u8], EventLogError> {
    at.checked_add(n)
        .and_then(|end| b.get(at..end))
        .ok_or(EventLogError::Truncated(at))
}

fn at_end(b: &[u8], at: usize) -> bool {
    match b.get(at..at + 8) {
        None => true,
        Some(w) => w.iter().all(|x| *x == 0xFF) || w.iter().all(|x| *x == 0),
    }
}

impl<'a> EventLog<'a> {
    /// Parses a log area (trailing padding allowed).
    pub fn parse(b: &'a [u8]) -> Result<Self, EventLogError> {
        // Legacy first record: index, type, 20-byte SHA-1, size, Spec ID event.
        let ty = u32_at(b, 4)?;
        let size = u32_at(b, 28)? as usize;
        let spec = slice(b, 32, size)?;
        if ty != EV_NO_ACTION || !spec.starts_with(b"Spec ID Event03\0") {
            return Err(EventLogError::NoSpecId);
        }
        let n_algs = u32_at(spec, 24)? as usize;
        let mut algs = Vec::new();
        for i in 0..n_algs.min(16) {
            algs.push((
                u16_at(spec, 28 + 4 * i)?,
                u16_at(spec, 30 + 4 * i)? as usize,
            ));
        }
        let mut at = 32 + size;
        let mut events = Vec::new();
        while !at_end(b, at) {
            let start = at;
            let mr_index = u32_at(b, at)?;
            let event_type = u32_at(b, at + 4)?;
            let count = u32_at(b, at + 8)? as usize;
            at += 12;
            let mut digests = Vec::with_capacity(count.min(8));
            for _ in 0..count {
                let alg = u16_at(b, at)?;
                let len = algs
                    .iter()
                    .find(|(a, _)| *a == alg)
                    .map(|(_, l)| *l)
                    .ok_or(EventLogError::UnknownAlgorithm { offset: start, alg })?;
                digests.push((alg, slice(b, at + 2, len)?));
                at += 2 + len;
            }
            let size = u32_at(b, at)? as usize;
            let data = slice(b, at + 4, size)?;
            at += 4 + size;
            events.push(Event {
                mr_index,
                event_type,
                digests,
                data,
            });
        }
        Ok(EventLog {
            events,
            used_len: at,
        })
    }

    /// Replays SHA-384 digests into RTMR0..3 (CC MR indices 1..4), skipping EV_NO_ACTION.
    pub fn replay(&self) -> Result<[[u8; 48]; 4], EventLogError> {
        let mut regs = [[0u8; 48]; 4];
        for ev in &self.events {
            if ev.event_type == EV_NO_ACTION || !(1..=4).contains(&ev.mr_index) {
                continue;
            }
            let d = ev.sha384().ok_or(EventLogError::NoSha384)?;
            let reg = &mut regs[(ev.mr_index - 1) as usize];
            let mut h = Sha384::new();
            h.update(&reg[..]);
            h.update(d);
            reg.copy_from_slice(&h.finalize());
        }
        Ok(regs)
    }

    /// Replays and compares with the quote's RTMRs.
    pub fn check_rtmrs(&self, rtmrs: [&[u8]; 4]) -> Result<(), EventLogError> {
        let regs = self.replay()?;
        for (index, (got, want)) in regs.iter().zip(rtmrs).enumerate() {
            if got[..] != *want {
                return Err(EventLogError::RtmrMismatch { index });
            }
        }
        Ok(())
    }

    /// Trustee's `uefi_event_logs` view of the events.
    pub fn to_trustee_json(&self) -> Vec<Value> {
        self.events.iter().map(event_json).collect()
    }
}

/// TCG name of an event type.
pub fn type_name(t: u32) -> String {
    let n = match t {
        0x0 => "EV_PREBOOT_CERT",
        0x1 => "EV_POST_CODE",
        0x2 => "EV_UNUSED",
        0x3 => "EV_NO_ACTION",
        0x4 => "EV_SEPARATOR",
        0x5 => "EV_ACTION",
        0x6 => "EV_EVENT_TAG",
        0x7 => "EV_S_CRTM_CONTENTS",
        0x8 => "EV_S_CRTM_VERSION",
        0x9 => "EV_CPU_MICROCODE",
        0xA => "EV_PLATFORM_CONFIG_FLAGS",
        0xB => "EV_TABLE_OF_DEVICES",
        0xC => "EV_COMPACT_HASH",
        0xD => "EV_IPL",
        0xE => "EV_IPL_PARTITION_DATA",
        0xF => "EV_NONHOST_CODE",
        0x10 => "EV_NONHOST_CONFIG",
        0x11 => "EV_NONHOST_INFO",
        0x12 => "EV_OMIT_BOOT_DEVICE_EVENTS",
        0x8000_0001 => "EV_EFI_VARIABLE_DRIVER_CONFIG",
        0x8000_0002 => "EV_EFI_VARIABLE_BOOT",
        0x8000_0003 => "EV_EFI_BOOT_SERVICES_APPLICATION",
        0x8000_0004 => "EV_EFI_BOOT_SERVICES_DRIVER",
        0x8000_0005 => "EV_EFI_RUNTIME_SERVICES_DRIVER",
        0x8000_0006 => "EV_EFI_GPT_EVENT",
        0x8000_0007 => "EV_EFI_ACTION",
        0x8000_0008 => "EV_EFI_PLATFORM_FIRMWARE_BLOB",
        0x8000_0009 => "EV_EFI_HANDOFF_TABLES",
        0x8000_000A => "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
        0x8000_000B => "EV_EFI_HANDOFF_TABLES2",
        0x8000_000C => "EV_EFI_VARIABLE_BOOT2",
        0x8000_0010 => "EV_EFI_HCRTM_EVENT",
        0x8000_00E0 => "EV_EFI_VARIABLE_AUTHORITY",
        0x8000_00E1 => "EV_EFI_SPDM_FIRMWARE_BLOB",
        0x8000_00E2 => "EV_EFI_SPDM_FIRMWARE_CONFIG",
        _ => return format!("{t:#010x}"),
    };
    n.to_string()
}

fn alg_name(a: u16) -> String {
    match a {
        0x0004 => "SHA-1".into(),
        0x000B => "SHA-256".into(),
        0x000C => "SHA-384".into(),
        0x000D => "SHA-512".into(),
        0x0012 => "SM3".into(),
        other => format!("{other:#06x}"),
    }
}

fn event_json(ev: &Event<'_>) -> Value {
    let digests: Vec<Value> = ev
        .digests
        .iter()
        .map(|(a, d)| json!({"alg": alg_name(*a), "digest": hex::encode(d)}))
        .collect();
    let matches = ev
        .sha384()
        .is_some_and(|d| d == &Sha384::digest(ev.data)[..]);
    let mut m = Map::new();
    m.insert("index".into(), json!(ev.mr_index));
    m.insert("type_name".into(), json!(type_name(ev.event_type)));
    m.insert("digests".into(), Value::Array(digests));
    m.insert(
        "event".into(),
        json!(base64::engine::general_purpose::STANDARD.encode(ev.data)),
    );
    m.insert(
        "details".into(),
        Value::Object(details::details(ev.event_type, ev.data)),
    );
    m.insert("digest_matches_event".into(), json!(matches));
    Value::Object(m)
}

/// The 8-byte end-of-log marker the guest appends.
pub const END_MARKER: [u8; 8] = [0xFF; 8];

/// Guest side: the used part of a CCEL log area (header + events), without padding.
pub fn trim_log_area(area: &[u8]) -> Result<&[u8], EventLogError> {
    let log = EventLog::parse(area)?;
    Ok(&area[..log.used_len])
}
