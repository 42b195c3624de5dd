//! A model larger than its destination filesystem is refused before anything is written,
//! with both sizes named, instead of failing after the tmpfs is full.

use std::path::Path;
use std::process::Command;

use coffer_integration::{binary, exit_code, Exit};

struct Tmpfs<'a>(&'a Path);
impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

fn coffer(args: &[&str]) -> std::process::Output {
    Command::new(binary("coffer")).args(args).output().unwrap()
}

#[test]
fn model_too_large_for_its_tmpfs_is_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (plain, cipher, small) = (d.join("plain"), d.join("cipher"), d.join("small"));
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::create_dir_all(&small).unwrap();
    std::fs::write(plain.join("model.safetensors"), vec![1u8; 3 << 20]).unwrap();
    std::fs::write(d.join("pw"), "pw\n").unwrap();
    let pw = d.join("pw");
    let (pw, plain_s, cipher_s) = (
        pw.to_str().unwrap(),
        plain.to_str().unwrap(),
        cipher.to_str().unwrap(),
    );
    let out = coffer(&[
        "model",
        "encrypt",
        plain_s,
        cipher_s,
        "--password-file",
        pw,
        "--scryptn",
        "10",
        "-q",
    ]);
    assert!(out.status.success());

    // The test machine runs the suite as root (the gocryptfs round trips need FUSE too).
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "coffer-test"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(status.success(), "mounting a 1 MiB tmpfs needs root");
    let _guard = Tmpfs(&small);
    let dest = small.join("model");
    let out = coffer(&[
        "model",
        "decrypt",
        cipher_s,
        dest.to_str().unwrap(),
        "--password-file",
        pw,
    ]);
    // Exit code 8: not enough space (distinct, so scripts such as `coffer launch` callers can
    // tell it from other local errors).
    assert_eq!(out.status.code(), exit_code(Exit::NoSpace));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("free but the model needs 3.00 MiB"), "{err}");
    assert!(!dest.exists(), "nothing written");

    // Room enough elsewhere: the same command works.
    let big = d.join("model");
    let out = coffer(&[
        "model",
        "decrypt",
        cipher_s,
        big.to_str().unwrap(),
        "--password-file",
        pw,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(big.join("model.safetensors")).unwrap().len(),
        3 << 20
    );
}
