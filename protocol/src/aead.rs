//! AES-256-GCM (96-bit IV, 128-bit tag) through OpenSSL: the workspace's one provider for
//! the primitive, shared by the JWE here, the server's sealed resources and (through the
//! same library) the gocryptfs blocks of `coffer-cryptfs`.

use openssl::symm::{decrypt_aead, encrypt_aead, Cipher};
use zeroize::Zeroizing;

/// Length of a GCM tag, bytes.
pub const TAG_LEN: usize = 16;

/// Why an AES-256-GCM operation produced nothing.
#[derive(Debug, thiserror::Error)]
pub enum AeadError {
    /// Sealing failed inside OpenSSL (a library failure; never an empty or partial result).
    #[error("AES-256-GCM encryption failed")]
    Seal(#[source] openssl::error::ErrorStack),
    /// The ciphertext, tag, IV or associated data do not authenticate under the key (or
    /// OpenSSL failed, which GCM cannot tell apart from a forgery).
    #[error("AES-256-GCM authentication failed")]
    Open,
}

/// Encrypts `plaintext` under `key` with `iv`, authenticating `aad` too; returns the
/// ciphertext (as long as the plaintext) and the tag.
pub fn seal(
    key: &[u8; 32],
    iv: &[u8; 12],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<(Vec<u8>, [u8; TAG_LEN]), AeadError> {
    let mut tag = [0u8; TAG_LEN];
    let ct = encrypt_aead(
        Cipher::aes_256_gcm(),
        key,
        Some(iv),
        aad,
        plaintext,
        &mut tag,
    )
    .map_err(AeadError::Seal)?;
    Ok((ct, tag))
}

/// Decrypts and authenticates; nothing of the plaintext is returned unless the tag checks.
pub fn open(
    key: &[u8; 32],
    iv: &[u8; 12],
    aad: &[u8],
    ciphertext: &[u8],
    tag: &[u8; TAG_LEN],
) -> Result<Zeroizing<Vec<u8>>, AeadError> {
    decrypt_aead(Cipher::aes_256_gcm(), key, Some(iv), aad, ciphertext, tag)
        .map(Zeroizing::new)
        .map_err(|_| AeadError::Open)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nist_gcm_test_case_16() {
        // McGrew & Viega's GCM test case 16 (AES-256, 96-bit IV, with AAD).
        let key: [u8; 32] =
            hex::decode("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
                .unwrap()
                .try_into()
                .unwrap();
        let iv: [u8; 12] = hex::decode("cafebabefacedbaddecaf888")
            .unwrap()
            .try_into()
            .unwrap();
        let aad = hex::decode("feedfacedeadbeeffeedfacedeadbeefabaddad2").unwrap();
        let pt = hex::decode(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        )
        .unwrap();
        let (ct, tag) = seal(&key, &iv, &aad, &pt).unwrap();
        assert_eq!(
            hex::encode(&ct),
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
        );
        assert_eq!(hex::encode(tag), "76fc6ece0f4e1768cddf8853bb2d551b");
        assert_eq!(&open(&key, &iv, &aad, &ct, &tag).unwrap()[..], &pt[..]);
    }

    #[test]
    fn any_changed_bit_opens_nothing() {
        let (key, iv) = ([7u8; 32], [9u8; 12]);
        let (ct, tag) = seal(&key, &iv, b"path", b"secret").unwrap();
        let mut bad_ct = ct.clone();
        bad_ct[0] ^= 1;
        let mut bad_tag = tag;
        bad_tag[15] ^= 1;
        assert!(matches!(
            open(&key, &iv, b"path", &bad_ct, &tag),
            Err(AeadError::Open)
        ));
        assert!(matches!(
            open(&key, &iv, b"path", &ct, &bad_tag),
            Err(AeadError::Open)
        ));
        assert!(matches!(
            open(&key, &iv, b"other", &ct, &tag),
            Err(AeadError::Open)
        ));
        assert!(matches!(
            open(&[8u8; 32], &iv, b"path", &ct, &tag),
            Err(AeadError::Open)
        ));
    }
}
