//! Whole files on all cores. A file is cut into independent 256 KiB chunks of plaintext; a
//! worker reads a chunk's input with one positional read, decrypts (or encrypts) every block
//! of it into a chunk buffer and writes that with one positional write once all of it is
//! done, so only authenticated plaintext is ever written.
//!
//! The ciphertext is read into private memory rather than mapped: the source may sit on
//! storage the (untrusted) host controls, and AES-GCM code may read its input twice (hash,
//! then decrypt), so a mapped block changed between the two reads could pass authentication
//! and still decrypt to something else.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;

use rand::RngCore;
use rayon::prelude::*;

use super::{
    plain_size, ContentCipher, ContentError, HeaderFault, BLOCK, CBLOCK, HEADER_LEN, NONCE, TAG,
};
use crate::digest::{chunk_hash, file_leaf};
use crate::gcm::{Gcm, GcmError};

/// What a whole-file run produced: the plaintext size and the file's leaf of the model
/// digest ([`crate::digest`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileDone {
    /// Plaintext bytes.
    pub size: u64,
    /// The file's digest leaf (file ID, size and every block's tag).
    pub leaf: [u8; 32],
}

impl FileDone {
    fn empty() -> Self {
        FileDone {
            size: 0,
            leaf: file_leaf(&[0; 16], 0, &[]),
        }
    }
}

/// Blocks per chunk, the unit of parallel work and of every read and write (256 KiB of
/// plaintext): small enough that a chunk's input and output stay in L2 cache between the
/// copy from the page cache, the AES pass and the copy out.
pub(crate) const BLOCKS_PER_CHUNK: usize = 64;

/// A worker's context, or (once) the error that kept it from being created; later chunks
/// of the same worker get a repeat without OpenSSL's detail.
fn usable(gcm: &mut Result<Gcm, GcmError>) -> Result<&mut Gcm, ContentError> {
    match gcm {
        Ok(g) => Ok(g),
        Err(e) => Err(ContentError::Gcm(std::mem::replace(e, GcmError::again()))),
    }
}

/// Ciphertext file size for a plaintext size.
fn cipher_size(plain: u64) -> u64 {
    if plain == 0 {
        return 0;
    }
    let (full, rem) = (plain / BLOCK as u64, plain % BLOCK as u64);
    let partial = if rem > 0 {
        rem + (NONCE + TAG) as u64
    } else {
        0
    };
    HEADER_LEN as u64 + full * CBLOCK as u64 + partial
}

/// Calls `fill(state, index, piece)` for every `chunk`-byte piece of the range
/// `base..base + len` of `dst` (already sized), in parallel, and writes each piece with one
/// positional write once `fill` has produced all of it, and returns what `fill` returned
/// for each piece, in order. An error stops the run; the caller discards `dst`.
///
/// Writing through `pwrite` from an L2-resident buffer was measured against decrypting
/// straight into a shared mapping of `dst`: on tmpfs the mapping's per-page population cost
/// more than the copy it saves, with or without huge pages.
fn fill_parallel<S, T: Send>(
    dst: &File,
    base: u64,
    len: u64,
    chunk: usize,
    init: impl Fn() -> S + Send + Sync,
    fill: impl Fn(&mut S, u64, &mut [u8]) -> Result<T, ContentError> + Send + Sync,
) -> Result<Vec<T>, ContentError> {
    (0..len.div_ceil(chunk as u64))
        .into_par_iter()
        .map_init(
            || (init(), vec![0u8; chunk]),
            |(state, buf), c| {
                let offset = c * chunk as u64;
                let piece = &mut buf[..(len - offset).min(chunk as u64) as usize];
                let t = fill(state, c, piece)?;
                dst.write_all_at(piece, base + offset)?;
                Ok(t)
            },
        )
        .collect()
}

impl ContentCipher {
    /// Decrypts the file `src` into `dst`, returning the plaintext size and digest leaf;
    /// `report` gets the plaintext bytes of every finished chunk. On error `dst` may hold
    /// partial output, never the plaintext of a block that failed authentication; the
    /// caller removes it.
    pub fn decrypt_file(
        &self,
        src: &mut File,
        dst: &File,
        report: &(dyn Fn(u64) + Sync),
    ) -> Result<FileDone, ContentError> {
        let len = src.metadata()?.len();
        // Sized from zero so nothing of an earlier file survives in holes.
        dst.set_len(0)?;
        let Some((plain, file_id)) = read_header(src, len)? else {
            return Ok(FileDone::empty());
        };
        dst.set_len(plain)?;
        let src: &File = src;
        let chunks = fill_parallel(
            dst,
            0,
            plain,
            BLOCK * BLOCKS_PER_CHUNK,
            || self.opener(),
            |(gcm, buf), c, out| {
                let gcm = usable(gcm)?;
                let first_block = c * BLOCKS_PER_CHUNK as u64;
                let n = out.len();
                let h = self.open_chunk(gcm, src, buf, &file_id, first_block, n, Some(out))?;
                report(n as u64);
                Ok(h)
            },
        )?;
        Ok(FileDone {
            size: plain,
            leaf: file_leaf(&file_id, plain, &chunks),
        })
    }

    /// Authenticates every block of `src` without writing plaintext anywhere, returning the
    /// plaintext size and digest leaf; `report` gets the plaintext bytes of every finished
    /// chunk.
    pub fn verify_file(
        &self,
        src: &mut File,
        report: &(dyn Fn(u64) + Sync),
    ) -> Result<FileDone, ContentError> {
        let len = src.metadata()?.len();
        let Some((plain, file_id)) = read_header(src, len)? else {
            return Ok(FileDone::empty());
        };
        let src: &File = src;
        let chunk = (BLOCK * BLOCKS_PER_CHUNK) as u64;
        let chunks = (0..plain.div_ceil(chunk))
            .into_par_iter()
            .map_init(
                || self.opener(),
                |(gcm, buf), c| -> Result<[u8; 32], ContentError> {
                    let gcm = usable(gcm)?;
                    let plain_len = (plain - c * chunk).min(chunk) as usize;
                    let first_block = c * BLOCKS_PER_CHUNK as u64;
                    let h =
                        self.open_chunk(gcm, src, buf, &file_id, first_block, plain_len, None)?;
                    report(plain_len as u64);
                    Ok(h)
                },
            )
            .collect::<Result<Vec<_>, _>>()?;
        Ok(FileDone {
            size: plain,
            leaf: file_leaf(&file_id, plain, &chunks),
        })
    }

    fn opener(&self) -> (Result<Gcm, GcmError>, Vec<u8>) {
        (
            Gcm::decryptor(self.key.bytes()),
            vec![0u8; CBLOCK * BLOCKS_PER_CHUNK],
        )
    }

    /// Authenticates the `plain_len` bytes of plaintext from `first_block` on, decrypting
    /// them into `out` when given; returns the hash of their tags (digest chunk hash).
    #[allow(clippy::too_many_arguments)]
    fn open_chunk(
        &self,
        gcm: &mut Gcm,
        src: &File,
        buf: &mut [u8],
        file_id: &[u8; 16],
        first_block: u64,
        plain_len: usize,
        mut out: Option<&mut [u8]>,
    ) -> Result<[u8; 32], ContentError> {
        let mut scratch = [0u8; BLOCK];
        let nblocks = plain_len.div_ceil(BLOCK);
        let cipher = &mut buf[..plain_len + nblocks * (NONCE + TAG)];
        src.read_exact_at(cipher, HEADER_LEN as u64 + first_block * CBLOCK as u64)?;
        for (i, cblock) in cipher.chunks(CBLOCK).enumerate() {
            let block = first_block + i as u64;
            let n = cblock.len().saturating_sub(NONCE + TAG);
            let target = match out.as_deref_mut() {
                Some(out) => &mut out[i * BLOCK..][..n],
                None => &mut scratch[..n],
            };
            self.open_block(gcm, cblock, target, block, file_id)
                .map_err(|reason| ContentError::Block {
                    block,
                    offset: HEADER_LEN as u64 + block * CBLOCK as u64,
                    reason,
                })?;
        }
        Ok(if self.digest {
            chunk_hash(cipher, CBLOCK)
        } else {
            [0; 32]
        })
    }

    /// Encrypts the file `src` into `dst` with a fresh file ID and fresh nonces, returning
    /// the plaintext size and the digest leaf of the new ciphertext; `report` gets the
    /// plaintext bytes of every finished chunk.
    pub fn encrypt_file(
        &self,
        src: &mut File,
        dst: &File,
        report: &(dyn Fn(u64) + Sync),
    ) -> Result<FileDone, ContentError> {
        let len = src.metadata()?.len();
        dst.set_len(0)?;
        if len == 0 {
            return Ok(FileDone::empty());
        }
        let mut header = [0u8; HEADER_LEN];
        header[1] = 2;
        while header[2..].iter().all(|b| *b == 0) {
            rand::thread_rng().fill_bytes(&mut header[2..]);
        }
        let mut file_id = [0u8; 16];
        file_id.copy_from_slice(&header[2..]);
        let total = cipher_size(len);
        dst.set_len(total)?;
        dst.write_all_at(&header, 0)?;
        let src: &File = src;
        let chunks = fill_parallel(
            dst,
            HEADER_LEN as u64,
            total - HEADER_LEN as u64,
            CBLOCK * BLOCKS_PER_CHUNK,
            || {
                (
                    Gcm::encryptor(self.key.bytes()),
                    vec![0u8; BLOCK * BLOCKS_PER_CHUNK],
                )
            },
            |(gcm, buf), c, out| {
                let gcm = usable(gcm)?;
                let first_block = c * BLOCKS_PER_CHUNK as u64;
                let plain_len = out.len() - out.len().div_ceil(CBLOCK) * (NONCE + TAG);
                let plain = &mut buf[..plain_len];
                src.read_exact_at(plain, first_block * BLOCK as u64)?;
                for (i, (o, p)) in out.chunks_mut(CBLOCK).zip(plain.chunks(BLOCK)).enumerate() {
                    self.seal_block(gcm, o, p, first_block + i as u64, &file_id)?;
                }
                report(plain_len as u64);
                Ok(chunk_hash(out, CBLOCK))
            },
        )?;
        Ok(FileDone {
            size: len,
            leaf: file_leaf(&file_id, len, &chunks),
        })
    }
}

/// Reads and checks the header of a ciphertext file of `len` bytes: `None` for an empty
/// file (0 bytes, or a header without blocks, left by an interrupted write), else the
/// plaintext size and the file ID.
fn read_header(src: &mut File, len: u64) -> Result<Option<(u64, [u8; 16])>, ContentError> {
    let plain = plain_size(len).ok_or(ContentError::Header(HeaderFault::Size))?;
    if plain == 0 {
        return Ok(None);
    }
    let mut header = [0u8; HEADER_LEN];
    src.read_exact(&mut header)?;
    Ok(Some((plain, super::check_header(&header)?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::BlockFault;
    use crate::keys::ContentKey;

    #[test]
    fn cipher_size_inverts_plain_size() {
        for p in [0u64, 1, 4095, 4096, 4097, 8192, 5 << 20, (5 << 20) + 7] {
            assert_eq!(plain_size(cipher_size(p)), Some(p), "{p}");
        }
    }

    /// Files spanning many chunks round-trip, and a bad block in a middle chunk
    /// is reported by number while the rest of the file is processed in parallel.
    #[test]
    fn multi_chunk_round_trip_and_tamper() {
        let dir = tempfile::tempdir().unwrap();
        let c = ContentCipher::new(&ContentKey::from_bytes([3u8; 32]));
        let len = 20 * BLOCK * BLOCKS_PER_CHUNK + 3 * BLOCK + 123;
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let (p, e, d) = (
            dir.path().join("p"),
            dir.path().join("e"),
            dir.path().join("d"),
        );
        std::fs::write(&p, &data).unwrap();
        let mut src = File::open(&p).unwrap();
        let dst = rw(&e);
        let enc_done = c.encrypt_file(&mut src, &dst, &|_| {}).unwrap();
        assert_eq!(enc_done.size, len as u64);
        let enc = std::fs::read(&e).unwrap();
        assert_eq!(enc.len() as u64, cipher_size(len as u64));
        assert_eq!(c.decrypt_bytes(&enc).unwrap(), data);
        let out = rw(&d);
        let dec_done = c
            .decrypt_file(&mut File::open(&e).unwrap(), &out, &|_| {})
            .unwrap();
        assert_eq!(std::fs::read(&d).unwrap(), data);
        // Encryption, decryption and verification agree on the digest leaf.
        assert_eq!(dec_done, enc_done);
        let ver_done = c
            .verify_file(&mut File::open(&e).unwrap(), &|_| {})
            .unwrap();
        assert_eq!(ver_done, enc_done);

        let bad_block = 11 * BLOCKS_PER_CHUNK as u64 + 7;
        let mut bad = enc.clone();
        bad[HEADER_LEN + bad_block as usize * CBLOCK + 40] ^= 1;
        std::fs::write(&e, &bad).unwrap();
        for out in [rw(&d), File::create(&d).unwrap()] {
            match c.decrypt_file(&mut File::open(&e).unwrap(), &out, &|_| {}) {
                Err(ContentError::Block {
                    block,
                    reason: BlockFault::Authentication,
                    ..
                }) => assert_eq!(block, bad_block),
                other => panic!("{other:?}"),
            }
            // The bad block's plaintext is not in the output (its range reads as zeros).
            let partial = std::fs::read(&d).unwrap();
            let at = bad_block as usize * BLOCK;
            assert!(partial[at..at + BLOCK].iter().all(|b| *b == 0));
        }
        assert!(c
            .verify_file(&mut File::open(&e).unwrap(), &|_| {})
            .is_err());
    }

    /// Write-only destinations work, and decrypting over a longer old file leaves none of
    /// it behind.
    #[test]
    fn write_only_destination_over_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let c = ContentCipher::new(&ContentKey::from_bytes([9u8; 32]));
        let len = BLOCK * BLOCKS_PER_CHUNK + 5 * BLOCK + 1;
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 253) as u8).collect();
        let (p, e, d) = (
            dir.path().join("p"),
            dir.path().join("e"),
            dir.path().join("d"),
        );
        std::fs::write(&p, &data).unwrap();
        let enc_out = File::create(&e).unwrap();
        c.encrypt_file(&mut File::open(&p).unwrap(), &enc_out, &|_| {})
            .unwrap();
        std::fs::write(&d, vec![0xAAu8; 3 * len]).unwrap();
        let out = File::options().write(true).open(&d).unwrap();
        c.decrypt_file(&mut File::open(&e).unwrap(), &out, &|_| {})
            .unwrap();
        assert_eq!(std::fs::read(&d).unwrap(), data);
    }

    /// Workers whose OpenSSL context cannot be created fail the file with that error (not
    /// a header error, and not a file that "decrypts" to nothing).
    #[test]
    fn openssl_failures_in_workers_are_reported_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let c = ContentCipher::new(&ContentKey::from_bytes([5u8; 32]));
        let (p, e, d) = (
            dir.path().join("p"),
            dir.path().join("e"),
            dir.path().join("d"),
        );
        std::fs::write(&p, vec![7u8; 3 * BLOCK * BLOCKS_PER_CHUNK]).unwrap();
        c.encrypt_file(&mut File::open(&p).unwrap(), &rw(&e), &|_| {})
            .unwrap();
        let broken = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .start_handler(|_| crate::gcm::break_on_this_thread(true))
            .build()
            .unwrap();
        let (dec, ver, enc) = broken.install(|| {
            (
                c.decrypt_file(&mut File::open(&e).unwrap(), &rw(&d), &|_| {}),
                c.verify_file(&mut File::open(&e).unwrap(), &|_| {}),
                c.encrypt_file(&mut File::open(&p).unwrap(), &rw(&d), &|_| {}),
            )
        });
        for r in [dec, ver, enc] {
            assert!(matches!(r, Err(ContentError::Gcm(_))), "{r:?}");
        }
    }

    fn rw(path: &std::path::Path) -> File {
        File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .unwrap()
    }
}
