//! Master key and the HKDF-derived working keys.

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::gcm::Gcm;

/// HKDF info for the AES-GCM content key (also used to wrap the master key).
pub const INFO_CONTENT_GCM: &str = "AES-GCM file content encryption";
/// HKDF info for the EME name key.
pub const INFO_NAMES_EME: &str = "EME filename encryption";

/// HKDF-SHA256 with no salt, 32-byte output.
pub fn hkdf32(ikm: &[u8], info: &str) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = Hkdf::<Sha256>::new(None, ikm).expand(info.as_bytes(), out.as_mut());
    out
}

/// Opens `ct || tag` with a 16-byte nonce; `None` on authentication failure.
pub(crate) fn gcm_open(
    key: &[u8; 32],
    nonce: &[u8],
    aad: &[u8],
    ct: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let nonce: [u8; 16] = nonce.try_into().ok()?;
    let tag_at = ct.len().checked_sub(16)?;
    let tag: [u8; 16] = ct[tag_at..].try_into().ok()?;
    let mut data = Zeroizing::new(ct[..tag_at].to_vec());
    Gcm::new(key, false)?
        .open(&nonce, aad, &mut data, &tag)
        .then_some(data)
}

/// Seals `msg` with a 16-byte nonce; returns `ct || tag` (empty if OpenSSL fails).
pub(crate) fn gcm_seal(key: &[u8; 32], nonce: &[u8; 16], aad: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut data = msg.to_vec();
    match Gcm::new(key, true).and_then(|mut g| g.seal(nonce, aad, &mut data)) {
        Some(tag) => {
            data.extend_from_slice(&tag);
            data
        }
        None => Vec::new(),
    }
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
            content: hkdf32(self.0.as_ref(), INFO_CONTENT_GCM),
            names: hkdf32(self.0.as_ref(), INFO_NAMES_EME),
        }
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// Working keys.
pub struct Keys {
    /// AES-256-GCM key for contents and symlink targets.
    pub content: Zeroizing<[u8; 32]>,
    /// AES-256 key for EME name encryption.
    pub names: Zeroizing<[u8; 32]>,
}
