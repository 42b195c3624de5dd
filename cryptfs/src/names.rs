//! File names: PKCS#7 padding, EME with the directory IV as tweak, base64url without
//! padding, and long names stored as `gocryptfs.longname.<hash>` + `.name`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::eme;
use crate::keys::NameKey;

/// Config file name (root directory only).
pub const CONF_NAME: &str = "gocryptfs.conf";
/// Per-directory IV file.
pub const DIRIV_NAME: &str = "gocryptfs.diriv";
/// Prefix of hashed long names.
pub const LONGNAME_PREFIX: &str = "gocryptfs.longname.";
/// Suffix of the file holding a long name's full encrypted form.
pub const LONGNAME_SUFFIX: &str = ".name";
/// Longest encrypted name stored directly.
pub const NAME_MAX: usize = 255;

/// Why a name did not decrypt.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    /// Not base64url, or not a positive multiple of 16 bytes.
    #[error("not an encrypted name (bad base64 or length)")]
    Encoding,
    /// Decrypted, but the padding or the resulting name is invalid (tampered or wrong key).
    #[error("name does not decrypt (tampered, or wrong key or directory IV)")]
    Padding,
    /// A name to encrypt that is empty or longer than EME can take (2047 bytes; file
    /// names are at most 255).
    #[error("name of {0} bytes cannot be encrypted (1 to 2047 bytes)")]
    Length(usize),
}

/// Decrypts an encrypted (not hashed) name.
pub fn decrypt_name(key: &NameKey, dir_iv: &[u8; 16], cname: &str) -> Result<Vec<u8>, NameError> {
    let c = URL_SAFE_NO_PAD
        .decode(cname)
        .map_err(|_| NameError::Encoding)?;
    let p = eme::transform(key.bytes(), dir_iv, &c, eme::Direction::Decrypt)
        .ok_or(NameError::Encoding)?;
    let k = *p.last().ok_or(NameError::Padding)? as usize;
    if k == 0 || k > 16 || k >= p.len() || !p[p.len() - k..].iter().all(|b| *b as usize == k) {
        return Err(NameError::Padding);
    }
    let name = p[..p.len() - k].to_vec();
    if name.contains(&b'/') || name.contains(&0) || name == b"." || name == b".." {
        return Err(NameError::Padding);
    }
    Ok(name)
}

/// Encrypts a plaintext name (a file name has 1..=255 bytes) to its base64url form (may
/// exceed 255 characters; see [`on_disk_name`]).
pub fn encrypt_name(key: &NameKey, dir_iv: &[u8; 16], name: &[u8]) -> Result<String, NameError> {
    if name.is_empty() {
        return Err(NameError::Length(0));
    }
    let k = 16 - name.len() % 16;
    let mut p = name.to_vec();
    p.extend(std::iter::repeat_n(k as u8, k));
    let c = eme::transform(key.bytes(), dir_iv, &p, eme::Direction::Encrypt)
        .ok_or(NameError::Length(name.len()))?;
    Ok(URL_SAFE_NO_PAD.encode(c))
}

/// The entry name for an encrypted name: itself, or `gocryptfs.longname.<hash>` when longer
/// than 255 characters.
pub fn on_disk_name(cname: &str) -> String {
    if cname.len() > NAME_MAX {
        format!(
            "{LONGNAME_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(Sha256::digest(cname.as_bytes()))
        )
    } else {
        cname.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> NameKey {
        NameKey::from_bytes(
            hex::decode("c417a986012f22531a60854e3cfc3f5e0c75d505df47d932b1f1f7d623db6e0f")
                .unwrap()
                .try_into()
                .unwrap(),
        )
    }
    const ROOT_IV: &str = "1d8ee9502c0ca3f49df3a59ce02a1568";

    #[test]
    fn worked_example_names() {
        let iv: [u8; 16] = hex::decode(ROOT_IV).unwrap().try_into().unwrap();
        for (plain, c) in [
            ("hello.txt", "T1eN7mpIjLd6buIYg2aALA"),
            ("subdir", "juDMO8JbWo-eaSAbmddzUQ"),
            (
                "multi-block-name.txt",
                "HS0NuLApu_6WWZqgD7fNze6hO1casIDvRvOsGaWFq8Y",
            ),
        ] {
            assert_eq!(encrypt_name(&key(), &iv, plain.as_bytes()).unwrap(), c);
            assert_eq!(decrypt_name(&key(), &iv, c).unwrap(), plain.as_bytes());
        }
        let long = format!("long_{}", "x".repeat(195));
        let c = encrypt_name(&key(), &iv, long.as_bytes()).unwrap();
        assert_eq!(c.len(), 278);
        assert_eq!(encrypt_name(&key(), &iv, b""), Err(NameError::Length(0)));
        assert_eq!(
            encrypt_name(&key(), &iv, &[b'x'; 2048]),
            Err(NameError::Length(2048))
        );
        assert_eq!(
            on_disk_name(&c),
            "gocryptfs.longname.mzKFSJaFnnKnOZmOd7Rt7KLzrdn5auiJi1h8J_rrXbY"
        );
    }

    #[test]
    fn tampered_names_fail() {
        let iv: [u8; 16] = hex::decode(ROOT_IV).unwrap().try_into().unwrap();
        assert_eq!(
            decrypt_name(&key(), &iv, "T1eN7mpIjLd6buIYg2aBLA"),
            Err(NameError::Padding)
        );
        assert_eq!(decrypt_name(&key(), &iv, "short"), Err(NameError::Encoding));
        assert_eq!(
            decrypt_name(&key(), &[0; 16], "T1eN7mpIjLd6buIYg2aALA"),
            Err(NameError::Padding)
        );
    }
}
