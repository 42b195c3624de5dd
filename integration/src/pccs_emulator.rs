//! A PCCS speaking Intel's PCS v4 paths over plain HTTP, serving the test PKI's collateral
//! (or refusing with 503), and counting requests.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

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
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let hits = Arc::new(AtomicUsize::new(0));
        let down = Arc::new(AtomicBool::new(false));
        let (h, d) = (hits.clone(), down.clone());
        let r = Arc::new(r);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (h, d, r) = (h.clone(), d.clone(), r.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(&stream);
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    loop {
                        let mut hdr = String::new();
                        if reader.read_line(&mut hdr).map(|n| n == 0).unwrap_or(true)
                            || hdr == "\r\n"
                        {
                            break;
                        }
                    }
                    h.fetch_add(1, Ordering::SeqCst);
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let (status, header, body): (&str, Option<(&str, &str)>, Vec<u8>) =
                        if d.load(Ordering::SeqCst) {
                            ("503 Service Unavailable", None, b"down".to_vec())
                        } else if path.starts_with("/tdx/certification/v4/tcb?")
                            && !path.contains(&format!("fmspc={}&", r.fmspc))
                        {
                            ("404 Not Found", None, b"no such fmspc".to_vec())
                        } else if path.starts_with("/tdx/certification/v4/tcb?") {
                            (
                                "200 OK",
                                Some(("TCB-Info-Issuer-Chain", &r.signer_chain)),
                                r.tcb_body.clone().into_bytes(),
                            )
                        } else if path.starts_with("/tdx/certification/v4/qe/identity") {
                            (
                                "200 OK",
                                Some(("SGX-Enclave-Identity-Issuer-Chain", &r.signer_chain)),
                                r.qe_body.clone().into_bytes(),
                            )
                        } else if path.starts_with("/sgx/certification/v4/pckcrl?ca=platform") {
                            (
                                "200 OK",
                                Some(("SGX-PCK-CRL-Issuer-Chain", &r.pck_crl_chain)),
                                r.pck_crl.clone(),
                            )
                        } else if path.starts_with("/sgx/certification/v4/rootcacrl") {
                            // PCCS answers the root CRL as hex text.
                            ("200 OK", None, hex::encode(&r.root_crl).into_bytes())
                        } else {
                            ("404 Not Found", None, b"not found".to_vec())
                        };
                    let mut out = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
                        body.len()
                    );
                    if let Some((k, v)) = header {
                        out.push_str(&format!("{k}: {v}\r\n"));
                    }
                    out.push_str("\r\n");
                    let mut s = &stream;
                    let _ = s.write_all(out.as_bytes());
                    let _ = s.write_all(&body);
                });
            }
        });
        Pccs { url, hits, down }
    }
}
