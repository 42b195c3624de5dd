//! A ciphertext tree shaped by the host (who controls its storage) and a destination with
//! entries planted in it: decryption and verification must finish, report what is wrong by
//! name, and never write, create, chmod or truncate anything outside the destination.
//!
//! The base trees are made by coffer's encryptor (the format is the same as gocryptfs's:
//! `integration/tests/hostile_tree.rs` repeats the main attacks on trees the real gocryptfs
//! wrote); the attacks are made by hand on the ciphertext.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use coffer_cryptfs::content::{BlockFault, ContentError};
use coffer_cryptfs::names::{encrypt_name, on_disk_name};
use coffer_cryptfs::tree::{
    decrypt_tree, decrypt_tree_with, verify_tree, verify_tree_with, DecryptOptions, Summary,
};
use coffer_cryptfs::{encrypt_tree, Config, EntryError, MasterKey};

/// A plaintext tree encrypted into `cipher`, a destination, and a directory outside both
/// whose contents must never change.
struct Case {
    _tmp: tempfile::TempDir,
    cipher: PathBuf,
    dest: PathBuf,
    outside: PathBuf,
    master: Vec<u8>,
}

const VICTIM: &[u8] = b"must stay as it is";

impl Case {
    fn new(make: impl FnOnce(&Path)) -> Case {
        let tmp = tempfile::tempdir().unwrap();
        let (plain, cipher, dest, outside) = (
            tmp.path().join("plain"),
            tmp.path().join("cipher"),
            tmp.path().join("dest"),
            tmp.path().join("outside"),
        );
        std::fs::create_dir(&plain).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("victim"), VICTIM).unwrap();
        make(&plain);
        let bytes: [u8; 32] = rand::random();
        let master = MasterKey::from_slice(&bytes).unwrap();
        let text = Config::create_text(b"pw", &master, 10).unwrap();
        let s = encrypt_tree(&master.keys(), &text, &plain, &cipher, &|_| {}).unwrap();
        assert!(s.failures.is_empty(), "{:?}", s.failures);
        Case {
            _tmp: tmp,
            cipher,
            dest,
            outside,
            master: bytes.to_vec(),
        }
    }

    /// The ciphertext entry of plaintext `rel` (`a/b/c`).
    fn centry(&self, rel: &str) -> PathBuf {
        let keys = MasterKey::from_slice(&self.master).unwrap().keys();
        let mut dir = self.cipher.clone();
        for part in rel.split('/') {
            let iv: [u8; 16] = std::fs::read(dir.join("gocryptfs.diriv"))
                .unwrap()
                .try_into()
                .unwrap();
            dir = dir.join(on_disk_name(
                &encrypt_name(&keys.names, &iv, part.as_bytes()).unwrap(),
            ));
        }
        dir
    }

    /// The encrypted (not hashed) name of `name` in the cipher directory `dir`.
    fn cname_in(&self, dir: &Path, name: &str) -> String {
        let keys = MasterKey::from_slice(&self.master).unwrap().keys();
        let iv: [u8; 16] = std::fs::read(dir.join("gocryptfs.diriv"))
            .unwrap()
            .try_into()
            .unwrap();
        encrypt_name(&keys.names, &iv, name.as_bytes()).unwrap()
    }

    fn run(&self, verify: bool) -> Summary {
        let (cipher, dest, master) = (self.cipher.clone(), self.dest.clone(), self.master.clone());
        within(move || {
            let cfg = Config::load_from_dir(&cipher).unwrap();
            let keys = MasterKey::from_slice(&master).unwrap().keys();
            if verify {
                verify_tree(&cfg, &keys, &cipher, &|_| {}).unwrap()
            } else {
                decrypt_tree(&cfg, &keys, &cipher, &dest, &|_| {}).unwrap()
            }
        })
    }

    fn decrypt(&self) -> Summary {
        self.run(false)
    }

    fn outside_untouched(&self) {
        let names: Vec<_> = std::fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["victim"], "nothing created outside DEST");
        let meta = std::fs::symlink_metadata(self.outside.join("victim")).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.permissions().mode() & 0o7777, 0o644);
        assert_eq!(std::fs::read(self.outside.join("victim")).unwrap(), VICTIM);
    }
}

/// Runs `f` on its own thread and fails the test if it does not finish in 60 s (a FIFO
/// read without O_NONBLOCK blocks forever).
fn within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("decryption hung or panicked")
}

fn mkfifo(p: &Path) {
    let st = std::process::Command::new("mkfifo")
        .arg(p)
        .status()
        .unwrap();
    assert!(st.success());
}

fn replace_with_fifo(p: &Path) {
    let _ = std::fs::remove_file(p);
    mkfifo(p);
}

fn replace_with_symlink(p: &Path, target: &str) {
    let _ = std::fs::remove_file(p);
    std::os::unix::fs::symlink(target, p).unwrap();
}

fn failed(s: &Summary, needle: &str) -> bool {
    s.failures.iter().any(|f| {
        f.error.to_string().contains(needle) || f.cipher_path.to_string_lossy().contains(needle)
    })
}

fn basic(p: &Path) {
    std::fs::write(p.join("a"), b"file a").unwrap();
    std::fs::create_dir(p.join("d")).unwrap();
    std::fs::write(p.join("d/f"), b"file d/f").unwrap();
}

/// Owner umask-independent modes for the victim.
fn fix_victim_mode(c: &Case) {
    std::fs::set_permissions(
        c.outside.join("victim"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
}

#[test]
fn symlink_in_dest_where_a_directory_goes_is_not_followed() {
    let c = Case::new(basic);
    fix_victim_mode(&c);
    std::fs::create_dir(&c.dest).unwrap();
    std::os::unix::fs::symlink(&c.outside, c.dest.join("d")).unwrap();
    let s = c.decrypt();
    c.outside_untouched();
    let f = s
        .failures
        .iter()
        .find(|f| f.error.to_string().contains("not a directory"))
        .unwrap_or_else(|| panic!("{:?}", s.failures));
    assert!(
        matches!(&f.error, EntryError::Path { path, .. } if *path == c.dest.join("d")),
        "{f:?}"
    );
    assert_eq!(std::fs::read(c.dest.join("a")).unwrap(), b"file a");
    assert!(std::fs::symlink_metadata(c.dest.join("d"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn symlink_in_dest_where_a_file_goes_is_replaced_not_followed() {
    let c = Case::new(basic);
    fix_victim_mode(&c);
    std::fs::create_dir(&c.dest).unwrap();
    std::os::unix::fs::symlink(c.outside.join("victim"), c.dest.join("a")).unwrap();
    let s = c.decrypt();
    assert!(s.failures.is_empty(), "{:?}", s.failures);
    c.outside_untouched();
    let meta = std::fs::symlink_metadata(c.dest.join("a")).unwrap();
    assert!(meta.is_file());
    assert_eq!(std::fs::read(c.dest.join("a")).unwrap(), b"file a");
}

/// The old temporary names were `.coffer-partial.<pid>.<index>`: someone who can write DEST
/// could point them elsewhere.
#[test]
fn planted_symlinks_at_predictable_temporary_names_are_not_followed() {
    let c = Case::new(basic);
    fix_victim_mode(&c);
    std::fs::create_dir_all(c.dest.join("d")).unwrap();
    for dir in [c.dest.clone(), c.dest.join("d")] {
        for i in 0..8 {
            let name = format!(".coffer-partial.{}.{i}", std::process::id());
            std::os::unix::fs::symlink(c.outside.join("victim"), dir.join(name)).unwrap();
        }
    }
    let s = c.decrypt();
    assert!(s.failures.is_empty(), "{:?}", s.failures);
    c.outside_untouched();
    assert_eq!(std::fs::read(c.dest.join("d/f")).unwrap(), b"file d/f");
}

#[test]
fn existing_entries_in_dest() {
    let c = Case::new(basic);
    std::fs::create_dir_all(c.dest.join("a")).unwrap(); // a directory where a file goes
    std::fs::write(c.dest.join("d"), b"a file where a directory goes").unwrap();
    std::fs::write(c.dest.join("keep"), b"not in the tree").unwrap();
    let s = c.decrypt();
    assert_eq!(s.failures.len(), 2, "{:?}", s.failures);
    for name in ["a", "d"] {
        let shown = c.dest.join(name).display().to_string();
        assert!(
            s.failures
                .iter()
                .any(|f| f.error.to_string().contains(&shown)),
            "{name}: {:?}",
            s.failures
        );
    }
    assert!(c.dest.join("a").is_dir());
    assert_eq!(
        std::fs::read(c.dest.join("d")).unwrap(),
        b"a file where a directory goes"
    );
    assert_eq!(
        std::fs::read(c.dest.join("keep")).unwrap(),
        b"not in the tree"
    );
    // A regular file is replaced (atomically, by rename).
    std::fs::remove_dir(c.dest.join("a")).unwrap();
    std::fs::write(c.dest.join("a"), b"old contents, longer than the new ones").unwrap();
    std::fs::remove_file(c.dest.join("d")).unwrap();
    let s = c.decrypt();
    assert!(s.failures.is_empty(), "{:?}", s.failures);
    assert_eq!(std::fs::read(c.dest.join("a")).unwrap(), b"file a");
    let leftovers: Vec<_> = std::fs::read_dir(&c.dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".coffer"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn long(p: &Path) {
    std::fs::write(p.join("a"), b"the real a").unwrap();
    std::fs::write(p.join("evil"), b"attacker's choice").unwrap();
    std::fs::write(p.join("L".repeat(200)), b"long one").unwrap();
}

/// A `gocryptfs.longname.*` entry whose `.name` claims a short name another entry has (with
/// a matching hash, so only the length gives it away), and one that copies another long
/// entry's `.name` under a different hash.
#[test]
fn forged_long_names_cannot_claim_an_existing_name() {
    let c = Case::new(long);
    let a = c.cname_in(&c.cipher, "a");
    // The hash of the short name itself (on_disk_name hashes only long names).
    let hash = {
        use base64::Engine;
        use sha2::Digest;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(a.as_bytes()))
    };
    let fake = c.cipher.join(format!("gocryptfs.longname.{hash}"));
    std::fs::copy(c.centry("evil"), &fake).unwrap();
    std::fs::write(
        fake.with_file_name(format!("gocryptfs.longname.{hash}.name")),
        &a,
    )
    .unwrap();

    let l = c.centry(&"L".repeat(200));
    let copy = c
        .cipher
        .join("gocryptfs.longname.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    std::fs::copy(c.centry("evil"), &copy).unwrap();
    std::fs::copy(
        format!("{}.name", l.display()),
        format!("{}.name", copy.display()),
    )
    .unwrap();

    for verify in [false, true] {
        let s = c.run(verify);
        assert_eq!(s.failures.len(), 2, "verify={verify}: {:?}", s.failures);
        assert!(failed(&s, "short name"), "{:?}", s.failures);
        assert!(failed(&s, "does not hash"), "{:?}", s.failures);
    }
    assert_eq!(std::fs::read(c.dest.join("a")).unwrap(), b"the real a");
    assert_eq!(
        std::fs::read(c.dest.join("L".repeat(200))).unwrap(),
        b"long one"
    );
}

#[test]
fn hostile_long_name_files() {
    for (what, plant) in [
        ("FIFO", &(|p: &Path| replace_with_fifo(p)) as &dyn Fn(&Path)),
        ("symlink", &|p: &Path| replace_with_symlink(p, "/dev/zero")),
        ("bytes", &|p: &Path| {
            let f = std::fs::File::create(p).unwrap();
            f.set_len(1 << 30).unwrap();
        }),
    ] {
        let c = Case::new(long);
        let l = c.centry(&"L".repeat(200));
        plant(Path::new(&format!("{}.name", l.display())));
        for verify in [false, true] {
            let s = c.run(verify);
            assert_eq!(s.failures.len(), 1, "{what}: {:?}", s.failures);
            assert!(failed(&s, what), "{what}: {:?}", s.failures);
            assert!(failed(&s, ".name"), "{what}: {:?}", s.failures);
        }
        assert_eq!(std::fs::read(c.dest.join("a")).unwrap(), b"the real a");
    }
}

#[test]
fn hostile_diriv_files() {
    for (what, plant) in [
        ("FIFO", &(|p: &Path| replace_with_fifo(p)) as &dyn Fn(&Path)),
        ("symlink", &|p: &Path| replace_with_symlink(p, "/dev/zero")),
        ("bytes", &|p: &Path| {
            let _ = std::fs::remove_file(p);
            let f = std::fs::File::create(p).unwrap();
            f.set_len(1 << 30).unwrap();
        }),
    ] {
        let c = Case::new(basic);
        plant(&c.centry("d").join("gocryptfs.diriv"));
        for verify in [false, true] {
            let s = c.run(verify);
            assert_eq!(s.failures.len(), 1, "{what}: {:?}", s.failures);
            assert!(failed(&s, what), "{what}: {:?}", s.failures);
            assert!(failed(&s, "gocryptfs.diriv"), "{what}: {:?}", s.failures);
        }
        assert_eq!(std::fs::read(c.dest.join("a")).unwrap(), b"file a");
        assert!(!c.dest.join("d/f").exists());
    }
}

#[test]
fn hostile_config_file_does_not_block() {
    let c = Case::new(basic);
    replace_with_fifo(&c.cipher.join("gocryptfs.conf"));
    let cipher = c.cipher.clone();
    let e = within(move || Config::load_from_dir(&cipher).map(|_| ()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("FIFO") && e.contains("gocryptfs.conf"), "{e}");
}

/// A FIFO or a symlink to /dev/zero under a content file's name: no hang, nothing special
/// created in DEST by default.
#[test]
fn hostile_content_entries() {
    let c = Case::new(basic);
    replace_with_fifo(&c.centry("a"));
    replace_with_symlink(&c.centry("d/f"), "/dev/zero");
    for verify in [false, true] {
        let s = c.run(verify);
        assert_eq!(s.failures.len(), 1, "{:?}", s.failures);
        assert!(failed(&s, "symlink"), "{:?}", s.failures);
    }
    assert!(
        std::fs::symlink_metadata(c.dest.join("a")).is_err(),
        "no FIFO in DEST"
    );
    assert!(std::fs::symlink_metadata(c.dest.join("d/f")).is_err());
}

#[test]
fn special_files_are_skipped_by_default() {
    let c = Case::new(|p| {
        basic(p);
        mkfifo(&p.join("pipe"));
    });
    let s = c.decrypt();
    assert!(s.failures.is_empty(), "{:?}", s.failures);
    assert!(std::fs::symlink_metadata(c.dest.join("pipe")).is_err());
    assert_eq!(s.special, 0);
}

#[test]
fn modes_from_the_tree_are_masked() {
    let c = Case::new(basic);
    std::fs::set_permissions(c.centry("a"), std::fs::Permissions::from_mode(0o6777)).unwrap();
    std::fs::set_permissions(c.centry("d"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let s = c.decrypt();
    assert!(s.failures.is_empty(), "{:?}", s.failures);
    let mode = |p: &str| {
        std::fs::metadata(c.dest.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("a"), 0o775);
    assert_eq!(mode("d"), 0o775);
}

#[test]
fn extended_attributes_and_acls_are_not_copied_by_default() {
    let c = Case::new(|p| {
        basic(p);
        xattr::set(p.join("a"), "user.note", b"v").unwrap();
    });
    // An ACL planted on the ciphertext (stored unauthenticated) granting user 1000 write.
    xattr::set(c.centry("a"), "system.posix_acl_access", &extended_acl()).unwrap();
    let s = c.decrypt();
    assert!(s.failures.is_empty(), "{:?}", s.failures);
    assert_eq!(xattr::get(c.dest.join("a"), "user.note").unwrap(), None);
    assert_eq!(
        xattr::get(c.dest.join("a"), "system.posix_acl_access").unwrap(),
        None
    );
}

/// An ACL the kernel stores as an attribute (a named user and a mask, not just mode bits).
fn extended_acl() -> Vec<u8> {
    [
        2u32.to_le_bytes().to_vec(),
        entry(1, 6),
        [2u16.to_le_bytes(), 6u16.to_le_bytes()].concat(),
        1000u32.to_le_bytes().to_vec(),
        entry(4, 4),
        entry(0x10, 6),
        entry(0x20, 4),
    ]
    .concat()
}

fn entry(tag: u16, perm: u16) -> Vec<u8> {
    [
        tag.to_le_bytes().to_vec(),
        perm.to_le_bytes().to_vec(),
        u32::MAX.to_le_bytes().to_vec(),
    ]
    .concat()
}

#[test]
fn scrypt_parameters_over_the_ceiling_are_refused_before_any_work() {
    let c = Case::new(basic);
    let conf = c.cipher.join("gocryptfs.conf");
    let orig: serde_json::Value = serde_json::from_slice(&std::fs::read(&conf).unwrap()).unwrap();
    for (field, value, needle) in [
        ("N", 1u64 << 40, "N = 2^40"),
        ("N", 1u64 << 29, "N = 2^29"),
        ("R", 1 << 20, "R = 1048576"),
        ("P", 1 << 20, "P = 1048576"),
        ("R", 1, "R = 1"),
    ] {
        let mut v = orig.clone();
        v["ScryptObject"][field] = value.into();
        let e = within(move || {
            Config::parse(
                &serde_json::to_vec(&v).unwrap(),
                Path::new("gocryptfs.conf"),
            )
            .map(|_| ())
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(needle) && e.contains("gocryptfs.conf"),
            "{field}: {e}"
        );
    }
}

#[test]
fn oversized_config_is_refused() {
    let c = Case::new(basic);
    let conf = c.cipher.join("gocryptfs.conf");
    std::fs::File::options()
        .write(true)
        .open(&conf)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let e = Config::load(&conf).unwrap_err().to_string();
    assert!(e.contains("1073741824 bytes"), "{e}");
}

fn run_with(c: &Case, verify: bool, opts: DecryptOptions) -> Summary {
    let cfg = Config::load_from_dir(&c.cipher).unwrap();
    let keys = MasterKey::from_slice(&c.master).unwrap().keys();
    if verify {
        verify_tree_with(&cfg, &keys, &c.cipher, &opts, &|_| {}).unwrap()
    } else {
        decrypt_tree_with(&cfg, &keys, &c.cipher, &c.dest, &opts, &|_| {}).unwrap()
    }
}

#[test]
fn special_files_are_reported_and_created_only_when_asked() {
    let c = Case::new(|p| {
        basic(p);
        mkfifo(&p.join("pipe"));
    });
    std::fs::set_permissions(c.centry("pipe"), std::fs::Permissions::from_mode(0o4777)).unwrap();
    for verify in [false, true] {
        let s = run_with(&c, verify, DecryptOptions::default());
        assert_eq!(s.skipped.len(), 1, "{:?}", s.skipped);
        assert!(s.skipped[0].reason.contains("FIFO"), "{:?}", s.skipped);
        assert!(
            s.skipped[0].reason.contains("--special-files"),
            "{:?}",
            s.skipped
        );
        assert_eq!(s.special, 0);
    }
    let opts = DecryptOptions {
        special_files: true,
        ..DecryptOptions::default()
    };
    let s = run_with(&c, false, opts);
    assert!(s.failures.is_empty() && s.skipped.is_empty(), "{s:?}");
    assert_eq!(s.special, 1);
    let meta = std::fs::symlink_metadata(c.dest.join("pipe")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type()));
    assert_eq!(meta.permissions().mode() & 0o7777, 0o775, "mode masked");
}

/// The format reads an all-zero ciphertext block as a hole without authenticating it;
/// strict mode refuses it.
#[test]
fn strict_mode_refuses_zeroed_blocks() {
    let c = Case::new(|p| std::fs::write(p.join("w"), vec![7u8; 3 * 4096]).unwrap());
    let f = c.centry("w");
    let mut b = std::fs::read(&f).unwrap();
    b[18 + 4128..18 + 2 * 4128].fill(0);
    std::fs::write(&f, &b).unwrap();
    for verify in [false, true] {
        let s = run_with(&c, verify, DecryptOptions::default());
        assert!(s.failures.is_empty(), "{:?}", s.failures);
    }
    let got = std::fs::read(c.dest.join("w")).unwrap();
    assert!(
        got[4096..8192].iter().all(|x| *x == 0),
        "hole read as zeros"
    );
    std::fs::remove_file(c.dest.join("w")).unwrap();
    let strict = DecryptOptions {
        strict: true,
        ..DecryptOptions::default()
    };
    for verify in [false, true] {
        let s = run_with(&c, verify, strict);
        assert_eq!(s.failures.len(), 1, "{:?}", s.failures);
        assert!(
            matches!(
                s.failures[0].error,
                EntryError::Content(ContentError::Block {
                    block: 1,
                    reason: BlockFault::ZeroBlock,
                    ..
                })
            ),
            "{:?}",
            s.failures
        );
    }
    assert!(!c.dest.join("w").exists(), "no partial plaintext");
    assert_eq!(std::fs::read_dir(&c.dest).unwrap().count(), 0);
}

#[test]
fn xattrs_flag_copies_attributes_and_acls() {
    let c = Case::new(|p| {
        basic(p);
        xattr::set(p.join("a"), "user.note", b"v").unwrap();
    });
    let acl = extended_acl();
    xattr::set(c.centry("a"), "system.posix_acl_access", &acl).unwrap();
    let opts = DecryptOptions {
        xattrs: true,
        ..DecryptOptions::default()
    };
    let s = run_with(&c, false, opts);
    assert!(s.failures.is_empty(), "{:?}", s.failures);
    assert_eq!(
        xattr::get(c.dest.join("a"), "user.note")
            .unwrap()
            .as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(
        xattr::get(c.dest.join("a"), "system.posix_acl_access").unwrap(),
        Some(acl)
    );
}

/// A ciphertext directory swapped for a symlink to a copy of it elsewhere: the walk does not
/// follow it (it is a symlink entry whose "target" is no sealed value), on both paths.
#[test]
fn symlinked_cipher_directory_is_not_followed() {
    let c = Case::new(basic);
    let d = c.centry("d");
    let elsewhere = c.outside.join("copy");
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(&d)
        .arg(&elsewhere)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::remove_dir_all(&d).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &d).unwrap();
    for verify in [false, true] {
        let s = c.run(verify);
        assert_eq!(s.failures.len(), 1, "{:?}", s.failures);
        assert!(failed(&s, "symlink target"), "{:?}", s.failures);
    }
    assert!(std::fs::symlink_metadata(c.dest.join("d")).is_err());
    assert_eq!(std::fs::read(c.dest.join("a")).unwrap(), b"file a");
}
