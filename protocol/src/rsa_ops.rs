//! RSA key management for the JWE, done by OpenSSL: PKCS#1 v1.5 (`RSA1_5`, which the 0.1.x
//! protocol requires) and OAEP. OpenSSL is the only RSA provider in the workspace; its
//! PKCS#1 v1.5 decryption uses implicit rejection, so a padding oracle learns nothing.

use openssl::bn::BigNum;
use openssl::md::Md;
use openssl::pkey::{HasPublic, PKey, PKeyRef, Private, Public};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::{Padding, Rsa};
use zeroize::Zeroizing;

use crate::jwk::RsaAlg;

/// Smallest modulus accepted (bits): what Trustee's guests generate.
pub(crate) const MIN_BITS: u32 = 2048;
/// Largest modulus accepted (bits). A TEE key comes from an unauthenticated caller; bounding
/// it bounds the server's cost of encrypting to it.
pub(crate) const MAX_BITS: u32 = 8192;

/// An RSA public key from big-endian modulus and exponent bytes, within the size bounds.
pub(crate) fn public_from_components(n: &[u8], e: &[u8]) -> Result<PKey<Public>, KeySize> {
    let n = trim_zeros(n);
    let e = trim_zeros(e);
    let bits = n.len() * 8;
    if bits < MIN_BITS as usize - 7 {
        return Err(KeySize::TooSmall);
    }
    if bits > MAX_BITS as usize {
        return Err(KeySize::TooLarge);
    }
    // A public exponent must be odd and greater than one; larger than 64 bits is refused
    // by OpenSSL for big moduli anyway and only costs time.
    if e.is_empty() || e.len() > 8 || e.last().is_some_and(|b| b & 1 == 0) || e == [1] {
        return Err(KeySize::BadExponent);
    }
    let rsa = Rsa::from_public_components(
        BigNum::from_slice(n).map_err(|_| KeySize::BadExponent)?,
        BigNum::from_slice(e).map_err(|_| KeySize::BadExponent)?,
    )
    .map_err(|_| KeySize::BadExponent)?;
    if rsa.size() * 8 < MIN_BITS {
        return Err(KeySize::TooSmall);
    }
    PKey::from_rsa(rsa).map_err(|_| KeySize::BadExponent)
}

fn trim_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    &b[start..]
}

/// Why RSA public components were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeySize {
    TooSmall,
    TooLarge,
    BadExponent,
}

/// Big-endian modulus and exponent of a key.
pub(crate) fn components<T: HasPublic>(key: &PKeyRef<T>) -> Option<(Vec<u8>, Vec<u8>)> {
    let rsa = key.rsa().ok()?;
    Some((rsa.n().to_vec(), rsa.e().to_vec()))
}

/// The public half of a private key.
pub(crate) fn public_half(key: &PKeyRef<Private>) -> Option<PKey<Public>> {
    let rsa = key.rsa().ok()?;
    let public =
        Rsa::from_public_components(rsa.n().to_owned().ok()?, rsa.e().to_owned().ok()?).ok()?;
    PKey::from_rsa(public).ok()
}

/// A fresh key of `bits` bits.
pub(crate) fn generate(bits: u32) -> Option<PKey<Private>> {
    PKey::from_rsa(Rsa::generate(bits).ok()?).ok()
}

fn configure<T>(ctx: &mut PkeyCtx<T>, alg: RsaAlg) -> Option<()> {
    match alg {
        RsaAlg::Rsa1_5 => ctx.set_rsa_padding(Padding::PKCS1).ok(),
        RsaAlg::RsaOaep => {
            ctx.set_rsa_padding(Padding::PKCS1_OAEP).ok()?;
            ctx.set_rsa_oaep_md(Md::sha1()).ok()?;
            ctx.set_rsa_mgf1_md(Md::sha1()).ok()
        }
        RsaAlg::RsaOaep256 => {
            ctx.set_rsa_padding(Padding::PKCS1_OAEP).ok()?;
            ctx.set_rsa_oaep_md(Md::sha256()).ok()?;
            ctx.set_rsa_mgf1_md(Md::sha256()).ok()
        }
    }
}

/// Encrypts `data` (a content key) to `key` with the JWE algorithm `alg`.
pub(crate) fn encrypt(key: &PKeyRef<Public>, alg: RsaAlg, data: &[u8]) -> Option<Vec<u8>> {
    let mut ctx = PkeyCtx::new(key).ok()?;
    ctx.encrypt_init().ok()?;
    configure(&mut ctx, alg)?;
    let mut out = Vec::new();
    ctx.encrypt_to_vec(data, &mut out).ok()?;
    Some(out)
}

/// Decrypts a wrapped content key with the JWE algorithm `alg`.
pub(crate) fn decrypt(
    key: &PKeyRef<Private>,
    alg: RsaAlg,
    data: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let mut ctx = PkeyCtx::new(key).ok()?;
    ctx.decrypt_init().ok()?;
    configure(&mut ctx, alg)?;
    let mut out = Zeroizing::new(Vec::new());
    ctx.decrypt_to_vec(data, &mut out).ok()?;
    Some(out)
}
