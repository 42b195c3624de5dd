//! A confidential-containers guest's Confidential Data Hub, as containers see it: the REST
//! API of guest-components' api-server-rest (`GET /cdh/resource/{repo}/{type}/{tag}`, the
//! raw bytes on success, HTTP 500 with the error text when the KBS refuses, 404 for other
//! paths). Like the real one it attests to the KBS itself (here with the sample TEE through
//! the `coffer` library) for every request, so the resource comes from the real server.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use coffer::evidence::SampleEvidence;
use coffer::KbsClient;
use coffer_protocol::{ResourcePath, TeeKeyPair};

/// The running emulator.
pub struct Cdh {
    /// Base URL (what `coffer model decrypt --cdh` takes).
    pub url: String,
    /// Resource requests served so far.
    pub hits: Arc<AtomicUsize>,
}

fn answer(kbs_url: &str, path: &str) -> (&'static str, Vec<u8>) {
    let Some(resource) = path.strip_prefix("/cdh/resource/") else {
        return ("404 Not Found", b"URL NOT FOUND".to_vec());
    };
    let Ok(resource) = resource.parse::<ResourcePath>() else {
        return ("404 Not Found", b"URL NOT FOUND".to_vec());
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return ("500 Internal Server Error", e.to_string().into_bytes()),
    };
    let mut client = KbsClient::new(
        reqwest::Client::new(),
        kbs_url,
        Box::new(SampleEvidence),
        TeeKeyPair::generate(),
    );
    match rt.block_on(client.get_resource(&resource)) {
        Ok(bytes) => ("200 OK", bytes.to_vec()),
        Err(e) => ("500 Internal Server Error", e.to_string().into_bytes()),
    }
}

impl Cdh {
    /// Serves resources of the KBS at `kbs_url` on a free loopback port.
    pub fn start(kbs_url: &str) -> Cdh {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let kbs_url = kbs_url.to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (h, kbs_url) = (h.clone(), kbs_url.clone());
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
                    let mut parts = line.split_whitespace();
                    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                    let (status, body) = if method != "GET" {
                        ("405 Method Not Allowed", b"Method Not Allowed".to_vec())
                    } else {
                        if path.starts_with("/cdh/resource/") {
                            h.fetch_add(1, Ordering::SeqCst);
                        }
                        answer(&kbs_url, path)
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let mut s = &stream;
                    let _ = s
                        .write_all(head.as_bytes())
                        .and_then(|_| s.write_all(&body));
                });
            }
        });
        Cdh { url, hits }
    }
}
