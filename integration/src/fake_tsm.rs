//! A fake configfs-tsm report directory served by a helper thread, so the real `coffer`
//! client can request TDX quotes on a machine without TDX.
//!
//! Like the kernel, the helper populates each new entry with `provider`, `generation` and
//! `inblob`; `outblob` is a FIFO, so the client's read blocks until the quote over the
//! 64 bytes it wrote to `inblob` has been minted — the same blocking read as on a TD.

use std::collections::HashSet;
use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
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
    let c = CString::new(p.as_os_str().as_bytes()).expect("path");
    // SAFETY: c is a valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo {}", p.display());
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
