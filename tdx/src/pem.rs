//! Minimal PEM and certificate-name helpers for PCK chains and issuer chains.

use base64::Engine;
use der::Decode;

/// DER bodies of every `label` block in `pem` (garbage between blocks is ignored).
pub fn blocks(pem: &[u8], label: &str) -> Vec<Vec<u8>> {
    let text = String::from_utf8_lossy(pem);
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut rest = text.as_ref();
    while let Some(b) = rest.find(&begin) {
        let after = &rest[b + begin.len()..];
        let Some(e) = after.find(&end) else { break };
        let body: String = after[..e].chars().filter(|c| !c.is_whitespace()).collect();
        if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(body) {
            out.push(der);
        }
        rest = &after[e + end.len()..];
    }
    out
}

/// DER certificates of a PEM chain, in order.
pub fn certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    blocks(pem, "CERTIFICATE")
}

fn cn_of(name: &x509_cert::name::Name) -> Option<String> {
    const CN: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("2.5.4.3");
    name.iter_rdn()
        .flat_map(|rdn| rdn.iter())
        .find(|atv| atv.oid == CN)
        .and_then(|atv| {
            let v = &atv.value;
            der::asn1::Utf8StringRef::try_from(v)
                .map(|s| s.as_str().to_string())
                .or_else(|_| {
                    der::asn1::PrintableStringRef::try_from(v).map(|s| s.as_str().to_string())
                })
                .ok()
        })
}

/// Subject common name of a DER certificate.
pub fn subject_cn(der_cert: &[u8]) -> Option<String> {
    let c = x509_cert::Certificate::from_der(der_cert).ok()?;
    cn_of(c.tbs_certificate().subject())
}

/// Issuer common name of a DER certificate.
pub fn issuer_cn(der_cert: &[u8]) -> Option<String> {
    let c = x509_cert::Certificate::from_der(der_cert).ok()?;
    cn_of(c.tbs_certificate().issuer())
}
