//! A client decrypting whatever a (possibly hostile) KBS answers: both JWE shapes, with an EC
//! and an RSA key. The first byte picks raw JSON or a well-formed header with fuzzed fields,
//! so the key unwrap and AES-GCM paths are reached, not only the JSON parser.
#![no_main]

use std::sync::OnceLock;

use base64::Engine;
use coffer_protocol::jwe::{self, FlattenedJwe};
use coffer_protocol::jwk::TeeKeyPair;
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static (TeeKeyPair, TeeKeyPair) {
    static KEYS: OnceLock<(TeeKeyPair, TeeKeyPair)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let rsa = TeeKeyPair::generate_rsa(2048, "RSA1_5").expect("RSA key");
        (TeeKeyPair::generate(), rsa)
    })
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (ec, rsa) = keys();
    let jwe = if mode % 2 == 0 {
        match serde_json::from_slice::<FlattenedJwe>(rest) {
            Ok(j) => j,
            Err(_) => return,
        }
    } else {
        // Fields cut from the input at fixed sizes; the header is one the client accepts.
        let take = |at: usize, n: usize| rest.get(at..(at + n).min(rest.len())).unwrap_or(&[]);
        let header = if mode % 4 == 1 {
            serde_json::json!({"alg": "ECDH-ES+A256KW", "enc": "A256GCM",
                "epk": {"crv": "P-256", "kty": "EC", "x": b64(take(0, 32)), "y": b64(take(32, 32))}})
        } else {
            serde_json::json!({"alg": "RSA1_5", "enc": "A256GCM"})
        };
        FlattenedJwe {
            protected: b64(header.to_string().as_bytes()),
            encrypted_key: b64(take(64, 256)),
            iv: b64(take(320, 12)),
            ciphertext: b64(rest.get(348..).unwrap_or(&[])),
            tag: b64(take(332, 16)),
        }
    };
    for key in [ec, rsa] {
        let _ = jwe::decrypt(key, &jwe);
        let _ = jwe::decrypt_legacy(key, &jwe);
    }
});
