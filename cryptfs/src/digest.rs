//! The model digest: one SHA-256 value that binds a whole cipher directory, computed in the
//! same pass that decrypts (or verifies, or encrypts) it.
//!
//! gocryptfs authenticates each file on its own, so whoever holds the storage can swap whole
//! files between paths, roll one back to an older version, delete or add files, or cut one at
//! a block boundary, and every block still authenticates. The digest closes those gaps: it
//! covers every entry's plaintext path and, for a regular file, its file ID, its plaintext
//! size and the GCM tag of every block. Under the model key a tag authenticates its block
//! together with the block number and the file ID, so equal digests mean the same names
//! holding the same ciphertext (and hence the same plaintext) in the same places.
//!
//! Layout (all hashes SHA-256, integers big-endian):
//!
//! - chunk hash: `H(tag_0 || tag_1 || ... )` over the 16-byte tags (the last 16 bytes of
//!   each stored block, zeros for a hole) of [`BLOCKS_PER_LEAF_CHUNK`] consecutive blocks;
//! - regular file leaf: `H("f" || file_id(16, zero for an empty file) || u64 size ||
//!   chunk hash...)`;
//! - directory leaf `H("d")`, symlink leaf `H("l" || target)`, other file types `H("s")`;
//! - digest: `H("coffer-model-digest-v1\0" || for each entry in byte order of its
//!   '/'-joined plaintext path: u32 len || path || leaf)`.
//!
//! Not covered: modes, times, owners, extended attributes (none is authenticated by the
//! format; decryption masks modes and copies attributes only when asked).

use sha2::{Digest, Sha256};

/// Blocks per chunk hash (the parallel work unit: each worker hashes the tags of the blocks
/// it handles, so the digest costs one SHA-256 over 1 KiB per 256 KiB of content).
pub const BLOCKS_PER_LEAF_CHUNK: usize = crate::content::BLOCKS_PER_CHUNK;

const DOMAIN: &[u8] = b"coffer-model-digest-v1\0";

/// A 32-byte model digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModelDigest(pub [u8; 32]);

impl ModelDigest {
    /// Lower-case hex, as printed and recorded.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits (an optional `sha256:` prefix is accepted).
    pub fn from_hex(s: &str) -> Option<Self> {
        let s = s.trim();
        let s = s.strip_prefix("sha256:").unwrap_or(s);
        let bytes = hex::decode(s).ok()?;
        Some(ModelDigest(bytes.try_into().ok()?))
    }
}

impl serde::Serialize for ModelDigest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl std::fmt::Display for ModelDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::fmt::Debug for ModelDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ModelDigest({})", self.to_hex())
    }
}

/// Hash of the tags of the stored blocks in `cipher` (consecutive `block_len`-byte blocks,
/// the last one possibly shorter).
pub(crate) fn chunk_hash(cipher: &[u8], block_len: usize) -> [u8; 32] {
    let mut h = Sha256::new();
    for b in cipher.chunks(block_len) {
        let tag = &b[b.len().saturating_sub(crate::content::TAG)..];
        h.update(tag);
    }
    h.finalize().into()
}

/// Leaf of a regular file.
pub(crate) fn file_leaf(file_id: &[u8; 16], size: u64, chunks: &[[u8; 32]]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"f");
    h.update(file_id);
    h.update(size.to_be_bytes());
    for c in chunks {
        h.update(c);
    }
    h.finalize().into()
}

/// Leaf of a directory.
pub(crate) fn dir_leaf() -> [u8; 32] {
    Sha256::digest(b"d").into()
}

/// Leaf of a symlink with plaintext `target`.
pub(crate) fn symlink_leaf(target: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"l");
    h.update(target);
    h.finalize().into()
}

/// Leaf of a FIFO, socket or device node.
pub(crate) fn special_leaf() -> [u8; 32] {
    Sha256::digest(b"s").into()
}

/// The digest over `(plaintext path, leaf)` pairs, in any order.
pub(crate) fn tree_digest(mut entries: Vec<(Vec<u8>, [u8; 32])>) -> ModelDigest {
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut h = Sha256::new();
    h.update(DOMAIN);
    for (path, leaf) in &entries {
        h.update((path.len() as u32).to_be_bytes());
        h.update(path);
        h.update(leaf);
    }
    ModelDigest(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_of_collection_does_not_matter_but_names_and_leaves_do() {
        let a = (b"a".to_vec(), dir_leaf());
        let b = (b"a/x".to_vec(), file_leaf(&[1; 16], 5, &[[2; 32]]));
        let d1 = tree_digest(vec![a.clone(), b.clone()]);
        assert_eq!(d1, tree_digest(vec![b.clone(), a.clone()]));
        let renamed = (b"a/y".to_vec(), b.1);
        assert_ne!(d1, tree_digest(vec![a.clone(), renamed]));
        let other_id = (b.0.clone(), file_leaf(&[3; 16], 5, &[[2; 32]]));
        assert_ne!(d1, tree_digest(vec![a.clone(), other_id]));
        assert_ne!(d1, tree_digest(vec![a]));
    }

    #[test]
    fn hex_round_trip() {
        let d = ModelDigest([0xab; 32]);
        assert_eq!(ModelDigest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(
            ModelDigest::from_hex(&format!("sha256:{}", d.to_hex())),
            Some(d)
        );
        assert_eq!(ModelDigest::from_hex("abcd"), None);
    }
}
