//! P-256 operations on the hot path (ECDSA for ES256, ECDH for the JWE) done by OpenSSL,
//! whose assembly P-256 is several times faster than the pure-Rust arithmetic. Keys are
//! still parsed and exported as JWK/PKCS#8 through the `p256` types.

use std::sync::OnceLock;

use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcGroupRef, EcKey, EcKeyRef, EcPoint, PointConversionForm};
use openssl::ecdsa::EcdsaSig;
use openssl::nid::Nid;
use openssl::pkey::{Private, Public};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

fn group() -> &'static EcGroupRef {
    static GROUP: OnceLock<EcGroup> = OnceLock::new();
    GROUP.get_or_init(|| {
        EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("OpenSSL supports P-256")
    })
}

/// An OpenSSL public key for `pk`.
pub(crate) fn public_key(pk: &p256::PublicKey) -> Option<EcKey<Public>> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let mut ctx = BigNumContext::new().ok()?;
    let point =
        EcPoint::from_bytes(group(), pk.to_encoded_point(false).as_bytes(), &mut ctx).ok()?;
    EcKey::from_public_key(group(), &point).ok()
}

/// An OpenSSL private key for `sk` (whose public half is `pk`).
pub(crate) fn private_key(sk: &p256::SecretKey, pk: &p256::PublicKey) -> Option<EcKey<Private>> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let mut ctx = BigNumContext::new().ok()?;
    let point =
        EcPoint::from_bytes(group(), pk.to_encoded_point(false).as_bytes(), &mut ctx).ok()?;
    let d = BigNum::from_slice(&Zeroizing::new(sk.to_bytes().to_vec())).ok()?;
    EcKey::from_private_components(group(), &d, &point).ok()
}

/// A fresh key pair: the OpenSSL key and its `p256` halves.
pub(crate) fn generate() -> Option<(EcKey<Private>, p256::SecretKey, p256::PublicKey)> {
    let key = EcKey::generate(group()).ok()?;
    let mut ctx = BigNumContext::new().ok()?;
    let sec1 = key
        .public_key()
        .to_bytes(group(), PointConversionForm::UNCOMPRESSED, &mut ctx)
        .ok()?;
    let pk = p256::PublicKey::from_sec1_bytes(&sec1).ok()?;
    let d = Zeroizing::new(key.private_key().to_vec_padded(32).ok()?);
    let sk = p256::SecretKey::from_slice(&d).ok()?;
    Some((key, sk, pk))
}

/// ECDH shared secret (the x coordinate of own·peer, 32 bytes).
///
/// One point multiplication on the `EC_KEY`s themselves: going through `EVP_PKEY_derive`
/// made OpenSSL 3 export both keys to its provider on every call, which cost as much as the
/// multiplication. The peer point was checked to be on the curve when it was decoded
/// (`EcPoint::from_bytes`), and P-256 has cofactor 1, so there is no small subgroup to land in.
pub(crate) fn ecdh(own: &EcKeyRef<Private>, peer: &EcKeyRef<Public>) -> Option<Zeroizing<Vec<u8>>> {
    let g = group();
    let mut ctx = BigNumContext::new().ok()?;
    let mut shared = EcPoint::new(g).ok()?;
    shared
        .mul2(g, peer.public_key(), own.private_key(), &mut ctx)
        .ok()?;
    if shared.is_infinity(g) {
        return None;
    }
    let (mut x, mut y) = (BigNum::new().ok()?, BigNum::new().ok()?);
    shared
        .affine_coordinates(g, &mut x, &mut y, &mut ctx)
        .ok()?;
    let out = Zeroizing::new(x.to_vec_padded(32).ok()?);
    x.clear();
    Some(out)
}

/// ES256 signature (raw r || s) over `msg`. Fails when OpenSSL does, or when `key` is not a
/// P-256 key (its r and s would not fit 32 bytes).
pub(crate) fn sign(
    key: &EcKeyRef<Private>,
    msg: &[u8],
) -> Result<Vec<u8>, openssl::error::ErrorStack> {
    let sig = EcdsaSig::sign(&Sha256::digest(msg), key)?;
    let mut out = sig.r().to_vec_padded(32)?;
    out.extend(sig.s().to_vec_padded(32)?);
    Ok(out)
}

/// Checks an ES256 signature (raw r || s).
pub(crate) fn verify(key: &EcKeyRef<Public>, msg: &[u8], sig: &[u8]) -> bool {
    if sig.len() != 64 {
        return false;
    }
    let (Ok(r), Ok(s)) = (
        BigNum::from_slice(&sig[..32]),
        BigNum::from_slice(&sig[32..]),
    ) else {
        return false;
    };
    EcdsaSig::from_private_components(r, s)
        .and_then(|sig| sig.verify(&Sha256::digest(msg), key))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::{Signer, Verifier};

    #[test]
    fn interoperates_with_p256() {
        let (key, sk, pk) = generate().unwrap();
        assert_eq!(sk.public_key(), pk);
        // OpenSSL signature verifies with p256 and the other way round.
        let sig = sign(&key, b"msg").unwrap();
        let vk = p256::ecdsa::VerifyingKey::from(&pk);
        vk.verify(b"msg", &p256::ecdsa::Signature::from_slice(&sig).unwrap())
            .unwrap();
        let p256_sig: p256::ecdsa::Signature = p256::ecdsa::SigningKey::from(&sk).sign(b"other");
        assert!(verify(
            &public_key(&pk).unwrap(),
            b"other",
            &p256_sig.to_bytes()
        ));
        assert!(!verify(
            &public_key(&pk).unwrap(),
            b"otheR",
            &p256_sig.to_bytes()
        ));
        // ECDH agrees with p256's.
        let (peer_key, peer_sk, peer_pk) = generate().unwrap();
        let ours = ecdh(&key, &public_key(&peer_pk).unwrap()).unwrap();
        let theirs = ecdh(&peer_key, &public_key(&pk).unwrap()).unwrap();
        let reference = p256::ecdh::diffie_hellman(peer_sk.to_nonzero_scalar(), pk.as_affine());
        assert_eq!(&ours[..], &theirs[..]);
        assert_eq!(&ours[..], &reference.raw_secret_bytes()[..]);
        assert!(private_key(&sk, &pk).unwrap().check_key().is_ok());
    }
}
