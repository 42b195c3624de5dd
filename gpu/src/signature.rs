//! ECDSA P-384 over SHA-384 with a raw `r‖s` signature, the form both GPU reports and
//! XML signatures on RIMs use.

use openssl::bn::BigNum;
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Public};

/// Whether `sig` (48-byte `r` ‖ 48-byte `s`, big-endian) signs SHA-384(`data`) under `key`
/// (a P-384 EC key).
pub fn verify_raw_p384(key: &PKey<Public>, data: &[u8], sig: &[u8]) -> bool {
    if sig.len() != 96 {
        return false;
    }
    let Ok(ec) = key.ec_key() else {
        return false;
    };
    if ec.group().curve_name() != Some(openssl::nid::Nid::SECP384R1) {
        return false;
    }
    let (Ok(r), Ok(s)) = (
        BigNum::from_slice(&sig[..48]),
        BigNum::from_slice(&sig[48..]),
    ) else {
        return false;
    };
    let Ok(sig) = EcdsaSig::from_private_components(r, s) else {
        return false;
    };
    let Ok(digest) = openssl::hash::hash(MessageDigest::sha384(), data) else {
        return false;
    };
    sig.verify(&digest, &ec).unwrap_or(false)
}
