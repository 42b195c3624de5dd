//! Decrypts the gocryptfs fixtures (tests/fixtures, copied from shared/fixtures/gocryptfs)
//! and checks their plaintext, the unsupported-flag errors and tamper handling.

use std::path::{Path, PathBuf};

use coffer_cryptfs::config::{Config, ConfigError};
use coffer_cryptfs::content::{BlockFault, ContentError, HeaderFault};
use coffer_cryptfs::tree::{decrypt_tree, EntryError};
use coffer_cryptfs::MasterKey;

fn fixtures() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    assert!(
        p.exists(),
        "gocryptfs fixtures not found at {}",
        p.display()
    );
    p
}

/// Copies a fixture tree (they are read-only) and turns back into symlinks the entries that
/// the fixture copy stored as small text files holding the encrypted target (content files
/// start with the binary header 00 02; an encrypted target is base64url text).
fn copy_tree(src: &Path, dst: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(dst)
        .status()
        .unwrap();
    assert!(status.success());
    let _ = std::process::Command::new("chmod")
        .arg("-R")
        .arg("u+w")
        .arg(dst)
        .status();
    restore_symlinks(dst);
}

fn restore_symlinks(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() {
            restore_symlinks(&p);
        } else if meta.is_file() && !name.starts_with("gocryptfs.") {
            let b = std::fs::read(&p).unwrap();
            let is_text = !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_');
            if is_text && b.len() >= 43 {
                std::fs::remove_file(&p).unwrap();
                std::os::unix::fs::symlink(String::from_utf8(b).unwrap(), &p).unwrap();
            }
        }
    }
}

fn fixture_copy(rel: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("cipher");
    copy_tree(&fixtures().join(rel), &dst);
    (tmp, dst)
}

#[test]
fn worked_example_decrypts_with_password() {
    let (_keep, src) = fixture_copy("worked-example/cipher");
    let cfg = Config::load_from_dir(&src).unwrap();
    let master = cfg.unlock(b"test").unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("plain");
    let s = decrypt_tree(&cfg, &master.keys(), &src, &dest, &|_| {}).unwrap();
    assert!(s.failures.is_empty(), "{:?}", s.failures);
    let plain = fixtures().join("worked-example/plain");
    for name in [
        "hello.txt",
        "5000.bin",
        "empty.txt",
        "sparse.bin",
        "multi-block-name.txt",
        "subdir/inner.txt",
    ] {
        let want = std::fs::read(plain.join(name));
        if let Ok(want) = want {
            assert_eq!(std::fs::read(dest.join(name)).unwrap(), want, "{name}");
        }
    }
    assert_eq!(
        std::fs::read(dest.join("hello.txt")).unwrap(),
        b"Hello, gocryptfs!\n"
    );
    assert_eq!(
        std::fs::read_link(dest.join("link")).unwrap(),
        Path::new("hello.txt")
    );
    let long = format!("long_{}", "x".repeat(195));
    assert!(dest.join(long).exists());
    assert_eq!(
        std::fs::read(dest.join("sparse.bin")).unwrap(),
        vec![0u8; 8193]
    );
    assert_eq!(
        s.bytes,
        18 + 5000
            + 8193
            + std::fs::metadata(dest.join("multi-block-name.txt"))
                .unwrap()
                .len()
            + std::fs::metadata(dest.join("subdir/inner.txt"))
                .map(|m| m.len())
                .unwrap_or(0)
            + std::fs::metadata(dest.join(format!("long_{}", "x".repeat(195))))
                .unwrap()
                .len()
    );
    assert!(cfg.unlock(b"wrong").is_err());
}

#[test]
fn upstream_v2_filesystems_decrypt() {
    for (dir, key) in [
        (
            "v1.3",
            "fd890dab-86bf61cf-ec5ad460-ad3ed01f-9c52d546-2a31783d-a56b088d-3d05232e",
        ),
        (
            "v2.2-deterministic-names",
            "722733f5-b0f399f5-5465ad7a-f0bed125-e82de7b4-045e7608-a5e5c78e-04a1a61e",
        ),
    ] {
        let (_keep, src) = fixture_copy(&format!("example_filesystems/{dir}"));
        let cfg = Config::load_from_dir(&src).unwrap();
        for master in [
            cfg.unlock(b"test").unwrap(),
            MasterKey::from_hex(key).unwrap(),
        ] {
            let out = tempfile::tempdir().unwrap();
            let s = decrypt_tree(&cfg, &master.keys(), &src, out.path(), &|_| {}).unwrap();
            assert!(s.failures.is_empty(), "{dir}: {:?}", s.failures);
            assert_eq!(
                std::fs::read(out.path().join("status.txt")).unwrap(),
                b"It works!\n",
                "{dir}"
            );
            assert_eq!(
                std::fs::read_link(out.path().join("rel")).unwrap(),
                Path::new("status.txt")
            );
            assert_eq!(
                std::fs::read_link(out.path().join("abs")).unwrap(),
                Path::new("/a/b/c/d")
            );
            let long = format!("longname_255_{}", "x".repeat(242));
            assert_eq!(
                std::fs::read(out.path().join(long)).unwrap(),
                b"It works!\n",
                "{dir}"
            );
        }
    }
}

#[test]
fn unsupported_flags_are_named() {
    let base = fixtures().join("example_filesystems");
    for (dir, flag) in [
        ("v1.1-aessiv", "AESSIV"),
        ("v2.2-xchacha", "XChaCha20Poly1305"),
        ("v0.7-plaintextnames", "PlaintextNames"),
        ("v1.1-reverse", "reverse"),
    ] {
        let e = Config::load_from_dir(&base.join(dir)).unwrap_err();
        assert!(
            matches!(&e, ConfigError::UnsupportedFlag { flag: f, .. } if f == flag),
            "{dir}: {e}"
        );
    }
    let e = Config::load_from_dir(&base.join("v0.4"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing"), "{e}");
}

#[test]
fn tampering_fails_the_file_and_leaves_no_plaintext() {
    let (tmp, src) = fixture_copy("worked-example/cipher");
    let cfg = Config::load_from_dir(&src).unwrap();
    let keys = cfg.unlock(b"test").unwrap().keys();
    // flip a ciphertext byte in block 1 of 5000.bin, and a header byte of hello.txt
    let f = src.join("u5t4RvePvKsKxKbIunmLEw");
    let mut b = std::fs::read(&f).unwrap();
    b[18 + 4128 + 40] ^= 1;
    std::fs::write(&f, &b).unwrap();
    let h = src.join("T1eN7mpIjLd6buIYg2aALA");
    let mut b = std::fs::read(&h).unwrap();
    b[5] ^= 0x80;
    std::fs::write(&h, &b).unwrap();
    let dest = tmp.path().join("plain");
    let s = decrypt_tree(&cfg, &keys, &src, &dest, &|_| {}).unwrap();
    assert_eq!(s.failures.len(), 2, "{:?}", s.failures);
    let e = s
        .failures
        .iter()
        .find(|f| f.cipher_path.ends_with("u5t4RvePvKsKxKbIunmLEw"))
        .unwrap();
    assert!(
        matches!(
            e.error,
            EntryError::Content(ContentError::Block {
                block: 1,
                reason: BlockFault::Authentication,
                ..
            })
        ),
        "{}",
        e.error
    );
    assert!(!dest.join("5000.bin").exists());
    assert!(!dest.join("hello.txt").exists());
    assert!(std::fs::read_dir(&dest).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("coffer-partial")));
    // the rest decrypted
    assert_eq!(std::fs::read(dest.join("sparse.bin")).unwrap().len(), 8193);
}

/// One tampering case per row: each fails with a clear error for the damaged entry only,
/// and no plaintext of it is left behind.
#[test]
fn every_tampering_case_is_caught() {
    type Damage = fn(&Path);
    type Expect = fn(&EntryError) -> bool;
    fn block(e: &EntryError, n: u64) -> bool {
        matches!(e, EntryError::Content(ContentError::Block { block, .. }) if *block == n)
    }
    let cases: Vec<(&str, Damage, &str, Expect)> = vec![
        (
            "nonce",
            |d| {
                let p = d.join("u5t4RvePvKsKxKbIunmLEw");
                let mut b = std::fs::read(&p).unwrap();
                b[18 + 3] ^= 1;
                std::fs::write(&p, &b).unwrap();
            },
            "5000.bin",
            |e| block(e, 0),
        ),
        (
            "tag",
            |d| {
                let p = d.join("u5t4RvePvKsKxKbIunmLEw");
                let mut b = std::fs::read(&p).unwrap();
                let n = b.len();
                b[n - 1] ^= 1;
                std::fs::write(&p, &b).unwrap();
            },
            "5000.bin",
            |e| block(e, 1),
        ),
        (
            "truncate",
            |d| {
                let p = d.join("u5t4RvePvKsKxKbIunmLEw");
                let b = std::fs::read(&p).unwrap();
                std::fs::write(&p, &b[..b.len() - 20]).unwrap();
            },
            "5000.bin",
            |e| block(e, 1),
        ),
        (
            "truncate into the tag",
            |d| {
                let p = d.join("u5t4RvePvKsKxKbIunmLEw");
                let b = std::fs::read(&p).unwrap();
                std::fs::write(&p, &b[..18 + 4128 + 20]).unwrap();
            },
            "5000.bin",
            |e| {
                matches!(
                    e,
                    EntryError::Content(ContentError::Header(HeaderFault::Size))
                )
            },
        ),
        (
            "swap blocks",
            |d| {
                // sparse.bin: holes at blocks 0 and 1, real block 2. Moving block 2 to position
                // 1 keeps a valid block at the wrong place: the AAD (block number) must catch it.
                let p = d.join("nGv82a0KQFoIB2Gkaj7Nsw");
                let mut b = std::fs::read(&p).unwrap();
                let last = b[18 + 2 * 4128..].to_vec();
                b.truncate(18 + 4128);
                b.extend_from_slice(&last);
                std::fs::write(&p, &b).unwrap();
            },
            "sparse.bin",
            |e| block(e, 1),
        ),
        (
            "encrypted name",
            |d| {
                std::fs::rename(
                    d.join("T1eN7mpIjLd6buIYg2aALA"),
                    d.join("T1eN7mpIjLd6buIYg2aBLA"),
                )
                .unwrap();
            },
            "",
            |e| matches!(e, EntryError::Name(_)),
        ),
        (
            "diriv deleted",
            |d| {
                std::fs::remove_file(d.join("juDMO8JbWo-eaSAbmddzUQ/gocryptfs.diriv")).unwrap();
            },
            "subdir",
            |e| matches!(e, EntryError::DirIv(_)),
        ),
    ];
    for (what, damage, plain, expect) in cases {
        let (tmp, src) = fixture_copy("worked-example/cipher");
        let cfg = Config::load_from_dir(&src).unwrap();
        let keys = cfg.unlock(b"test").unwrap().keys();
        damage(&src);
        let dest = tmp.path().join("plain");
        let s = decrypt_tree(&cfg, &keys, &src, &dest, &|_| {}).unwrap();
        assert_eq!(s.failures.len(), 1, "{what}: {:?}", s.failures);
        assert!(
            expect(&s.failures[0].error),
            "{what}: {}",
            s.failures[0].error
        );
        if !plain.is_empty() && plain != "subdir" {
            assert!(!dest.join(plain).exists(), "{what}: plaintext left behind");
        }
        if plain == "subdir" {
            assert!(!dest.join("subdir/inner.txt").exists(), "{what}");
        }
        assert_eq!(
            std::fs::read(dest.join("empty.txt")).unwrap(),
            b"",
            "{what}: other files still decrypt"
        );
        let stray: Vec<_> = std::fs::read_dir(&dest)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".coffer-partial")
            })
            .collect();
        assert!(stray.is_empty(), "{what}: temporary files left");
    }
}
