//! Master key and the HKDF-derived working keys, each role its own type: a content key
//! cannot be handed where the name key is expected.

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::gcm::{Gcm, GcmError};

/// HKDF info for the AES-GCM content key (also used to wrap the master key).
pub const INFO_CONTENT_GCM: &str = "AES-GCM file content encryption";
/// HKDF info for the EME name key.
pub const INFO_NAMES_EME: &str = "EME filename encryption";

/// HKDF-SHA256 with no salt, 32-byte output.
pub fn hkdf32(ikm: &[u8], info: &str) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is always a valid HKDF-SHA256 output length (at most 255 · 32), so expand
    // cannot fail here.
    let _ = Hkdf::<Sha256>::new(None, ikm).expand(info.as_bytes(), out.as_mut());
    out
}

/// Opens `ct || tag` with a 16-byte nonce; `Ok(None)` when it does not authenticate (or is
/// too short to hold a tag), an error only when OpenSSL cannot run AES-256-GCM at all.
pub(crate) fn gcm_open(
    key: &[u8; 32],
    nonce: &[u8; 16],
    aad: &[u8],
    ct: &[u8],
) -> Result<Option<Zeroizing<Vec<u8>>>, GcmError> {
    let Some(tag_at) = ct.len().checked_sub(16) else {
        return Ok(None);
    };
    let mut tag = [0u8; 16];
    tag.copy_from_slice(&ct[tag_at..]);
    let mut data = Zeroizing::new(ct[..tag_at].to_vec());
    let ok = Gcm::decryptor(key)?.open(nonce, aad, &mut data, &tag);
    Ok(ok.then_some(data))
}

/// Seals `msg` with a 16-byte nonce and returns `ct || tag`.
pub(crate) fn gcm_seal(
    key: &[u8; 32],
    nonce: &[u8; 16],
    aad: &[u8],
    msg: &[u8],
) -> Result<Vec<u8>, GcmError> {
    let mut data = msg.to_vec();
    let tag = Gcm::encryptor(key)?.seal(nonce, aad, &mut data)?;
    data.extend_from_slice(&tag);
    Ok(data)
}

/// Splits `nonce(16) || ct || tag` into the nonce and the rest; `None` when too short.
pub(crate) fn split_nonce(blob: &[u8]) -> Option<(&[u8; 16], &[u8])> {
    let (nonce, rest) = blob.split_first_chunk::<16>()?;
    Some((nonce, rest))
}

/// The 32-byte master key (zeroed on drop, never printed).
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl MasterKey {
    /// From 32 bytes.
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        let arr: [u8; 32] = b.try_into().ok()?;
        Some(MasterKey(Zeroizing::new(arr)))
    }

    /// A fresh random master key.
    pub fn generate() -> Self {
        use rand::RngCore;
        let mut k = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(k.as_mut());
        MasterKey(k)
    }

    /// The raw bytes (for wrapping).
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// From hex, dashes allowed (as `gocryptfs -init` prints it).
    pub fn from_hex(s: &str) -> Option<Self> {
        let clean: Zeroizing<String> =
            Zeroizing::new(s.trim().chars().filter(|c| *c != '-').collect());
        Self::from_slice(&Zeroizing::new(hex::decode(clean.as_bytes()).ok()?))
    }

    /// Derives the working keys.
    pub fn keys(&self) -> Keys {
        Keys {
            content: ContentKey(hkdf32(self.0.as_ref(), INFO_CONTENT_GCM)),
            names: NameKey(hkdf32(self.0.as_ref(), INFO_NAMES_EME)),
        }
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

macro_rules! working_key {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        ///
        /// Zeroed on drop and never printed. Normally derived with [`MasterKey::keys`];
        /// [`Self::from_bytes`] is for known-answer tests and benchmarks.
        pub struct $name(Zeroizing<[u8; 32]>);

        impl $name {
            /// A key from its 32 raw bytes.
            pub fn from_bytes(bytes: [u8; 32]) -> Self {
                $name(Zeroizing::new(bytes))
            }

            /// The raw bytes, for the cipher that uses them.
            pub(crate) fn bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl Clone for $name {
            fn clone(&self) -> Self {
                $name(Zeroizing::new(*self.0))
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "(..)"))
            }
        }
    };
}

working_key!(
    ContentKey,
    "The AES-256-GCM key of file contents, symlink targets and extended attribute values."
);
working_key!(
    NameKey,
    "The AES-256 key of EME name encryption (entry and extended attribute names)."
);

/// Working keys.
pub struct Keys {
    /// Key for contents, symlink targets and attribute values.
    pub content: ContentKey,
    /// Key for entry and attribute names.
    pub names: NameKey,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_round_trip_and_tampering_is_none_not_an_error() {
        let (key, nonce) = ([5u8; 32], [6u8; 16]);
        let sealed = gcm_seal(&key, &nonce, b"aad", b"message").unwrap();
        assert_eq!(sealed.len(), 7 + 16);
        let opened = gcm_open(&key, &nonce, b"aad", &sealed).unwrap().unwrap();
        assert_eq!(&opened[..], b"message");
        let mut bad = sealed.clone();
        bad[0] ^= 1;
        assert!(matches!(gcm_open(&key, &nonce, b"aad", &bad), Ok(None)));
        assert!(matches!(
            gcm_open(&key, &nonce, b"aad", &sealed[..15]),
            Ok(None)
        ));
    }

    /// Sealing used to hand back an empty ciphertext when OpenSSL failed.
    #[test]
    fn a_failing_openssl_is_an_error_not_an_empty_ciphertext() {
        crate::gcm::break_on_this_thread(true);
        let sealed = gcm_seal(&[5; 32], &[6; 16], b"", b"message");
        let opened = gcm_open(&[5; 32], &[6; 16], b"", &[0; 32]);
        crate::gcm::break_on_this_thread(false);
        assert!(matches!(sealed, Err(GcmError { .. })), "{sealed:?}");
        assert!(matches!(opened, Err(GcmError { .. })), "{opened:?}");
    }

    #[test]
    fn working_keys_never_print() {
        let keys = MasterKey::from_slice(&[1u8; 32]).unwrap().keys();
        assert_eq!(format!("{:?}", keys.content), "ContentKey(..)");
        assert_eq!(format!("{:?}", keys.names), "NameKey(..)");
    }
}
