//! `coffer model ...`: decrypt gocryptfs-encrypted model trees.

use std::path::Path;
use std::time::Instant;

use coffer_cryptfs::tree::{
    decrypt_tree_with, verify_tree_with, DecryptOptions, Progress, Summary,
};
use coffer_cryptfs::{Config, ConfigError, MasterKey};
use zeroize::Zeroizing;

use crate::ClientError;

/// Where the key comes from.
pub enum KeySource {
    /// A gocryptfs password (first line of a file or of a KBS resource).
    Password(Zeroizing<Vec<u8>>),
    /// The master key itself.
    MasterKey(MasterKey),
}

/// gocryptfs reads only the first line of a password file or program output.
pub fn password_from_bytes(bytes: &[u8]) -> Zeroizing<Vec<u8>> {
    let line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Zeroizing::new(line.to_vec())
}

/// Result of an encrypt, decrypt or verify run (the CLI's `--json` summary).
#[derive(Debug, serde::Serialize)]
pub struct RunReport {
    /// The per-entry summary.
    #[serde(flatten)]
    pub summary: Summary,
    /// Wall time in seconds (after key derivation).
    pub seconds: f64,
    /// Plaintext throughput, MB (10^6 bytes) per second.
    pub mb_per_s: f64,
}

impl RunReport {
    fn new(summary: Summary, started: Instant) -> Self {
        let seconds = started.elapsed().as_secs_f64();
        RunReport {
            mb_per_s: summary.bytes as f64 / seconds.max(1e-9) / 1e6,
            summary,
            seconds,
        }
    }

    /// The report, or [`ClientError::EntriesFailed`] (with the first failure as its source)
    /// when any entry failed.
    pub fn into_result(self) -> Result<Self, ClientError> {
        let count = self.summary.failures.len();
        if count == 0 {
            return Ok(self);
        }
        let mut summary = self.summary;
        let first = summary.failures.swap_remove(0);
        Err(ClientError::EntriesFailed {
            count,
            path: first.cipher_path,
            first: first.error,
        })
    }
}

/// How a tree run works.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Worker threads (each handles one 256 KiB chunk at a time).
    pub threads: usize,
    /// What decrypt and verify accept and create beyond the safe default.
    pub tree: DecryptOptions,
}

/// Two workers per core: while one waits for a chunk from a cold disk, the other decrypts.
/// Measured here from a cold virtio disk: +5-7% (medians) over one per core, unchanged
/// from the page cache; four per core lost 8% when the data was cached.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get() * 2)
}

/// Runs `work` on a pool of `threads` workers (the tree engine's parallel iterators use
/// the pool they run in).
fn in_pool<T: Send>(threads: usize, work: impl FnOnce() -> T + Send) -> Result<T, ClientError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|i| format!("coffer-worker-{i}"))
        .build()
        .map_err(ClientError::Workers)?;
    Ok(pool.install(work))
}

/// Reads the cipher directory's configuration and opens its master key.
fn unlock(cipher_dir: &Path, key: KeySource) -> Result<(Config, MasterKey), ClientError> {
    let cfg = Config::load_from_dir(cipher_dir).map_err(ClientError::ModelConfig)?;
    let master = match key {
        KeySource::MasterKey(k) => k,
        KeySource::Password(p) => cfg.unlock(&p).map_err(|e| match e {
            ConfigError::WrongPassword { .. } => ClientError::WrongKey(e),
            e => ClientError::ModelConfig(e),
        })?,
    };
    Ok((cfg, master))
}

/// Decrypts `cipher_dir` into `dest` after checking that `dest` has room for it;
/// `progress` hears of every finished chunk and file. Entries that fail are in the
/// report's summary ([`RunReport::into_result`] turns them into an error).
pub fn decrypt(
    cipher_dir: &Path,
    dest: &Path,
    key: KeySource,
    opts: RunOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<RunReport, ClientError> {
    let (cfg, master) = unlock(cipher_dir, key)?;
    let keys = master.keys();
    check_space(dest, TreeTotals::of_cipher(cipher_dir).bytes)?;
    let started = Instant::now();
    let summary = in_pool(opts.threads, || {
        decrypt_tree_with(&cfg, &keys, cipher_dir, dest, &opts.tree, progress)
    })?
    .map_err(ClientError::Tree)?;
    Ok(RunReport::new(summary, started))
}

/// Authenticates everything in `cipher_dir` without writing anything (and computes its
/// model digest); `progress` hears of every finished chunk and file.
pub fn verify(
    cipher_dir: &Path,
    key: KeySource,
    opts: RunOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<RunReport, ClientError> {
    let (cfg, master) = unlock(cipher_dir, key)?;
    let keys = master.keys();
    let started = Instant::now();
    let summary = in_pool(opts.threads, || {
        verify_tree_with(&cfg, &keys, cipher_dir, &opts.tree, progress)
    })?
    .map_err(ClientError::Tree)?;
    Ok(RunReport::new(summary, started))
}

/// What a tree holds, for progress displays and space checks: the plaintext bytes of its
/// regular files and how many there are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeTotals {
    /// Plaintext bytes.
    pub bytes: u64,
    /// Regular files.
    pub files: u64,
}

impl TreeTotals {
    /// Totals of a cipher directory: gocryptfs's own metadata files are skipped, and a
    /// content file of a size no gocryptfs file has counts as empty (its run reports it).
    /// Unreadable directories count as empty too: these are estimates, the run itself
    /// reports every entry it cannot read.
    pub fn of_cipher(cipher_dir: &Path) -> Self {
        tree_size(cipher_dir, true, |c| {
            coffer_cryptfs::content::plain_size(c).unwrap_or(0)
        })
    }

    /// Totals of a plaintext tree (the estimate [`TreeTotals::of_cipher`] describes).
    pub fn of_plain(dir: &Path) -> Self {
        tree_size(dir, false, |n| n)
    }
}

/// Refuses to start when the filesystem of `dest` cannot hold `needed` plaintext bytes, so
/// a model too large for its tmpfs fails at once instead of after filling it. Files already
/// in `dest` count as free space: a repeated run replaces them.
pub fn check_space(dest: &Path, needed: u64) -> Result<(), ClientError> {
    // `dest` may not exist yet: ask about the nearest existing ancestor.
    let Some(existing) = dest.ancestors().find(|p| p.exists()) else {
        return Ok(());
    };
    let Ok(fs) = rustix::fs::statvfs(existing) else {
        return Ok(()); // no answer (unusual filesystem): let the writes tell
    };
    let free = fs.f_bavail.saturating_mul(fs.f_frsize);
    let replaced = if dest.exists() {
        TreeTotals::of_plain(dest).bytes
    } else {
        0
    };
    if free.saturating_add(replaced) < needed {
        return Err(ClientError::NoSpace(format!(
            "{} has {} free but the model needs {}: make the filesystem larger (e.g. the tmpfs size=)",
            dest.display(),
            human_bytes(free.saturating_add(replaced)),
            human_bytes(needed)
        )));
    }
    Ok(())
}

/// Removes everything inside `dir` (entries are never followed: a symlink is removed, not
/// its target), leaving `dir` itself. Used to leave no plaintext behind after a failed or
/// refused run. Returns the first error, after trying every entry.
pub fn remove_contents(dir: &Path) -> std::io::Result<()> {
    let mut first = None;
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for e in rd {
        let r = e.and_then(|e| {
            let p = e.path();
            if e.file_type()?.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            }
        });
        if let Err(e) = r {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// Whether `dir` is missing or an empty directory (a destination a failure can wipe).
pub fn is_empty_or_missing(dir: &Path) -> std::io::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut rd) => Ok(rd.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e),
    }
}

/// Human-readable binary size (e.g. `1.50 GiB`).
pub fn human_bytes(n: u64) -> String {
    indicatif::BinaryBytes(n).to_string()
}

/// Sum of `size(file length)` and count of the regular files below `p`. In a cipher
/// directory, gocryptfs's own metadata files (config, per-directory IVs, long-name
/// sidecars) hold no model content and are skipped.
fn tree_size(p: &Path, cipher: bool, size: fn(u64) -> u64) -> TreeTotals {
    let mut t = TreeTotals::default();
    let Ok(rd) = std::fs::read_dir(p) else {
        return t;
    };
    for e in rd.flatten() {
        match e.file_type() {
            Ok(ft) if ft.is_dir() => {
                let sub = tree_size(&e.path(), cipher, size);
                t.bytes += sub.bytes;
                t.files += sub.files;
            }
            Ok(ft) if ft.is_file() && !(cipher && is_cipher_metadata(&e.file_name())) => {
                if let Ok(m) = e.metadata() {
                    t.bytes += size(m.len());
                }
                t.files += 1;
            }
            _ => {}
        }
    }
    t
}

fn is_cipher_metadata(name: &std::ffi::OsStr) -> bool {
    let name = name.as_encoded_bytes();
    name == b"gocryptfs.conf"
        || name == b"gocryptfs.diriv"
        || (name.starts_with(b"gocryptfs.longname.") && name.ends_with(b".name"))
}

/// Encrypts `src` into a new gocryptfs cipher directory protected by `password`;
/// `progress` hears of every finished chunk and file.
pub fn encrypt(
    src: &Path,
    cipher_dir: &Path,
    password: &[u8],
    scrypt_log_n: u8,
    opts: RunOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<RunReport, ClientError> {
    let master = MasterKey::generate();
    let conf =
        Config::create_text(password, &master, scrypt_log_n).map_err(ClientError::CreateConfig)?;
    let started = Instant::now();
    let keys = master.keys();
    let summary = in_pool(opts.threads, || {
        coffer_cryptfs::encrypt_tree(&keys, &conf, src, cipher_dir, progress)
    })?
    .map_err(ClientError::Tree)?;
    Ok(RunReport::new(summary, started))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::exit::Exit;
    use coffer_cryptfs::content::{BlockFault, ContentError};
    use coffer_cryptfs::tree::{DirIvFault, EntryError};

    fn opts() -> RunOptions {
        RunOptions {
            threads: 2,
            tree: DecryptOptions::default(),
        }
    }

    fn password(p: &str) -> KeySource {
        KeySource::Password(Zeroizing::new(p.as_bytes().to_vec()))
    }

    /// A one-file model encrypted with password `pw`; returns (temp, cipher dir, the
    /// content file's path in it).
    fn model() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let (plain, cipher) = (t.path().join("plain"), t.path().join("cipher"));
        std::fs::create_dir(&plain).unwrap();
        std::fs::write(plain.join("weights"), vec![7u8; 3 * 4096]).unwrap();
        std::fs::create_dir(plain.join("sub")).unwrap();
        let r = encrypt(&plain, &cipher, b"pw", 10, opts(), &|_| {}).unwrap();
        assert!(r.summary.failures.is_empty());
        let content = std::fs::read_dir(&cipher)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.is_file()
                    && !p
                        .file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("gocryptfs.")
            })
            .unwrap();
        (t, cipher, content)
    }

    /// A wrong password, a tampered block and an unreadable file are told apart by the
    /// error's type (and so by exit code), not by its text.
    #[test]
    fn failures_are_distinguishable_by_type() {
        let (t, cipher, content) = model();
        let dest = t.path().join("out");

        let e = decrypt(&cipher, &dest, password("wrong"), opts(), &|_| {}).unwrap_err();
        assert!(
            matches!(&e, ClientError::WrongKey(ConfigError::WrongPassword { .. })),
            "{e:?}"
        );
        assert_eq!(e.exit(), Exit::WrongKey);

        let mut bytes = std::fs::read(&content).unwrap();
        bytes[18 + 4128 + 40] ^= 1;
        std::fs::write(&content, &bytes).unwrap();
        let report = verify(&cipher, password("pw"), opts(), &|_| {}).unwrap();
        let e = report.into_result().unwrap_err();
        assert!(
            matches!(
                &e,
                ClientError::EntriesFailed {
                    count: 1,
                    first: EntryError::Content(ContentError::Block {
                        block: 1,
                        reason: BlockFault::Authentication,
                        ..
                    }),
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.exit(), Exit::Tampered);

        // A file that cannot be read: the subdirectory's IV file, a FIFO in its place.
        bytes[18 + 4128 + 40] ^= 1; // the block is intact again
        std::fs::write(&content, &bytes).unwrap();
        let sub = std::fs::read_dir(&cipher)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.is_dir())
            .unwrap();
        let iv = sub.join("gocryptfs.diriv");
        std::fs::remove_file(&iv).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &iv,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let report = decrypt(&cipher, &dest, password("pw"), opts(), &|_| {}).unwrap();
        let e = report.into_result().unwrap_err();
        assert!(
            matches!(
                &e,
                ClientError::EntriesFailed {
                    first: EntryError::DirIv(DirIvFault::Unreadable(_)),
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.exit(), Exit::Tampered);

        // An unreadable configuration is neither a wrong key nor a tampered tree.
        std::fs::remove_file(cipher.join("gocryptfs.conf")).unwrap();
        let e = verify(&cipher, password("pw"), opts(), &|_| {}).unwrap_err();
        assert!(
            matches!(&e, ClientError::ModelConfig(ConfigError::Io { .. })),
            "{e:?}"
        );
        assert_eq!(e.exit(), Exit::Failure);
    }

    #[test]
    fn progress_reaches_the_caller() {
        let (_t, cipher, _) = model();
        let bytes = std::sync::atomic::AtomicU64::new(0);
        let files = std::sync::atomic::AtomicU64::new(0);
        let r = verify(&cipher, password("pw"), opts(), &|p| match p {
            Progress::Bytes(n) => {
                bytes.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            }
            Progress::FileDone => {
                files.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
        .unwrap();
        assert_eq!(bytes.into_inner(), 3 * 4096);
        assert_eq!(files.into_inner(), 1);
        assert_eq!(TreeTotals::of_cipher(&cipher).bytes, 3 * 4096);
        assert!(r.into_result().is_ok());
    }

    #[test]
    fn work_runs_on_the_requested_number_of_workers() {
        assert_eq!(in_pool(3, rayon::current_num_threads).unwrap(), 3);
        assert_eq!(in_pool(1, rayon::current_num_threads).unwrap(), 1);
        assert!(default_threads() >= 2);
    }
}
