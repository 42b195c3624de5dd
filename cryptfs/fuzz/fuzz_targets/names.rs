//! Name decryption must never panic; anything that decrypts must re-encrypt to the input.
#![no_main]
use coffer_cryptfs::names::{decrypt_name, encrypt_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = coffer_cryptfs::NameKey::from_bytes([7u8; 32]);
    let iv = [9u8; 16];
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(plain) = decrypt_name(&key, &iv, s) {
            assert_eq!(encrypt_name(&key, &iv, &plain).as_deref(), Ok(s));
        }
    }
});
