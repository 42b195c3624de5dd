//! A throwaway NVIDIA-shaped PKI for tests: a device root, a per-device CA named like a
//! Hopper BROM, an attestation (alias) leaf certifying an FWID, SPDM reports signed by the
//! leaf, signed driver and VBIOS RIMs under a RIM root, and OCSP responses (made with the
//! `openssl ocsp` tool, the only OCSP responder at hand offline).
//!
//! The server trusts the test roots (`[gpu] device_root_file`, `rim_root_file`), so the
//! real verification code path checks these exactly as it checks NVIDIA's.

use std::path::Path;
use std::process::Command;

use base64::Engine;
use coffer_gpu::rim::xml;
use openssl::asn1::{Asn1Integer, Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, KeyUsage};
use openssl::x509::{X509Extension, X509Name, X509};

/// A key and its certificate.
pub struct Issued {
    /// Private key.
    pub key: PKey<Private>,
    /// Certificate.
    pub cert: X509,
}

fn p384() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::SECP384R1).expect("P-384");
    PKey::from_ec_key(EcKey::generate(&group).expect("key")).expect("pkey")
}

fn name(cn: &str) -> X509Name {
    let mut n = X509Name::builder().expect("name");
    n.append_entry_by_text("CN", cn).expect("cn");
    n.append_entry_by_text("O", "coffer test").expect("o");
    n.build()
}

fn issue(cn: &str, serial: u32, ca: bool, issuer: Option<&Issued>, fwid: Option<&[u8]>) -> Issued {
    let key = p384();
    let mut b = X509::builder().expect("builder");
    b.set_version(2).expect("v3");
    let sn = Asn1Integer::from_bn(&BigNum::from_u32(serial).expect("bn")).expect("serial");
    b.set_serial_number(&sn).expect("serial");
    let subject = name(cn);
    b.set_subject_name(&subject).expect("subject");
    match issuer {
        Some(i) => b.set_issuer_name(i.cert.subject_name()),
        None => b.set_issuer_name(&subject),
    }
    .expect("issuer");
    b.set_pubkey(&key).expect("pubkey");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("t"))
        .expect("nb");
    b.set_not_after(&Asn1Time::days_from_now(3650).expect("t"))
        .expect("na");
    if ca {
        b.append_extension(BasicConstraints::new().critical().ca().build().expect("bc"))
            .expect("bc");
        b.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .digital_signature()
                .build()
                .expect("ku"),
        )
        .expect("ku");
    } else {
        b.append_extension(
            KeyUsage::new()
                .critical()
                .digital_signature()
                .build()
                .expect("ku"),
        )
        .expect("ku");
    }
    if let Some(fwid) = fwid {
        // TCG DICE TcbInfo: the FWID digest is the extension's last 48 bytes.
        let mut inner = vec![0x04, 48];
        inner.extend_from_slice(fwid);
        let mut der = vec![0x30, inner.len() as u8];
        der.extend_from_slice(&inner);
        let oid = Asn1Object::from_str("2.23.133.5.4.1").expect("oid");
        let value = Asn1OctetString::new_from_bytes(&der).expect("octets");
        b.append_extension(X509Extension::new_from_der(&oid, false, &value).expect("ext"))
            .expect("fwid");
    }
    let signer = issuer.map_or(&key, |i| &i.key);
    b.sign(signer, MessageDigest::sha384()).expect("sign");
    Issued {
        cert: b.build(),
        key,
    }
}

fn raw_sign(key: &PKey<Private>, data: &[u8]) -> Vec<u8> {
    let digest = openssl::hash::hash(MessageDigest::sha384(), data).expect("sha384");
    let sig = EcdsaSig::sign(&digest, &key.ec_key().expect("ec")).expect("sign");
    let mut out = sig.r().to_vec_padded(48).expect("r");
    out.extend(sig.s().to_vec_padded(48).expect("s"));
    out
}

/// What a minted GPU report says.
#[derive(Clone, Debug)]
pub struct GpuFields {
    /// Driver version (opaque type 3).
    pub driver_version: String,
    /// VBIOS version bytes (opaque type 6), shown `96.00.9F.00.01` for `[0,0x9f,0,0x96,1,..]`.
    pub vbios: [u8; 8],
    /// 64 SHA-384 measurements (SPDM index i+1 holds `measurements[i]`).
    pub measurements: Vec<[u8; 48]>,
    /// NVDEC0 status byte.
    pub nvdec0: u8,
}

impl Default for GpuFields {
    fn default() -> Self {
        GpuFields {
            driver_version: "550.90.07".into(),
            vbios: [0x00, 0x9f, 0x00, 0x96, 0x01, 0, 0, 0],
            measurements: (0..64u8).map(|i| [i.wrapping_mul(7) | 1; 48]).collect(),
            nvdec0: 0x55,
        }
    }
}

/// The RIM indices (0-based) each minted RIM covers.
pub const DRIVER_RIM_INDICES: [usize; 5] = [7, 21, 22, 23, 24];
/// VBIOS RIM indices.
pub const VBIOS_RIM_INDICES: [usize; 4] = [0, 1, 2, 3];
/// Project, project SKU and chip SKU of the minted GPU (name the VBIOS RIM).
pub const PROJECT: (&str, &str, &str) = ("1010", "0200", "882");

/// Test device and RIM PKIs.
pub struct GpuPki {
    /// Device root.
    pub root: Issued,
    /// Per-device CA (`GH100 A01 GSP BROM`).
    pub brom: Issued,
    /// Attestation leaf (`GH100 A01 GSP FMC LF`).
    pub leaf: Issued,
    /// FWID the leaf certifies.
    pub fwid: [u8; 48],
    /// RIM root.
    pub rim_root: Issued,
    /// RIM signer.
    pub rim_signer: Issued,
}

impl Default for GpuPki {
    fn default() -> Self {
        Self::new()
    }
}

impl GpuPki {
    /// Fresh keys and certificates.
    pub fn new() -> Self {
        let fwid = [0x5a; 48];
        let root = issue("Test Device Identity CA", 0x1001, true, None, None);
        let brom = issue("GH100 A01 GSP BROM", 0x1002, true, Some(&root), None);
        let leaf = issue(
            "GH100 A01 GSP FMC LF",
            0x1003,
            false,
            Some(&brom),
            Some(&fwid),
        );
        let rim_root = issue("Test CoRIM signing Root CA", 0x2001, true, None, None);
        let rim_signer = issue(
            "Test HCC RIM L4 Signer",
            0x2002,
            false,
            Some(&rim_root),
            None,
        );
        GpuPki {
            root,
            brom,
            leaf,
            fwid,
            rim_root,
            rim_signer,
        }
    }

    /// PEM of the device root.
    pub fn root_pem(&self) -> Vec<u8> {
        self.root.cert.to_pem().expect("pem")
    }

    /// PEM of the RIM root.
    pub fn rim_root_pem(&self) -> Vec<u8> {
        self.rim_root.cert.to_pem().expect("pem")
    }

    /// The device chain as NVML returns it: PEM, leaf first, root last.
    pub fn chain_pem(&self) -> Vec<u8> {
        [&self.leaf, &self.brom, &self.root]
            .iter()
            .flat_map(|i| i.cert.to_pem().expect("pem"))
            .collect()
    }

    /// A signed report answering `nonce` (32 bytes).
    pub fn report(&self, nonce: &[u8], f: &GpuFields) -> Vec<u8> {
        let mut r = vec![0x11, 0xE0, 0x01, 0xFF];
        r.extend_from_slice(&nonce[..32]);
        r.push(0x00);
        r.extend_from_slice(&[0x11, 0x60, 0x00, 0x00, 64]);
        let len: u32 = 64 * 55;
        r.extend_from_slice(&len.to_le_bytes()[..3]);
        for (i, m) in f.measurements.iter().enumerate() {
            r.extend_from_slice(&[(i + 1) as u8, 0x01, 51, 0, 0x01, 48, 0]);
            r.extend_from_slice(m);
        }
        r.extend_from_slice(&[0x77; 32]);
        let mut opaque = Vec::new();
        let mut tlv = |t: u16, v: &[u8]| {
            opaque.extend_from_slice(&t.to_le_bytes());
            opaque.extend_from_slice(&(v.len() as u16).to_le_bytes());
            opaque.extend_from_slice(v);
        };
        let mut driver = f.driver_version.as_bytes().to_vec();
        driver.push(0);
        tlv(3, &driver);
        tlv(6, &f.vbios);
        tlv(11, &[f.nvdec0]);
        tlv(15, PROJECT.2.as_bytes());
        tlv(17, PROJECT.0.as_bytes());
        tlv(18, PROJECT.1.as_bytes());
        tlv(20, &self.fwid);
        r.extend_from_slice(&(opaque.len() as u16).to_le_bytes());
        r.extend_from_slice(&opaque);
        let sig = raw_sign(&self.leaf.key, &r);
        r.extend_from_slice(&sig);
        r
    }

    /// One upstream `device_evidence_list` entry for `report`.
    pub fn device_entry(&self, report: &[u8]) -> serde_json::Value {
        let b64 = base64::engine::general_purpose::STANDARD;
        serde_json::json!({
            "arch": "HOPPER",
            "uuid": "GPU-00000000-test",
            "evidence": b64.encode(report),
            "certificate": b64.encode(self.chain_pem()),
        })
    }

    /// RIM id of the driver RIM for `f`.
    pub fn driver_rim_id(f: &GpuFields) -> String {
        format!("NV_GPU_DRIVER_GH100_{}", f.driver_version)
    }

    /// RIM id of the VBIOS RIM for `f`.
    pub fn vbios_rim_id(f: &GpuFields) -> String {
        let v = &f.vbios;
        format!(
            "NV_GPU_VBIOS_{}_{}_{}_{:02X}{:02X}{:02X}{:02X}{:02X}",
            PROJECT.0, PROJECT.1, PROJECT.2, v[3], v[2], v[1], v[0], v[4]
        )
    }

    /// A signed RIM with golden values for `indices` taken from `f` (after `edit`).
    pub fn rim(&self, version: &str, indices: &[usize], f: &GpuFields) -> String {
        let mut resources = String::new();
        for i in 0..64 {
            let active = indices.contains(&i);
            resources.push_str(&format!(
                "    <Resource type=\"Measurement\" index=\"{i}\" active=\"{}\" alternatives=\"1\" ns2:Hash0=\"{}\" name=\"Measurement_{i}\" size=\"48\"/>\n",
                if active { "True" } else { "False" },
                hex::encode(f.measurements[i])
            ));
        }
        let doc = |sig: &str| {
            format!(
                "<SoftwareIdentity xmlns=\"http://standards.iso.org/iso/19770/-2/2015/schema.xsd\" xmlns:ns2=\"http://www.w3.org/2001/04/xmlenc#sha384\" name=\"GH100\" tagId=\"test\" version=\"1.0\">\n  <Meta xmlns:ns1=\"https://trustedcomputinggroup.org/resource/tcg-reference-integrity-manifest-rim-information-model/\" colloquialVersion=\"{version}\" ns1:FirmwareManufacturerId=\"5703\"/>\n  <Payload>\n{resources}  </Payload>\n{sig}</SoftwareIdentity>\n"
            )
        };
        let unsigned = xml::parse(&doc("")).expect("RIM parses");
        let digest = openssl::hash::hash(
            MessageDigest::sha384(),
            xml::canonicalize(&unsigned, &xml::Scope::new(), &|_| false).as_bytes(),
        )
        .expect("sha384");
        let b64 = base64::engine::general_purpose::STANDARD;
        let signed_info = format!(
            "<ds:SignedInfo><ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2006/12/xml-c14n11\"/><ds:SignatureMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384\"/><ds:Reference URI=\"\"><ds:Transforms><ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/><ds:Transform Algorithm=\"http://www.w3.org/2006/12/xml-c14n11\"/></ds:Transforms><ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#sha384\"/><ds:DigestValue>{}</ds:DigestValue></ds:Reference></ds:SignedInfo>",
            b64.encode(digest)
        );
        let certs: String = [&self.rim_signer, &self.rim_root]
            .iter()
            .map(|i| {
                format!(
                    "<ds:X509Certificate>{}</ds:X509Certificate>",
                    b64.encode(i.cert.to_der().expect("der"))
                )
            })
            .collect();
        let signature = |value: &str| {
            format!(
                "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\">{signed_info}<ds:SignatureValue>{value}</ds:SignatureValue><ds:KeyInfo><ds:X509Data>{certs}</ds:X509Data></ds:KeyInfo></ds:Signature>"
            )
        };
        // Canonicalise SignedInfo in its place (it inherits the document's namespaces).
        let placed = xml::parse(&doc(&signature("AA=="))).expect("RIM parses");
        let sig_el = placed
            .elements()
            .find(|e| e.local_name() == "Signature")
            .expect("signature");
        let si = sig_el.child("SignedInfo").expect("SignedInfo");
        let scope = xml::scope_of(&xml::scope_of(&xml::Scope::new(), &placed), sig_el);
        let c14n = xml::canonicalize(si, &scope, &|_| false);
        let value = b64.encode(raw_sign(&self.rim_signer.key, c14n.as_bytes()));
        doc(&signature(&value))
    }

    /// OCSP responses (DER) for the BROM (under the device root) and the RIM signer
    /// (under the RIM root); `revoked` names certificates to report revoked.
    pub fn ocsp_responses(&self, dir: &Path, revoked: &[&str]) -> Vec<Vec<u8>> {
        [
            (&self.brom, &self.root, "brom"),
            (&self.rim_signer, &self.rim_root, "rim_signer"),
        ]
        .iter()
        .map(|(cert, issuer, label)| ocsp(dir, cert, issuer, label, revoked.contains(label)))
        .collect()
    }
}

fn ocsp(dir: &Path, cert: &Issued, issuer: &Issued, label: &str, revoked: bool) -> Vec<u8> {
    let d = dir.join(format!("ocsp-{label}"));
    std::fs::create_dir_all(&d).expect("dir");
    let w = |n: &str, b: &[u8]| std::fs::write(d.join(n), b).expect("write");
    w("cert.pem", &cert.cert.to_pem().expect("pem"));
    w("issuer.pem", &issuer.cert.to_pem().expect("pem"));
    w(
        "issuer.key",
        &issuer.key.private_key_to_pem_pkcs8().expect("key"),
    );
    let serial = cert
        .cert
        .serial_number()
        .to_bn()
        .and_then(|b| b.to_hex_str().map(|s| s.to_string()))
        .expect("serial");
    let line = if revoked {
        format!("R\t351231000000Z\t240101000000Z,keyCompromise\t{serial}\tunknown\t/CN=x\n")
    } else {
        format!("V\t351231000000Z\t\t{serial}\tunknown\t/CN=x\n")
    };
    w("index.txt", line.as_bytes());
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(&d)
            .args(args)
            .output()
            .expect("openssl tool");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "ocsp",
        "-issuer",
        "issuer.pem",
        "-cert",
        "cert.pem",
        "-reqout",
        "req.der",
        "-no_nonce",
    ]);
    run(&[
        "ocsp",
        "-index",
        "index.txt",
        "-rsigner",
        "issuer.pem",
        "-rkey",
        "issuer.key",
        "-CA",
        "issuer.pem",
        "-reqin",
        "req.der",
        "-respout",
        "resp.der",
        "-ndays",
        "1",
    ]);
    std::fs::read(d.join("resp.der")).expect("response")
}

/// A stand-in for NVIDIA's Remote Attestation Service token signer: an ES384 key with a
/// self-signed certificate published in a JWKS.
pub struct NrasSigner {
    key: PKey<Private>,
    /// `{"keys": [{"kid", "kty", "x5c"}]}`.
    pub jwks: serde_json::Value,
}

impl Default for NrasSigner {
    fn default() -> Self {
        Self::new()
    }
}

impl NrasSigner {
    /// A fresh key and JWKS.
    pub fn new() -> Self {
        let i = issue("test NRAS signer", 0x3001, false, None, None);
        let x5c = base64::engine::general_purpose::STANDARD.encode(i.cert.to_der().expect("der"));
        NrasSigner {
            key: i.key,
            jwks: serde_json::json!({"keys": [{"kid": "nv-eat-kid-test", "kty": "EC", "x5c": [x5c]}]}),
        }
    }

    fn jwt(&self, claims: &serde_json::Value) -> String {
        let e = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let input = format!(
            "{}.{}",
            e(&serde_json::json!({"alg": "ES384", "kid": "nv-eat-kid-test"})),
            e(claims)
        );
        let sig = raw_sign(&self.key, input.as_bytes());
        format!(
            "{input}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig)
        )
    }

    /// A detached EAT for one GPU answering `nonce_hex`, issued by `iss`, with the device
    /// claims `device` (NRAS's names) and NRAS's overall `result`.
    pub fn answer(
        &self,
        iss: &str,
        nonce_hex: &str,
        mut device: serde_json::Value,
        result: bool,
        now: i64,
    ) -> String {
        for (k, v) in [
            ("iss", serde_json::json!(iss)),
            ("nbf", now.into()),
            ("iat", now.into()),
            ("exp", (now + 3600).into()),
        ] {
            device[k] = v;
        }
        let d = self.jwt(&device);
        let digest = hex::encode(
            openssl::hash::hash(MessageDigest::sha256(), d.as_bytes()).expect("sha256"),
        );
        let overall = serde_json::json!({"iss": iss, "nbf": now, "iat": now, "exp": now + 3600,
            "eat_nonce": nonce_hex, "x-nvidia-overall-att-result": result,
            "x-nvidia-ver": "3.0", "sub": "NVIDIA-PLATFORM-ATTESTATION",
            "submods": {"GPU-0": ["DIGEST", ["SHA-256", digest]]}});
        serde_json::json!([["JWT", self.jwt(&overall)], {"GPU-0": d}]).to_string()
    }
}

/// Device claims NRAS gives a GPU that passes every check (claims version 3.0 names).
pub fn nras_good_device_claims() -> serde_json::Value {
    let chain = serde_json::json!({"x-nvidia-cert-status": "valid", "x-nvidia-cert-ocsp-status": "good",
        "x-nvidia-cert-expiration-date": "9999-12-31T23:59:59Z", "x-nvidia-cert-revocation-reason": null});
    let mut c = serde_json::json!({
        "x-nvidia-gpu-arch-check": true,
        "x-nvidia-gpu-attestation-report-parsed": true,
        "x-nvidia-gpu-attestation-report-signature-verified": true,
        "x-nvidia-gpu-attestation-report-nonce-match": true,
        "x-nvidia-gpu-attestation-report-cert-chain-fwid-match": true,
        "x-nvidia-gpu-attestation-report-cert-chain": chain,
        "x-nvidia-gpu-driver-rim-cert-chain": chain,
        "x-nvidia-gpu-vbios-rim-cert-chain": chain,
        "x-nvidia-gpu-vbios-index-no-conflict": true,
        "x-nvidia-gpu-driver-version": "550.90.07",
        "x-nvidia-gpu-vbios-version": "96.00.9F.00.01",
        "measres": "success", "secboot": true, "dbgstat": "disabled",
        "hwmodel": "GH100 A01 GSP BROM",
    });
    for rim in ["driver", "vbios"] {
        for k in [
            "fetched",
            "schema-validated",
            "signature-verified",
            "version-match",
            "measurements-available",
        ] {
            c[format!("x-nvidia-gpu-{rim}-rim-{k}")] = serde_json::json!(true);
        }
    }
    c
}
