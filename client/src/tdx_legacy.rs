//! Legacy TDX quote path for kernels without configfs-tsm: a TDREPORT from
//! `/dev/tdx_guest` (`TDX_CMD_GET_REPORT0`), turned into a quote by the host's Quote
//! Generation Service over vsock (CID 2, port from `/etc/tdx-attest.conf`, default 4050).

// The two system interfaces here have no safe wrapper in the crates the workspace uses (an
// ioctl with a driver-specific struct, and AF_VSOCK sockets); each unsafe block is one FFI
// call, with its contract stated beside it.
#![allow(unsafe_code)]

use std::io::{Read, Write};
use std::path::Path;

use crate::ClientError;

/// `_IOWR('T', 1, struct { u8 reportdata[64]; u8 tdreport[1024]; })`.
const TDX_CMD_GET_REPORT0: libc::c_ulong = 0xC440_5401;
/// Host CID for vsock.
const VMADDR_CID_HOST: u32 = 2;
/// QGS port used when the config file names none.
pub const DEFAULT_QGS_PORT: u32 = 4050;
/// Largest QGS answer accepted (a quote is ~5 KiB).
const MAX_MESSAGE: usize = 1 << 20;

fn err(msg: impl Into<String>) -> ClientError {
    ClientError::Evidence(msg.into())
}

#[repr(C)]
struct ReportReq {
    report_data: [u8; 64],
    td_report: [u8; 1024],
}

// The ioctl number encodes the size of the struct the driver copies in and out (bits
// 16..30); the struct above must be exactly that size.
const _: () =
    assert!(((TDX_CMD_GET_REPORT0 >> 16) & 0x3fff) as usize == std::mem::size_of::<ReportReq>());

/// A TDREPORT over `report_data` from the TDX guest device.
pub fn td_report(dev: &Path, report_data: &[u8; 64]) -> Result<[u8; 1024], ClientError> {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)
        .map_err(|e| err(format!("cannot open {}: {e}", dev.display())))?;
    let mut req = ReportReq {
        report_data: *report_data,
        td_report: [0; 1024],
    };
    // SAFETY: the request struct has the layout the ioctl expects and outlives the call.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), TDX_CMD_GET_REPORT0 as _, &mut req) };
    if rc != 0 {
        return Err(err(format!(
            "TDX_CMD_GET_REPORT0 on {} failed: {}",
            dev.display(),
            std::io::Error::last_os_error()
        )));
    }
    Ok(req.td_report)
}

/// QGS GET_QUOTE_REQ for a TDREPORT, with its 4-byte big-endian length prefix.
pub fn encode_request(td_report: &[u8; 1024]) -> Vec<u8> {
    let size = 16 + 8 + td_report.len();
    let mut m = Vec::with_capacity(4 + size);
    m.extend_from_slice(&(size as u32).to_be_bytes());
    m.extend_from_slice(&1u16.to_le_bytes()); // major
    m.extend_from_slice(&0u16.to_le_bytes()); // minor
    m.extend_from_slice(&0u32.to_le_bytes()); // GET_QUOTE_REQ
    m.extend_from_slice(&(size as u32).to_le_bytes());
    m.extend_from_slice(&0u32.to_le_bytes()); // error code
    m.extend_from_slice(&(td_report.len() as u32).to_le_bytes());
    m.extend_from_slice(&0u32.to_le_bytes()); // id list size
    m.extend_from_slice(td_report);
    m
}

fn le32(b: &[u8], at: usize) -> Result<u32, ClientError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| err("QGS response truncated"))
}

/// The quote in a QGS GET_QUOTE_RESP message (without the length prefix).
pub fn decode_response(msg: &[u8]) -> Result<Vec<u8>, ClientError> {
    let major = msg
        .get(0..2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| err("QGS response truncated"))?;
    let ty = le32(msg, 4)?;
    let size = le32(msg, 8)? as usize;
    let code = le32(msg, 12)?;
    if major != 1 || ty != 1 || size != msg.len() {
        return Err(err(format!(
            "unexpected QGS message (version {major}, type {ty}, size {size} of {})",
            msg.len()
        )));
    }
    if code != 0 {
        return Err(err(format!(
            "QGS refused the quote request: error {code:#x}"
        )));
    }
    let id_len = le32(msg, 16)? as usize;
    let quote_len = le32(msg, 20)? as usize;
    let start = 24usize
        .checked_add(id_len)
        .ok_or_else(|| err("QGS response truncated"))?;
    msg.get(start..start.saturating_add(quote_len))
        .filter(|q| !q.is_empty())
        .map(<[u8]>::to_vec)
        .ok_or_else(|| err("QGS response truncated or without a quote"))
}

/// One request/response exchange with a QGS over any stream.
pub fn qgs_exchange<S: Read + Write>(
    stream: &mut S,
    td_report: &[u8; 1024],
) -> Result<Vec<u8>, ClientError> {
    let io = |e: std::io::Error| err(format!("QGS connection: {e}"));
    stream.write_all(&encode_request(td_report)).map_err(io)?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).map_err(io)?;
    let n = u32::from_be_bytes(len) as usize;
    if n > MAX_MESSAGE {
        return Err(err(format!("QGS response of {n} bytes is too large")));
    }
    let mut msg = vec![0u8; n];
    stream.read_exact(&mut msg).map_err(io)?;
    decode_response(&msg)
}

/// The QGS port from a `tdx-attest.conf` text (`port=NNNN`), or the default.
pub fn qgs_port(conf: Option<&str>) -> u32 {
    conf.and_then(|t| {
        t.lines().find_map(|l| {
            let l = l.trim();
            if l.starts_with('#') {
                return None;
            }
            let (k, v) = l.split_once('=')?;
            (k.trim() == "port").then(|| v.trim().parse().ok())?
        })
    })
    .unwrap_or(DEFAULT_QGS_PORT)
}

/// A vsock stream to the host's QGS.
fn connect_vsock(port: u32) -> Result<std::fs::File, ClientError> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: socket(2) takes no pointers.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(err(format!(
            "vsock unavailable: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: `fd` was just returned by socket(2) and nothing else owns it; from here on it
    // is closed when `owned` drops, on every path.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_vm is plain data for which all-zero bytes are a valid value.
    let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_port = port;
    addr.svm_cid = VMADDR_CID_HOST;
    // SAFETY: `addr` is a live sockaddr_vm and the length passed is its size.
    let rc = unsafe {
        libc::connect(
            owned.as_raw_fd(),
            &addr as *const libc::sockaddr_vm as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(err(format!(
            "cannot reach the quote generation service at vsock {VMADDR_CID_HOST}:{port}: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(std::fs::File::from(owned))
}

/// A quote through `/dev/tdx_guest` and the host QGS.
pub fn legacy_quote(dev: &Path, report_data: &[u8; 64]) -> Result<Vec<u8>, ClientError> {
    let report = td_report(dev, report_data)?;
    let conf = std::fs::read_to_string("/etc/tdx-attest.conf").ok();
    let mut s = connect_vsock(qgs_port(conf.as_deref()))?;
    qgs_exchange(&mut s, &report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(code: u32, quote: &[u8]) -> Vec<u8> {
        let size = 24 + 3 + quote.len();
        let mut m = Vec::new();
        m.extend_from_slice(&1u16.to_le_bytes());
        m.extend_from_slice(&0u16.to_le_bytes());
        m.extend_from_slice(&1u32.to_le_bytes());
        m.extend_from_slice(&(size as u32).to_le_bytes());
        m.extend_from_slice(&code.to_le_bytes());
        m.extend_from_slice(&3u32.to_le_bytes());
        m.extend_from_slice(&(quote.len() as u32).to_le_bytes());
        m.extend_from_slice(b"abc");
        m.extend_from_slice(quote);
        m
    }

    #[test]
    fn exchange_with_an_emulated_qgs() {
        let (mut client, mut host) = std::os::unix::net::UnixStream::pair().unwrap();
        let report = [0x5au8; 1024];
        let qgs = std::thread::spawn(move || {
            let mut len = [0u8; 4];
            host.read_exact(&mut len).unwrap();
            let mut req = vec![0u8; u32::from_be_bytes(len) as usize];
            host.read_exact(&mut req).unwrap();
            assert_eq!(le32(&req, 4).unwrap(), 0, "GET_QUOTE_REQ");
            assert_eq!(le32(&req, 8).unwrap() as usize, req.len());
            assert_eq!(le32(&req, 16).unwrap(), 1024);
            assert_eq!(&req[24..], &[0x5au8; 1024][..]);
            let r = response(0, b"QUOTE-BYTES");
            host.write_all(&(r.len() as u32).to_be_bytes()).unwrap();
            host.write_all(&r).unwrap();
        });
        assert_eq!(qgs_exchange(&mut client, &report).unwrap(), b"QUOTE-BYTES");
        qgs.join().unwrap();
    }

    #[test]
    fn qgs_errors_and_malformed_answers() {
        let e = decode_response(&response(0x12, b"q")).unwrap_err();
        assert!(e.to_string().contains("0x12"), "{e}");
        let mut short = response(0, b"quote");
        short.truncate(short.len() - 2);
        assert!(decode_response(&short).is_err());
        assert!(decode_response(&[1, 0]).is_err());
        assert!(decode_response(&response(0, b"")).is_err());
    }

    #[test]
    fn port_from_config() {
        assert_eq!(qgs_port(None), 4050);
        assert_eq!(qgs_port(Some("# comment\nport=4051\n")), 4051);
        assert_eq!(qgs_port(Some("port = x")), 4050);
    }

    #[test]
    fn missing_device_is_named() {
        let e = td_report(Path::new("/nonexistent/tdx_guest"), &[0; 64]).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/tdx_guest"), "{e}");
    }
}
