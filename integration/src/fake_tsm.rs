//! A fake configfs-tsm report directory served by a helper thread, so the real `coffer`
//! client can request TDX quotes on a machine without TDX.
//!
//! Like the kernel, the helper populates each new entry with `provider`, `generation` and
//! `inblob`; `outblob` is a FIFO, so the client's read blocks until the quote over the
//! 64 bytes it wrote to `inblob` has been minted — the same blocking read as on a TD.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Produces the quote for a REPORTDATA.
pub type Mint = dyn Fn([u8; 64]) -> Vec<u8> + Send + Sync;

/// How the fake behaves.
#[derive(Clone, Debug)]
pub struct FakeTsmOptions {
    /// Content of `provider` (the kernel writes "tdx_guest\n").
    pub provider: String,
    /// How far `generation` moves per request (1 is correct; 2 simulates a racing writer).
    pub generation_step: u64,
}

impl Default for FakeTsmOptions {
    fn default() -> Self {
        FakeTsmOptions {
            provider: "tdx_guest\n".into(),
            generation_step: 1,
        }
    }
}

/// The running fake.
pub struct FakeTsm {
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Length of every `inblob` write seen, in request order.
    pub inblob_lengths: Arc<Mutex<Vec<usize>>>,
}

fn mkfifo(p: &Path) {
    use rustix::fs::{FileType, Mode, CWD};
    rustix::fs::mknodat(CWD, p, FileType::Fifo, Mode::from_raw_mode(0o600), 0)
        .unwrap_or_else(|e| panic!("mkfifo {}: {e}", p.display()));
}

fn serve_entry(
    entry: PathBuf,
    opts: FakeTsmOptions,
    mint: Arc<Mint>,
    lengths: Arc<Mutex<Vec<usize>>>,
    stop: Arc<AtomicBool>,
) {
    let write = |name: &str, bytes: &[u8]| {
        let tmp = entry.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes).expect("write attr");
        std::fs::rename(&tmp, entry.join(name)).expect("rename attr");
    };
    write("generation", b"0\n");
    write("inblob", b"");
    mkfifo(&entry.join("outblob"));
    write("provider", opts.provider.as_bytes());
    // Wait for the client's REPORTDATA.
    let inblob = entry.join("inblob");
    let data = loop {
        if stop.load(Ordering::Relaxed) || !entry.exists() {
            return;
        }
        match std::fs::read(&inblob) {
            Ok(d) if !d.is_empty() => break d,
            _ => std::thread::sleep(Duration::from_millis(2)),
        }
    };
    lengths.lock().expect("lock").push(data.len());
    let mut rd = [0u8; 64];
    let n = data.len().min(64);
    rd[..n].copy_from_slice(&data[..n]);
    let quote = mint(rd);
    write(
        "generation",
        format!("{}\n", opts.generation_step).as_bytes(),
    );
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .write(true)
        .open(entry.join("outblob"))
    {
        let _ = f.write_all(&quote);
    }
}

impl FakeTsm {
    /// Starts serving `<root>/report`.
    pub fn start(root: &Path, opts: FakeTsmOptions, mint: Arc<Mint>) -> FakeTsm {
        let dir = root.join("report");
        std::fs::create_dir_all(&dir).expect("report dir");
        let stop = Arc::new(AtomicBool::new(false));
        let lengths = Arc::new(Mutex::new(Vec::new()));
        let (d, s, l) = (dir.clone(), stop.clone(), lengths.clone());
        let thread = std::thread::spawn(move || {
            let mut seen = HashSet::new();
            while !s.load(Ordering::Relaxed) {
                if let Ok(rd) = std::fs::read_dir(&d) {
                    for e in rd.flatten() {
                        let p = e.path();
                        if p.is_dir() && seen.insert(p.clone()) {
                            let (o, m, l2, s2) = (opts.clone(), mint.clone(), l.clone(), s.clone());
                            std::thread::spawn(move || serve_entry(p, o, m, l2, s2));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        FakeTsm {
            dir,
            stop,
            thread: Some(thread),
            inblob_lengths: lengths,
        }
    }

    /// The report directory to pass as `--tsm-report-dir`.
    pub fn report_dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for FakeTsm {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Fake TDX measurement registers as Linux ≥ 6.16 exposes them in sysfs
/// (`/sys/devices/virtual/misc/tdx_guest/measurements/rtmrN:sha384`): writing a 48-byte
/// digest to an RTMR's attribute extends it (`RTMR = SHA-384(RTMR || digest)`).
///
/// Each attribute is a FIFO read by a helper thread, which extends the shared register
/// values on every 48 bytes written; quotes minted from [`FakeRtmrs::values`] then carry
/// them, as the TDX module's would.
pub struct FakeRtmrs {
    dir: PathBuf,
    /// Current RTMR0..3.
    pub values: Arc<Mutex<[[u8; 48]; 4]>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl FakeRtmrs {
    /// Serves `<root>/measurements` with the registers starting at `initial`.
    pub fn start(root: &Path, initial: [[u8; 48]; 4]) -> FakeRtmrs {
        use sha2::{Digest, Sha384};
        use std::io::Read;
        let dir = root.join("measurements");
        std::fs::create_dir_all(&dir).expect("measurements dir");
        let values = Arc::new(Mutex::new(initial));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for i in 0..4 {
            let path = dir.join(format!("rtmr{i}:sha384"));
            mkfifo(&path);
            let (v, s) = (values.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    // Blocks until a writer opens the attribute (or Drop does).
                    let Ok(mut f) = std::fs::File::open(&path) else {
                        return;
                    };
                    let mut buf = Vec::new();
                    let _ = f.read_to_end(&mut buf);
                    // The kernel takes exactly one digest per write; a short write fails
                    // there, so a partial tail is ignored here.
                    for d in buf.chunks_exact(48) {
                        let mut regs = v.lock().expect("lock");
                        let mut h = Sha384::new();
                        h.update(regs[i]);
                        h.update(d);
                        regs[i].copy_from_slice(&h.finalize());
                    }
                }
            }));
        }
        FakeRtmrs {
            dir,
            values,
            stop,
            threads,
        }
    }

    /// The directory to pass as `--tsm-measurements-dir`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for FakeRtmrs {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake every reader blocked in open().
        for i in 0..4 {
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .open(self.dir.join(format!("rtmr{i}:sha384")));
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
