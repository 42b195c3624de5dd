//! What the model digest costs on top of decryption: decrypts one file (default 512 MiB,
//! `DIGEST_BENCH_MIB`) from tmpfs to tmpfs on all cores, alternating runs with and without
//! hashing the block tags, and prints the medians and their ratio (target: at most 5%
//! slower), both in wall time and in CPU time (user + system of all threads, from
//! `/proc/self/stat`; steadier than wall time on a machine shared with other work).
//! Run with `cargo bench -p coffer-cryptfs --bench digest`.

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
    let key = coffer_cryptfs::ContentKey::from_bytes([7u8; 32]);
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
        let (t, cpu) = (Instant::now(), cpu_ticks());
        c.decrypt_file(&mut File::open(&cipher).expect("open"), &dst, &|_| {})
            .expect("decrypt");
        (t.elapsed().as_secs_f64(), (cpu_ticks() - cpu) as f64)
    };
    one(true);
    one(false);
    let (mut with, mut without) = (Vec::new(), Vec::new());
    let (mut with_cpu, mut without_cpu) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let (w, c) = one(true);
        with.push(w);
        with_cpu.push(c);
        let (w, c) = one(false);
        without.push(w);
        without_cpu.push(c);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (w, wo) = (median(&mut with), median(&mut without));
    let (c, co) = (median(&mut with_cpu), median(&mut without_cpu));
    let mb = (mib << 20) as f64 / 1e6;
    println!(
        "decrypt {mib} MiB, median of {runs}: with digest {:.0} MB/s, without {:.0} MB/s; wall time ratio {:.3} ({:+.1}%), CPU time ratio {:.3} ({:+.1}%)",
        mb / w,
        mb / wo,
        w / wo,
        (w / wo - 1.0) * 100.0,
        c / co,
        (c / co - 1.0) * 100.0
    );
}

/// User + system CPU time of this process (all threads) in clock ticks.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}
