//! Extended attributes: user attributes are stored on the ciphertext entry as
//! `user.gocryptfs.` + b64u(EME(name key, "xattr_name_iv_xx", pad16(full name))) with the
//! value sealed like a symlink target (`nonce ‖ AES-256-GCM(value, AAD = be64(0))`, raw).
//! POSIX ACLs (`system.posix_acl_access`, `system.posix_acl_default`) are passed through
//! unencrypted, as gocryptfs does when mounted with `-acl`.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use xattr::FileExt;

use crate::content::ContentCipher;
use crate::names::{decrypt_name, encrypt_name};

/// EME tweak for attribute names.
pub const XATTR_NAME_TWEAK: [u8; 16] = *b"xattr_name_iv_xx";
/// Prefix of every stored (encrypted) attribute name.
pub const STORED_PREFIX: &str = "user.gocryptfs.";
/// The POSIX ACL attributes, stored as they are on both sides.
pub const ACL_NAMES: [&str; 2] = ["system.posix_acl_access", "system.posix_acl_default"];

/// Stored name for a plaintext attribute name (e.g. `user.comment`).
pub fn encrypt_xattr_name(names_key: &[u8; 32], name: &[u8]) -> String {
    format!(
        "{STORED_PREFIX}{}",
        encrypt_name(names_key, &XATTR_NAME_TWEAK, name)
    )
}

/// Plaintext name of a stored attribute; `None` for attributes gocryptfs does not manage.
pub fn decrypt_xattr_name(
    names_key: &[u8; 32],
    stored: &[u8],
) -> Option<Result<Vec<u8>, crate::names::NameError>> {
    let rest = stored.strip_prefix(STORED_PREFIX.as_bytes())?;
    let rest = std::str::from_utf8(rest).ok()?;
    Some(decrypt_name(names_key, &XATTR_NAME_TWEAK, rest))
}

/// Something attributes are read from or written to: a path (the encryptor's trusted
/// source and output) or an open handle (the decryptor, which names nothing by path in the
/// untrusted tree or in the destination).
pub(crate) trait Node {
    /// For messages.
    fn show(&self) -> String;
    /// Attribute names.
    fn names(&self) -> std::io::Result<Vec<OsString>>;
    /// One attribute's value.
    fn get(&self, name: &std::ffi::OsStr) -> std::io::Result<Option<Vec<u8>>>;
    /// Sets one attribute.
    fn set(&self, name: &std::ffi::OsStr, value: &[u8]) -> std::io::Result<()>;
    /// Removes one attribute.
    fn remove(&self, name: &std::ffi::OsStr) -> std::io::Result<()>;
}

impl Node for &Path {
    fn show(&self) -> String {
        self.display().to_string()
    }
    fn names(&self) -> std::io::Result<Vec<OsString>> {
        Ok(xattr::list(self)?.collect())
    }
    fn get(&self, name: &std::ffi::OsStr) -> std::io::Result<Option<Vec<u8>>> {
        xattr::get(self, name)
    }
    fn set(&self, name: &std::ffi::OsStr, value: &[u8]) -> std::io::Result<()> {
        xattr::set(self, name, value)
    }
    fn remove(&self, name: &std::ffi::OsStr) -> std::io::Result<()> {
        xattr::remove(self, name)
    }
}

/// An open file or directory with the path it was opened as (for messages).
pub(crate) struct Handle<'a>(pub &'a std::fs::File, pub &'a Path);

impl Node for Handle<'_> {
    fn show(&self) -> String {
        self.1.display().to_string()
    }
    fn names(&self) -> std::io::Result<Vec<OsString>> {
        Ok(self.0.list_xattr()?.collect())
    }
    fn get(&self, name: &std::ffi::OsStr) -> std::io::Result<Option<Vec<u8>>> {
        self.0.get_xattr(name)
    }
    fn set(&self, name: &std::ffi::OsStr, value: &[u8]) -> std::io::Result<()> {
        self.0.set_xattr(name, value)
    }
    fn remove(&self, name: &std::ffi::OsStr) -> std::io::Result<()> {
        self.0.remove_xattr(name)
    }
}

fn list(node: &impl Node) -> Result<Vec<OsString>, String> {
    match node.names() {
        Ok(names) => Ok(names),
        // A filesystem without xattrs simply has none.
        Err(e) if e.raw_os_error() == Some(libc_enotsup()) => Ok(Vec::new()),
        Err(e) => Err(format!("{}: listing extended attributes: {e}", node.show())),
    }
}

const fn libc_enotsup() -> i32 {
    95 // EOPNOTSUPP on Linux
}

const fn libc_enodata() -> i32 {
    61 // ENODATA on Linux: no such attribute
}

/// Copies the POSIX ACLs of `src` (whose attribute names are `names`) to `dst` unchanged,
/// and removes from `dst` an ACL that `src` lacks (one `dst` inherited from its directory's
/// default ACL at creation), so both sides carry the same ACLs. Returns how many were set.
fn copy_acls(names: &[OsString], src: &impl Node, dst: &impl Node) -> Result<usize, String> {
    let mut n = 0;
    for acl in ACL_NAMES {
        let acl_os = std::ffi::OsStr::new(acl);
        let value = if names.iter().any(|x| x == acl) {
            src.get(acl_os)
                .map_err(|e| format!("{}: reading {acl}: {e}", src.show()))?
        } else {
            None
        };
        match value {
            Some(value) => {
                dst.set(acl_os, &value).map_err(|e| {
                    format!(
                        "{}: setting {acl} (does the destination support POSIX ACLs?): {e}",
                        dst.show()
                    )
                })?;
                n += 1;
            }
            None => match dst.remove(acl_os) {
                Ok(()) => {}
                Err(e) if matches!(e.raw_os_error(), Some(c) if c == libc_enodata() || c == libc_enotsup()) =>
                    {}
                Err(e) => return Err(format!("{}: removing inherited {acl}: {e}", dst.show())),
            },
        }
    }
    Ok(n)
}

/// Encrypts the `user.*` attributes of `src` onto `dst` and copies its POSIX ACLs; returns
/// how many attributes were set.
pub(crate) fn encrypt_onto(
    names_key: &[u8; 32],
    cipher: &ContentCipher,
    src: &Path,
    dst: &Path,
) -> Result<usize, String> {
    let names = list(&src)?;
    let mut n = copy_acls(&names, &src, &dst)?;
    for name in names {
        if !name.as_bytes().starts_with(b"user.") {
            continue;
        }
        let Some(value) = xattr::get(src, &name)
            .map_err(|e| format!("{}: reading attribute: {e}", src.display()))?
        else {
            continue;
        };
        let stored = encrypt_xattr_name(names_key, name.as_bytes());
        let sealed = if value.is_empty() {
            Vec::new()
        } else {
            cipher.seal_small(&value)
        };
        xattr::set(dst, &stored, &sealed).map_err(|e| {
            format!(
                "{}: storing an encrypted extended attribute: {e}",
                dst.display()
            )
        })?;
        n += 1;
    }
    Ok(n)
}

/// Decrypts the managed attributes of `src` onto `dst` and copies its POSIX ACLs (or only
/// authenticates the encrypted attributes when `dst` is `None`); any bad attribute fails
/// the entry.
pub(crate) fn decrypt_onto<D: Node>(
    names_key: &[u8; 32],
    cipher: &ContentCipher,
    src: &impl Node,
    dst: Option<&D>,
) -> Result<usize, String> {
    let names = list(src)?;
    let mut n = match dst {
        Some(dst) => copy_acls(&names, src, dst)?,
        None => 0,
    };
    for stored in names {
        let Some(name) = decrypt_xattr_name(names_key, stored.as_bytes()) else {
            continue;
        };
        let name = name.map_err(|e| format!("extended attribute name: {e}"))?;
        let Some(blob) = src
            .get(&stored)
            .map_err(|e| format!("{}: reading attribute: {e}", src.show()))?
        else {
            continue;
        };
        let value = if blob.is_empty() {
            Vec::new()
        } else {
            cipher
                .open_small(&blob)
                .map_err(|e| format!("extended attribute value: {e}"))?
        };
        if let Some(dst) = dst {
            let name = OsString::from_vec(name);
            dst.set(&name, &value).map_err(|e| {
                format!(
                    "{}: setting extended attribute {}: {e}",
                    dst.show(),
                    name.to_string_lossy()
                )
            })?;
        }
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::MasterKey;

    #[test]
    fn name_matches_the_spec_vector() {
        let keys = MasterKey::from_slice(&[0u8; 32]).unwrap().keys();
        assert_eq!(
            encrypt_xattr_name(&keys.names, b"user.foo"),
            "user.gocryptfs.WnDhkvrx-Ccp_3TyHvWE2w"
        );
        let back = decrypt_xattr_name(&keys.names, b"user.gocryptfs.WnDhkvrx-Ccp_3TyHvWE2w");
        assert_eq!(back, Some(Ok(b"user.foo".to_vec())));
        assert!(decrypt_xattr_name(&keys.names, b"user.other").is_none());
    }

    #[test]
    fn values_round_trip_and_tampering_fails() {
        let c = ContentCipher::new(&[1u8; 32]);
        let sealed = c.seal_small(b"value");
        assert_eq!(c.open_small(&sealed).unwrap(), b"value");
        let mut bad = sealed.clone();
        bad[20] ^= 1;
        assert!(c.open_small(&bad).is_err());
    }
}
