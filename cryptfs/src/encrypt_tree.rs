//! Creating a gocryptfs cipher directory from a plaintext tree (what `gocryptfs -init` and a
//! copy through the mount would produce, with default flags).

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use rand::RngCore;
use rayon::prelude::*;

use crate::content::{ContentCipher, FileDone};
use crate::digest;
use crate::keys::Keys;
use crate::names::{encrypt_name, on_disk_name, DIRIV_NAME, LONGNAME_SUFFIX};
use crate::tree::{io, restore_dirs, DirMeta, EntryError, Failure, FileJob, Summary, TreeError};

fn write_readonly(path: &Path, data: &[u8]) -> Result<(), TreeError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(path)
        .map_err(io(path))?;
    f.write_all(data).map_err(io(path))
}

fn new_dir_iv(dir: &Path) -> Result<[u8; 16], TreeError> {
    let mut iv = [0u8; 16];
    while iv == [0; 16] {
        rand::rngs::OsRng.fill_bytes(&mut iv);
    }
    write_readonly(&dir.join(DIRIV_NAME), &iv)?;
    Ok(iv)
}

struct Walk<'a> {
    keys: &'a Keys,
    /// The plaintext root (digest paths are relative to it).
    root: &'a Path,
    /// Digest leaves of the directories, symlinks and special files written.
    leaves: Vec<(Vec<u8>, [u8; 32])>,
    cipher: ContentCipher,
    jobs: Vec<FileJob>,
    dirs: Vec<DirMeta>,
    summary: Summary,
}

impl Walk<'_> {
    fn fail(&mut self, cipher_path: PathBuf, plain_path: PathBuf, error: EntryError) {
        self.summary.failures.push(Failure {
            cipher_path,
            plain_path: Some(plain_path),
            error,
        });
    }

    fn walk(&mut self, src: &Path, dst: &Path, iv: &[u8; 16]) -> Result<(), TreeError> {
        let mut entries: Vec<_> = std::fs::read_dir(src)
            .map_err(io(src))?
            .collect::<Result<_, _>>()
            .map_err(io(src))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let spath = e.path();
            let cname = match encrypt_name(&self.keys.names, iv, e.file_name().as_bytes()) {
                Ok(c) => c,
                Err(error) => {
                    self.fail(dst.to_path_buf(), spath, EntryError::Name(error));
                    continue;
                }
            };
            let disk = on_disk_name(&cname);
            let out = dst.join(&disk);
            if disk != cname {
                write_readonly(
                    &dst.join(format!("{disk}{LONGNAME_SUFFIX}")),
                    cname.as_bytes(),
                )?;
            }
            let meta = std::fs::symlink_metadata(&spath).map_err(io(&spath))?;
            let mode = meta.permissions().mode() & 0o7777;
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let ft = meta.file_type();
            let rel = spath
                .strip_prefix(self.root)
                .unwrap_or(&spath)
                .as_os_str()
                .as_bytes()
                .to_vec();
            if ft.is_dir() {
                self.leaves.push((rel, digest::dir_leaf()));
                std::fs::create_dir(&out).map_err(io(&out))?;
                // The IV file first, so it does not inherit a default ACL set below.
                let sub_iv = new_dir_iv(&out)?;
                if let Err(error) =
                    crate::xattrs::encrypt_onto(&self.keys.names, &self.cipher, &spath, &out)
                {
                    self.fail(out.clone(), spath.clone(), error.into());
                }
                self.summary.dirs += 1;
                self.walk(&spath, &out, &sub_iv)?;
                self.dirs.push(DirMeta {
                    path: out,
                    mode,
                    mtime,
                });
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&spath).map_err(io(&spath))?;
                let stored = match self.cipher.encrypt_symlink(target.as_os_str().as_bytes()) {
                    Ok(s) => s,
                    Err(e) => {
                        self.fail(out, spath, e.into());
                        continue;
                    }
                };
                std::os::unix::fs::symlink(stored, &out).map_err(io(&out))?;
                self.summary.symlinks += 1;
                self.leaves
                    .push((rel, digest::symlink_leaf(target.as_os_str().as_bytes())));
            } else if ft.is_file() {
                self.jobs.push(FileJob {
                    src: spath,
                    dst: out,
                    mode,
                    mtime,
                });
            } else {
                match crate::special::recreate(&meta, &out) {
                    Ok(()) => {
                        self.summary.special += 1;
                        self.leaves.push((rel, digest::special_leaf()));
                    }
                    Err(error) => self.fail(out, spath, error),
                }
            }
        }
        Ok(())
    }
}

fn encrypt_one(
    keys: &Keys,
    cipher: &ContentCipher,
    job: &FileJob,
    report: &(dyn Fn(u64) + Sync),
) -> Result<FileDone, EntryError> {
    let at = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EntryError::Path { path, source }
    };
    let mut src = std::fs::File::open(&job.src).map_err(at(&job.src))?;
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&job.dst)
        .map_err(at(&job.dst))?;
    let n = cipher.encrypt_file(&mut src, &out, report)?;
    crate::xattrs::encrypt_onto(&keys.names, cipher, &job.src, &job.dst)?;
    out.set_permissions(std::fs::Permissions::from_mode(job.mode))
        .map_err(at(&job.dst))?;
    out.set_modified(job.mtime).map_err(at(&job.dst))?;
    Ok(n)
}

/// Encrypts the tree `src` into the new cipher directory `cipher_dir` (which must not exist
/// or be empty), writing `config_text` as its `gocryptfs.conf`.
pub fn encrypt_tree(
    keys: &Keys,
    config_text: &str,
    src: &Path,
    cipher_dir: &Path,
    progress: &(dyn Fn(crate::tree::Progress) + Sync),
) -> Result<Summary, TreeError> {
    std::fs::create_dir_all(cipher_dir).map_err(io(cipher_dir))?;
    if std::fs::read_dir(cipher_dir)
        .map_err(io(cipher_dir))?
        .next()
        .is_some()
    {
        return Err(TreeError::Io {
            path: cipher_dir.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "cipher directory is not empty",
            ),
        });
    }
    let conf = cipher_dir.join(crate::names::CONF_NAME);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(&conf)
        .and_then(|mut f| std::io::Write::write_all(&mut f, config_text.as_bytes()))
        .map_err(io(&conf))?;
    let root_iv = new_dir_iv(cipher_dir)?;
    let mut w = Walk {
        keys,
        root: src,
        leaves: Vec::new(),
        cipher: ContentCipher::new(&keys.content),
        jobs: Vec::new(),
        dirs: Vec::new(),
        summary: Summary::default(),
    };
    w.walk(src, cipher_dir, &root_iv)?;
    let bytes = AtomicU64::new(0);
    let results: Vec<Result<FileDone, EntryError>> = w
        .jobs
        .par_iter()
        .map(|job| {
            let report = |n| progress(crate::tree::Progress::Bytes(n));
            let r = encrypt_one(keys, &w.cipher, job, &report);
            if let Ok(done) = &r {
                bytes.fetch_add(done.size, Ordering::Relaxed);
            }
            progress(crate::tree::Progress::FileDone);
            r
        })
        .collect();
    let mut leaves = std::mem::take(&mut w.leaves);
    for (job, r) in w.jobs.iter().zip(results) {
        match r {
            Ok(done) => {
                w.summary.files += 1;
                let rel = job.src.strip_prefix(src).unwrap_or(&job.src);
                leaves.push((rel.as_os_str().as_bytes().to_vec(), done.leaf));
            }
            Err(error) => {
                let _ = std::fs::remove_file(&job.dst);
                w.summary.failures.push(Failure {
                    cipher_path: job.dst.clone(),
                    plain_path: Some(job.src.clone()),
                    error,
                });
            }
        }
    }
    restore_dirs(&w.dirs);
    w.summary.bytes = bytes.into_inner();
    if w.summary.failures.is_empty() {
        w.summary.digest = Some(digest::tree_digest(leaves));
    }
    Ok(w.summary)
}
