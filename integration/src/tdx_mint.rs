//! A throwaway DCAP PKI for tests: a root shaped like Intel's SGX Root CA, a PCK Platform
//! CA, a PCK leaf carrying the SGX extension, a TCB signing certificate, CRLs, signed TCB
//! info / QE identity, and TDX v4 quotes signed through that chain.
//!
//! The server trusts the test root (`[tdx] root_ca_file`), so the real DCAP code path
//! verifies these quotes exactly as it verifies Intel's.

use p256::ecdsa::{signature::Signer, Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension,
    DistinguishedName, DnType, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams,
    SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use serde_json::json;
use sha2::{Digest, Sha256};

/// Intel's QE vendor id (dcap-qvl rejects others).
pub const QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];
/// TD_QE MRSIGNER as Intel publishes it.
pub const QE_MRSIGNER: &str = "dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5";
/// FMSPC of the synthetic platform.
pub const FMSPC: [u8; 6] = [0x90, 0xc0, 0x6f, 0, 0, 0];
/// CPUSVN / SGX TCB components of the synthetic platform.
pub const CPU_SVN: [u8; 16] = [3, 3, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0];
/// PCESVN of the synthetic platform.
pub const PCE_SVN: u16 = 13;
/// TEE_TCB_SVN of minted quotes (module version byte 0: no module identity needed).
pub const TEE_TCB_SVN: [u8; 16] = [5, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

const DAY: i64 = 86_400;
const LEAF_SERIAL: [u8; 8] = [0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x01];

/// Fields of a minted TD report.
#[derive(Clone, Debug)]
pub struct TdFields {
    /// REPORTDATA.
    pub report_data: [u8; 64],
    /// MRTD.
    pub mr_td: [u8; 48],
    /// MRCONFIGID.
    pub mr_config_id: [u8; 48],
    /// RTMR0..3.
    pub rtmrs: [[u8; 48]; 4],
    /// TDATTRIBUTES (SEPT_VE_DISABLE set by default).
    pub td_attributes: u64,
    /// XFAM.
    pub xfam: u64,
    /// TEE_TCB_SVN.
    pub tee_tcb_svn: [u8; 16],
}

impl Default for TdFields {
    fn default() -> Self {
        TdFields {
            report_data: [0; 64],
            mr_td: [0x22; 48],
            mr_config_id: [0; 48],
            rtmrs: [[0x33; 48], [0x44; 48], [0; 48], [0; 48]],
            td_attributes: 1 << 28,
            xfam: 0x0006_02e7,
            tee_tcb_svn: TEE_TCB_SVN,
        }
    }
}

/// Collateral knobs.
#[derive(Clone, Debug)]
pub struct CollateralOptions {
    /// Start of every item's validity (unix seconds).
    pub issued: i64,
    /// End of every item's validity.
    pub next_update: i64,
    /// List the PCK leaf in the PCK CRL.
    pub revoke_pck: bool,
    /// FMSPC written into the TCB info.
    pub fmspc: [u8; 6],
    /// Status of the TCB info's older level, which a quote with
    /// [`OLD_TEE_TCB_SVN`] matches (`OutOfDate` unless changed, e.g. `Revoked`).
    pub old_level_status: &'static str,
}

/// A TEE_TCB_SVN below the current level's: such a quote matches the TCB info's older
/// level, whose status is [`CollateralOptions::old_level_status`].
pub const OLD_TEE_TCB_SVN: [u8; 16] = [3, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

impl CollateralOptions {
    /// Valid from a day ago for 30 days.
    pub fn current() -> Self {
        let now = now();
        CollateralOptions {
            issued: now - DAY,
            next_update: now + 29 * DAY,
            revoke_pck: false,
            fmspc: FMSPC,
            old_level_status: "OutOfDate",
        }
    }
}

/// Current unix time.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn odt(t: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(t).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

struct Node {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Node {
    fn signer(&self) -> SigningKey {
        SigningKey::from_pkcs8_der(&self.key.serialize_der()).expect("P-256 key")
    }
}

/// The test PKI plus the platform's attestation key.
pub struct TestPki {
    root: Node,
    pck_ca: Node,
    leaf: Node,
    tcb_signer: Node,
    attestation_key: SigningKey,
}

fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    d.push(DnType::OrganizationName, "Coffer Test");
    d.push(DnType::CountryName, "US");
    d
}

fn params(cn: &str, ca: IsCa, usages: Vec<KeyUsagePurpose>, serial: &[u8]) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn);
    p.is_ca = ca;
    p.key_usages = usages;
    p.not_before = odt(now() - 30 * DAY);
    p.not_after = odt(now() + 3650 * DAY);
    p.serial_number = Some(SerialNumber::from_slice(serial));
    p.use_authority_key_identifier_extension = true;
    p.key_identifier_method = KeyIdMethod::Sha256;
    p
}

fn key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("keygen")
}

// ---- minimal DER for the SGX extension ----

fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    let n = body.len();
    if n < 128 {
        v.push(n as u8);
    } else if n < 256 {
        v.extend_from_slice(&[0x81, n as u8]);
    } else {
        v.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]);
    }
    v.extend_from_slice(body);
    v
}

fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut body = vec![(arcs[0] * 40 + arcs[1]) as u8];
    for &a in &arcs[2..] {
        let mut tmp = vec![(a & 0x7f) as u8];
        let mut x = a >> 7;
        while x > 0 {
            tmp.push(0x80 | (x & 0x7f) as u8);
            x >>= 7;
        }
        tmp.reverse();
        body.extend(tmp);
    }
    tlv(0x06, &body)
}

fn int(v: u64) -> Vec<u8> {
    let mut b: Vec<u8> = v
        .to_be_bytes()
        .iter()
        .copied()
        .skip_while(|x| *x == 0)
        .collect();
    if b.first().is_none_or(|x| x & 0x80 != 0) {
        b.insert(0, 0);
    }
    tlv(0x02, &b)
}

fn pair(o: Vec<u8>, v: Vec<u8>) -> Vec<u8> {
    tlv(0x30, &[o, v].concat())
}

const SGX: [u64; 8] = [1, 2, 840, 113741, 1, 13, 1, 0];

fn sgx_oid(tail: &[u64]) -> Vec<u8> {
    let mut arcs = SGX[..7].to_vec();
    arcs.extend_from_slice(tail);
    oid(&arcs)
}

fn sgx_extension(fmspc: [u8; 6]) -> Vec<u8> {
    let mut tcb = Vec::new();
    for (i, svn) in CPU_SVN.iter().enumerate() {
        tcb.extend(pair(sgx_oid(&[2, i as u64 + 1]), int(*svn as u64)));
    }
    tcb.extend(pair(sgx_oid(&[2, 17]), int(PCE_SVN as u64)));
    tcb.extend(pair(sgx_oid(&[2, 18]), tlv(0x04, &CPU_SVN)));
    let config = [
        pair(sgx_oid(&[7, 1]), tlv(0x01, &[0])),
        pair(sgx_oid(&[7, 2]), tlv(0x01, &[0xff])),
        pair(sgx_oid(&[7, 3]), tlv(0x01, &[0xff])),
    ]
    .concat();
    let items = [
        pair(sgx_oid(&[1]), tlv(0x04, &[0u8; 16])),
        pair(sgx_oid(&[2]), tlv(0x30, &tcb)),
        pair(sgx_oid(&[3]), tlv(0x04, &[0, 0])),
        pair(sgx_oid(&[4]), tlv(0x04, &fmspc)),
        pair(sgx_oid(&[5]), tlv(0x0a, &[1])),
        pair(sgx_oid(&[6]), tlv(0x04, &(0u8..16).collect::<Vec<_>>())),
        pair(sgx_oid(&[7]), tlv(0x30, &config)),
    ]
    .concat();
    tlv(0x30, &items)
}

fn raw_sig(key: &SigningKey, msg: &[u8]) -> [u8; 64] {
    let s: Signature = key.sign(msg);
    let mut out = [0u8; 64];
    out.copy_from_slice(&s.to_bytes());
    out
}

fn rfc3339(t: i64) -> String {
    odt(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
        .replace("+00:00", "Z")
}

impl TestPki {
    /// A fresh PKI (new keys every time) for the synthetic platform.
    pub fn new() -> Self {
        Self::with_fmspc(FMSPC)
    }

    /// A fresh PKI whose PCK leaf names `fmspc`.
    pub fn with_fmspc(fmspc: [u8; 6]) -> Self {
        use KeyUsagePurpose::*;
        let root_key = key();
        let root = params(
            "Coffer Test SGX Root CA",
            IsCa::Ca(BasicConstraints::Constrained(1)),
            vec![KeyCertSign, CrlSign],
            &[1],
        )
        .self_signed(&root_key)
        .expect("root");
        let root = Node {
            cert: root,
            key: root_key,
        };
        let ca_key = key();
        let ca = params(
            "Intel SGX PCK Platform CA",
            IsCa::Ca(BasicConstraints::Constrained(0)),
            vec![KeyCertSign, CrlSign],
            &[2],
        )
        .signed_by(&ca_key, &root.cert, &root.key)
        .expect("pck ca");
        let pck_ca = Node {
            cert: ca,
            key: ca_key,
        };
        let leaf_key = key();
        let mut lp = params(
            "Intel SGX PCK Certificate",
            IsCa::ExplicitNoCa,
            vec![DigitalSignature, ContentCommitment],
            &LEAF_SERIAL,
        );
        lp.custom_extensions = vec![CustomExtension::from_oid_content(
            &SGX[..7],
            sgx_extension(fmspc),
        )];
        let leaf = lp
            .signed_by(&leaf_key, &pck_ca.cert, &pck_ca.key)
            .expect("leaf");
        let leaf = Node {
            cert: leaf,
            key: leaf_key,
        };
        let tcb_key = key();
        let tcb = params(
            "Intel SGX TCB Signing",
            IsCa::ExplicitNoCa,
            vec![DigitalSignature, ContentCommitment],
            &[3],
        )
        .signed_by(&tcb_key, &root.cert, &root.key)
        .expect("tcb signer");
        TestPki {
            root,
            pck_ca,
            leaf,
            tcb_signer: Node {
                cert: tcb,
                key: tcb_key,
            },
            attestation_key: SigningKey::random(&mut rand::rngs::OsRng),
        }
    }

    /// DER of the test root (what the server is told to trust).
    pub fn root_der(&self) -> Vec<u8> {
        self.root.cert.der().to_vec()
    }

    fn crl(&self, issuer: &Node, o: &CollateralOptions, revoked: bool) -> Vec<u8> {
        let revoked_certs = if revoked {
            vec![RevokedCertParams {
                serial_number: SerialNumber::from_slice(&LEAF_SERIAL),
                revocation_time: odt(o.issued),
                reason_code: None,
                invalidity_date: None,
            }]
        } else {
            vec![]
        };
        CertificateRevocationListParams {
            this_update: odt(o.issued),
            next_update: odt(o.next_update),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&issuer.cert, &issuer.key)
        .expect("crl")
        .der()
        .to_vec()
    }

    /// TCB info JSON text (the signed inner object).
    pub fn tcb_info_text(&self, o: &CollateralOptions) -> String {
        let comps = |svns: &[u8]| -> Vec<serde_json::Value> {
            svns.iter().map(|s| json!({"svn": s})).collect()
        };
        let mut old_sgx = CPU_SVN;
        old_sgx[0] = 2;
        let old_tdx = OLD_TEE_TCB_SVN;
        json!({
            "id": "TDX", "version": 3,
            "issueDate": rfc3339(o.issued), "nextUpdate": rfc3339(o.next_update),
            "fmspc": hex::encode_upper(o.fmspc), "pceId": "0000", "tcbType": 0,
            "tcbEvaluationDataNumber": 17,
            "tdxModule": {"mrsigner": "0".repeat(96), "attributes": "0000000000000000",
                          "attributesMask": "FFFFFFFFFFFFFFFF"},
            "tcbLevels": [
                {"tcb": {"sgxtcbcomponents": comps(&CPU_SVN), "pcesvn": PCE_SVN,
                         "tdxtcbcomponents": comps(&TEE_TCB_SVN)},
                 "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": "UpToDate"},
                {"tcb": {"sgxtcbcomponents": comps(&old_sgx), "pcesvn": 5,
                         "tdxtcbcomponents": comps(&old_tdx)},
                 "tcbDate": "2018-01-04T00:00:00Z", "tcbStatus": o.old_level_status,
                 "advisoryIDs": ["INTEL-SA-00106"]}
            ]
        })
        .to_string()
    }

    fn qe_identity_text(&self, o: &CollateralOptions) -> String {
        json!({
            "id": "TD_QE", "version": 2,
            "issueDate": rfc3339(o.issued), "nextUpdate": rfc3339(o.next_update),
            "tcbEvaluationDataNumber": 17,
            "miscselect": "00000000", "miscselectMask": "FFFFFFFF",
            "attributes": "11000000000000000000000000000000",
            "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
            "mrsigner": QE_MRSIGNER.to_uppercase(), "isvprodid": 2,
            "tcbLevels": [{"tcb": {"isvsvn": 4}, "tcbDate": "2024-03-13T00:00:00Z",
                           "tcbStatus": "UpToDate"}]
        })
        .to_string()
    }

    /// TCB info and QE identity with their hex signatures, and the two issuer chains (PEM).
    fn signed_items(&self, o: &CollateralOptions) -> SignedItems {
        let tcb = self.tcb_info_text(o);
        let qe = self.qe_identity_text(o);
        let signer = self.tcb_signer.signer();
        let root_pem = self.root.cert.pem();
        SignedItems {
            tcb_sig: hex::encode(raw_sig(&signer, tcb.as_bytes())),
            qe_sig: hex::encode(raw_sig(&signer, qe.as_bytes())),
            tcb,
            qe,
            signer_chain: format!("{}{}", self.tcb_signer.cert.pem(), root_pem),
            pck_crl_chain: format!("{}{}", self.pck_ca.cert.pem(), root_pem),
        }
    }

    /// Writes this PKI's root and an offline collateral bundle (`o`) under `dir` and
    /// returns the `[dcap]` table of a server that verifies with them and fetches nothing.
    pub fn offline_dcap_config(&self, dir: &std::path::Path, o: &CollateralOptions) -> String {
        let coll = dir.join("collateral");
        std::fs::create_dir_all(&coll).expect("collateral dir");
        std::fs::write(dir.join("root.der"), self.root_der()).expect("root.der");
        std::fs::write(coll.join("test.json"), self.collateral_json(o)).expect("bundle");
        format!(
            "[dcap]\nroot_ca_file = \"{}\"\ncollateral_dir = \"{}\"\npccs_url = \"\"\n",
            dir.join("root.der").display(),
            coll.display()
        )
    }

    /// Collateral JSON in dcap-qvl's `QuoteCollateralV3` form.
    pub fn collateral_json(&self, o: &CollateralOptions) -> String {
        let i = self.signed_items(o);
        json!({
            "pck_crl_issuer_chain": i.pck_crl_chain,
            "root_ca_crl": hex::encode(self.crl(&self.root, o, false)),
            "pck_crl": hex::encode(self.crl(&self.pck_ca, o, o.revoke_pck)),
            "tcb_info_issuer_chain": i.signer_chain,
            "tcb_info": i.tcb,
            "tcb_info_signature": i.tcb_sig,
            "qe_identity_issuer_chain": i.signer_chain,
            "qe_identity": i.qe,
            "qe_identity_signature": i.qe_sig,
        })
        .to_string()
    }

    /// What a PCCS answers for this platform (bodies, URL-encoded chain headers, CRLs).
    pub fn pcs_responses(&self, o: &CollateralOptions) -> PcsResponses {
        let i = self.signed_items(o);
        let enc = |s: &str| {
            s.replace('\n', "%0A")
                .replace(' ', "%20")
                .replace('+', "%2B")
        };
        PcsResponses {
            tcb_body: format!("{{\"tcbInfo\":{},\"signature\":\"{}\"}}", i.tcb, i.tcb_sig),
            qe_body: format!(
                "{{\"enclaveIdentity\":{},\"signature\":\"{}\"}}",
                i.qe, i.qe_sig
            ),
            signer_chain: enc(&i.signer_chain),
            pck_crl: self.crl(&self.pck_ca, o, o.revoke_pck),
            pck_crl_chain: enc(&i.pck_crl_chain),
            root_crl: self.crl(&self.root, o, false),
            fmspc: hex::encode_upper(o.fmspc),
        }
    }

    /// A TDX v4 quote over `td`, signed through this PKI.
    pub fn quote(&self, td: &TdFields) -> Vec<u8> {
        let mut q = Vec::with_capacity(5000);
        q.extend_from_slice(&4u16.to_le_bytes());
        q.extend_from_slice(&2u16.to_le_bytes());
        q.extend_from_slice(&0x81u32.to_le_bytes());
        q.extend_from_slice(&[0; 4]);
        q.extend_from_slice(&QE_VENDOR_ID);
        q.extend_from_slice(&[0x51; 16]);
        q.extend_from_slice(&[0; 4]);
        // TD report body (584 bytes).
        q.extend_from_slice(&td.tee_tcb_svn);
        q.extend_from_slice(&[0x11; 48]); // MRSEAM
        q.extend_from_slice(&[0; 48]); // MRSIGNERSEAM
        q.extend_from_slice(&[0; 8]); // SEAMATTRIBUTES
        q.extend_from_slice(&td.td_attributes.to_le_bytes());
        q.extend_from_slice(&td.xfam.to_le_bytes());
        q.extend_from_slice(&td.mr_td);
        q.extend_from_slice(&td.mr_config_id);
        q.extend_from_slice(&[0; 96]); // MROWNER, MROWNERCONFIG
        for r in &td.rtmrs {
            q.extend_from_slice(r);
        }
        q.extend_from_slice(&td.report_data);
        debug_assert_eq!(q.len(), 632);
        self.sign_quote(q)
    }

    /// Re-signs a quote whose header+body (first 632 bytes) were edited.
    pub fn resign(&self, quote: &[u8]) -> Vec<u8> {
        self.sign_quote(quote[..632].to_vec())
    }

    fn sign_quote(&self, mut q: Vec<u8>) -> Vec<u8> {
        let sig = raw_sig(&self.attestation_key, &q);
        let point = self.attestation_key.verifying_key().to_encoded_point(false);
        let att_key = &point.as_bytes()[1..];
        let auth = [0x5a; 32];
        let mut qe_report = [0u8; 384];
        qe_report[..16].copy_from_slice(&CPU_SVN);
        qe_report[48] = 0x11; // ATTRIBUTES flags: INIT | MODE64BIT, no DEBUG
        qe_report[128..160].copy_from_slice(&hex::decode(QE_MRSIGNER).expect("hex"));
        qe_report[256..258].copy_from_slice(&2u16.to_le_bytes());
        qe_report[258..260].copy_from_slice(&4u16.to_le_bytes());
        let mut h = Sha256::new();
        h.update(att_key);
        h.update(auth);
        qe_report[320..352].copy_from_slice(&h.finalize());
        let qe_sig = raw_sig(&self.leaf.signer(), &qe_report);
        let chain = format!(
            "{}{}{}\0",
            self.leaf.cert.pem(),
            self.pck_ca.cert.pem(),
            self.root.cert.pem()
        );
        let mut inner = Vec::new();
        inner.extend_from_slice(&qe_report);
        inner.extend_from_slice(&qe_sig);
        inner.extend_from_slice(&(auth.len() as u16).to_le_bytes());
        inner.extend_from_slice(&auth);
        inner.extend_from_slice(&5u16.to_le_bytes());
        inner.extend_from_slice(&(chain.len() as u32).to_le_bytes());
        inner.extend_from_slice(chain.as_bytes());
        let mut sigdata = Vec::new();
        sigdata.extend_from_slice(&sig);
        sigdata.extend_from_slice(att_key);
        sigdata.extend_from_slice(&6u16.to_le_bytes());
        sigdata.extend_from_slice(&(inner.len() as u32).to_le_bytes());
        sigdata.extend_from_slice(&inner);
        q.extend_from_slice(&(sigdata.len() as u32).to_le_bytes());
        q.extend_from_slice(&sigdata);
        q
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

struct SignedItems {
    tcb: String,
    tcb_sig: String,
    qe: String,
    qe_sig: String,
    signer_chain: String,
    pck_crl_chain: String,
}

/// What a PCCS would answer for the test platform.
pub struct PcsResponses {
    /// `{"tcbInfo":…,"signature":…}`.
    pub tcb_body: String,
    /// `{"enclaveIdentity":…,"signature":…}`.
    pub qe_body: String,
    /// URL-encoded TCB signing chain (TCB info and QE identity headers).
    pub signer_chain: String,
    /// PCK CRL DER.
    pub pck_crl: Vec<u8>,
    /// URL-encoded PCK CRL issuer chain.
    pub pck_crl_chain: String,
    /// Root CA CRL DER.
    pub root_crl: Vec<u8>,
    /// FMSPC (upper-case hex) the TCB info is for; other FMSPCs get 404.
    pub fmspc: String,
}
