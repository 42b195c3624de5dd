//! Writing Attestation-Agent event log (AAEL) records: what guest-components' Attestation
//! Agent appends to `/run/attestation-agent/eventlog` and extends into RTMR3, e.g. the
//! `trustiflux.alibaba.com pai/load-model {"model-id":..,"hash":..}` event Alibaba's PAI
//! policy checks.

use sha2::{Digest, Sha384};

use super::ALG_SHA384;

/// TCG `EV_EVENT_TAG`.
pub const EV_EVENT_TAG: u32 = 6;
/// CC measurement register index of RTMR3, where runtime events go (TCG PCR 17).
pub const AAEL_MR_INDEX: u32 = 4;

/// Why an event cannot be recorded: readers split the text at the first two spaces and at
/// newlines, so such characters would change what the event says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AaelError {
    /// Domain or operation empty or containing whitespace.
    #[error("AAEL {what} {value:?} must be non-empty and contain no whitespace")]
    BadWord {
        /// `domain` or `operation`.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// Content containing a line break.
    #[error("AAEL content must be a single line")]
    MultiLine,
}

/// The TaggedEvent bytes of `"<domain> <operation> <content>"` (tag id `LEAA`, size, text).
pub fn tagged_event(domain: &str, operation: &str, content: &str) -> Result<Vec<u8>, AaelError> {
    for (what, value) in [("domain", domain), ("operation", operation)] {
        if value.is_empty() || value.contains(char::is_whitespace) {
            return Err(AaelError::BadWord {
                what,
                value: value.to_string(),
            });
        }
    }
    if content.contains(['\n', '\r']) {
        return Err(AaelError::MultiLine);
    }
    let text = format!("{domain} {operation} {content}");
    let mut ev = Vec::with_capacity(8 + text.len());
    ev.extend_from_slice(&super::details::AAEL_TAG.to_le_bytes());
    ev.extend_from_slice(&(text.len() as u32).to_le_bytes());
    ev.extend_from_slice(text.as_bytes());
    Ok(ev)
}

/// One TCG2 crypto-agile record for the event, measured into RTMR3 with SHA-384: the bytes
/// to append to the AAEL file. Its digest is also what RTMR3 must be extended with.
pub fn aael_record(domain: &str, operation: &str, content: &str) -> Result<Vec<u8>, AaelError> {
    let ev = tagged_event(domain, operation, content)?;
    let digest = Sha384::digest(&ev);
    let mut out = Vec::with_capacity(ev.len() + 70);
    out.extend_from_slice(&AAEL_MR_INDEX.to_le_bytes());
    out.extend_from_slice(&EV_EVENT_TAG.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&ALG_SHA384.to_le_bytes());
    out.extend_from_slice(&digest);
    out.extend_from_slice(&(ev.len() as u32).to_le_bytes());
    out.extend_from_slice(&ev);
    Ok(out)
}

/// A minimal TCG Spec ID header (SHA-384 and SM3 banks) to put before AAEL records when
/// there is no firmware log (CCEL) to take the header from.
pub fn spec_id_header() -> Vec<u8> {
    let mut ev = Vec::new();
    ev.extend_from_slice(b"Spec ID Event03\0");
    ev.extend_from_slice(&0u32.to_le_bytes()); // platform class
    ev.extend_from_slice(&[0, 2, 0, 2]); // spec version 2.0, errata 0, uintn size 2 (u64)
    ev.extend_from_slice(&2u32.to_le_bytes());
    ev.extend_from_slice(&ALG_SHA384.to_le_bytes());
    ev.extend_from_slice(&48u16.to_le_bytes());
    ev.extend_from_slice(&0x0012u16.to_le_bytes()); // SM3
    ev.extend_from_slice(&32u16.to_le_bytes());
    ev.push(0); // vendor info size
    let mut out = Vec::new();
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&super::EV_NO_ACTION.to_le_bytes());
    out.extend_from_slice(&[0u8; 20]);
    out.extend_from_slice(&(ev.len() as u32).to_le_bytes());
    out.extend_from_slice(&ev);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventlog::EventLog;

    #[test]
    fn records_parse_replay_and_show_as_trustee_does() {
        let content = r#"{"model-id":"qwen2-7b","hash":"aa11"}"#;
        let rec = aael_record("trustiflux.alibaba.com", "pai/load-model", content).unwrap();
        let mut log = spec_id_header();
        log.extend_from_slice(&rec);
        let parsed = EventLog::parse(&log).unwrap();
        let rtmrs = parsed.replay().unwrap();
        let ev = tagged_event("trustiflux.alibaba.com", "pai/load-model", content).unwrap();
        let mut h = Sha384::new();
        h.update([0u8; 48]);
        h.update(Sha384::digest(&ev));
        assert_eq!(rtmrs[3][..], h.finalize()[..]);
        assert_eq!(rtmrs[0], [0u8; 48]);
        let json = parsed.to_trustee_json();
        assert_eq!(json[0]["type_name"], "EV_EVENT_TAG");
        assert_eq!(json[0]["details"]["unicode_name"], "AAEL");
        assert_eq!(
            json[0]["details"]["data"],
            serde_json::json!({"domain": "trustiflux.alibaba.com", "operation": "pai/load-model",
                               "content": {"model-id": "qwen2-7b", "hash": "aa11"}})
        );
    }

    #[test]
    fn ambiguous_events_are_refused() {
        assert!(aael_record("a b", "op", "x").is_err());
        assert!(aael_record("d", "", "x").is_err());
        assert_eq!(aael_record("d", "op", "x\ny"), Err(AaelError::MultiLine));
    }
}
