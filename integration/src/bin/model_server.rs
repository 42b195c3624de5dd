//! A tiny stand-in for an inference server, for `coffer launch` tests: serves files of the
//! decrypted model over HTTP the way vLLM would read them, and tells who it is.
//!
//! `coffer-test-model-server ROOT PORT_FILE` binds a free loopback port, writes it to
//! PORT_FILE, then answers `GET /pid` (its process id), `GET /env/NAME` (an environment
//! variable), `GET /exit/CODE` (answers, then exits with CODE) and `GET /model/REL` (the
//! file ROOT/REL; no `..`).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};

fn reply(mut s: &TcpStream, status: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes()).and_then(|_| s.write_all(body));
}

fn serve(root: &Path, s: TcpStream) -> Option<i32> {
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    if path == "/pid" {
        reply(&s, "200 OK", std::process::id().to_string().as_bytes());
    } else if let Some(name) = path.strip_prefix("/env/") {
        let v = std::env::var(name).unwrap_or_default();
        reply(&s, "200 OK", v.as_bytes());
    } else if let Some(code) = path.strip_prefix("/exit/") {
        reply(&s, "200 OK", b"bye");
        return Some(code.parse().unwrap_or(1));
    } else if let Some(rel) = path.strip_prefix("/model/") {
        let rel = PathBuf::from(rel);
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            reply(&s, "400 Bad Request", b"bad path");
        } else {
            match std::fs::read(root.join(rel)) {
                Ok(b) => reply(&s, "200 OK", &b),
                Err(e) => reply(&s, "404 Not Found", e.to_string().as_bytes()),
            }
        }
    } else {
        reply(&s, "404 Not Found", b"unknown");
    }
    None
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, root, port_file] = args.as_slice() else {
        eprintln!("usage: coffer-test-model-server ROOT PORT_FILE");
        std::process::exit(2);
    };
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let tmp = format!("{port_file}.tmp");
    std::fs::write(&tmp, port.to_string()).expect("write port");
    std::fs::rename(&tmp, port_file).expect("rename port file");
    for s in l.incoming().flatten() {
        if let Some(code) = serve(Path::new(root), s) {
            std::process::exit(code);
        }
    }
}
