//! Certificate status from OCSP responses the caller cached (fetched from NVIDIA's
//! responder, a mirror, or loaded from files): each response must be signed for the
//! certificate's issuer under the same root, name the certificate, and be inside its
//! validity window (`thisUpdate` .. `nextUpdate`, one hour when `nextUpdate` is absent,
//! as NVIDIA's verifier assumes).
//!
//! Cached answers cannot carry the verifier's own nonce; freshness comes from the window.

use openssl::hash::MessageDigest;
use openssl::ocsp::{OcspCertId, OcspCertStatus, OcspFlag, OcspResponse, OcspResponseStatus};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::X509;

use crate::chain::subject_cn;

/// Lifetime assumed for a response without `nextUpdate`.
pub const DEFAULT_TTL_SECS: i64 = 3600;
/// Clock skew tolerated on `thisUpdate`.
const SKEW_SECS: i64 = 300;

/// Why a certificate's status is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevocationError {
    /// No cached response names the certificate.
    #[error(
        "no OCSP response for certificate {cert:?} (serial {serial}); load one or enable fetching"
    )]
    Missing {
        /// Subject CN.
        cert: String,
        /// Serial (hex).
        serial: String,
    },
    /// The response's window has passed (or not begun).
    #[error(
        "OCSP response for certificate {cert:?} is stale: valid {this_update} .. {next_update}"
    )]
    Stale {
        /// Subject CN.
        cert: String,
        /// thisUpdate (unix).
        this_update: i64,
        /// nextUpdate or the assumed end (unix).
        next_update: i64,
    },
    /// The response does not verify.
    #[error("OCSP response for certificate {cert:?} is invalid: {reason}")]
    Invalid {
        /// Subject CN.
        cert: String,
        /// What is wrong.
        reason: String,
    },
}

/// The status of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertStatus {
    /// Not revoked, per a valid response.
    Good {
        /// End of the response's window (unix).
        next_update: i64,
    },
    /// Revoked (or on hold), with the reason OCSP gives.
    Revoked {
        /// Reason name (`certificateHold`, `keyCompromise`, ...).
        reason: String,
    },
    /// The responder does not know the certificate, or no usable response is at hand.
    Unknown(Option<RevocationError>),
}

/// Worst status over a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainStatus {
    /// `good`, `revoked` or `unknown` (NVIDIA's claim values).
    pub ocsp_status: &'static str,
    /// Revocation reason of the first revoked certificate.
    pub reason: Option<String>,
    /// Earliest end of the responses' windows (unix), when all are good.
    pub next_update: Option<i64>,
    /// Why some status is unknown.
    pub problems: Vec<RevocationError>,
}

fn unix_of_generalized(t: &openssl::asn1::Asn1GeneralizedTimeRef) -> Option<i64> {
    // OpenSSL prints GeneralizedTime as `Mar  8 15:37:34 2053 GMT`.
    let s = t.to_string();
    chrono::NaiveDateTime::parse_from_str(&s, "%b %e %H:%M:%S %Y GMT")
        .ok()
        .map(|d| d.and_utc().timestamp())
}

fn reason_name(code: i32) -> &'static str {
    match code {
        0 => "unspecified",
        1 => "keyCompromise",
        2 => "cACompromise",
        3 => "affiliationChanged",
        4 => "superseded",
        5 => "cessationOfOperation",
        6 => "certificateHold",
        8 => "removeFromCRL",
        9 => "privilegeWithdrawn",
        10 => "aACompromise",
        _ => "unspecified",
    }
}

/// The status of `cert` (issued by `issuer`) from `responses` (DER), checked against
/// `root` (with `chain` as untrusted intermediates) at unix time `now`.
pub fn cert_status(
    cert: &X509,
    issuer: &X509,
    chain: &[X509],
    root: &X509,
    responses: &[Vec<u8>],
    now: i64,
) -> CertStatus {
    let name = subject_cn(cert).unwrap_or_default();
    let serial = cert
        .serial_number()
        .to_bn()
        .ok()
        .and_then(|b| b.to_hex_str().ok().map(|s| s.to_string()))
        .unwrap_or_default();
    let invalid = |reason: String| {
        CertStatus::Unknown(Some(RevocationError::Invalid {
            cert: name.clone(),
            reason,
        }))
    };
    let Ok(id) = OcspCertId::from_cert(MessageDigest::sha1(), cert, issuer) else {
        return invalid("cannot compute the OCSP certificate id".into());
    };
    let mut stale = None;
    for der in responses {
        let Ok(resp) = OcspResponse::from_der(der) else {
            continue;
        };
        if resp.status() != OcspResponseStatus::SUCCESSFUL {
            continue;
        }
        let Ok(basic) = resp.basic() else { continue };
        let Some(status) = basic.find_status(&id) else {
            continue;
        };
        // The signer must be the issuer or delegated by it, under the pinned root; dates
        // of the signer certificate are not checked (the response window is).
        let verified = (|| {
            let mut store = X509StoreBuilder::new()?;
            store.add_cert(root.clone())?;
            store.set_flags(X509VerifyFlags::NO_CHECK_TIME)?;
            let store = store.build();
            let mut certs = Stack::new()?;
            for c in chain.iter().chain([issuer]) {
                certs.push(c.clone())?;
            }
            basic.verify(&certs, &store, OcspFlag::empty())
        })();
        if let Err(e) = verified {
            return invalid(format!("signature or signer: {e}"));
        }
        let Some(this_update) = unix_of_generalized(status.this_update) else {
            return invalid("unreadable thisUpdate".into());
        };
        let next_update = status
            .next_update()
            .and_then(unix_of_generalized)
            .unwrap_or(this_update + DEFAULT_TTL_SECS);
        if now + SKEW_SECS < this_update || now >= next_update {
            stale = Some(RevocationError::Stale {
                cert: name.clone(),
                this_update,
                next_update,
            });
            continue;
        }
        return match status.status {
            OcspCertStatus::GOOD => CertStatus::Good { next_update },
            OcspCertStatus::REVOKED => CertStatus::Revoked {
                reason: reason_name(status.reason.as_raw()).to_string(),
            },
            _ => CertStatus::Unknown(None),
        };
    }
    CertStatus::Unknown(Some(
        stale.unwrap_or(RevocationError::Missing { cert: name, serial }),
    ))
}

/// Status of every certificate of `certs` (leaf first) below `root`, starting at
/// `first` (1 for device chains: the alias leaf is not in OCSP; 0 for RIM chains).
pub fn chain_status(
    certs: &[X509],
    root: &X509,
    first: usize,
    responses: &[Vec<u8>],
    now: i64,
) -> ChainStatus {
    let root_der = root.to_der().unwrap_or_default();
    let below_root: Vec<&X509> = certs
        .iter()
        .filter(|c| c.to_der().unwrap_or_default() != root_der)
        .collect();
    let mut out = ChainStatus {
        ocsp_status: "good",
        reason: None,
        next_update: None,
        problems: Vec::new(),
    };
    let mut next = i64::MAX;
    for (i, cert) in below_root.iter().enumerate().skip(first) {
        let issuer = below_root.get(i + 1).copied().unwrap_or(root);
        match cert_status(cert, issuer, certs, root, responses, now) {
            CertStatus::Good { next_update } => next = next.min(next_update),
            CertStatus::Revoked { reason } => {
                out.ocsp_status = "revoked";
                out.reason.get_or_insert(reason);
            }
            CertStatus::Unknown(problem) => {
                if out.ocsp_status == "good" {
                    out.ocsp_status = "unknown";
                }
                out.problems.extend(problem);
            }
        }
    }
    if out.ocsp_status == "good" && next != i64::MAX {
        out.next_update = Some(next);
    }
    out
}
