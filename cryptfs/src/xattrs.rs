//! Extended attributes: user attributes are stored on the ciphertext entry as
//! `user.gocryptfs.` + b64u(EME(name key, "xattr_name_iv_xx", pad16(full name))) with the
//! value sealed like a symlink target (`nonce ‖ AES-256-GCM(value, AAD = be64(0))`, raw).
//! POSIX ACLs (`system.posix_acl_access`, `system.posix_acl_default`) are passed through
//! unencrypted, as gocryptfs does when mounted with `-acl`.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use xattr::FileExt;

use crate::content::{ContentCipher, SealedError};
use crate::gcm::GcmError;
use crate::keys::NameKey;
use crate::names::{decrypt_name, encrypt_name, NameError};

/// EME tweak for attribute names.
pub const XATTR_NAME_TWEAK: [u8; 16] = *b"xattr_name_iv_xx";
/// Prefix of every stored (encrypted) attribute name.
pub const STORED_PREFIX: &str = "user.gocryptfs.";
/// The POSIX ACL attributes, stored as they are on both sides.
pub const ACL_NAMES: [&str; 2] = ["system.posix_acl_access", "system.posix_acl_default"];

/// Why the extended attributes of one entry could not be read, sealed, opened or set.
#[derive(Debug, thiserror::Error)]
pub enum XattrError {
    /// A filesystem call on the attributes of `path` failed.
    #[error("{}: {op}: {source}", path.display())]
    Io {
        /// The entry (ciphertext or plaintext side, whichever the call was on).
        path: PathBuf,
        /// What was being done.
        op: XattrOp,
        /// Cause.
        source: std::io::Error,
    },
    /// A stored attribute name does not decrypt, or a name cannot be encrypted.
    #[error("extended attribute name: {0}")]
    Name(#[source] NameError),
    /// A stored attribute value does not open.
    #[error("extended attribute value: {0}")]
    Value(#[source] SealedError),
    /// OpenSSL could not seal a value.
    #[error(transparent)]
    Gcm(#[from] GcmError),
}

/// The attribute operation an [`XattrError::Io`] failed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XattrOp {
    /// Listing the attribute names.
    List,
    /// Reading one attribute's value.
    Read,
    /// Reading a POSIX ACL.
    ReadAcl(&'static str),
    /// Setting a POSIX ACL.
    SetAcl(&'static str),
    /// Removing an ACL the entry inherited but the source lacks.
    RemoveAcl(&'static str),
    /// Storing an encrypted attribute on the ciphertext entry.
    Store,
    /// Setting a decrypted attribute (its name, lossily as text) on the output.
    Set(String),
}

impl std::fmt::Display for XattrOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            XattrOp::List => f.write_str("listing extended attributes"),
            XattrOp::Read => f.write_str("reading attribute"),
            XattrOp::ReadAcl(acl) => write!(f, "reading {acl}"),
            XattrOp::SetAcl(acl) => write!(
                f,
                "setting {acl} (does the destination support POSIX ACLs?)"
            ),
            XattrOp::RemoveAcl(acl) => write!(f, "removing inherited {acl}"),
            XattrOp::Store => f.write_str("storing an encrypted extended attribute"),
            XattrOp::Set(name) => write!(f, "setting extended attribute {name}"),
        }
    }
}

/// Stored name for a plaintext attribute name (e.g. `user.comment`).
pub fn encrypt_xattr_name(names_key: &NameKey, name: &[u8]) -> Result<String, NameError> {
    Ok(format!(
        "{STORED_PREFIX}{}",
        encrypt_name(names_key, &XATTR_NAME_TWEAK, name)?
    ))
}

/// Plaintext name of a stored attribute; `None` for attributes gocryptfs does not manage.
pub fn decrypt_xattr_name(
    names_key: &NameKey,
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
    /// For errors.
    fn path(&self) -> &Path;
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
    fn path(&self) -> &Path {
        self
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
    fn path(&self) -> &Path {
        self.1
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

/// An [`XattrError::Io`] on `node`.
fn io_err(node: &impl Node, op: XattrOp) -> impl FnOnce(std::io::Error) -> XattrError + '_ {
    move |source| XattrError::Io {
        path: node.path().to_path_buf(),
        op,
        source,
    }
}

fn list(node: &impl Node) -> Result<Vec<OsString>, XattrError> {
    match node.names() {
        Ok(names) => Ok(names),
        // A filesystem without xattrs simply has none.
        Err(e) if e.raw_os_error() == Some(libc_enotsup()) => Ok(Vec::new()),
        Err(e) => Err(io_err(node, XattrOp::List)(e)),
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
fn copy_acls(names: &[OsString], src: &impl Node, dst: &impl Node) -> Result<usize, XattrError> {
    let mut n = 0;
    for acl in ACL_NAMES {
        let acl_os = std::ffi::OsStr::new(acl);
        let value = if names.iter().any(|x| x == acl) {
            src.get(acl_os)
                .map_err(io_err(src, XattrOp::ReadAcl(acl)))?
        } else {
            None
        };
        match value {
            Some(value) => {
                dst.set(acl_os, &value)
                    .map_err(io_err(dst, XattrOp::SetAcl(acl)))?;
                n += 1;
            }
            None => match dst.remove(acl_os) {
                Ok(()) => {}
                Err(e) if matches!(e.raw_os_error(), Some(c) if c == libc_enodata() || c == libc_enotsup()) =>
                    {}
                Err(e) => return Err(io_err(dst, XattrOp::RemoveAcl(acl))(e)),
            },
        }
    }
    Ok(n)
}

/// Encrypts the `user.*` attributes of `src` onto `dst` and copies its POSIX ACLs; returns
/// how many attributes were set.
pub(crate) fn encrypt_onto(
    names_key: &NameKey,
    cipher: &ContentCipher,
    src: &Path,
    dst: &Path,
) -> Result<usize, XattrError> {
    let names = list(&src)?;
    let mut n = copy_acls(&names, &src, &dst)?;
    for name in names {
        if !name.as_bytes().starts_with(b"user.") {
            continue;
        }
        let Some(value) = xattr::get(src, &name).map_err(io_err(&src, XattrOp::Read))? else {
            continue;
        };
        let stored = encrypt_xattr_name(names_key, name.as_bytes()).map_err(XattrError::Name)?;
        let sealed = if value.is_empty() {
            Vec::new()
        } else {
            cipher.seal_small(&value)?
        };
        xattr::set(dst, &stored, &sealed).map_err(io_err(&dst, XattrOp::Store))?;
        n += 1;
    }
    Ok(n)
}

/// Decrypts the managed attributes of `src` onto `dst` and copies its POSIX ACLs (or only
/// authenticates the encrypted attributes when `dst` is `None`); any bad attribute fails
/// the entry.
pub(crate) fn decrypt_onto<D: Node>(
    names_key: &NameKey,
    cipher: &ContentCipher,
    src: &impl Node,
    dst: Option<&D>,
) -> Result<usize, XattrError> {
    let names = list(src)?;
    let mut n = match dst {
        Some(dst) => copy_acls(&names, src, dst)?,
        None => 0,
    };
    for stored in names {
        let Some(name) = decrypt_xattr_name(names_key, stored.as_bytes()) else {
            continue;
        };
        let name = name.map_err(XattrError::Name)?;
        let Some(blob) = src.get(&stored).map_err(io_err(src, XattrOp::Read))? else {
            continue;
        };
        let value = if blob.is_empty() {
            Vec::new()
        } else {
            cipher.open_small(&blob).map_err(|e| match e {
                SealedError::Gcm(g) => XattrError::Gcm(g),
                e => XattrError::Value(e),
            })?
        };
        if let Some(dst) = dst {
            let name = OsString::from_vec(name);
            let op = XattrOp::Set(name.to_string_lossy().into_owned());
            dst.set(&name, &value).map_err(io_err(dst, op))?;
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
            encrypt_xattr_name(&keys.names, b"user.foo").unwrap(),
            "user.gocryptfs.WnDhkvrx-Ccp_3TyHvWE2w"
        );
        let back = decrypt_xattr_name(&keys.names, b"user.gocryptfs.WnDhkvrx-Ccp_3TyHvWE2w");
        assert_eq!(back, Some(Ok(b"user.foo".to_vec())));
        assert!(decrypt_xattr_name(&keys.names, b"user.other").is_none());
    }

    #[test]
    fn values_round_trip_and_tampering_fails() {
        let c = ContentCipher::new(&crate::keys::ContentKey::from_bytes([1u8; 32]));
        let sealed = c.seal_small(b"value").unwrap();
        assert_eq!(c.open_small(&sealed).unwrap(), b"value");
        let mut bad = sealed.clone();
        bad[20] ^= 1;
        assert!(matches!(
            c.open_small(&bad),
            Err(SealedError::Authentication)
        ));
    }
}
