//! NRAS answers minted under a test key: the checks NVIDIA's SDK makes (signature by a
//! JWKS key, issuer, validity, nonce, the digest tying device tokens to the overall one).

use base64::Engine;
use coffer_gpu::nras::{verify_answer, NrasError};
use openssl::asn1::Asn1Time;
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::{X509Name, X509};
use serde_json::{json, Value};

const ISS: &str = "https://nras.attestation.nvidia.com";
const NONCE: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";
const NOW: i64 = 1_800_000_000;

struct Signer {
    key: PKey<Private>,
    jwks: Value,
}

fn signer() -> Signer {
    let key = PKey::from_ec_key(
        EcKey::generate(&EcGroup::from_curve_name(Nid::SECP384R1).unwrap()).unwrap(),
    )
    .unwrap();
    let mut n = X509Name::builder().unwrap();
    n.append_entry_by_text("CN", "test NRAS signer").unwrap();
    let n = n.build();
    let mut b = X509::builder().unwrap();
    b.set_subject_name(&n).unwrap();
    b.set_issuer_name(&n).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    b.sign(&key, MessageDigest::sha384()).unwrap();
    let der = b.build().to_der().unwrap();
    let x5c = base64::engine::general_purpose::STANDARD.encode(der);
    Signer {
        key,
        jwks: json!({"keys": [{"kid": "nv-eat-kid-test", "kty": "EC", "x5c": [x5c]}]}),
    }
}

fn jwt(s: &Signer, claims: &Value) -> String {
    let e = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let input = format!(
        "{}.{}",
        e(&json!({"alg": "ES384", "kid": "nv-eat-kid-test"})),
        e(claims)
    );
    let digest = openssl::hash::hash(MessageDigest::sha384(), input.as_bytes()).unwrap();
    let sig = EcdsaSig::sign(&digest, &s.key.ec_key().unwrap()).unwrap();
    let mut raw = sig.r().to_vec_padded(48).unwrap();
    raw.extend(sig.s().to_vec_padded(48).unwrap());
    format!(
        "{input}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    )
}

fn answer(s: &Signer, edit: impl Fn(&mut Value, &mut Value)) -> String {
    let mut device = json!({"iss": ISS, "iat": NOW, "nbf": NOW, "exp": NOW + 3600,
        "x-nvidia-gpu-attestation-report-nonce-match": true, "measres": "success"});
    let mut overall = json!({"iss": ISS, "iat": NOW, "nbf": NOW, "exp": NOW + 3600,
        "eat_nonce": NONCE, "x-nvidia-overall-att-result": true, "submods": {}});
    edit(&mut overall, &mut device);
    let d = jwt(s, &device);
    if overall["submods"].as_object().unwrap().is_empty() {
        let digest =
            hex::encode(openssl::hash::hash(MessageDigest::sha256(), d.as_bytes()).unwrap());
        overall["submods"] = json!({"GPU-0": ["DIGEST", ["SHA-256", digest]]});
    }
    json!([["JWT", jwt(s, &overall)], {"GPU-0": d}]).to_string()
}

#[test]
fn a_genuine_answer_gives_the_device_claims() {
    let s = signer();
    let out = verify_answer(&answer(&s, |_, _| {}), &s.jwks, ISS, NONCE, NOW).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, "GPU-0");
    assert_eq!(out[0].1["measres"], "success");
    assert_eq!(out[0].1["x-nvidia-overall-att-result"], true);
}

#[test]
fn answers_failing_a_check_are_refused() {
    let s = signer();
    let check = |a: String| verify_answer(&a, &s.jwks, ISS, NONCE, NOW).unwrap_err();
    let e = check(answer(&s, |o, _| o["eat_nonce"] = json!("00")));
    assert!(matches!(e, NrasError::Failed(_)), "{e}");
    let e = check(answer(&s, |o, _| o["iss"] = json!("https://evil")));
    assert!(matches!(e, NrasError::Token { .. }), "{e}");
    let e = check(answer(&s, |o, _| o["exp"] = json!(NOW - 3600)));
    assert!(matches!(e, NrasError::Token { .. }), "{e}");
    let e = check(answer(&s, |o, _| {
        o["submods"] = json!({"GPU-0": ["DIGEST", ["SHA-256", "00"]]})
    }));
    assert!(matches!(e, NrasError::Digest(_)), "{e}");
    let e = check(answer(&s, |_, d| {
        d["x-nvidia-gpu-attestation-report-nonce-match"] = json!(false)
    }));
    assert!(matches!(e, NrasError::Failed(_)), "{e}");
    // A negative verdict is passed on for policy.
    let out = verify_answer(
        &answer(&s, |o, _| o["x-nvidia-overall-att-result"] = json!(false)),
        &s.jwks,
        ISS,
        NONCE,
        NOW,
    )
    .unwrap();
    assert_eq!(out[0].1["x-nvidia-overall-att-result"], false);
    // Signed by a key that is not in the JWKS.
    let other = signer();
    let e = verify_answer(&answer(&other, |_, _| {}), &s.jwks, ISS, NONCE, NOW).unwrap_err();
    assert!(matches!(e, NrasError::Token { .. }), "{e}");
}
