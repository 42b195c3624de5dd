//! gocryptfs.conf parsing must never panic, whatever the bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = coffer_cryptfs::Config::parse(data, std::path::Path::new("fuzz.conf"));
});
