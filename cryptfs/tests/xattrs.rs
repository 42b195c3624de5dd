//! Extended attributes through coffer's own encryptor and decryptor: stored encrypted,
//! restored on decrypt, and a tampered value fails its file without leaving plaintext.

use coffer_cryptfs::content::SealedError;
use coffer_cryptfs::tree::{decrypt_tree_with, DecryptOptions};
use coffer_cryptfs::xattrs::XattrError;
use coffer_cryptfs::{encrypt_tree, Config, EntryError, MasterKey};

/// Attributes are copied only when asked.
const XATTRS: DecryptOptions = DecryptOptions {
    xattrs: true,
    special_files: false,
    strict: false,
};

#[test]
fn xattrs_round_trip_and_tampering_fails_the_file() {
    let t = tempfile::tempdir().unwrap();
    let (plain, cipher, out) = (t.path().join("p"), t.path().join("c"), t.path().join("o"));
    std::fs::create_dir(&plain).unwrap();
    std::fs::write(plain.join("w.bin"), b"weights").unwrap();
    xattr::set(plain.join("w.bin"), "user.model-id", b"m-1").unwrap();
    let master = MasterKey::generate();
    let keys = master.keys();
    let text = Config::create_text(b"pw", &master, 10).unwrap();
    let s = encrypt_tree(&keys, &text, &plain, &cipher, &|_| {}).unwrap();
    assert!(s.failures.is_empty(), "{:?}", s.failures);

    // On disk: only the encrypted name and a sealed value.
    let cfile = std::fs::read_dir(&cipher)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            !p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("gocryptfs.")
        })
        .unwrap();
    let stored: Vec<_> = xattr::list(&cfile).unwrap().collect();
    assert_eq!(stored.len(), 1);
    let sname = stored[0].to_string_lossy().into_owned();
    assert!(sname.starts_with("user.gocryptfs.") && !sname.contains("model-id"));
    let sval = xattr::get(&cfile, &stored[0]).unwrap().unwrap();
    assert_eq!(sval.len(), 16 + 3 + 16);

    let config = Config::load_from_dir(&cipher).unwrap();
    let s = decrypt_tree_with(&config, &keys, &cipher, &out, &XATTRS, &|_| {}).unwrap();
    assert!(s.failures.is_empty(), "{:?}", s.failures);
    assert_eq!(
        xattr::get(out.join("w.bin"), "user.model-id")
            .unwrap()
            .as_deref(),
        Some(&b"m-1"[..])
    );

    let mut bad = sval.clone();
    bad[20] ^= 1;
    xattr::set(&cfile, &stored[0], &bad).unwrap();
    let out2 = t.path().join("o2");
    let s = decrypt_tree_with(&config, &keys, &cipher, &out2, &XATTRS, &|_| {}).unwrap();
    assert_eq!(s.failures.len(), 1);
    assert!(
        matches!(
            s.failures[0].error,
            EntryError::Xattr(XattrError::Value(SealedError::Authentication))
        ),
        "{:?}",
        s.failures
    );
    assert!(!out2.join("w.bin").exists());
    assert_eq!(
        std::fs::read_dir(&out2).unwrap().count(),
        0,
        "no partial files left"
    );
}

/// A POSIX ACL in the kernel's xattr form: version 2, then (tag, perm, id) entries.
fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        v.extend(tag.to_le_bytes());
        v.extend(perm.to_le_bytes());
        v.extend(id.to_le_bytes());
    }
    v
}

const ANY: u32 = u32::MAX;
const ACCESS: &str = "system.posix_acl_access";
const DEFAULT: &str = "system.posix_acl_default";

/// ACLs are stored unencrypted on the ciphertext entry (as gocryptfs `-acl` does), restored on
/// decrypt, and an ACL inherited from a directory's default ACL is removed where the source
/// entry has none.
#[test]
fn posix_acls_pass_through_and_inherited_ones_are_dropped() {
    let t = tempfile::tempdir().unwrap();
    let (plain, cipher, out) = (t.path().join("p"), t.path().join("c"), t.path().join("o"));
    let d = plain.join("d");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("before"), b"no acl").unwrap();
    std::fs::write(plain.join("f"), b"acl").unwrap();
    let access = acl(&[
        (1, 6, ANY),
        (2, 4, 1000),
        (4, 4, ANY),
        (0x10, 4, ANY),
        (0x20, 0, ANY),
    ]);
    let default = acl(&[
        (1, 7, ANY),
        (2, 5, 1000),
        (4, 5, ANY),
        (0x10, 5, ANY),
        (0x20, 5, ANY),
    ]);
    xattr::set(plain.join("f"), ACCESS, &access).unwrap();
    xattr::set(&d, DEFAULT, &default).unwrap();
    std::fs::write(d.join("after"), b"inherits").unwrap();
    let inherited = xattr::get(d.join("after"), ACCESS).unwrap();
    assert!(
        inherited.is_some(),
        "the source file inherits the default ACL"
    );
    assert_eq!(xattr::get(d.join("before"), ACCESS).unwrap(), None);

    let master = MasterKey::generate();
    let keys = master.keys();
    let text = Config::create_text(b"pw", &master, 10).unwrap();
    let s = encrypt_tree(&keys, &text, &plain, &cipher, &|_| {}).unwrap();
    assert!(s.failures.is_empty(), "{:?}", s.failures);

    // On disk: ACL values as they are; an entry without one in the source has none.
    let mut seen = Vec::new();
    for e in walkdir(&cipher) {
        for name in [ACCESS, DEFAULT] {
            if let Some(v) = xattr::get(&e, name).unwrap() {
                seen.push((name, v));
            }
        }
    }
    seen.sort();
    let mut want = vec![
        (ACCESS, access.clone()),
        (ACCESS, inherited.clone().unwrap()),
        (DEFAULT, default.clone()),
    ];
    want.sort();
    assert_eq!(seen, want, "exactly the source's ACLs, unencrypted");

    let config = Config::load_from_dir(&cipher).unwrap();
    let s = decrypt_tree_with(&config, &keys, &cipher, &out, &XATTRS, &|_| {}).unwrap();
    assert!(s.failures.is_empty(), "{:?}", s.failures);
    let get = |rel: &str, name: &str| xattr::get(out.join(rel), name).unwrap();
    assert_eq!(get("f", ACCESS), Some(access));
    assert_eq!(get("d", DEFAULT), Some(default));
    assert_eq!(get("d/after", ACCESS), inherited);
    assert_eq!(get("d/before", ACCESS), None, "inherited ACL removed");
    assert_eq!(std::fs::read(out.join("d/before")).unwrap(), b"no acl");
}

fn walkdir(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut all = Vec::new();
    for e in std::fs::read_dir(root).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            all.extend(walkdir(&p));
        }
        all.push(p);
    }
    all
}
