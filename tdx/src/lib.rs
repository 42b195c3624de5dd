//! Intel TDX (and SGX) DCAP evidence for coffer.
//!
//! * [`quote`]: quote v3/v4/v5 layout as byte slices (claims are hex of stored bytes).
//! * [`collateral`]: the signed TCB info / QE identity / CRLs a quote is checked against.
//! * [`dcap`]: full DCAP verification (dcap-qvl) with a pinned root and the caller's time.
//! * [`eventlog`]: CC event logs (CCEL + AAEL): parse, trim, replay into RTMRs.
//! * [`claims`]: Trustee's claim layout for policies.
//! * [`binding`]: REPORTDATA / MRCONFIGID binding to the KBS session and init-data.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod binding;
pub mod claims;
pub mod collateral;
pub mod dcap;
pub mod eventlog;
pub mod pem;
pub mod quote;

/// DER of the Intel SGX Root CA (the production trust anchor).
pub const INTEL_SGX_ROOT_CA_DER: &[u8] = include_bytes!("intel_sgx_root_ca.der");
