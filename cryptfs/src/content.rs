//! File contents: an 18-byte header (`00 02` + 16-byte file ID) and 4 KiB blocks, each
//! `nonce(16) || AES-256-GCM(block) || tag(16)` with AAD `be64(block number) || file ID`.
//! All-zero full blocks are holes and read as zeros.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rayon::prelude::*;

use zeroize::Zeroizing;

use crate::gcm::Gcm;

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
/// Blocks read and decrypted per step (about 4 MiB).
const BLOCKS_PER_CHUNK: usize = 1024;

/// Content failures. A block error names the block; no plaintext of a bad block is written.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Bad header.
    #[error("invalid file header: {0}")]
    Header(&'static str),
    /// A block failed authentication or is malformed.
    #[error("block {block} (ciphertext offset {offset}): {reason}")]
    Block {
        /// Block number.
        block: u64,
        /// Byte offset of the block in the ciphertext file.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
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
    key: Zeroizing<[u8; 32]>,
}

impl ContentCipher {
    /// A cipher for `key`.
    pub fn new(key: &[u8; 32]) -> Self {
        ContentCipher {
            key: Zeroizing::new(*key),
        }
    }

    /// Decrypts one on-disk block in place; returns the plaintext range within `buf`.
    fn open_block(
        &self,
        gcm: &mut Gcm,
        buf: &mut [u8],
        block: u64,
        file_id: &[u8; 16],
    ) -> Result<std::ops::Range<usize>, &'static str> {
        if buf.len() == CBLOCK && buf.iter().all(|b| *b == 0) {
            return Ok(NONCE..NONCE + BLOCK); // a hole: already zeros
        }
        if buf.len() <= NONCE + TAG {
            return Err("truncated block");
        }
        let (nonce, rest) = buf.split_at_mut(NONCE);
        if nonce.iter().all(|b| *b == 0) {
            return Err("all-zero nonce");
        }
        let nonce: [u8; 16] = (&*nonce).try_into().map_err(|_| "bad nonce")?;
        let (data, tag) = rest.split_at_mut(rest.len() - TAG);
        let tag: [u8; 16] = (&*tag).try_into().map_err(|_| "bad tag")?;
        let mut aad = [0u8; 24];
        aad[..8].copy_from_slice(&block.to_be_bytes());
        aad[8..].copy_from_slice(file_id);
        if !gcm.open(&nonce, &aad, data, &tag) {
            return Err("authentication failed (tampered or wrong key)");
        }
        Ok(NONCE..NONCE + data.len())
    }

    /// Decrypts the file `src` into `dst` (positional writes), returning the plaintext size.
    /// On error, `dst` may hold authenticated plaintext of earlier blocks only; the caller
    /// removes it.
    pub fn decrypt_file(&self, src: &mut File, dst: &File) -> Result<u64, ContentError> {
        self.open_file(src, Some(dst))
    }

    /// Decrypts a whole ciphertext file held in memory (small files, tests, fuzzing).
    pub fn decrypt_bytes(&self, data: &[u8]) -> Result<Vec<u8>, ContentError> {
        let plain = plain_size(data.len() as u64).ok_or(ContentError::Header(
            "file size is not a valid gocryptfs size (truncated)",
        ))?;
        if plain == 0 {
            return Ok(Vec::new());
        }
        if data[..2] != [0, 2] {
            return Err(ContentError::Header("unsupported header version (need 2)"));
        }
        let file_id: [u8; 16] = data[2..HEADER_LEN]
            .try_into()
            .map_err(|_| ContentError::Header("short header"))?;
        if file_id.iter().all(|b| *b == 0) {
            return Err(ContentError::Header("all-zero file ID"));
        }
        let mut gcm = Gcm::new(&self.key, false)
            .ok_or(ContentError::Header("OpenSSL AES-256-GCM unavailable"))?;
        let mut out = Vec::with_capacity(plain as usize);
        for (i, block) in data[HEADER_LEN..].chunks(CBLOCK).enumerate() {
            let mut buf = block.to_vec();
            let r = self
                .open_block(&mut gcm, &mut buf, i as u64, &file_id)
                .map_err(|reason| ContentError::Block {
                    block: i as u64,
                    offset: (HEADER_LEN + i * CBLOCK) as u64,
                    reason,
                })?;
            out.extend_from_slice(&buf[r]);
        }
        Ok(out)
    }

    /// Authenticates every block of `src` without writing plaintext anywhere.
    pub fn verify_file(&self, src: &mut File) -> Result<u64, ContentError> {
        self.open_file(src, None)
    }

    fn open_file(&self, src: &mut File, dst: Option<&File>) -> Result<u64, ContentError> {
        let len = src.metadata()?.len();
        let plain = plain_size(len).ok_or(ContentError::Header(
            "file size is not a valid gocryptfs size (truncated)",
        ))?;
        if plain == 0 {
            // 0 bytes, or a header with no block (an interrupted write): an empty file.
            if let Some(dst) = dst {
                dst.set_len(0)?;
            }
            return Ok(0);
        }
        let mut header = [0u8; HEADER_LEN];
        src.read_exact(&mut header)?;
        if header[..2] != [0, 2] {
            return Err(ContentError::Header("unsupported header version (need 2)"));
        }
        let file_id: [u8; 16] = header[2..]
            .try_into()
            .map_err(|_| ContentError::Header("short header"))?;
        if file_id.iter().all(|b| *b == 0) {
            return Err(ContentError::Header("all-zero file ID"));
        }
        if let Some(dst) = dst {
            dst.set_len(plain)?;
        }
        // Chunks are independent: each worker reads one with a positional read,
        // authenticates all its blocks, then writes its plaintext with one positional
        // write, so reads, AES-GCM and writes of different chunks overlap on all cores.
        let src: &File = src;
        let chunk_c = (CBLOCK * BLOCKS_PER_CHUNK) as u64;
        let chunks = (len - HEADER_LEN as u64).div_ceil(chunk_c);
        (0..chunks).into_par_iter().try_for_each_init(
            || {
                (
                    Gcm::new(&self.key, false),
                    vec![0u8; CBLOCK * BLOCKS_PER_CHUNK],
                )
            },
            |(gcm, buf), c| -> Result<(), ContentError> {
                let gcm = gcm
                    .as_mut()
                    .ok_or(ContentError::Header("OpenSSL AES-256-GCM unavailable"))?;
                let offset = HEADER_LEN as u64 + c * chunk_c;
                let want = (len - offset).min(chunk_c) as usize;
                let chunk = &mut buf[..want];
                src.read_exact_at(chunk, offset)?;
                let first_block = c * BLOCKS_PER_CHUNK as u64;
                let nblocks = want.div_ceil(CBLOCK);
                let mut last_len = BLOCK;
                for i in 0..nblocks {
                    let block = first_block + i as u64;
                    let b = &mut chunk[i * CBLOCK..((i + 1) * CBLOCK).min(want)];
                    let r = self.open_block(gcm, b, block, &file_id).map_err(|reason| {
                        ContentError::Block {
                            block,
                            offset: HEADER_LEN as u64 + block * CBLOCK as u64,
                            reason,
                        }
                    })?;
                    last_len = r.len();
                }
                if let Some(dst) = dst {
                    // Every block but the last is full: block i's plaintext moves to i * BLOCK.
                    for i in 0..nblocks {
                        let n = if i + 1 == nblocks { last_len } else { BLOCK };
                        let from = i * CBLOCK + NONCE;
                        chunk.copy_within(from..from + n, i * BLOCK);
                    }
                    let packed = (nblocks - 1) * BLOCK + last_len;
                    dst.write_all_at(&chunk[..packed], first_block * BLOCK as u64)?;
                }
                Ok(())
            },
        )?;
        Ok(plain)
    }

    /// Encrypts the file `src` into `dst` with a fresh file ID and fresh nonces, returning
    /// the plaintext size.
    pub fn encrypt_file(&self, src: &mut File, dst: &File) -> Result<u64, ContentError> {
        use rand::RngCore;
        let len = src.metadata()?.len();
        dst.set_len(0)?;
        if len == 0 {
            return Ok(0);
        }
        let mut header = [0u8; HEADER_LEN];
        header[1] = 2;
        loop {
            rand::thread_rng().fill_bytes(&mut header[2..]);
            if header[2..].iter().any(|b| *b != 0) {
                break;
            }
        }
        let file_id: [u8; 16] = header[2..]
            .try_into()
            .map_err(|_| ContentError::Header("short header"))?;
        dst.write_all_at(&header, 0)?;
        let full = len / BLOCK as u64;
        let rem = len % BLOCK as u64;
        let cipher_len = HEADER_LEN as u64
            + full * CBLOCK as u64
            + if rem > 0 {
                rem + (NONCE + TAG) as u64
            } else {
                0
            };
        dst.set_len(cipher_len)?;
        // Independent chunks, as in decryption: positional read, seal, positional write.
        let src: &File = src;
        let chunk_p = (BLOCK * BLOCKS_PER_CHUNK) as u64;
        (0..len.div_ceil(chunk_p))
            .into_par_iter()
            .try_for_each_init(
                || {
                    (
                        Gcm::new(&self.key, true),
                        vec![0u8; BLOCK * BLOCKS_PER_CHUNK],
                        vec![0u8; CBLOCK * BLOCKS_PER_CHUNK],
                    )
                },
                |(gcm, plain, out), c| -> Result<(), ContentError> {
                    let gcm = gcm
                        .as_mut()
                        .ok_or(ContentError::Header("OpenSSL AES-256-GCM unavailable"))?;
                    let offset = c * chunk_p;
                    let want = (len - offset).min(chunk_p) as usize;
                    src.read_exact_at(&mut plain[..want], offset)?;
                    let first_block = c * BLOCKS_PER_CHUNK as u64;
                    let nblocks = want.div_ceil(BLOCK);
                    let out_len = want + nblocks * (NONCE + TAG);
                    for (i, (o, p)) in out[..out_len]
                        .chunks_mut(CBLOCK)
                        .zip(plain[..want].chunks(BLOCK))
                        .enumerate()
                    {
                        self.seal_block(gcm, o, p, first_block + i as u64, &file_id)?;
                    }
                    dst.write_all_at(
                        &out[..out_len],
                        HEADER_LEN as u64 + first_block * CBLOCK as u64,
                    )?;
                    Ok(())
                },
            )?;
        Ok(len)
    }

    fn seal_block(
        &self,
        gcm: &mut Gcm,
        out: &mut [u8],
        plain: &[u8],
        block: u64,
        file_id: &[u8; 16],
    ) -> Result<(), ContentError> {
        use rand::RngCore;
        let (nonce, rest) = out.split_at_mut(NONCE);
        loop {
            rand::thread_rng().fill_bytes(nonce);
            if nonce.iter().any(|b| *b != 0) {
                break;
            }
        }
        let nonce: [u8; 16] = (&*nonce)
            .try_into()
            .map_err(|_| ContentError::Header("nonce"))?;
        let (data, tag) = rest.split_at_mut(plain.len());
        data.copy_from_slice(plain);
        let mut aad = [0u8; 24];
        aad[..8].copy_from_slice(&block.to_be_bytes());
        aad[8..].copy_from_slice(file_id);
        let t = gcm.seal(&nonce, &aad, data).ok_or(ContentError::Block {
            block,
            offset: 0,
            reason: "encryption failed",
        })?;
        tag[..TAG].copy_from_slice(&t);
        Ok(())
    }

    /// Encrypts a symlink target to its stored form: base64url(nonce || ct || tag), AAD 8
    /// zero bytes (a one-block file without file ID).
    pub fn encrypt_symlink(&self, target: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(self.seal_small(target))
    }

    /// Seals a small value (symlink target, xattr value): nonce ‖ ciphertext ‖ tag, AAD 8
    /// zero bytes.
    pub fn seal_small(&self, data: &[u8]) -> Vec<u8> {
        use rand::RngCore;
        let mut nonce = [0u8; 16];
        while nonce == [0; 16] {
            rand::thread_rng().fill_bytes(&mut nonce);
        }
        let mut blob = nonce.to_vec();
        blob.extend(crate::keys::gcm_seal(&self.key, &nonce, &[0u8; 8], data));
        blob
    }

    /// Opens a value sealed by [`ContentCipher::seal_small`]; falls back to base64 (how old
    /// gocryptfs versions stored xattr values).
    pub fn open_small(&self, blob: &[u8]) -> Result<Vec<u8>, &'static str> {
        let open = |b: &[u8]| {
            if b.len() < NONCE + TAG {
                return None;
            }
            crate::keys::gcm_open(&self.key, &b[..NONCE], &[0u8; 8], &b[NONCE..])
                .map(|t| t.to_vec())
        };
        if let Some(v) = open(blob) {
            return Ok(v);
        }
        base64::engine::general_purpose::STANDARD
            .decode(blob)
            .ok()
            .and_then(|b| open(&b))
            .ok_or("failed authentication (tampered or wrong key)")
    }

    /// Decrypts a symlink target stored as base64url(nonce || ct || tag), AAD 8 zero bytes.
    pub fn decrypt_symlink(&self, stored: &[u8]) -> Result<Vec<u8>, &'static str> {
        let blob = URL_SAFE_NO_PAD
            .decode(stored)
            .map_err(|_| "symlink target is not base64url")?;
        if blob.len() < NONCE + TAG {
            return Err("symlink target too short");
        }
        crate::keys::gcm_open(&self.key, &blob[..NONCE], &[0u8; 8], &blob[NONCE..])
            .map(|t| t.to_vec())
            .ok_or("symlink target failed authentication")
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
        let c = ContentCipher::new(&key);
        assert_eq!(c.decrypt_bytes(&file).unwrap(), b"Hello, gocryptfs!\n");
        let mut bad = file.clone();
        bad[40] ^= 1;
        assert!(c.decrypt_bytes(&bad).is_err());
    }

    #[test]
    fn known_answer_block() {
        // §13: zero master key content key, block 1, file ID 10..1f, nonce 00..0f, "hello".
        let key: [u8; 32] =
            hex::decode("ab893c7a9f8683d8c56296fdd109aa8d73c1937d112d1cf89923f9d175fbd782")
                .unwrap()
                .try_into()
                .unwrap();
        let c = ContentCipher::new(&key);
        let mut b = hex::decode(
            "000102030405060708090a0b0c0d0e0fa3a47ef84c9fb2afc42e2434e90a9d29166f98493a",
        )
        .unwrap();
        let id: [u8; 16] = (0x10..0x20).collect::<Vec<u8>>().try_into().unwrap();
        let mut gcm = Gcm::new(&key, false).unwrap();
        let r = c.open_block(&mut gcm, &mut b, 1, &id).unwrap();
        assert_eq!(&b[r], b"hello");
        let mut b2 = hex::decode(
            "000102030405060708090a0b0c0d0e0fa3a47ef84c9fb2afc42e2434e90a9d29166f98493a",
        )
        .unwrap();
        assert!(
            c.open_block(&mut gcm, &mut b2, 0, &id).is_err(),
            "block number is authenticated"
        );
    }
}

#[cfg(test)]
mod chunk_tests {
    use super::*;

    /// Files spanning several 4 MiB chunks round-trip, and a bad block in a middle chunk
    /// is reported by number while the rest of the file is processed in parallel.
    #[test]
    fn multi_chunk_round_trip_and_tamper() {
        let dir = tempfile::tempdir().unwrap();
        let key = [3u8; 32];
        let c = ContentCipher::new(&key);
        let len = 2 * BLOCK * BLOCKS_PER_CHUNK + 3 * BLOCK + 123;
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let (p, e, d) = (
            dir.path().join("p"),
            dir.path().join("e"),
            dir.path().join("d"),
        );
        std::fs::write(&p, &data).unwrap();
        let mut src = File::open(&p).unwrap();
        let dst = File::create(&e).unwrap();
        assert_eq!(c.encrypt_file(&mut src, &dst).unwrap(), len as u64);
        let enc = std::fs::read(&e).unwrap();
        assert_eq!(plain_size(enc.len() as u64), Some(len as u64));
        assert_eq!(c.decrypt_bytes(&enc).unwrap(), data);
        let out = File::create(&d).unwrap();
        c.decrypt_file(&mut File::open(&e).unwrap(), &out).unwrap();
        assert_eq!(std::fs::read(&d).unwrap(), data);

        let bad_block = BLOCKS_PER_CHUNK as u64 + 7;
        let mut bad = enc.clone();
        bad[HEADER_LEN + bad_block as usize * CBLOCK + 40] ^= 1;
        std::fs::write(&e, &bad).unwrap();
        let out = File::create(&d).unwrap();
        match c.decrypt_file(&mut File::open(&e).unwrap(), &out) {
            Err(ContentError::Block { block, .. }) => assert_eq!(block, bad_block),
            other => panic!("{other:?}"),
        }
        // The bad block's plaintext was never written (its range is still a hole).
        let partial = std::fs::read(&d).unwrap();
        let at = bad_block as usize * BLOCK;
        assert!(partial[at..at + BLOCK].iter().all(|b| *b == 0));
        assert!(c.verify_file(&mut File::open(&e).unwrap()).is_err());
    }
}
