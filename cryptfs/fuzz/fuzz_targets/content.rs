//! Content decryption of arbitrary bytes must never panic and must reject everything that
//! was not produced with the key (a forgery would be a GCM break).
#![no_main]
use coffer_cryptfs::content::ContentCipher;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let c = ContentCipher::new(&coffer_cryptfs::ContentKey::from_bytes([3u8; 32]));
    if let Ok(plain) = c.decrypt_bytes(data) {
        // Only empty files and all-zero hole blocks decrypt without a key.
        assert!(plain.iter().all(|b| *b == 0));
    }
});
