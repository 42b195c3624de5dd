//! A confidential-containers guest's Confidential Data Hub, as containers see it: the REST
//! API of guest-components' api-server-rest (`GET /cdh/resource/{repo}/{type}/{tag}`, the
//! raw bytes on success, HTTP 500 with the error text when the KBS refuses, 404 for other
//! paths). Like the real one it attests to the KBS itself (here with the sample TEE through
//! the `coffer` library) for every request, so the resource comes from the real server.
//! `POST /aa/aael` with `{"domain", "operation", "content"}` is recorded (the real one has
//! its Attestation Agent extend RTMR3 and log the event) and answered
//! `{"success":"true"}`, as api-server-rest does.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use coffer::evidence::SampleEvidence;
use coffer::KbsClient;
use coffer_protocol::{ResourcePath, TeeKeyPair};

use crate::http_stub::{serve_with_body, Reply};

/// The running emulator.
pub struct Cdh {
    /// Base URL (what `coffer model decrypt --cdh` takes).
    pub url: String,
    /// Resource requests served so far.
    pub hits: Arc<AtomicUsize>,
    /// AAEL events recorded through `POST /aa/aael`, in order.
    pub events: Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
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
        let hits = Arc::new(AtomicUsize::new(0));
        let events = Arc::new(std::sync::Mutex::new(Vec::new()));
        let h = hits.clone();
        let ev = events.clone();
        let kbs_url = kbs_url.to_string();
        let url = serve_with_body(move |method, path, body| {
            if method == "POST" && path == "/aa/aael" {
                return match serde_json::from_slice::<serde_json::Value>(body) {
                    Ok(v)
                        if v["domain"].is_string()
                            && v["operation"].is_string()
                            && v["content"].is_string() =>
                    {
                        ev.lock().expect("lock").push(v);
                        Reply::new("200 OK", "{\"success\":\"true\"}")
                    }
                    _ => Reply::new("500 Internal Server Error", "Illegal AAEL eventry format"),
                };
            }
            if method != "GET" {
                return Reply::new("405 Method Not Allowed", "Method Not Allowed");
            }
            if path.starts_with("/cdh/resource/") {
                h.fetch_add(1, Ordering::SeqCst);
            }
            let (status, body) = answer(&kbs_url, path);
            Reply {
                headers: vec![("Content-Type", "application/octet-stream".into())],
                ..Reply::new(status, body)
            }
        });
        Cdh { url, hits, events }
    }
}
