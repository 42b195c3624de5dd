//! Base64 helpers: the protocol mixes the standard and the URL-safe alphabets.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;

/// Standard alphabet with padding (nonces, sample report data, resource bytes).
pub fn std_encode(data: impl AsRef<[u8]>) -> String {
    STANDARD.encode(data)
}

/// URL-safe alphabet without padding (JOSE).
pub fn url_encode(data: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Strict URL-safe, unpadded decoding (JOSE fields).
pub fn url_decode(data: &str) -> Result<Vec<u8>, base64::DecodeError> {
    URL_SAFE_NO_PAD.decode(data)
}

/// Strict standard decoding with padding.
pub fn std_decode(data: &str) -> Result<Vec<u8>, base64::DecodeError> {
    STANDARD.decode(data)
}

/// Accepts either alphabet, with or without padding. Used where real clients are known to
/// disagree (policy uploads: Trustee documents base64url, its CLI has sent both).
pub fn lenient_decode(data: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let trimmed = data.trim();
    let unpadded = trimmed.trim_end_matches('=');
    if unpadded.contains(['-', '_']) {
        URL_SAFE_NO_PAD.decode(unpadded)
    } else if trimmed.ends_with('=') {
        STANDARD
            .decode(trimmed)
            .or_else(|_| URL_SAFE.decode(trimmed))
    } else {
        STANDARD_NO_PAD.decode(unpadded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_accepts_all_forms() {
        let data = b"package policy\n\xfb\xff";
        for enc in [
            STANDARD.encode(data),
            STANDARD_NO_PAD.encode(data),
            URL_SAFE.encode(data),
            URL_SAFE_NO_PAD.encode(data),
        ] {
            assert_eq!(lenient_decode(&enc).unwrap(), data, "{enc}");
        }
        assert!(lenient_decode("not base64 !").is_err());
    }
}
