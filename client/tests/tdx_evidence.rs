//! TDX evidence assembly on fixture files (no TD needed).

use std::path::PathBuf;

use coffer::tdx::{assemble_event_log, quote, TdxPaths};
use coffer_tdx::eventlog::EventLog;
use coffer_tdx::quote::Quote;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tdx/tests/fixtures")
        .join(rel)
}

fn paths(ccel: PathBuf, aael: PathBuf) -> TdxPaths {
    TdxPaths {
        tsm_report_dir: "/nonexistent/tsm".into(),
        ccel,
        aael,
        tdx_guest: "/nonexistent/tdx_guest".into(),
    }
}

#[test]
fn ccel_is_trimmed_terminated_and_replays_to_its_quote() {
    let area = fixture("go-tdx-guest/ccel/ccel_data.dat");
    let log = assemble_event_log(&paths(area, "/nonexistent/aael".into()))
        .unwrap()
        .unwrap();
    assert_eq!(log.len(), 18101 + 8, "used bytes plus the end marker");
    assert_eq!(&log[log.len() - 8..], &[0xFF; 8]);
    let parsed = EventLog::parse(&log).unwrap();
    assert_eq!(parsed.events.len(), 43);
    let raw = std::fs::read(fixture("go-tdx-guest/ccel/cos-113-tdx-quote.dat")).unwrap();
    let q = Quote::parse(&raw).unwrap();
    parsed
        .check_rtmrs([0, 1, 2, 3].map(|i| q.rtmr(i).unwrap()))
        .unwrap();
}

#[test]
fn aael_records_follow_the_ccel_or_a_minimal_header() {
    let dir = tempfile::tempdir().unwrap();
    // One AAEL record: RTMR3 (index 4), EV_EVENT_TAG, one SHA-384 digest.
    let text = b"coffer.dev load-model {\"model-id\":\"m\"}";
    let mut data = Vec::new();
    data.extend_from_slice(&0x4141_454Cu32.to_le_bytes());
    data.extend_from_slice(&(text.len() as u32).to_le_bytes());
    data.extend_from_slice(text);
    let mut rec = Vec::new();
    rec.extend_from_slice(&4u32.to_le_bytes());
    rec.extend_from_slice(&6u32.to_le_bytes());
    rec.extend_from_slice(&1u32.to_le_bytes());
    rec.extend_from_slice(&0x000Cu16.to_le_bytes());
    rec.extend_from_slice(&[0xAB; 48]);
    rec.extend_from_slice(&(data.len() as u32).to_le_bytes());
    rec.extend_from_slice(&data);
    let aael = dir.path().join("eventlog");
    std::fs::write(&aael, &rec).unwrap();

    let only = assemble_event_log(&paths("/nonexistent/ccel".into(), aael.clone()))
        .unwrap()
        .unwrap();
    let log = EventLog::parse(&only).unwrap();
    assert_eq!(log.events.len(), 1);
    let json = log.to_trustee_json();
    assert_eq!(json[0]["details"]["unicode_name"], "AAEL");
    assert_eq!(json[0]["details"]["data"]["operation"], "load-model");

    let both = assemble_event_log(&paths(fixture("trustee/eventlog/CCEL_data_ovmf"), aael))
        .unwrap()
        .unwrap();
    assert_eq!(EventLog::parse(&both).unwrap().events.len(), 21);
    assert!(
        assemble_event_log(&paths("/none/a".into(), "/none/b".into()))
            .unwrap()
            .is_none()
    );
}

#[test]
fn no_quote_interface_is_a_clear_error_and_the_legacy_device_is_tried() {
    let e = quote(&paths("/x".into(), "/y".into()), &[0; 64]).unwrap_err();
    assert!(e.to_string().contains("configfs-tsm is unavailable"), "{e}");
    // With a guest "device" present (here a plain file) the legacy path is taken.
    let dir = tempfile::tempdir().unwrap();
    let dev = dir.path().join("tdx_guest");
    std::fs::write(&dev, b"").unwrap();
    let mut p = paths("/x".into(), "/y".into());
    p.tdx_guest = dev;
    let e = quote(&p, &[0; 64]).unwrap_err();
    assert!(e.to_string().contains("TDX_CMD_GET_REPORT0"), "{e}");
}

#[test]
fn report_data_longer_than_64_bytes_is_refused() {
    assert!(coffer::tdx::report_data_block(&[0; 65]).is_err());
    let b = coffer::tdx::report_data_block(&[1; 48]).unwrap();
    assert_eq!(&b[48..], &[0; 16]);
}
