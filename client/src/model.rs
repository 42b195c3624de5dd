//! `coffer model ...`: decrypt gocryptfs-encrypted model trees.

use std::path::Path;
use std::time::Instant;

use coffer_cryptfs::tree::{decrypt_tree, verify_tree, Summary};
use coffer_cryptfs::{Config, MasterKey};
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

/// Result of an encrypt or decrypt run, for printing.
pub struct RunReport {
    /// The per-entry summary.
    pub summary: Summary,
    /// Wall time in seconds (after key derivation).
    pub seconds: f64,
}

/// Decrypts `cipher_dir` into `dest` (or, with `None`, only authenticates everything),
/// showing a progress bar on stderr unless `quiet`.
pub fn decrypt(
    cipher_dir: &Path,
    dest: Option<&Path>,
    key: KeySource,
    quiet: bool,
) -> Result<RunReport, ClientError> {
    let cfg = Config::load_from_dir(cipher_dir).map_err(|e| ClientError::Config(e.to_string()))?;
    let master = match key {
        KeySource::MasterKey(k) => k,
        KeySource::Password(p) => cfg
            .unlock(&p)
            .map_err(|e| ClientError::Config(e.to_string()))?,
    };
    let keys = master.keys();
    let total = tree_size(cipher_dir, |c| {
        coffer_cryptfs::content::plain_size(c).unwrap_or(0)
    });
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(total)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let summary = match dest {
        Some(dest) => decrypt_tree(&cfg, &keys, cipher_dir, dest, &|n| bar.inc(n)),
        None => verify_tree(&cfg, &keys, cipher_dir, &|n| bar.inc(n)),
    }
    .map_err(|e| ClientError::Config(e.to_string()))?;
    bar.finish_and_clear();
    Ok(RunReport {
        summary,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Sum of `size(file length)` over the regular files below `p` (progress-bar totals).
fn tree_size(p: &Path, size: fn(u64) -> u64) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => total += tree_size(&e.path(), size),
                Ok(t) if t.is_file() => total += size(e.metadata().map(|m| m.len()).unwrap_or(0)),
                _ => {}
            }
        }
    }
    total
}

/// Expected plaintext bytes (for the progress bar).
/// Encrypts `src` into a new gocryptfs cipher directory protected by `password`.
pub fn encrypt(
    src: &Path,
    cipher_dir: &Path,
    password: &[u8],
    scrypt_log_n: u8,
    quiet: bool,
) -> Result<RunReport, ClientError> {
    let master = MasterKey::generate();
    let conf = Config::create_text(password, &master, scrypt_log_n).map_err(ClientError::Config)?;
    let total = tree_size(src, |n| n);
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(total)
    };
    let started = Instant::now();
    let summary =
        coffer_cryptfs::encrypt_tree(&master.keys(), &conf, src, cipher_dir, &|n| bar.inc(n))
            .map_err(|e| ClientError::Config(e.to_string()))?;
    bar.finish_and_clear();
    Ok(RunReport {
        summary,
        seconds: started.elapsed().as_secs_f64(),
    })
}
