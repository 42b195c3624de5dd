//! What the model digest costs on top of decryption: decrypts one file (default 512 MiB,
//! `DIGEST_BENCH_MIB`) from tmpfs to tmpfs on all cores, alternating runs with and without
//! hashing the block tags, and prints the medians and their ratio (target: at most 5%
//! slower). Run with `cargo bench -p coffer-cryptfs --bench digest`.

use std::fs::File;
use std::time::Instant;

use coffer_cryptfs::content::ContentCipher;

fn main() {
    let mib: usize = std::env::var("DIGEST_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let runs: usize = std::env::var("DIGEST_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let (plain, cipher, out) = (
        dir.path().join("plain"),
        dir.path().join("cipher"),
        dir.path().join("out"),
    );
    let data: Vec<u8> = (0..mib << 20).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&plain, &data).expect("write plaintext");
    drop(data);
    let key = [7u8; 32];
    let c = ContentCipher::new(&key);
    c.encrypt_file(
        &mut File::open(&plain).expect("open"),
        &File::create(&cipher).expect("create"),
        &|_| {},
    )
    .expect("encrypt");
    std::fs::remove_file(&plain).expect("remove plaintext");
    let one = |digest: bool| {
        let _ = std::fs::remove_file(&out);
        let dst = File::create(&out).expect("create out");
        let c = ContentCipher::new(&key).with_digest(digest);
        let t = Instant::now();
        c.decrypt_file(&mut File::open(&cipher).expect("open"), &dst, &|_| {})
            .expect("decrypt");
        t.elapsed().as_secs_f64()
    };
    one(true);
    one(false);
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        with.push(one(true));
        without.push(one(false));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (w, wo) = (median(&mut with), median(&mut without));
    let mb = (mib << 20) as f64 / 1e6;
    println!(
        "decrypt {mib} MiB, median of {runs}: with digest {:.0} MB/s, without {:.0} MB/s, time ratio {:.3} (digest costs {:+.1}%)",
        mb / w,
        mb / wo,
        w / wo,
        (w / wo - 1.0) * 100.0
    );
}
