//! CC event-log parser, replay and Trustee JSON on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(log) = coffer_tdx::eventlog::EventLog::parse(data) {
        let _ = log.replay();
        let _ = log.to_trustee_json();
    }
});
