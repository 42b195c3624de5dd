//! NVIDIA Remote Attestation Service (NRAS) answers, checked as NVIDIA's own SDK checks
//! them (Trustee checks less): a detached EAT `[["JWT", <overall JWT>], {"GPU-0": <device
//! JWT>, ...}]` whose JWTs are ES384-signed by a key of NVIDIA's published JWKS (`kid`,
//! certificate `x5c[0]`), issued by the NRAS base URL, unexpired, with `eat_nonce` equal to
//! the nonce sent, and whose `submods` carry the SHA-256 of each device JWT.
//!
//! coffer-server uses it when `[gpu] nras_url` is set (see the README, "Confidential GPUs").

use base64::Engine;
use openssl::hash::MessageDigest;
use openssl::x509::X509;
use serde_json::{Map, Value};

/// Clock skew tolerated on `exp` / `nbf`, seconds (jsonwebtoken's default, as Trustee).
pub const LEEWAY_SECS: i64 = 60;

/// Why an NRAS answer is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NrasError {
    /// Not a detached EAT of the expected shape.
    #[error("NRAS answer: {0}")]
    Shape(String),
    /// A JWT's signature does not verify with the JWKS key it names.
    #[error("NRAS {which} JWT: {reason}")]
    Token {
        /// `overall` or the submodule name.
        which: String,
        /// What is wrong.
        reason: String,
    },
    /// The overall token does not commit to a device token.
    #[error("NRAS submodule {0}: digest in the overall token does not match the device token")]
    Digest(String),
    /// The nonce does not match (overall `eat_nonce` or the device's report nonce).
    #[error("NRAS appraisal failed: {0}")]
    Failed(String),
}

fn b64url(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

/// Verifies one compact JWS with `jwks` and returns its claims; checks `iss`, `exp`, `nbf`.
fn verify_jwt(
    which: &str,
    jwt: &str,
    jwks: &Value,
    issuer: &str,
    now: i64,
) -> Result<Map<String, Value>, NrasError> {
    let bad = |reason: &str| NrasError::Token {
        which: which.to_string(),
        reason: reason.to_string(),
    };
    let parts: Vec<&str> = jwt.split('.').collect();
    let [h, p, s] = parts.as_slice() else {
        return Err(bad("not a compact JWS"));
    };
    let header: Value = b64url(h)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| bad("header is not base64url JSON"))?;
    if header.get("alg").and_then(Value::as_str) != Some("ES384") {
        return Err(bad("alg is not ES384"));
    }
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no kid"))?;
    let key = jwks
        .get("keys")
        .and_then(Value::as_array)
        .and_then(|ks| {
            ks.iter()
                .find(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
        })
        .ok_or_else(|| bad("kid is not in NVIDIA's JWKS"))?;
    let cert = key
        .get("x5c")
        .and_then(|x| x.get(0))
        .and_then(Value::as_str)
        .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
        .and_then(|der| X509::from_der(&der).ok())
        .ok_or_else(|| bad("JWKS key has no usable x5c certificate"))?;
    let sig = b64url(s).ok_or_else(|| bad("signature is not base64url"))?;
    let pk = cert.public_key().map_err(|_| bad("certificate key"))?;
    let signing_input = format!("{h}.{p}");
    if !crate::signature::verify_raw_p384(&pk, signing_input.as_bytes(), &sig) {
        return Err(bad("signature does not verify"));
    }
    let claims: Map<String, Value> = b64url(p)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| bad("payload is not base64url JSON"))?;
    if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
        return Err(bad("issuer is not the NRAS base URL"));
    }
    let time = |k: &str| claims.get(k).and_then(Value::as_i64);
    let (Some(exp), Some(nbf)) = (time("exp"), time("nbf")) else {
        return Err(bad("exp and nbf are required"));
    };
    if now > exp + LEEWAY_SECS || now + LEEWAY_SECS < nbf {
        return Err(bad("outside its validity (exp/nbf)"));
    }
    Ok(claims)
}

/// Verifies an NRAS answer for one request with `nonce_hex`, issued by `issuer` (the NRAS
/// base URL), with NVIDIA's `jwks`; returns each device's claims (by submodule name) with
/// `x-nvidia-overall-att-result` added.
pub fn verify_answer(
    answer: &str,
    jwks: &Value,
    issuer: &str,
    nonce_hex: &str,
    now: i64,
) -> Result<Vec<(String, Value)>, NrasError> {
    let v: Value =
        serde_json::from_str(answer).map_err(|e| NrasError::Shape(format!("not JSON: {e}")))?;
    let overall_jwt = v
        .get(0)
        .and_then(|a| a.get(1))
        .and_then(Value::as_str)
        .filter(|_| v.get(0).and_then(|a| a.get(0)).and_then(Value::as_str) == Some("JWT"))
        .ok_or_else(|| NrasError::Shape("first item is not [\"JWT\", token]".into()))?;
    let devices = v
        .get(1)
        .and_then(Value::as_object)
        .ok_or_else(|| NrasError::Shape("second item is not an object of device tokens".into()))?;
    let overall = verify_jwt("overall", overall_jwt, jwks, issuer, now)?;
    if !overall
        .get("eat_nonce")
        .and_then(Value::as_str)
        .is_some_and(|n| n.eq_ignore_ascii_case(nonce_hex))
    {
        return Err(NrasError::Failed("eat_nonce is not the nonce sent".into()));
    }
    // A false overall result is a verdict for policy (Trustee passes it on too), not a
    // broken answer.
    let result = overall
        .get("x-nvidia-overall-att-result")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let submods = overall
        .get("submods")
        .and_then(Value::as_object)
        .ok_or_else(|| NrasError::Shape("overall token has no submods".into()))?;
    let mut out = Vec::new();
    for (name, jwt) in devices {
        let jwt = jwt
            .as_str()
            .ok_or_else(|| NrasError::Shape(format!("{name} is not a token")))?;
        let want = submods
            .get(name)
            .and_then(|d| d.get(1))
            .and_then(|d| d.get(1))
            .and_then(Value::as_str)
            .ok_or_else(|| NrasError::Digest(name.clone()))?;
        let have = openssl::hash::hash(MessageDigest::sha256(), jwt.as_bytes())
            .map(hex::encode)
            .map_err(|_| NrasError::Digest(name.clone()))?;
        if !have.eq_ignore_ascii_case(want) {
            return Err(NrasError::Digest(name.clone()));
        }
        let mut claims = verify_jwt(name, jwt, jwks, issuer, now)?;
        if claims
            .get("x-nvidia-gpu-attestation-report-nonce-match")
            .and_then(Value::as_bool)
            != Some(true)
        {
            return Err(NrasError::Failed(format!(
                "{name}: report nonce did not match"
            )));
        }
        claims.insert("x-nvidia-overall-att-result".into(), Value::Bool(result));
        out.push((name.clone(), Value::Object(claims)));
    }
    Ok(out)
}
