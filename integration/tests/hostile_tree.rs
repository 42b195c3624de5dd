//! `coffer model decrypt|verify` on a tree the real gocryptfs wrote and the host then
//! shaped: planted symlinks and FIFOs, forged long names, a hostile diriv, scrypt costs over
//! the ceiling, zeroed blocks, and a destination with a symlink planted in it. The run must
//! finish, name what is wrong, and touch nothing outside DEST. (`coffer-cryptfs`'s
//! `tests/hostile.rs` covers each attack on the library; this is the CLI end to end.)

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use coffer_integration::{binary, exit_code, Exit};

fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

struct Mount<'a>(&'a Path);
impl Drop for Mount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("fusermount3").arg("-u").arg(self.0).status();
    }
}

/// A cipher directory written through a gocryptfs mount, its password file and master key.
struct Tree {
    tmp: tempfile::TempDir,
    cipher: PathBuf,
    pw: PathBuf,
    master: String,
}

const LONG: usize = 200;

impl Tree {
    fn new() -> Tree {
        let tmp = tempfile::tempdir().unwrap();
        let (cipher, mnt) = (tmp.path().join("c"), tmp.path().join("m"));
        std::fs::create_dir(&cipher).unwrap();
        std::fs::create_dir(&mnt).unwrap();
        let pw = tmp.path().join("pw");
        std::fs::write(&pw, "hostile host\n").unwrap();
        ok(Command::new("gocryptfs")
            .args(["-init", "-q", "-scryptn", "10", "-passfile"])
            .arg(&pw)
            .arg(&cipher));
        // gocryptfs shows the master key only on a terminal; its xray tool prints it in hex.
        let mut xray = Command::new("gocryptfs-xray")
            .arg("-dumpmasterkey")
            .arg(cipher.join("gocryptfs.conf"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("gocryptfs-xray (installed with gocryptfs)");
        std::io::Write::write_all(xray.stdin.as_mut().unwrap(), b"hostile host\n").unwrap();
        let out = xray.wait_with_output().unwrap();
        assert!(out.status.success());
        let master = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert_eq!(master.len(), 64, "{master}");
        ok(Command::new("gocryptfs")
            .args(["-q", "-passfile"])
            .arg(&pw)
            .arg(&cipher)
            .arg(&mnt));
        {
            let _m = Mount(&mnt);
            std::fs::write(mnt.join("a"), b"file a").unwrap();
            std::fs::write(mnt.join("suid"), b"#!/bin/sh\n").unwrap();
            std::fs::set_permissions(mnt.join("suid"), std::fs::Permissions::from_mode(0o4777))
                .unwrap();
            std::fs::create_dir(mnt.join("d")).unwrap();
            std::fs::write(mnt.join("d/f"), b"file d/f").unwrap();
            std::fs::write(mnt.join("L".repeat(LONG)), b"long").unwrap();
            std::fs::write(mnt.join("w"), vec![7u8; 3 * 4096]).unwrap();
            xattr::set(mnt.join("a"), "user.note", b"v").unwrap();
            ok(Command::new("mkfifo").arg(mnt.join("pipe")));
        }
        Tree {
            tmp,
            cipher,
            pw,
            master,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// The ciphertext entry of a plaintext path (names encrypted with the master key and
    /// each directory's IV, as gocryptfs does).
    fn centry(&self, rel: &str) -> PathBuf {
        let keys = coffer_cryptfs::MasterKey::from_hex(&self.master)
            .unwrap()
            .keys();
        let mut dir = self.cipher.clone();
        for part in rel.split('/') {
            let iv: [u8; 16] = std::fs::read(dir.join("gocryptfs.diriv"))
                .unwrap()
                .try_into()
                .unwrap();
            let c = coffer_cryptfs::names::encrypt_name(&keys.names, &iv, part.as_bytes()).unwrap();
            dir = dir.join(coffer_cryptfs::names::on_disk_name(&c));
        }
        dir
    }

    /// Runs `coffer model ARGS CIPHER [DEST] --password-file PW -q`, with a time limit.
    fn coffer(&self, args: &[&str], dest: Option<&Path>) -> Output {
        let mut cmd = Command::new(binary("coffer"));
        cmd.arg("model").args(args).arg(&self.cipher);
        if let Some(d) = dest {
            cmd.arg(d);
        }
        cmd.arg("-q").arg("--password-file").arg(&self.pw);
        timed(&mut cmd)
    }
}

fn timed(cmd: &mut Command) -> Output {
    let started = Instant::now();
    let out = cmd.output().expect("run coffer");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{cmd:?} took {:?}",
        started.elapsed()
    );
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

#[test]
fn safe_defaults_and_opt_in_flags() {
    let t = Tree::new();
    let dest = t.path("out");
    let o = t.coffer(&["decrypt"], Some(&dest));
    assert_eq!(code(&o), exit_code(Exit::Success), "{}", stderr(&o));
    assert!(stderr(&o).contains("SKIPPED"), "{}", stderr(&o));
    assert!(std::fs::symlink_metadata(dest.join("pipe")).is_err());
    let mode = std::fs::metadata(dest.join("suid"))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o775, "setuid and other-write masked");
    assert_eq!(xattr::get(dest.join("a"), "user.note").unwrap(), None);
    assert_eq!(std::fs::read(dest.join("d/f")).unwrap(), b"file d/f");
    assert_eq!(std::fs::read(dest.join("L".repeat(LONG))).unwrap(), b"long");

    let dest2 = t.path("out2");
    let o = t.coffer(&["decrypt", "--special-files", "--xattrs"], Some(&dest2));
    assert_eq!(code(&o), exit_code(Exit::Success), "{}", stderr(&o));
    assert!(std::fs::symlink_metadata(dest2.join("pipe"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(
        xattr::get(dest2.join("a"), "user.note").unwrap().as_deref(),
        Some(&b"v"[..])
    );

    // The master key from a file and from the environment (never on the command line).
    let mk = t.path("mk");
    std::fs::write(&mk, format!("{}\n", t.master)).unwrap();
    for (i, env) in [false, true].into_iter().enumerate() {
        let out = t.path(&format!("mk-out{i}"));
        let mut cmd = Command::new(binary("coffer"));
        cmd.args(["model", "decrypt", "-q"])
            .arg(&t.cipher)
            .arg(&out);
        if env {
            cmd.env("COFFER_MASTERKEY", &t.master);
        } else {
            cmd.arg("--masterkey-file").arg(&mk);
        }
        let o = timed(&mut cmd);
        assert_eq!(code(&o), exit_code(Exit::Success), "{}", stderr(&o));
        assert_eq!(std::fs::read(out.join("a")).unwrap(), b"file a");
    }
}

#[test]
fn planted_symlink_in_dest_is_an_error_and_nothing_outside_changes() {
    let t = Tree::new();
    let outside = t.path("outside");
    std::fs::create_dir(&outside).unwrap();
    let dest = t.path("out");
    std::fs::create_dir(&dest).unwrap();
    std::os::unix::fs::symlink(&outside, dest.join("d")).unwrap();
    let o = t.coffer(&["decrypt"], Some(&dest));
    assert_eq!(code(&o), exit_code(Exit::Tampered), "{}", stderr(&o));
    let shown = dest.join("d").display().to_string();
    assert!(
        stderr(&o).contains(&shown) && stderr(&o).contains("not a directory"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    assert_eq!(std::fs::read(dest.join("a")).unwrap(), b"file a");
}

#[test]
fn hostile_tree_entries_fail_by_name_on_decrypt_and_verify() {
    let t = Tree::new();
    // A FIFO as a directory's IV file, and a long name's .name copied under another hash.
    let d = t.centry("d");
    let l = t.centry(&"L".repeat(LONG));
    let diriv = d.join("gocryptfs.diriv");
    std::fs::remove_file(&diriv).unwrap();
    ok(Command::new("mkfifo").arg(&diriv));
    let forged = t
        .cipher
        .join("gocryptfs.longname.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    std::fs::copy(t.centry("a"), &forged).unwrap();
    std::fs::copy(
        format!("{}.name", l.display()),
        format!("{}.name", forged.display()),
    )
    .unwrap();
    for (args, dest) in [
        (vec!["decrypt"], Some(t.path("out"))),
        (vec!["verify"], None),
    ] {
        let o = t.coffer(&args, dest.as_deref());
        assert_eq!(
            code(&o),
            exit_code(Exit::Tampered),
            "{args:?}: {}",
            stderr(&o)
        );
        let e = stderr(&o);
        assert!(e.contains("gocryptfs.diriv") && e.contains("FIFO"), "{e}");
        assert!(e.contains("does not hash"), "{e}");
    }
    assert_eq!(std::fs::read(t.path("out").join("a")).unwrap(), b"file a");
}

#[test]
fn scrypt_cost_over_the_ceiling_is_refused() {
    let t = Tree::new();
    let conf = t.cipher.join("gocryptfs.conf");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&conf).unwrap()).unwrap();
    v["ScryptObject"]["N"] = (1u64 << 40).into();
    let _ = std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o600));
    std::fs::write(&conf, serde_json::to_vec(&v).unwrap()).unwrap();
    let o = t.coffer(&["verify"], None);
    assert_eq!(code(&o), exit_code(Exit::Failure), "{}", stderr(&o));
    assert!(stderr(&o).contains("N = 2^40"), "{}", stderr(&o));
}

#[test]
fn strict_refuses_a_zeroed_block() {
    let t = Tree::new();
    let w = t.centry("w");
    let mut b = std::fs::read(&w).unwrap();
    b[18 + 4128..18 + 2 * 4128].fill(0);
    std::fs::write(&w, &b).unwrap();
    let o = t.coffer(&["verify"], None);
    assert_eq!(
        code(&o),
        exit_code(Exit::Success),
        "holes pass by default: {}",
        stderr(&o)
    );
    let o = t.coffer(&["verify", "--strict"], None);
    assert_eq!(code(&o), exit_code(Exit::Tampered), "{}", stderr(&o));
    assert!(stderr(&o).contains("all-zero"), "{}", stderr(&o));
    let dest = t.path("out");
    let o = t.coffer(&["decrypt", "--strict"], Some(&dest));
    assert_eq!(code(&o), exit_code(Exit::Tampered), "{}", stderr(&o));
    assert!(!dest.join("w").exists(), "no partial plaintext");
}
