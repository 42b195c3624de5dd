//! Everything a guest or anyone else can send the KBS before it is authenticated: the /auth
//! Request, the /attest body of every protocol version, the TEE public key (JWK), resource
//! paths and bearer tokens. Errors are fine; panics are not.
#![no_main]

use coffer_protocol::jwk::TeePubKey;
use coffer_protocol::messages::{AttestationParts, ProtocolVersion, Request};
use coffer_protocol::{jwt, ResourcePath};
use libfuzzer_sys::fuzz_target;

const VERSIONS: [&str; 5] = ["0.1.0", "0.1.1", "0.2.0", "0.3.0", "0.4.0"];

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<Request>(data);
    for v in VERSIONS {
        if let Ok(version) = v.parse::<ProtocolVersion>() {
            if let Ok(parts) = AttestationParts::parse(version, data) {
                let _ = parts.to_body(version);
            }
        }
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = TeePubKey::from_jwk(&value);
        let _ = TeePubKey::from_legacy_jwk(&value);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = text.parse::<ResourcePath>();
        let _ = jwt::decode_unverified(text);
    }
});
