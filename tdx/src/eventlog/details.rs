//! Type-specific `details` of an event, in the shape Trustee's event-log parser emits,
//! which policies match on (`device_paths`, `string`, AAEL `data`).

use base64::Engine;
use serde_json::{json, Map, Value};

/// AAEL tagged-event id ("LEAA" in log byte order).
pub(super) const AAEL_TAG: u32 = 0x4141_454C;

pub(super) fn details(event_type: u32, data: &[u8]) -> Map<String, Value> {
    let mut m = Map::new();
    match event_type {
        // EV_POST_CODE, EV_PLATFORM_CONFIG_FLAGS, EV_EFI_ACTION: text only when the whole
        // payload is text (a td_hob blob, say, gives an empty string).
        0x1 | 0xA | 0x8000_0007 => {
            m.insert("string".into(), json!(printable_segments(data)));
        }
        0xD => {
            m.insert("string".into(), json!(ipl_string(data)));
        }
        0x6 => tagged_event(data, &mut m),
        // BLOB2 / HANDOFF_TABLES2: u8 length-prefixed description.
        0x8000_000A | 0x8000_000B => {
            let n = data.first().copied().unwrap_or(0) as usize;
            let desc = data.get(1..1 + n).unwrap_or(&[]);
            m.insert("string".into(), json!(cstr(desc)));
        }
        0x8000_0001 | 0x8000_0002 | 0x8000_000C | 0x8000_00E0 => variable(data, &mut m),
        0x8000_0003..=0x8000_0005 => {
            if let Some(paths) = image_load_paths(data) {
                m.insert("device_paths".into(), json!(paths));
            }
        }
        _ => {}
    }
    m
}

/// NUL-separated printable text segments joined by spaces (td-shim packs a tag, a
/// binary length and the text into one event); non-UTF-8 payloads give "".
fn printable_segments(data: &[u8]) -> String {
    let Ok(s) = std::str::from_utf8(data) else {
        return String::new();
    };
    s.split('\0')
        .filter(|seg| !seg.is_empty() && !seg.chars().any(char::is_control))
        .collect::<Vec<_>>()
        .join(" ")
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|x| *x == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn utf16(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|u| *u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

fn looks_utf16(b: &[u8]) -> bool {
    b.len() >= 4 && b.len().is_multiple_of(2) && b.iter().skip(1).step_by(2).all(|x| *x == 0)
}

/// EV_IPL: grub writes C strings; systemd-stub writes UTF-16 PE section names (".cmdline").
fn ipl_string(data: &[u8]) -> String {
    if looks_utf16(data) {
        utf16(data).trim_start_matches('.').to_string()
    } else {
        cstr(data)
    }
}

fn u32le(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64le(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8).map(|s| {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        u64::from_le_bytes(a)
    })
}

fn tagged_event(data: &[u8], m: &mut Map<String, Value>) {
    let (Some(id), Some(size)) = (u32le(data, 0), u32le(data, 4)) else {
        return;
    };
    let payload = data.get(8..8 + size as usize).unwrap_or(&[]);
    if id == AAEL_TAG {
        let text = String::from_utf8_lossy(payload).into_owned();
        let mut parts = text.splitn(3, ' ');
        let domain = parts.next().unwrap_or("");
        let operation = parts.next().unwrap_or("");
        let content = parts.next().unwrap_or("");
        let content_value =
            serde_json::from_str::<Value>(content).unwrap_or_else(|_| json!(content));
        m.insert("unicode_name".into(), json!("AAEL"));
        m.insert(
            "data".into(),
            json!({"domain": domain, "operation": operation, "content": content_value}),
        );
        m.insert("string".into(), json!(text));
    } else {
        m.insert("string".into(), json!(cstr(payload)));
    }
}

/// GUID as its 16 stored bytes in dashed hex (Trustee's `variable_name`).
fn guid_raw(b: &[u8]) -> String {
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// GUID in the EFI text form (mixed endian, upper case).
fn guid_text(b: &[u8]) -> String {
    let d1 = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let d2 = u16::from_le_bytes([b[4], b[5]]);
    let d3 = u16::from_le_bytes([b[6], b[7]]);
    format!(
        "{d1:08X}-{d2:04X}-{d3:04X}-{}-{}",
        hex::encode_upper(&b[8..10]),
        hex::encode_upper(&b[10..16])
    )
}

fn variable(data: &[u8], m: &mut Map<String, Value>) {
    let (Some(name_len), Some(data_len)) = (u64le(data, 16), u64le(data, 24)) else {
        return;
    };
    let name_end = 32usize.saturating_add((name_len as usize).saturating_mul(2));
    let (Some(name), Some(value)) = (
        data.get(32..name_end),
        data.get(name_end..name_end.saturating_add(data_len as usize)),
    ) else {
        return;
    };
    m.insert("variable_name".into(), json!(guid_raw(&data[..16])));
    m.insert("unicode_name_length".into(), json!(name_len));
    m.insert("variable_data_length".into(), json!(data_len));
    m.insert("unicode_name".into(), json!(utf16(name)));
    m.insert(
        "variable_data".into(),
        json!(base64::engine::general_purpose::STANDARD.encode(value)),
    );
}

/// UEFI_IMAGE_LOAD_EVENT: location, length, link address, device path length, path.
fn image_load_paths(data: &[u8]) -> Option<Vec<String>> {
    let len = u64le(data, 24)? as usize;
    let mut dp = data.get(32..32usize.checked_add(len)?)?;
    let mut out = Vec::new();
    while dp.len() >= 4 {
        let (ty, sub) = (dp[0], dp[1]);
        let n = u16::from_le_bytes([dp[2], dp[3]]) as usize;
        if ty == 0x7F || n < 4 || n > dp.len() {
            break;
        }
        out.push(device_path_node(ty, sub, &dp[4..n]));
        dp = &dp[n..];
    }
    Some(out)
}

fn device_path_node(ty: u8, sub: u8, d: &[u8]) -> String {
    match (ty, sub) {
        (1, 1) if d.len() >= 2 => format!("Pci({},{})", d[0], d[1]),
        (2, 1) if d.len() >= 8 => {
            let hid = u32le(d, 0).unwrap_or(0);
            let uid = u32le(d, 4).unwrap_or(0);
            format!("ACPI({},{uid})", eisa_id(hid))
        }
        (4, 1) if d.len() >= 38 => {
            let part = u32le(d, 0).unwrap_or(0);
            let start = u64le(d, 4).unwrap_or(0);
            let size = u64le(d, 12).unwrap_or(0);
            let sig = &d[20..36];
            let (format, sig) = match d[37] {
                2 => ("GPT", guid_text(sig)),
                1 => ("MBR", format!("0x{:08X}", u32le(sig, 0).unwrap_or(0))),
                _ => ("Unknown", hex::encode_upper(sig)),
            };
            format!("HD({part},{format},{sig},{start:#x},{size:#x})")
        }
        (4, 3) if d.len() >= 16 => {
            format!(
                "VenMedia({},{})",
                guid_text(&d[..16]),
                hex::encode(&d[16..])
            )
        }
        (4, 4) => format!("File({})", utf16(d)),
        _ => format!("Path({ty},{sub},{})", hex::encode(d)),
    }
}

/// Compressed EISA id (e.g. 0x0A0341D0 → "PNP0A03").
fn eisa_id(v: u32) -> String {
    let lo = v & 0xFFFF;
    let c = |s: u32| (((lo >> s) & 0x1F) as u8 + b'A' - 1) as char;
    format!("{}{}{}{:04X}", c(10), c(5), c(0), v >> 16)
}
