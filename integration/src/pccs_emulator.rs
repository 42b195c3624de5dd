//! A PCCS speaking Intel's PCS v4 paths over plain HTTP, serving the test PKI's collateral
//! (or refusing with 503), and counting requests.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::http_stub::{serve, Reply};
use crate::tdx_mint::PcsResponses;

/// The running emulator.
pub struct Pccs {
    /// Base URL.
    pub url: String,
    /// Requests served so far.
    pub hits: Arc<AtomicUsize>,
    /// When set, every request gets 503.
    pub down: Arc<AtomicBool>,
}

impl Pccs {
    /// Serves `r` on a free port.
    pub fn start(r: PcsResponses) -> Pccs {
        let hits = Arc::new(AtomicUsize::new(0));
        let down = Arc::new(AtomicBool::new(false));
        let (h, d) = (hits.clone(), down.clone());
        let url = serve(move |_method, path| {
            h.fetch_add(1, Ordering::SeqCst);
            let chain = |name, value: &String| vec![(name, value.clone())];
            if d.load(Ordering::SeqCst) {
                Reply::new("503 Service Unavailable", "down")
            } else if path.starts_with("/tdx/certification/v4/tcb?")
                && !path.contains(&format!("fmspc={}&", r.fmspc))
            {
                Reply::new("404 Not Found", "no such fmspc")
            } else if path.starts_with("/tdx/certification/v4/tcb?") {
                Reply {
                    headers: chain("TCB-Info-Issuer-Chain", &r.signer_chain),
                    ..Reply::new("200 OK", r.tcb_body.clone())
                }
            } else if path.starts_with("/tdx/certification/v4/qe/identity") {
                Reply {
                    headers: chain("SGX-Enclave-Identity-Issuer-Chain", &r.signer_chain),
                    ..Reply::new("200 OK", r.qe_body.clone())
                }
            } else if path.starts_with("/sgx/certification/v4/pckcrl?ca=platform") {
                Reply {
                    headers: chain("SGX-PCK-CRL-Issuer-Chain", &r.pck_crl_chain),
                    ..Reply::new("200 OK", r.pck_crl.clone())
                }
            } else if path.starts_with("/sgx/certification/v4/rootcacrl") {
                // PCCS answers the root CRL as hex text.
                Reply::new("200 OK", hex::encode(&r.root_crl))
            } else {
                Reply::new("404 Not Found", "not found")
            }
        });
        Pccs { url, hits, down }
    }
}
