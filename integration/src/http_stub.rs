//! A minimal blocking HTTP/1.1 responder for the emulators of plain-HTTP services (PCCS,
//! Confidential Data Hub): one thread per connection, one request per connection.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;

/// One answer.
pub struct Reply {
    /// Status line after the version, e.g. `200 OK`.
    pub status: &'static str,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Reply {
    /// An answer without extra headers.
    pub fn new(status: &'static str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }
}

/// Serves `handler(method, path)` on a free loopback port; returns the base URL.
pub fn serve(handler: impl Fn(&str, &str) -> Reply + Send + Sync + 'static) -> String {
    serve_with_body(move |m, p, _| handler(m, p))
}

/// Serves `handler(method, path, body)` (the body as `Content-Length` announces it) on a
/// free loopback port; returns the base URL.
pub fn serve_with_body(
    handler: impl Fn(&str, &str, &[u8]) -> Reply + Send + Sync + 'static,
) -> String {
    use std::io::Read;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let handler = Arc::new(handler);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let handler = handler.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                let mut length = 0usize;
                loop {
                    let mut hdr = String::new();
                    if reader.read_line(&mut hdr).map(|n| n == 0).unwrap_or(true) || hdr == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = hdr.split_once(':') {
                        if k.trim().eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                let mut parts = line.split_whitespace();
                let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let reply = handler(method, path, &body);
                let mut head = format!(
                    "HTTP/1.1 {}\r\nContent-Length: {}\r\nConnection: close\r\n",
                    reply.status,
                    reply.body.len()
                );
                for (k, v) in &reply.headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                let mut s = &stream;
                let _ = s
                    .write_all(head.as_bytes())
                    .and_then(|_| s.write_all(&reply.body));
            });
        }
    });
    url
}
