//! File contents: an 18-byte header (`00 02` + 16-byte file ID) and 4 KiB blocks, each
//! `nonce(16) || AES-256-GCM(block) || tag(16)` with AAD `be64(block number) || file ID`.
//! All-zero full blocks are holes and read as zeros.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::gcm::{Gcm, GcmError};
use crate::keys::ContentKey;

mod files;

pub use files::FileDone;
pub(crate) use files::BLOCKS_PER_CHUNK;

/// Header length.
pub const HEADER_LEN: usize = 18;
/// Plaintext block size.
pub const BLOCK: usize = 4096;
/// Nonce length.
pub const NONCE: usize = 16;
/// Tag length.
pub const TAG: usize = 16;
/// Ciphertext block size.
pub const CBLOCK: usize = BLOCK + NONCE + TAG;

/// Content failures. A block error names the block; no plaintext of a bad block is written.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Bad header, or a file size no gocryptfs file can have.
    #[error("invalid file header: {0}")]
    Header(HeaderFault),
    /// A block failed authentication or is malformed.
    #[error("block {block} (ciphertext offset {offset}): {reason}")]
    Block {
        /// Block number.
        block: u64,
        /// Byte offset of the block in the ciphertext file.
        offset: u64,
        /// What is wrong.
        reason: BlockFault,
    },
    /// OpenSSL could not run AES-256-GCM (says nothing about the file).
    #[error(transparent)]
    Gcm(#[from] GcmError),
}

/// What is wrong with a file header (or the file size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderFault {
    /// Fewer than 18 bytes.
    #[error("short header")]
    Short,
    /// Not the version-2 header gocryptfs writes.
    #[error("unsupported header version (need 2)")]
    Version,
    /// The file ID is all zeros (never written by gocryptfs).
    #[error("all-zero file ID")]
    ZeroFileId,
    /// No number of blocks gives this ciphertext size: the file was cut.
    #[error("file size is not a valid gocryptfs size (truncated)")]
    Size,
}

/// Why one ciphertext block was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BlockFault {
    /// An all-zero block (a hole) under [`ContentCipher::strict`].
    #[error("all-zero block (a hole, or a block zeroed on the storage): refused in strict mode")]
    ZeroBlock,
    /// Too short to hold a nonce, a tag and data, or not the length its position implies.
    #[error("truncated block")]
    Truncated,
    /// The nonce is all zeros (never written by gocryptfs).
    #[error("all-zero nonce")]
    ZeroNonce,
    /// The tag does not match: tampered, moved to another block or file, or the wrong key.
    #[error("authentication failed (tampered or wrong key)")]
    Authentication,
}

/// Why a small sealed value (symlink target, extended attribute value) did not open.
#[derive(Debug, thiserror::Error)]
pub enum SealedError {
    /// A symlink target that is not base64url.
    #[error("not base64url")]
    Encoding,
    /// Shorter than a nonce and a tag.
    #[error("too short")]
    Short,
    /// The tag does not match: tampered or the wrong key.
    #[error("failed authentication (tampered or wrong key)")]
    Authentication,
    /// OpenSSL could not run AES-256-GCM.
    #[error(transparent)]
    Gcm(#[from] GcmError),
}

/// Checks an 18-byte file header and returns its file ID.
fn check_header(header: &[u8]) -> Result<[u8; 16], ContentError> {
    if header.len() != HEADER_LEN {
        return Err(ContentError::Header(HeaderFault::Short));
    }
    if header[..2] != [0, 2] {
        return Err(ContentError::Header(HeaderFault::Version));
    }
    let mut file_id = [0u8; 16];
    file_id.copy_from_slice(&header[2..]);
    if file_id == [0u8; 16] {
        return Err(ContentError::Header(HeaderFault::ZeroFileId));
    }
    Ok(file_id)
}

/// Block AAD: the block number (big-endian) and the file ID.
fn block_aad(block: u64, file_id: &[u8; 16]) -> [u8; 24] {
    let mut aad = [0u8; 24];
    aad[..8].copy_from_slice(&block.to_be_bytes());
    aad[8..].copy_from_slice(file_id);
    aad
}

/// Plaintext size for a ciphertext size (`None` if the size is impossible).
pub fn plain_size(c: u64) -> Option<u64> {
    if c == 0 || c == HEADER_LEN as u64 {
        return Some(0);
    }
    if c < HEADER_LEN as u64 {
        return None;
    }
    let n = c - HEADER_LEN as u64;
    let (q, r) = (n / CBLOCK as u64, n % CBLOCK as u64);
    match r {
        0 => Some(q * BLOCK as u64),
        r if r > (NONCE + TAG) as u64 => Some(q * BLOCK as u64 + r - (NONCE + TAG) as u64),
        _ => None,
    }
}

/// Decrypts file contents and symlink targets with one content key.
pub struct ContentCipher {
    key: ContentKey,
    /// Refuse all-zero blocks instead of reading them as holes.
    strict: bool,
    /// Hash the block tags for the model digest (on unless measuring its cost).
    digest: bool,
}

impl ContentCipher {
    /// A cipher for `key`.
    pub fn new(key: &ContentKey) -> Self {
        ContentCipher {
            key: key.clone(),
            strict: false,
            digest: true,
        }
    }

    /// Without `on`, whole-file runs skip hashing the block tags and report an all-zero
    /// leaf: only for measuring what the model digest costs (`cargo bench -p
    /// coffer-cryptfs --bench digest`).
    pub fn with_digest(mut self, on: bool) -> Self {
        self.digest = on;
        self
    }

    /// With `strict`, an all-zero ciphertext block is an error instead of a hole: the
    /// format leaves holes unauthenticated, so whoever holds the storage could zero any
    /// full block of a file.
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Decrypts one on-disk block into `out` (its plaintext length); all-zero blocks are
    /// holes. On failure `out` is zeroed: no unauthenticated plaintext stays in it.
    fn open_block(
        &self,
        gcm: &mut Gcm,
        cblock: &[u8],
        out: &mut [u8],
        block: u64,
        file_id: &[u8; 16],
    ) -> Result<(), BlockFault> {
        if cblock.len() == CBLOCK && cblock.iter().all(|b| *b == 0) {
            out.fill(0);
            return if self.strict {
                Err(BlockFault::ZeroBlock)
            } else {
                Ok(())
            };
        }
        if cblock.len() <= NONCE + TAG || out.len() != cblock.len() - NONCE - TAG {
            return Err(BlockFault::Truncated);
        }
        let (nonce, rest) = cblock
            .split_first_chunk::<NONCE>()
            .ok_or(BlockFault::Truncated)?;
        if nonce.iter().all(|b| *b == 0) {
            return Err(BlockFault::ZeroNonce);
        }
        let (data, tag) = rest
            .split_last_chunk::<TAG>()
            .ok_or(BlockFault::Truncated)?;
        if !gcm.open_to(nonce, &block_aad(block, file_id), data, out, tag) {
            out.fill(0);
            return Err(BlockFault::Authentication);
        }
        Ok(())
    }

    /// Decrypts a whole ciphertext file held in memory (small files, tests, fuzzing).
    pub fn decrypt_bytes(&self, data: &[u8]) -> Result<Vec<u8>, ContentError> {
        let plain = plain_size(data.len() as u64).ok_or(ContentError::Header(HeaderFault::Size))?;
        if plain == 0 {
            return Ok(Vec::new());
        }
        let file_id = check_header(&data[..HEADER_LEN])?;
        let mut gcm = Gcm::decryptor(self.key.bytes())?;
        let mut out = vec![0u8; plain as usize];
        let blocks = data[HEADER_LEN..].chunks(CBLOCK).zip(out.chunks_mut(BLOCK));
        for (i, (cblock, target)) in blocks.enumerate() {
            self.open_block(&mut gcm, cblock, target, i as u64, &file_id)
                .map_err(|reason| ContentError::Block {
                    block: i as u64,
                    offset: (HEADER_LEN + i * CBLOCK) as u64,
                    reason,
                })?;
        }
        Ok(out)
    }

    /// Encrypts `plain` (one block's worth or less) as block `block` into `out`
    /// (`nonce || ciphertext || tag`, exactly `plain.len() + 32` bytes).
    fn seal_block(
        &self,
        gcm: &mut Gcm,
        out: &mut [u8],
        plain: &[u8],
        block: u64,
        file_id: &[u8; 16],
    ) -> Result<(), ContentError> {
        use rand::RngCore;
        let mut nonce = [0u8; NONCE];
        while nonce == [0u8; NONCE] {
            rand::thread_rng().fill_bytes(&mut nonce);
        }
        let (head, rest) = out.split_at_mut(NONCE);
        head.copy_from_slice(&nonce);
        let (data, tag) = rest.split_at_mut(plain.len());
        let t = gcm.seal_to(&nonce, &block_aad(block, file_id), plain, data)?;
        tag.copy_from_slice(&t);
        Ok(())
    }

    /// Encrypts a symlink target to its stored form: base64url(nonce || ct || tag), AAD 8
    /// zero bytes (a one-block file without file ID).
    pub fn encrypt_symlink(&self, target: &[u8]) -> Result<String, GcmError> {
        Ok(URL_SAFE_NO_PAD.encode(self.seal_small(target)?))
    }

    /// Seals a small value (symlink target, xattr value): nonce ‖ ciphertext ‖ tag, AAD 8
    /// zero bytes.
    pub fn seal_small(&self, data: &[u8]) -> Result<Vec<u8>, GcmError> {
        use rand::RngCore;
        let mut nonce = [0u8; 16];
        while nonce == [0; 16] {
            rand::thread_rng().fill_bytes(&mut nonce);
        }
        let mut blob = nonce.to_vec();
        blob.extend(crate::keys::gcm_seal(
            self.key.bytes(),
            &nonce,
            &[0u8; 8],
            data,
        )?);
        Ok(blob)
    }

    /// Opens `nonce || ct || tag` sealed with AAD 8 zero bytes.
    fn open_sealed(&self, blob: &[u8]) -> Result<Vec<u8>, SealedError> {
        if blob.len() < NONCE + TAG {
            return Err(SealedError::Short);
        }
        let (nonce, ct) = crate::keys::split_nonce(blob).ok_or(SealedError::Short)?;
        crate::keys::gcm_open(self.key.bytes(), nonce, &[0u8; 8], ct)?
            .map(|t| t.to_vec())
            .ok_or(SealedError::Authentication)
    }

    /// Opens a value sealed by [`ContentCipher::seal_small`]; falls back to base64 (how old
    /// gocryptfs versions stored xattr values).
    pub fn open_small(&self, blob: &[u8]) -> Result<Vec<u8>, SealedError> {
        match self.open_sealed(blob) {
            Err(SealedError::Short | SealedError::Authentication) => {}
            done => return done,
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(blob)
            .map_err(|_| SealedError::Authentication)?;
        match self.open_sealed(&decoded) {
            Err(SealedError::Short) => Err(SealedError::Authentication),
            done => done,
        }
    }

    /// Decrypts a symlink target stored as base64url(nonce || ct || tag), AAD 8 zero bytes.
    pub fn decrypt_symlink(&self, stored: &[u8]) -> Result<Vec<u8>, SealedError> {
        let blob = URL_SAFE_NO_PAD
            .decode(stored)
            .map_err(|_| SealedError::Encoding)?;
        self.open_sealed(&blob)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        for (p, c) in [
            (0u64, 0u64),
            (1, 51),
            (18, 68),
            (4096, 4146),
            (4097, 4179),
            (5000, 5082),
            (8193, 8307),
        ] {
            assert_eq!(plain_size(c), Some(p), "{c}");
        }
        assert_eq!(plain_size(18), Some(0));
        assert_eq!(plain_size(10), None);
        assert_eq!(plain_size(18 + 20), None);
    }

    #[test]
    fn in_memory_matches_worked_example() {
        // §12.3: hello.txt of the worked example.
        let key: [u8; 32] =
            hex::decode("3a38088b9ac429199d73a525da1e2e089fc5dc6483ce8166c57a20f3aa177664")
                .unwrap()
                .try_into()
                .unwrap();
        let file = hex::decode("0002f7beb55731339da5626422f82998d095fb36088729 06b38c9ed602f1aeab807b712fe8ef44850d1f939e321389cf1c2f7673ddcb497af4b03ffb8fba58e01a80548b".replace(' ', "")).unwrap();
        let c = ContentCipher::new(&ContentKey::from_bytes(key));
        assert_eq!(c.decrypt_bytes(&file).unwrap(), b"Hello, gocryptfs!\n");
        let mut bad = file.clone();
        bad[40] ^= 1;
        assert!(matches!(
            c.decrypt_bytes(&bad),
            Err(ContentError::Block {
                block: 0,
                reason: BlockFault::Authentication,
                ..
            })
        ));
        assert!(matches!(
            c.decrypt_bytes(&file[..40]),
            Err(ContentError::Header(HeaderFault::Size))
        ));
    }

    /// A failing OpenSSL is its own error: not a bad header, not an empty ciphertext.
    #[test]
    fn openssl_failures_are_errors_of_their_own() {
        let c = ContentCipher::new(&ContentKey::from_bytes([4; 32]));
        let sealed = c.seal_small(b"value").unwrap();
        let file = {
            let mut f = vec![0u8, 2];
            f.extend_from_slice(&[1; 16]);
            f.extend_from_slice(&sealed);
            f
        };
        crate::gcm::break_on_this_thread(true);
        let seal = c.seal_small(b"value");
        let link = c.encrypt_symlink(b"target");
        let open = c.open_small(&sealed);
        let whole = c.decrypt_bytes(&file);
        crate::gcm::break_on_this_thread(false);
        assert!(matches!(seal, Err(GcmError { .. })), "{seal:?}");
        assert!(matches!(link, Err(GcmError { .. })), "{link:?}");
        assert!(matches!(open, Err(SealedError::Gcm(_))), "{open:?}");
        assert!(matches!(whole, Err(ContentError::Gcm(_))), "{whole:?}");
        assert_eq!(c.open_small(&sealed).unwrap(), b"value");
    }

    #[test]
    fn known_answer_block() {
        // §13: zero master key content key, block 1, file ID 10..1f, nonce 00..0f, "hello".
        let key: [u8; 32] =
            hex::decode("ab893c7a9f8683d8c56296fdd109aa8d73c1937d112d1cf89923f9d175fbd782")
                .unwrap()
                .try_into()
                .unwrap();
        let c = ContentCipher::new(&ContentKey::from_bytes(key));
        let b = hex::decode(
            "000102030405060708090a0b0c0d0e0fa3a47ef84c9fb2afc42e2434e90a9d29166f98493a",
        )
        .unwrap();
        let id: [u8; 16] = (0x10..0x20).collect::<Vec<u8>>().try_into().unwrap();
        let mut gcm = Gcm::decryptor(&key).unwrap();
        let mut out = [0u8; 5];
        c.open_block(&mut gcm, &b, &mut out, 1, &id).unwrap();
        assert_eq!(&out, b"hello");
        assert_eq!(
            c.open_block(&mut gcm, &b, &mut out, 0, &id),
            Err(BlockFault::Authentication),
            "block number is authenticated"
        );
        assert_eq!(
            out, [0u8; 5],
            "no unauthenticated plaintext is left in the output"
        );
    }
}
