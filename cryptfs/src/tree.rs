//! Decrypting a whole cipher directory into a destination directory.
//!
//! Directories and symlinks are created while walking; regular files are decrypted in
//! parallel, each into a temporary name that is renamed on success and removed on failure,
//! so a destination path either holds the complete authenticated plaintext or nothing.

use std::ffi::OsStr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use rayon::prelude::*;

use crate::config::Config;
use crate::content::ContentCipher;
use crate::keys::Keys;
use crate::names::{self, CONF_NAME, DIRIV_NAME, LONGNAME_PREFIX, LONGNAME_SUFFIX};

/// One entry that could not be decrypted.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Failure {
    /// Ciphertext path.
    pub cipher_path: PathBuf,
    /// Plaintext path, when the name decrypted.
    pub plain_path: Option<PathBuf>,
    /// Why.
    pub error: String,
}

/// What a run did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Summary {
    /// Regular files written.
    pub files: u64,
    /// Directories created.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// FIFOs, sockets and device nodes created.
    pub special: u64,
    /// Plaintext bytes written.
    pub bytes: u64,
    /// Entries that failed.
    pub failures: Vec<Failure>,
}

/// Fatal errors (the run could not start or the destination is unusable).
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// Filesystem error on a named path.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// A regular file to process, with the metadata to give its output.
pub(crate) struct FileJob {
    pub(crate) src: PathBuf,
    pub(crate) dst: PathBuf,
    pub(crate) mode: u32,
    pub(crate) mtime: SystemTime,
}

struct Walk<'a> {
    keys: &'a Keys,
    cipher: ContentCipher,
    dir_iv: bool,
    /// Check only: create nothing, write nothing.
    verify_only: bool,
    files: Vec<FileJob>,
    dirs: Vec<(PathBuf, u32, SystemTime)>,
    summary: Summary,
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TreeError + '_ {
    move |source| TreeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Walk<'_> {
    fn fail(
        &mut self,
        cipher_path: PathBuf,
        plain_path: Option<PathBuf>,
        error: impl Into<String>,
    ) {
        self.summary.failures.push(Failure {
            cipher_path,
            plain_path,
            error: error.into(),
        });
    }

    fn walk(&mut self, src: &Path, dst: &Path, root: bool) -> Result<(), TreeError> {
        let iv: [u8; 16] = if self.dir_iv {
            let p = src.join(DIRIV_NAME);
            match std::fs::read(&p)
                .ok()
                .and_then(|b| <[u8; 16]>::try_from(b.as_slice()).ok())
            {
                Some(iv) if iv != [0; 16] => iv,
                _ => {
                    self.fail(
                        p,
                        Some(dst.to_path_buf()),
                        "missing or invalid gocryptfs.diriv: directory cannot be decrypted",
                    );
                    return Ok(());
                }
            }
        } else {
            [0; 16]
        };
        let mut entries: Vec<_> = std::fs::read_dir(src)
            .map_err(io(src))?
            .collect::<Result<_, _>>()
            .map_err(io(src))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name();
            let bytes = name.as_bytes();
            if bytes == DIRIV_NAME.as_bytes() || (root && bytes == CONF_NAME.as_bytes()) {
                continue;
            }
            let s = String::from_utf8_lossy(bytes).into_owned();
            if s.starts_with(LONGNAME_PREFIX) && s.ends_with(LONGNAME_SUFFIX) {
                continue;
            }
            let cpath = entry.path();
            let cname = if s.starts_with(LONGNAME_PREFIX) {
                match std::fs::read_to_string(src.join(format!("{s}{LONGNAME_SUFFIX}"))) {
                    Ok(c) if !c.is_empty() => c,
                    _ => {
                        self.fail(cpath, None, "long name without a readable .name file");
                        continue;
                    }
                }
            } else {
                s
            };
            let plain_name = match names::decrypt_name(&self.keys.names, &iv, &cname) {
                Ok(n) => n,
                Err(e) => {
                    self.fail(cpath, None, format!("name: {e}"));
                    continue;
                }
            };
            let out = dst.join(OsStr::from_bytes(&plain_name));
            let meta = match std::fs::symlink_metadata(&cpath) {
                Ok(m) => m,
                Err(e) => {
                    self.fail(cpath, Some(out), e.to_string());
                    continue;
                }
            };
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let mode = meta.permissions().mode() & 0o7777;
            let ft = meta.file_type();
            if ft.is_dir() {
                if !self.verify_only {
                    std::fs::create_dir_all(&out).map_err(io(&out))?;
                }
                let xdst = (!self.verify_only).then_some(out.as_path());
                if let Err(e) =
                    crate::xattrs::decrypt_onto(&self.keys.names, &self.cipher, &cpath, xdst)
                {
                    self.fail(cpath.clone(), Some(out.clone()), e);
                }
                self.summary.dirs += 1;
                self.walk(&cpath, &out, false)?;
                self.dirs.push((out, mode, mtime));
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&cpath).map_err(io(&cpath))?;
                match self.cipher.decrypt_symlink(target.as_os_str().as_bytes()) {
                    Ok(t) => {
                        let _ = std::fs::remove_file(&out);
                        std::os::unix::fs::symlink(std::ffi::OsString::from_vec(t), &out)
                            .map_err(io(&out))?;
                        self.summary.symlinks += 1;
                    }
                    Err(e) => self.fail(cpath, Some(out), e),
                }
            } else if ft.is_file() {
                self.files.push(FileJob {
                    src: cpath,
                    dst: out,
                    mode,
                    mtime,
                });
            } else if self.verify_only {
                // Nothing to authenticate but the name, which decrypted.
                self.summary.special += 1;
            } else {
                match crate::special::recreate(&meta, &out) {
                    Ok(()) => self.summary.special += 1,
                    Err(e) => self.fail(cpath, Some(out), e),
                }
            }
        }
        Ok(())
    }
}

/// Sets directory modes and times last, innermost first, so writing inside them does not
/// disturb the times (and read-only modes do not block the writes).
pub(crate) fn restore_dirs(dirs: &[(PathBuf, u32, SystemTime)]) {
    for (d, mode, mtime) in dirs.iter().rev() {
        let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(*mode));
        if let Ok(f) = std::fs::File::open(d) {
            let _ = f.set_modified(*mtime);
        }
    }
}

fn verify_one(
    keys: &Keys,
    cipher: &ContentCipher,
    job: &FileJob,
    report: &(dyn Fn(u64) + Sync),
) -> Result<u64, String> {
    let mut src = std::fs::File::open(&job.src).map_err(|e| e.to_string())?;
    let n = cipher
        .verify_file(&mut src, report)
        .map_err(|e| e.to_string())?;
    crate::xattrs::decrypt_onto(&keys.names, cipher, &job.src, None)?;
    Ok(n)
}

/// A short hidden temporary name beside `dst` (plaintext names may already be 255 bytes).
fn temp_name(dst: &Path, index: usize) -> PathBuf {
    dst.with_file_name(format!(".coffer-partial.{}.{index}", std::process::id()))
}

fn decrypt_one(
    keys: &Keys,
    cipher: &ContentCipher,
    job: &FileJob,
    index: usize,
    report: &(dyn Fn(u64) + Sync),
) -> Result<u64, String> {
    let tmp = temp_name(&job.dst, index);
    let run = || -> Result<u64, String> {
        let mut src = std::fs::File::open(&job.src).map_err(|e| e.to_string())?;
        // Private until the final mode is set.
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        let n = cipher
            .decrypt_file(&mut src, &out, report)
            .map_err(|e| e.to_string())?;
        crate::xattrs::decrypt_onto(&keys.names, cipher, &job.src, Some(&tmp))?;
        out.set_permissions(std::fs::Permissions::from_mode(job.mode))
            .map_err(|e| e.to_string())?;
        out.set_modified(job.mtime).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, &job.dst).map_err(|e| e.to_string())?;
        Ok(n)
    };
    let r = run();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// What a tree run reports while it works (for progress displays).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Plaintext bytes processed, per chunk (also of a file that fails later).
    Bytes(u64),
    /// One regular file finished, successfully or not.
    FileDone,
}

/// Decrypts `cipher_dir` into `dest` (created if missing). `progress` hears of every
/// finished chunk and file. Per-entry failures are collected in the summary;
/// only destination-level I/O problems abort.
pub fn decrypt_tree(
    config: &Config,
    keys: &Keys,
    cipher_dir: &Path,
    dest: &Path,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Summary, TreeError> {
    std::fs::create_dir_all(dest).map_err(io(dest))?;
    run(config, keys, cipher_dir, Some(dest), progress)
}

/// Authenticates every name, symlink target and content block of `cipher_dir` without
/// writing any plaintext; every failing entry is reported.
pub fn verify_tree(
    config: &Config,
    keys: &Keys,
    cipher_dir: &Path,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Summary, TreeError> {
    run(config, keys, cipher_dir, None, progress)
}

fn run(
    config: &Config,
    keys: &Keys,
    cipher_dir: &Path,
    dest: Option<&Path>,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Summary, TreeError> {
    let verify_only = dest.is_none();
    let dest = dest.unwrap_or(Path::new(""));
    let mut w = Walk {
        keys,
        cipher: ContentCipher::new(&keys.content),
        dir_iv: config.dir_iv,
        verify_only,
        files: Vec::new(),
        dirs: Vec::new(),
        summary: Summary::default(),
    };
    w.walk(cipher_dir, dest, true)?;
    let bytes = AtomicU64::new(0);
    let results: Vec<(usize, Result<u64, String>)> = w
        .files
        .par_iter()
        .enumerate()
        .map(|(i, job)| {
            let report = |n| progress(Progress::Bytes(n));
            let r = if verify_only {
                verify_one(keys, &w.cipher, job, &report)
            } else {
                decrypt_one(keys, &w.cipher, job, i, &report)
            };
            if let Ok(n) = r {
                bytes.fetch_add(n, Ordering::Relaxed);
            }
            progress(Progress::FileDone);
            (i, r)
        })
        .collect();
    for (i, r) in results {
        match r {
            Ok(_) => w.summary.files += 1,
            Err(e) => {
                let job = &w.files[i];
                w.summary.failures.push(Failure {
                    cipher_path: job.src.clone(),
                    plain_path: Some(job.dst.clone()),
                    error: e,
                });
            }
        }
    }
    if !verify_only {
        restore_dirs(&w.dirs);
    }
    w.summary.bytes = bytes.into_inner();
    Ok(w.summary)
}
