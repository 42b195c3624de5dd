//! Progress reports from tree runs: bytes arrive per chunk (so a large file moves the bar
//! before it finishes) and every regular file, good or corrupt, is counted once.

use std::sync::Mutex;

use coffer_cryptfs::tree::{decrypt_tree, verify_tree, Progress};
use coffer_cryptfs::{encrypt_tree, Config, MasterKey};

fn recorder() -> (Mutex<Vec<u64>>, Mutex<u64>) {
    (Mutex::new(Vec::new()), Mutex::new(0))
}

#[test]
fn chunks_and_files_are_reported() {
    let t = tempfile::tempdir().unwrap();
    let (plain, cipher, out) = (t.path().join("p"), t.path().join("c"), t.path().join("o"));
    std::fs::create_dir_all(plain.join("sub")).unwrap();
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 17).map(|i| (i % 251) as u8).collect();
    std::fs::write(plain.join("big.safetensors"), &big).unwrap();
    std::fs::write(plain.join("sub/small.json"), b"{}").unwrap();
    std::fs::write(plain.join("empty"), b"").unwrap();
    let total = big.len() as u64 + 2;

    let master = MasterKey::generate();
    let keys = master.keys();
    let text = Config::create_text(b"pw", &master, 10).unwrap();
    let (bytes, files) = recorder();
    let report = |p| match p {
        Progress::Bytes(n) => bytes.lock().unwrap().push(n),
        Progress::FileDone => *files.lock().unwrap() += 1,
    };
    let s = encrypt_tree(&keys, &text, &plain, &cipher, &report).unwrap();
    assert!(s.failures.is_empty(), "{:?}", s.failures);
    assert_eq!(bytes.lock().unwrap().iter().sum::<u64>(), total);
    // 3 MiB in 256 KiB chunks: many reports, none larger than a chunk.
    assert!(bytes.lock().unwrap().len() >= 12);
    assert!(bytes.lock().unwrap().iter().all(|n| *n <= 256 * 1024));
    assert_eq!(*files.lock().unwrap(), 3);

    let config = Config::load_from_dir(&cipher).unwrap();
    for verify in [false, true] {
        let (bytes, files) = recorder();
        let report = |p| match p {
            Progress::Bytes(n) => bytes.lock().unwrap().push(n),
            Progress::FileDone => *files.lock().unwrap() += 1,
        };
        let s = if verify {
            verify_tree(&config, &keys, &cipher, &report)
        } else {
            decrypt_tree(&config, &keys, &cipher, &out, &report)
        }
        .unwrap();
        assert!(s.failures.is_empty(), "{:?}", s.failures);
        assert_eq!(bytes.lock().unwrap().iter().sum::<u64>(), total);
        assert!(bytes.lock().unwrap().len() >= 12);
        assert_eq!(*files.lock().unwrap(), 3);
    }
    assert_eq!(std::fs::read(out.join("big.safetensors")).unwrap(), big);

    // A corrupt file still counts as done, so the file counter reaches its total.
    let biggest = walk(&cipher)
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut c = std::fs::read(&biggest).unwrap();
    let last = c.len() - 1;
    c[last] ^= 1;
    std::fs::write(&biggest, c).unwrap();
    let (_bytes, files) = recorder();
    let s = verify_tree(&config, &keys, &cipher, &|p| {
        if p == Progress::FileDone {
            *files.lock().unwrap() += 1
        }
    })
    .unwrap();
    assert_eq!(s.failures.len(), 1);
    assert_eq!(*files.lock().unwrap(), 3);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            v.extend(walk(&p));
        } else {
            v.push(p);
        }
    }
    v
}
