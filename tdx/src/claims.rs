//! Trustee's claim layout for TDX and SGX evidence: what `input.tdx` / `input.sgx` look
//! like to an attestation policy, so Trustee's policies and reference values work unchanged.

use dcap_qvl::tcb_info::TcbStatus;
use dcap_qvl::PckCertFlag;
use serde_json::{json, Map, Value};

use crate::collateral::fmt_time;
use crate::dcap::Verified;
use crate::eventlog::EventLog;
use crate::quote::{sgx, td, BodyKind, Quote};

fn h(b: &[u8]) -> Value {
    Value::String(hex::encode(b))
}

fn body_hex(q: &Quote<'_>, off: usize, len: usize) -> Value {
    q.body_field(off, len).map(h).unwrap_or(Value::Null)
}

/// Claims of a TDX quote: `quote.header`, `quote.body`, `td_attributes`, `report_data`,
/// `init_data`, plus `uefi_event_logs` when a log is given and `platform_instance_id`
/// (byte-reversed, as Trustee reports it) when the PCK carries one.
pub fn tdx_quote_claims(
    q: &Quote<'_>,
    log: Option<&EventLog<'_>>,
    platform_instance_id: Option<&[u8]>,
) -> Map<String, Value> {
    let header = json!({
        "version": h(q.header_field(0, 2)),
        "att_key_type": h(q.header_field(2, 2)),
        "tee_type": h(q.header_field(4, 4)),
        "reserved": h(q.header_field(8, 4)),
        "vendor_id": h(q.header_field(12, 16)),
        "user_data": h(q.header_field(28, 20)),
    });
    let mut body = Map::new();
    for (name, off, len) in [
        ("tcb_svn", td::TCB_SVN, 16),
        ("mr_seam", td::MR_SEAM, 48),
        ("mrsigner_seam", td::MR_SIGNER_SEAM, 48),
        ("seam_attributes", td::SEAM_ATTRIBUTES, 8),
        ("td_attributes", td::TD_ATTRIBUTES, 8),
        ("xfam", td::XFAM, 8),
        ("mr_td", td::MR_TD, 48),
        ("mr_config_id", td::MR_CONFIG_ID, 48),
        ("mr_owner", td::MR_OWNER, 48),
        ("mr_owner_config", td::MR_OWNER_CONFIG, 48),
        ("rtmr_0", td::RTMR0, 48),
        ("rtmr_1", td::RTMR0 + 48, 48),
        ("rtmr_2", td::RTMR0 + 96, 48),
        ("rtmr_3", td::RTMR0 + 144, 48),
        ("report_data", td::REPORT_DATA, 64),
    ] {
        body.insert(name.into(), body_hex(q, off, len));
    }
    if matches!(q.kind(), BodyKind::Td15 | BodyKind::Td15Ex) {
        body.insert("tee_tcb_svn2".into(), body_hex(q, td::TEE_TCB_SVN2, 16));
        body.insert("mr_servicetd".into(), body_hex(q, td::MR_SERVICETD, 48));
    }
    let mut quote = Map::new();
    quote.insert("header".into(), header);
    quote.insert("body".into(), Value::Object(body));
    if let Some((ty, size)) = q.descriptor() {
        quote.insert("type".into(), h(ty));
        quote.insert("size".into(), h(size));
    }
    let attrs = q
        .body_field(td::TD_ATTRIBUTES, 8)
        .map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_le_bytes(a)
        })
        .unwrap_or(0);
    let bit = |n: u32| attrs & (1u64 << n) != 0;
    let mut m = Map::new();
    m.insert("quote".into(), Value::Object(quote));
    m.insert(
        "td_attributes".into(),
        json!({
            "debug": bit(0),
            "septve_disable": bit(28),
            "protection_keys": bit(30),
            "key_locker": bit(31),
            "perfmon": bit(63),
        }),
    );
    m.insert("report_data".into(), h(q.report_data()));
    m.insert("init_data".into(), h(q.config_id()));
    if let Some(log) = log {
        m.insert(
            "uefi_event_logs".into(),
            Value::Array(log.to_trustee_json()),
        );
    }
    if let Some(id) = platform_instance_id {
        let rev: Vec<u8> = id.iter().rev().copied().collect();
        m.insert("platform_instance_id".into(), h(&rev));
    }
    m
}

/// Claims of an SGX quote in Trustee's flat layout.
pub fn sgx_quote_claims(q: &Quote<'_>) -> Map<String, Value> {
    let b = |off: usize, len: usize| body_hex(q, off, len);
    let header = json!({
        "version": h(q.header_field(0, 2)),
        "att_key_type": h(q.header_field(2, 2)),
        "att_key_data_0": h(q.header_field(4, 4)),
        "qe_svn": h(q.header_field(8, 2)),
        "pce_svn": h(q.header_field(10, 2)),
        "vendor_id": h(q.header_field(12, 16)),
        "user_data": h(q.header_field(28, 20)),
    });
    let body = json!({
        "cpu_svn": b(sgx::CPU_SVN, 16),
        "misc_select": b(sgx::MISC_SELECT, 4),
        "reserved1": b(20, 12),
        "isv_ext_prod_id": b(sgx::ISV_EXT_PROD_ID, 16),
        "attributes.flags": b(sgx::ATTRIBUTES, 8),
        "attributes.xfrm": b(sgx::ATTRIBUTES + 8, 8),
        "mr_enclave": b(sgx::MR_ENCLAVE, 32),
        "reserved2": b(96, 32),
        "mr_signer": b(sgx::MR_SIGNER, 32),
        "reserved3": b(160, 32),
        "config_id": b(sgx::CONFIG_ID, 64),
        "isv_prod_id": b(sgx::ISV_PROD_ID, 2),
        "isv_svn": b(sgx::ISV_SVN, 2),
        "config_svn": b(sgx::CONFIG_SVN, 2),
        "reserved4": b(262, 42),
        "isv_family_id": b(sgx::ISV_FAMILY_ID, 16),
        "report_data": b(sgx::REPORT_DATA, 64),
    });
    let mut m = Map::new();
    m.insert("header".into(), header);
    m.insert("body".into(), body);
    m.insert("report_data".into(), h(q.report_data()));
    m.insert("init_data".into(), h(q.config_id()));
    m
}

fn flag(f: PckCertFlag) -> Option<bool> {
    match f {
        PckCertFlag::True => Some(true),
        PckCertFlag::False => Some(false),
        PckCertFlag::Undefined => None,
    }
}

/// The DCAP result claims (`tcb_status`, `advisory_ids`, dates, CRL numbers, PCK identity).
///
/// `collateral_expiration_status` is always "0": collateral outside its window is refused
/// before this point, never passed on as "expired but verified".
pub fn dcap_claims(v: &Verified) -> Map<String, Value> {
    let c = &v.claims;
    let p = &c.platform.pck;
    let mut m = Map::new();
    m.insert("tcb_status".into(), json!(c.tcb.status.to_string()));
    m.insert("advisory_ids".into(), json!(c.tcb.advisory_ids));
    m.insert("collateral_expiration_status".into(), json!("0"));
    m.insert(
        "tcb_date".into(),
        json!(fmt_time(c.platform.tcb_date_tag as i64)),
    );
    m.insert("tcb_eval_num".into(), json!(c.tcb.eval_data_number));
    m.insert("pck_crl_num".into(), json!(c.platform.pck_crl_num));
    m.insert("root_ca_crl_num".into(), json!(c.platform.root_ca_crl_num));
    for (k, t) in [
        ("earliest_issue_date", c.earliest_issue_date),
        ("latest_issue_date", c.latest_issue_date),
        ("earliest_expiration_date", c.earliest_expiration_date),
    ] {
        m.insert(k.into(), json!(fmt_time(t as i64)));
    }
    m.insert("platform_provider_id".into(), h(&p.ppid));
    m.insert(
        "sgx_type".into(),
        json!(match p.sgx_type {
            0 => "Standard",
            1 => "Scalable",
            _ => "Scalable with Integrity",
        }),
    );
    if p.sgx_type > 0 {
        for (k, f) in [
            ("is_dynamic_platform", p.dynamic_platform),
            ("is_cached_keys", p.cached_keys),
            ("is_smt_enabled", p.smt_enabled),
        ] {
            if let Some(b) = flag(f) {
                m.insert(k.into(), json!(b));
            }
        }
    }
    m.insert("root_key_id".into(), h(&c.platform.root_key_id));
    m.insert("fmspc".into(), h(&p.fmspc));
    if let Some(cur) = &c.platform.current_tcb_level {
        m.insert(
            "tcb_status_current".into(),
            json!(cur.tcb_status.to_string()),
        );
        m.insert("tcb_date_current".into(), json!(cur.tcb_date));
        m.insert("advisory_ids_current".into(), json!(cur.advisory_ids));
    }
    m
}

/// Intel QVL's `sgx_ql_qv_result_t` value for a TCB status.
fn qv_result_code(status: &TcbStatus) -> u32 {
    match status {
        TcbStatus::UpToDate => 0,
        TcbStatus::ConfigurationNeeded => 0xA001,
        TcbStatus::OutOfDate => 0xA002,
        TcbStatus::OutOfDateConfigurationNeeded => 0xA003,
        TcbStatus::Revoked => 0xA005,
        TcbStatus::SWHardeningNeeded => 0xA007,
        TcbStatus::ConfigurationAndSWHardeningNeeded => 0xA008,
        TcbStatus::TDRelaunchAdvised => 0xA009,
        TcbStatus::TDRelaunchAdvisedConfigurationNeeded => 0xA00A,
    }
}

/// The DCAP result in the nested form Alibaba Cloud's Trustee (openanolis/trustee) adds as
/// `tcb_verification`, so policies written for it (e.g. on `tcb_level_date_tag` or
/// `tcb_status_code`) run unchanged. It carries the same facts as [`dcap_claims`]: dates as
/// Unix seconds, advisory ids joined with commas, `tee_type` 0x81 for TDX and 0 for SGX.
/// `collateral_expired` is always false for the same reason as there.
pub fn tcb_verification_claim(v: &Verified, tdx: bool) -> Value {
    let c = &v.claims;
    json!({
        "tcb_status": c.tcb.status.to_string(),
        "tcb_status_code": qv_result_code(&c.tcb.status),
        "collateral_expired": false,
        "earliest_issue_date": c.earliest_issue_date,
        "latest_issue_date": c.latest_issue_date,
        "earliest_expiration_date": c.earliest_expiration_date,
        "tcb_level_date_tag": c.platform.tcb_date_tag,
        "tcb_eval_ref_num": c.tcb.eval_data_number,
        "advisory_ids": c.tcb.advisory_ids.join(","),
        "tee_type": if tdx { 0x81 } else { 0 },
    })
}
