//! EME (Halevi–Rogaway "ECB-Mix-ECB") wide-block encryption over AES-256, the variant
//! gocryptfs uses for file names.

use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use aes::Aes256;

/// Doubling in GF(2^128), little-endian byte order, reduction 0x87.
fn dbl(x: &mut [u8; 16]) {
    let carry = x[15] >> 7;
    for j in (1..16).rev() {
        x[j] = (x[j] << 1) | (x[j - 1] >> 7);
    }
    x[0] = (x[0] << 1) ^ (carry * 0x87);
}

fn xor(a: &mut [u8; 16], b: &[u8; 16]) {
    a.iter_mut().zip(b).for_each(|(x, y)| *x ^= y);
}

/// Which way [`transform`] works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Encrypt,
    Decrypt,
}

/// Encrypts or decrypts `data` (1..=128 blocks of 16 bytes) under `key` with `tweak`.
/// `None` when the length is not a positive multiple of 16 or over 128 blocks.
pub(crate) fn transform(
    key: &[u8; 32],
    tweak: &[u8; 16],
    data: &[u8],
    direction: Direction,
) -> Option<Vec<u8>> {
    if data.is_empty() || !data.len().is_multiple_of(16) || data.len() > 16 * 128 {
        return None;
    }
    let aes = Aes256::new(key.into());
    let f = |b: &mut [u8; 16]| match direction {
        Direction::Encrypt => aes.encrypt_block(b.into()),
        Direction::Decrypt => aes.decrypt_block(b.into()),
    };
    let blocks: Vec<[u8; 16]> = data
        .chunks_exact(16)
        .map(|c| {
            let mut b = [0u8; 16];
            b.copy_from_slice(c);
            b
        })
        .collect();
    let m = blocks.len();
    // L_j = 2^j · E(0), always computed with encryption.
    let mut l = Vec::with_capacity(m);
    let mut cur = [0u8; 16];
    aes.encrypt_block((&mut cur).into());
    for _ in 0..m {
        dbl(&mut cur);
        l.push(cur);
    }
    let mut ppp: Vec<[u8; 16]> = blocks
        .iter()
        .zip(&l)
        .map(|(p, lj)| {
            let mut x = *p;
            xor(&mut x, lj);
            f(&mut x);
            x
        })
        .collect();
    let mut mp = *tweak;
    ppp.iter().for_each(|p| xor(&mut mp, p));
    let mut mc = mp;
    f(&mut mc);
    let mut mm = mp;
    xor(&mut mm, &mc);
    let mut ccc1 = mc;
    xor(&mut ccc1, tweak);
    for p in ppp.iter_mut().skip(1) {
        dbl(&mut mm);
        xor(p, &mm);
        xor(&mut ccc1, p);
    }
    ppp[0] = ccc1;
    let mut out = Vec::with_capacity(data.len());
    for (c, lj) in ppp.iter_mut().zip(&l) {
        f(c);
        xor(c, lj);
        out.extend_from_slice(c);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    #[test]
    fn worked_example_two_blocks() {
        // shared/spec/gocryptfs-format.md §12.5
        let key: [u8; 32] = h("c417a986012f22531a60854e3cfc3f5e0c75d505df47d932b1f1f7d623db6e0f")
            .try_into()
            .unwrap();
        let iv: [u8; 16] = h("1d8ee9502c0ca3f49df3a59ce02a1568").try_into().unwrap();
        let p = h("6d756c74692d626c6f636b2d6e616d65 2e7478740c0c0c0c0c0c0c0c0c0c0c0c");
        let c = transform(&key, &iv, &p, Direction::Encrypt).unwrap();
        assert_eq!(
            hex::encode(&c),
            "1d2d0db8b029bbfe96599aa00fb7cdcdeea13b571ab080ef46f3ac19a585abc6"
        );
        assert_eq!(transform(&key, &iv, &c, Direction::Decrypt).unwrap(), p);
        assert!(transform(&key, &iv, &p[..15], Direction::Encrypt).is_none());
    }

    #[test]
    fn zero_key_vectors() {
        // §13: K_name for the all-zero master key, deterministic names.
        let key: [u8; 32] = h("9ba3cddd48c6339c6e56ebe85f0281d6e9051be4104176e65cb0f8a6f77ae6b4")
            .try_into()
            .unwrap();
        let c = transform(
            &key,
            &[0; 16],
            b"hello.txt\x07\x07\x07\x07\x07\x07\x07",
            Direction::Encrypt,
        )
        .unwrap();
        assert_eq!(hex::encode(c), "8cbd801960ac1f728bd984764b792a36");
    }
}
