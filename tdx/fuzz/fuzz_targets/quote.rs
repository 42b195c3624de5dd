//! Quote parser and claim building on arbitrary bytes: errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(q) = coffer_tdx::quote::Quote::parse(data) {
        let _ = q.report_data();
        let _ = q.config_id();
        if q.is_tdx() {
            let _ = coffer_tdx::claims::tdx_quote_claims(&q, None, None);
        } else {
            let _ = coffer_tdx::claims::sgx_quote_claims(&q);
        }
        let _ = coffer_tdx::dcap::collateral_key(&q);
    }
});
