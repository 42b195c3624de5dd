//! Decrypting a whole cipher directory into a destination directory.
//!
//! Directories and symlinks are created while walking; regular files are decrypted in
//! parallel, each into a temporary name that is renamed on success and removed on failure,
//! so a destination path either holds the complete authenticated plaintext or nothing.
//!
//! # The ciphertext tree is hostile
//!
//! The host controls the storage the cipher directory lives on, and gocryptfs authenticates
//! only names (per directory), symlink targets, xattr values and file contents (per file).
//! Everything else is treated as attacker-chosen:
//!
//! - Both trees are walked through directory handles, one component at a time, never
//!   following a symlink ([`crate::fsat`]); nothing is created, written, chmod-ed or
//!   truncated outside the destination.
//! - `gocryptfs.diriv` and long-name `.name` files are read only when they are regular files
//!   of legal size; content files only when regular, and no more than `fstat` reports. A
//!   FIFO or a symlink to `/dev/zero` cannot block or exhaust the run.
//! - A `gocryptfs.longname.*` entry is accepted only when its hash matches its `.name` and
//!   that name is long; two entries that decrypt to the same name are both refused.
//! - Modes are masked with [`FILE_MODE_MASK`] (no setuid, setgid, sticky or world-writable
//!   bit); special files and extended attributes are created only when asked
//!   ([`DecryptOptions`]).
//!
//! # A destination that is not empty
//!
//! An existing non-directory where the tree has a file, symlink or special file is replaced
//! atomically by rename (the entry itself; a symlink there is never followed). An existing
//! directory is reused where the tree has a directory; an existing symlink or other
//! non-directory where the tree has a directory is an error naming it, and that subtree is
//! left out. An existing directory where the tree has a non-directory is an error naming it.
//! Entries of DEST that the tree does not have are left alone.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rayon::prelude::*;
use rustix::fs::{statat, AtFlags, FileType};

use crate::config::Config;
use crate::content::{ContentCipher, ContentError, FileDone, SealedError};
use crate::digest;
use crate::fsat;
use crate::gcm::GcmError;
use crate::keys::Keys;
use crate::names::{
    self, NameError, CONF_NAME, DIRIV_NAME, LONGNAME_PREFIX, LONGNAME_SUFFIX, NAME_MAX,
};
use crate::xattrs::{Handle, XattrError};

/// Permission bits a decrypted file keeps from the (unauthenticated) ciphertext tree: no
/// setuid, setgid or sticky bit and no write permission for others.
pub const FILE_MODE_MASK: u32 = 0o775;
/// Bits every decrypted directory gets on top of its masked mode, so its owner can always
/// replace or remove what was decrypted into it.
pub const DIR_MODE_FORCED: u32 = 0o700;
/// Largest `gocryptfs.longname.*.name` file read (gocryptfs writes at most a few hundred
/// bytes: the encrypted form of a 255-byte name).
pub const MAX_LONGNAME_FILE: u64 = 4096;
/// Deepest directory nesting decrypted (bounds recursion and open handles).
pub const MAX_DEPTH: usize = 256;

/// What a decryption creates beyond names, directories, regular files and symlinks. The
/// default creates nothing else: none of it is authenticated by the format.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecryptOptions {
    /// Create FIFOs, sockets and device nodes (type, mode and device number come from the
    /// unauthenticated tree; modes are still masked). Without it they are reported in
    /// [`Summary::skipped`].
    pub special_files: bool,
    /// Copy user extended attributes (authenticated values) and POSIX ACLs (stored
    /// unencrypted and unauthenticated, as gocryptfs does) onto the output.
    pub xattrs: bool,
    /// Refuse all-zero ciphertext blocks in regular files, which the format reads as holes
    /// without authentication (so whoever holds the storage can zero any block).
    pub strict: bool,
}

/// One entry that could not be decrypted, verified or encrypted.
#[derive(Debug, serde::Serialize)]
pub struct Failure {
    /// Ciphertext path.
    pub cipher_path: PathBuf,
    /// Plaintext path, when the name decrypted.
    pub plain_path: Option<PathBuf>,
    /// The cause, typed (serialized as its message).
    #[serde(serialize_with = "as_message")]
    pub error: EntryError,
}

fn as_message<S: serde::Serializer>(e: &EntryError, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(e)
}

/// Why one entry failed. The entry's own paths are in its [`Failure`]; a variant that
/// carries a `path` names where the failing call was made when that is another path (the
/// destination, or the source of an encryption).
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// A call on the entry itself (or its directory) in the cipher tree failed.
    #[error("{0}")]
    Io(#[source] std::io::Error),
    /// A call on `path` failed: creating, writing or replacing output, or reading the
    /// plaintext an encryption reads.
    #[error("{}: {source}", path.display())]
    Path {
        /// Where.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// No temporary for the output could be created beside `path`.
    #[error("{}: creating a temporary: {source}", path.display())]
    Temporary {
        /// The output the temporary was for.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The encrypted name does not decrypt (tampered, wrong key), or a name cannot be
    /// encrypted.
    #[error("name: {0}")]
    Name(#[source] NameError),
    /// Two entries of one directory decrypt to the same name (only forged long names can):
    /// every claimant is refused.
    #[error("decrypts to the same name as another entry of its directory: refused, none of them is written")]
    DuplicateName,
    /// The directory's `gocryptfs.diriv` is unusable, so none of its names decrypt.
    #[error("invalid gocryptfs.diriv ({0}): directory cannot be decrypted")]
    DirIv(#[source] DirIvFault),
    /// A `gocryptfs.longname.*` entry whose `.name` file is unusable or does not match it.
    #[error("long name file {sidecar}: {fault}")]
    LongName {
        /// The `.name` file.
        sidecar: String,
        /// What is wrong with it.
        #[source]
        fault: LongNameFault,
    },
    /// Deeper than [`MAX_DEPTH`].
    #[error("nested deeper than {MAX_DEPTH} directories")]
    TooDeep,
    /// The content failed (a block, the header, or reading it).
    #[error(transparent)]
    Content(#[from] ContentError),
    /// The symlink target does not decrypt.
    #[error("symlink target: {0}")]
    Symlink(#[source] SealedError),
    /// Extended attributes failed.
    #[error(transparent)]
    Xattr(#[from] XattrError),
    /// A file type gocryptfs does not store (raw `st_mode`).
    #[error("unsupported file type (mode {0:o})")]
    UnsupportedType(u32),
    /// A FIFO, socket or device node could not be created at `path`.
    #[error("{}: cannot create {kind}: {source} (device nodes need CAP_MKNOD)", path.display())]
    Special {
        /// Where.
        path: PathBuf,
        /// Its type.
        kind: &'static str,
        /// Cause.
        source: std::io::Error,
    },
    /// OpenSSL could not seal a symlink target.
    #[error(transparent)]
    Gcm(#[from] GcmError),
}

/// What is wrong with a `gocryptfs.diriv` file.
#[derive(Debug, thiserror::Error)]
pub enum DirIvFault {
    /// Missing, not a regular file, or not 16 bytes.
    #[error("{0}")]
    Unreadable(#[source] std::io::Error),
    /// All zeros (never written by gocryptfs).
    #[error("all zero")]
    AllZero,
}

/// What is wrong with a `gocryptfs.longname.*.name` file.
#[derive(Debug, thiserror::Error)]
pub enum LongNameFault {
    /// Missing, not a regular file, or of an impossible size.
    #[error("{0}")]
    Unreadable(#[source] std::io::Error),
    /// Not UTF-8 (an encrypted name is base64url).
    #[error("not text")]
    NotText,
    /// Holds a name short enough to be stored directly (its length).
    #[error("holds a short name ({0} characters), which gocryptfs never stores as a long name")]
    Short(usize),
    /// Its content is not the name the entry's hash stands for.
    #[error("its content does not hash to the entry's name (swapped or forged)")]
    HashMismatch,
}

/// One entry deliberately not created (not an error).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Skipped {
    /// Ciphertext path.
    pub cipher_path: PathBuf,
    /// Plaintext path it would have had.
    pub plain_path: PathBuf,
    /// Why.
    pub reason: String,
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
    /// Entries left out on purpose (special files without
    /// [`DecryptOptions::special_files`]).
    pub skipped: Vec<Skipped>,
    /// The model digest ([`crate::digest`]) of the whole tree; `None` when any entry
    /// failed (a partial tree has no digest).
    pub digest: Option<crate::digest::ModelDigest>,
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

/// A directory whose mode and modification time are set once everything inside it is
/// written.
pub(crate) struct DirMeta {
    pub(crate) path: PathBuf,
    pub(crate) mode: u32,
    pub(crate) mtime: SystemTime,
}

/// A regular file to encrypt, with the metadata to give its output.
pub(crate) struct FileJob {
    pub(crate) src: PathBuf,
    pub(crate) dst: PathBuf,
    pub(crate) mode: u32,
    pub(crate) mtime: SystemTime,
}

/// A regular file to decrypt: directories relative to the two roots plus entry names.
struct DecJob {
    src_dir: PathBuf,
    src_name: OsString,
    dst_dir: PathBuf,
    dst_name: OsString,
    mode: u32,
    mtime: SystemTime,
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TreeError + '_ {
    move |source| TreeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

// `struct stat` field types differ between architectures, so the casts are not always no-ops.
#[allow(clippy::unnecessary_cast)]
fn mtime_of(st: &rustix::fs::Stat) -> SystemTime {
    let (sec, nsec) = (st.st_mtime as i64, st.st_mtime_nsec as u32);
    u64::try_from(sec)
        .ok()
        .and_then(|s| SystemTime::UNIX_EPOCH.checked_add(Duration::new(s, nsec.min(999_999_999))))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Roots and settings shared by the walk and the parallel file workers.
struct Ctx<'a> {
    keys: &'a Keys,
    cipher: ContentCipher,
    opts: DecryptOptions,
    cipher_root: &'a Path,
    cipher_fd: File,
    /// `None`: check only, create nothing.
    dest: Option<(&'a Path, File)>,
}

/// Whether a cipher directory is the tree's root, the only one that holds
/// `gocryptfs.conf` (a name that is not encrypted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Root,
    Nested,
}

struct Walk<'a> {
    ctx: &'a Ctx<'a>,
    dir_iv: bool,
    files: Vec<DecJob>,
    /// Relative to the destination root.
    dirs: Vec<DirMeta>,
    summary: Summary,
    /// Digest leaves of the directories, symlinks and special files seen.
    leaves: Vec<(Vec<u8>, [u8; 32])>,
}

/// A named entry of one cipher directory, with what its name decrypted to.
struct Entry {
    name: OsString,
    plain: Vec<u8>,
}

impl Walk<'_> {
    fn fail(&mut self, cipher_path: PathBuf, plain_path: Option<PathBuf>, error: EntryError) {
        self.summary.failures.push(Failure {
            cipher_path,
            plain_path,
            error,
        });
    }

    fn dest_path(&self, rel: &Path) -> PathBuf {
        self.ctx
            .dest
            .as_ref()
            .map_or_else(|| rel.to_path_buf(), |(d, _)| d.join(rel))
    }

    /// Reads the names of `src` and decrypts them, reporting every entry that does not
    /// decrypt or whose name is claimed by more than one entry.
    fn entries(
        &mut self,
        src: &File,
        src_rel: &Path,
        dst_rel: &Path,
        iv: &[u8; 16],
        level: Level,
    ) -> Result<Vec<Entry>, std::io::Error> {
        let mut names = Vec::new();
        let mut dir = rustix::fs::Dir::read_from(src)?;
        while let Some(e) = dir.read() {
            let e = e?;
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(OsString::from_vec(n.to_vec()));
            }
        }
        names.sort();
        let cdir = self.ctx.cipher_root.join(src_rel);
        let mut out = Vec::new();
        for name in names {
            let bytes = name.as_bytes();
            if bytes == DIRIV_NAME.as_bytes()
                || (level == Level::Root && bytes == CONF_NAME.as_bytes())
            {
                continue;
            }
            if bytes.starts_with(LONGNAME_PREFIX.as_bytes())
                && bytes.ends_with(LONGNAME_SUFFIX.as_bytes())
            {
                continue;
            }
            let cpath = cdir.join(&name);
            let s = String::from_utf8_lossy(bytes).into_owned();
            let cname = if s.starts_with(LONGNAME_PREFIX) {
                match self.long_name(src, &s) {
                    Ok(c) => c,
                    Err((sidecar, fault)) => {
                        self.fail(cpath, None, EntryError::LongName { sidecar, fault });
                        continue;
                    }
                }
            } else {
                s
            };
            match names::decrypt_name(&self.ctx.keys.names, iv, &cname) {
                Ok(plain) => out.push(Entry { name, plain }),
                Err(e) => self.fail(cpath, None, EntryError::Name(e)),
            }
        }
        // EME is a permutation, so only forged long names can collide; refuse every claimant
        // rather than let the attacker's choice of order pick the winner.
        let mut count: HashMap<&[u8], usize> = HashMap::new();
        for e in &out {
            *count.entry(&e.plain).or_default() += 1;
        }
        let dup: Vec<bool> = out.iter().map(|e| count[e.plain.as_slice()] > 1).collect();
        let mut kept = Vec::new();
        for (e, d) in out.into_iter().zip(dup) {
            if d {
                let plain = dst_rel.join(OsStr::from_bytes(&e.plain));
                self.fail(
                    cdir.join(&e.name),
                    Some(self.dest_path(&plain)),
                    EntryError::DuplicateName,
                );
            } else {
                kept.push(e);
            }
        }
        Ok(kept)
    }

    /// The encrypted name a `gocryptfs.longname.<hash>` entry stands for, checked against
    /// its hash and required to be long (short names are stored as they are); on failure
    /// the `.name` file's name and what is wrong with it.
    fn long_name(&self, src: &File, entry: &str) -> Result<String, (String, LongNameFault)> {
        let sidecar = format!("{entry}{LONGNAME_SUFFIX}");
        let check = || {
            let bytes = fsat::read_small_at(src, OsStr::new(&sidecar), 1, MAX_LONGNAME_FILE)
                .map_err(LongNameFault::Unreadable)?;
            let c = String::from_utf8(bytes).map_err(|_| LongNameFault::NotText)?;
            if c.len() <= NAME_MAX {
                return Err(LongNameFault::Short(c.len()));
            }
            if names::on_disk_name(&c) != entry {
                return Err(LongNameFault::HashMismatch);
            }
            Ok(c)
        };
        check().map_err(|fault| (sidecar.clone(), fault))
    }

    fn walk(
        &mut self,
        src: &File,
        dst: Option<&File>,
        src_rel: &Path,
        dst_rel: &Path,
        depth: usize,
    ) -> Result<(), std::io::Error> {
        let iv: [u8; 16] = if self.dir_iv {
            match read_dir_iv(src) {
                Ok(iv) => iv,
                Err(fault) => {
                    let p = self.ctx.cipher_root.join(src_rel).join(DIRIV_NAME);
                    let d = self.dest_path(dst_rel);
                    self.fail(p, Some(d), EntryError::DirIv(fault));
                    return Ok(());
                }
            }
        } else {
            [0; 16]
        };
        let level = if depth == 0 {
            Level::Root
        } else {
            Level::Nested
        };
        let entries = self.entries(src, src_rel, dst_rel, &iv, level)?;
        for Entry { name, plain } in entries {
            let plain = OsString::from_vec(plain);
            let crel = src_rel.join(&name);
            let prel = dst_rel.join(&plain);
            let cpath = self.ctx.cipher_root.join(&crel);
            let out = self.dest_path(&prel);
            let st = match statat(src, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(e) => {
                    self.fail(cpath, Some(out), EntryError::Io(e.into()));
                    continue;
                }
            };
            let mode = st.st_mode & 0o7777;
            let mtime = mtime_of(&st);
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => {
                    if depth + 1 >= MAX_DEPTH {
                        self.fail(cpath, Some(out), EntryError::TooDeep);
                        continue;
                    }
                    let sub = match fsat::open_dir_at(src, &name) {
                        Ok(f) => f,
                        Err(e) => {
                            self.fail(cpath, Some(out), EntryError::Io(e));
                            continue;
                        }
                    };
                    let dsub = match dst.map(|d| fsat::ensure_dir_at(d, &plain)).transpose() {
                        Ok(d) => d,
                        Err(source) => {
                            let e = EntryError::Path {
                                path: out.clone(),
                                source,
                            };
                            self.fail(cpath, Some(out), e);
                            continue;
                        }
                    };
                    // Checking authenticates attributes too; decrypting copies them only
                    // when asked.
                    let copy = self.ctx.opts.xattrs && dsub.is_some();
                    if copy || dsub.is_none() {
                        let target = dsub.as_ref().filter(|_| copy).map(|f| Handle(f, &out));
                        if let Err(e) = crate::xattrs::decrypt_onto(
                            &self.ctx.keys.names,
                            &self.ctx.cipher,
                            &Handle(&sub, &cpath),
                            target.as_ref(),
                        ) {
                            self.fail(cpath.clone(), Some(out.clone()), e.into());
                        }
                    }
                    self.summary.dirs += 1;
                    self.leaves
                        .push((prel.as_os_str().as_bytes().to_vec(), digest::dir_leaf()));
                    if let Err(e) = self.walk(&sub, dsub.as_ref(), &crel, &prel, depth + 1) {
                        self.fail(cpath, Some(out), EntryError::Io(e));
                        continue;
                    }
                    if dsub.is_some() {
                        self.dirs.push(DirMeta {
                            path: prel,
                            mode,
                            mtime,
                        });
                    }
                }
                FileType::Symlink => {
                    let r = rustix::fs::readlinkat(src, name.as_os_str(), Vec::new())
                        .map_err(|e| EntryError::Io(e.into()))
                        .and_then(|t| {
                            self.ctx
                                .cipher
                                .decrypt_symlink(t.as_bytes())
                                .map_err(|e| match e {
                                    SealedError::Gcm(g) => EntryError::Gcm(g),
                                    e => EntryError::Symlink(e),
                                })
                        })
                        .and_then(|t| {
                            if let Some(d) = dst {
                                symlink_at(d, &plain, &t, &out)?;
                            }
                            Ok(digest::symlink_leaf(&t))
                        });
                    match r {
                        Ok(leaf) => {
                            self.summary.symlinks += 1;
                            self.leaves
                                .push((prel.as_os_str().as_bytes().to_vec(), leaf));
                        }
                        Err(e) => self.fail(cpath, Some(out), e),
                    }
                }
                FileType::RegularFile => self.files.push(DecJob {
                    src_dir: src_rel.to_path_buf(),
                    src_name: name,
                    dst_dir: dst_rel.to_path_buf(),
                    dst_name: plain,
                    mode,
                    mtime,
                }),
                _ => {
                    let Some(kind) = crate::special::special_kind(st.st_mode) else {
                        self.fail(cpath, Some(out), EntryError::UnsupportedType(st.st_mode));
                        continue;
                    };
                    self.leaves
                        .push((prel.as_os_str().as_bytes().to_vec(), digest::special_leaf()));
                    if !self.ctx.opts.special_files {
                        self.summary.skipped.push(Skipped {
                            cipher_path: cpath,
                            plain_path: out,
                            reason: format!(
                                "{}: not created without --special-files (type, mode and device number are not authenticated)",
                                crate::special::kind_name(kind)
                            ),
                        });
                        continue;
                    }
                    let r = match dst {
                        Some(d) => crate::special::recreate_at(
                            d,
                            &plain,
                            kind,
                            mode & FILE_MODE_MASK,
                            st.st_rdev as u64,
                            &out,
                        ),
                        // Nothing to authenticate but the name, which decrypted.
                        None => Ok(()),
                    };
                    match r {
                        Ok(()) => self.summary.special += 1,
                        Err(e) => self.fail(cpath, Some(out), e),
                    }
                }
            }
        }
        Ok(())
    }
}

/// Reads a directory's IV: a regular file of exactly 16 bytes, not all zero.
fn read_dir_iv(dir: &File) -> Result<[u8; 16], DirIvFault> {
    let bytes =
        fsat::read_small_at(dir, OsStr::new(DIRIV_NAME), 16, 16).map_err(DirIvFault::Unreadable)?;
    let mut iv = [0u8; 16];
    // read_small_at returned exactly 16 bytes.
    iv.copy_from_slice(&bytes);
    if iv == [0; 16] {
        return Err(DirIvFault::AllZero);
    }
    Ok(iv)
}

/// Creates the symlink `name` → `target` in `dir` under a fresh temporary name renamed over
/// `name` (replacing an existing non-directory, never following it).
fn symlink_at(dir: &File, name: &OsStr, target: &[u8], shown: &Path) -> Result<(), EntryError> {
    let at = |source| EntryError::Path {
        path: shown.to_path_buf(),
        source,
    };
    let tmp = fsat::temp_name();
    rustix::fs::symlinkat(OsStr::from_bytes(target), dir, tmp.as_str())
        .map_err(|e| at(e.into()))?;
    fsat::rename_into_place(dir, &tmp, name).map_err(|e| {
        fsat::remove_at(dir, &tmp);
        at(e)
    })
}

/// Sets directory modes and times last, innermost first, so writing inside them does not
/// disturb the times (and read-only modes do not block the writes). Best effort: the
/// contents are complete either way, so a directory that refuses is left as it is.
pub(crate) fn restore_dirs(dirs: &[DirMeta]) {
    for d in dirs.iter().rev() {
        let _ = std::fs::set_permissions(&d.path, std::fs::Permissions::from_mode(d.mode));
        if let Ok(f) = std::fs::File::open(&d.path) {
            let _ = f.set_modified(d.mtime);
        }
    }
}

/// [`restore_dirs`] for the decryptor: relative to the destination handle, modes masked.
fn restore_dirs_at(root: &File, dirs: &[DirMeta]) {
    for d in dirs.iter().rev() {
        if let Ok(f) = fsat::open_dir_beneath(root, &d.path) {
            let mode = (d.mode & FILE_MODE_MASK) | DIR_MODE_FORCED;
            let _ = f.set_permissions(std::fs::Permissions::from_mode(mode));
            let _ = f.set_modified(d.mtime);
        }
    }
}

impl Ctx<'_> {
    fn src_path(&self, job: &DecJob) -> PathBuf {
        self.cipher_root.join(&job.src_dir).join(&job.src_name)
    }

    /// Opens a job's ciphertext (regular files only) and its size.
    fn open_src(&self, job: &DecJob) -> Result<(File, u64), EntryError> {
        let dir = fsat::open_dir_beneath(&self.cipher_fd, &job.src_dir).map_err(EntryError::Io)?;
        fsat::open_regular_at(&dir, &job.src_name).map_err(EntryError::Io)
    }

    fn verify_one(
        &self,
        job: &DecJob,
        report: &(dyn Fn(u64) + Sync),
    ) -> Result<FileDone, EntryError> {
        let (mut src, len) = self.open_src(job)?;
        let n = self.cipher.verify_file(&mut src, report)?;
        fsat::same_size(&src, len).map_err(EntryError::Io)?;
        crate::xattrs::decrypt_onto::<Handle>(
            &self.keys.names,
            &self.cipher,
            &Handle(&src, &self.src_path(job)),
            None,
        )?;
        Ok(n)
    }

    fn decrypt_one(
        &self,
        dest: &(&Path, File),
        job: &DecJob,
        report: &(dyn Fn(u64) + Sync),
    ) -> Result<FileDone, EntryError> {
        let (mut src, len) = self.open_src(job)?;
        let shown = dest.0.join(&job.dst_dir).join(&job.dst_name);
        let at = |source| EntryError::Path {
            path: shown.clone(),
            source,
        };
        let dir = fsat::open_dir_beneath(&dest.1, &job.dst_dir).map_err(at)?;
        let (tmp, out) = fsat::create_temp_at(&dir).map_err(|source| EntryError::Temporary {
            path: shown.clone(),
            source,
        })?;
        let mut run = || -> Result<FileDone, EntryError> {
            let n = self.cipher.decrypt_file(&mut src, &out, report)?;
            fsat::same_size(&src, len).map_err(EntryError::Io)?;
            if self.opts.xattrs {
                crate::xattrs::decrypt_onto(
                    &self.keys.names,
                    &self.cipher,
                    &Handle(&src, &self.src_path(job)),
                    Some(&Handle(&out, &shown)),
                )?;
            }
            out.set_permissions(std::fs::Permissions::from_mode(job.mode & FILE_MODE_MASK))
                .map_err(at)?;
            out.set_modified(job.mtime).map_err(at)?;
            fsat::rename_into_place(&dir, &tmp, &job.dst_name).map_err(at)?;
            Ok(n)
        };
        let r = run();
        if r.is_err() {
            fsat::remove_at(&dir, &tmp);
        }
        r
    }
}

/// What a tree run reports while it works (for progress displays).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Plaintext bytes processed, per chunk (also of a file that fails later).
    Bytes(u64),
    /// One regular file finished, successfully or not.
    FileDone,
}

/// [`decrypt_tree_with`] with the default (safest) [`DecryptOptions`].
pub fn decrypt_tree(
    config: &Config,
    keys: &Keys,
    cipher_dir: &Path,
    dest: &Path,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Summary, TreeError> {
    decrypt_tree_with(
        config,
        keys,
        cipher_dir,
        dest,
        &DecryptOptions::default(),
        progress,
    )
}

/// Decrypts `cipher_dir` into `dest` (created if missing; see the module documentation for
/// what happens to entries already there). `progress` hears of every finished chunk and
/// file. Per-entry failures are collected in the summary; only problems with the two roots
/// abort.
pub fn decrypt_tree_with(
    config: &Config,
    keys: &Keys,
    cipher_dir: &Path,
    dest: &Path,
    opts: &DecryptOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Summary, TreeError> {
    std::fs::create_dir_all(dest).map_err(io(dest))?;
    let fd = fsat::open_root(dest).map_err(io(dest))?;
    run(config, keys, cipher_dir, Some((dest, fd)), opts, progress)
}

/// [`verify_tree_with`] with the default [`DecryptOptions`].
pub fn verify_tree(
    config: &Config,
    keys: &Keys,
    cipher_dir: &Path,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Summary, TreeError> {
    verify_tree_with(
        config,
        keys,
        cipher_dir,
        &DecryptOptions::default(),
        progress,
    )
}

/// Authenticates every name, symlink target, encrypted extended attribute and content block
/// of `cipher_dir` without writing anything, and applies the same structural checks as a
/// decryption (diriv and long-name files, duplicate names, file types; `opts.strict`
/// refuses holes). Every failing entry is reported; special files are reported as skipped
/// unless `opts.special_files`.
pub fn verify_tree_with(
    config: &Config,
    keys: &Keys,
    cipher_dir: &Path,
    opts: &DecryptOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Summary, TreeError> {
    run(config, keys, cipher_dir, None, opts, progress)
}

fn run(
    config: &Config,
    keys: &Keys,
    cipher_dir: &Path,
    dest: Option<(&Path, File)>,
    opts: &DecryptOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Summary, TreeError> {
    let ctx = Ctx {
        keys,
        cipher: ContentCipher::new(&keys.content).strict(opts.strict),
        opts: *opts,
        cipher_root: cipher_dir,
        cipher_fd: fsat::open_root(cipher_dir).map_err(io(cipher_dir))?,
        dest,
    };
    let mut w = Walk {
        ctx: &ctx,
        dir_iv: config.dir_iv,
        files: Vec::new(),
        dirs: Vec::new(),
        summary: Summary::default(),
        leaves: Vec::new(),
    };
    let root_dst = ctx.dest.as_ref().map(|(_, f)| f);
    w.walk(&ctx.cipher_fd, root_dst, Path::new(""), Path::new(""), 0)
        .map_err(io(cipher_dir))?;
    let bytes = AtomicU64::new(0);
    let results: Vec<(usize, Result<FileDone, EntryError>)> = w
        .files
        .par_iter()
        .enumerate()
        .map(|(i, job)| {
            let report = |n| progress(Progress::Bytes(n));
            let r = match &ctx.dest {
                None => ctx.verify_one(job, &report),
                Some(dest) => ctx.decrypt_one(dest, job, &report),
            };
            if let Ok(done) = &r {
                bytes.fetch_add(done.size, Ordering::Relaxed);
            }
            progress(Progress::FileDone);
            (i, r)
        })
        .collect();
    let mut leaves = std::mem::take(&mut w.leaves);
    for (i, r) in results {
        match r {
            Ok(done) => {
                w.summary.files += 1;
                let job = &w.files[i];
                let rel = job.dst_dir.join(&job.dst_name);
                leaves.push((rel.as_os_str().as_bytes().to_vec(), done.leaf));
            }
            Err(e) => {
                let job = &w.files[i];
                let plain = job.dst_dir.join(&job.dst_name);
                w.summary.failures.push(Failure {
                    cipher_path: ctx.src_path(job),
                    plain_path: Some(w.dest_path(&plain)),
                    error: e,
                });
            }
        }
    }
    if let Some((_, root)) = &ctx.dest {
        restore_dirs_at(root, &w.dirs);
    }
    w.summary.bytes = bytes.into_inner();
    if w.summary.failures.is_empty() {
        w.summary.digest = Some(digest::tree_digest(leaves));
    }
    Ok(w.summary)
}
