//! Extended attributes through coffer's own encryptor and decryptor: stored encrypted,
//! restored on decrypt, and a tampered value fails its file without leaving plaintext.

use coffer_cryptfs::tree::decrypt_tree;
use coffer_cryptfs::{encrypt_tree, Config, MasterKey};

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
    let s = decrypt_tree(&config, &keys, &cipher, &out, &|_| {}).unwrap();
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
    let s = decrypt_tree(&config, &keys, &cipher, &out2, &|_| {}).unwrap();
    assert_eq!(s.failures.len(), 1);
    assert!(
        s.failures[0].error.contains("extended attribute"),
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
