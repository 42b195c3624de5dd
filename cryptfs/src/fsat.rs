//! Filesystem operations relative to open directory handles.
//!
//! The ciphertext tree lives on storage the host controls, and the destination may already
//! hold entries someone planted. Every operation here therefore names one path component
//! relative to a directory handle and never follows a symlink (`O_NOFOLLOW` on every
//! component), so nothing outside the two roots is read, created, truncated or chmod-ed,
//! whatever either tree contains or however it changes while we work.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::path::{Component, Path};

use rand::RngCore;
use rustix::fs::{fstat, mkdirat, openat, FileType, Mode, OFlags, Stat};

/// Prefix of the hidden temporary names output is written under before its final rename.
pub(crate) const TEMP_PREFIX: &str = ".coffer-partial.";

/// Flags for reading an entry of the ciphertext tree: no symlink is followed, and a FIFO
/// opens at once instead of waiting for a writer (the type is checked after `fstat`).
fn read_flags() -> OFlags {
    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Opens `path` (trusted: given by the operator, so symlinks in it are followed) as a
/// directory handle.
pub(crate) fn open_root(path: &Path) -> io::Result<File> {
    Ok(File::from(openat(
        rustix::fs::CWD,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?))
}

/// Opens the directory `name` inside `dir`, refusing a symlink (`ELOOP`) or a non-directory
/// (`ENOTDIR`).
pub(crate) fn open_dir_at(dir: &File, name: &OsStr) -> io::Result<File> {
    Ok(File::from(openat(dir, name, dir_flags(), Mode::empty())?))
}

/// Opens the directory `rel` below `root` one component at a time, refusing symlinks.
pub(crate) fn open_dir_beneath(root: &File, rel: &Path) -> io::Result<File> {
    let mut cur = root.try_clone()?;
    for c in rel.components() {
        match c {
            Component::Normal(name) => cur = open_dir_at(&cur, name)?,
            Component::CurDir => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "path leaves the tree",
                ))
            }
        }
    }
    Ok(cur)
}

fn kind(st: &Stat) -> &'static str {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symlink",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Unknown => "file of unknown type",
    }
}

/// Opens the regular file `name` inside `dir` for reading and returns it with its size.
/// A symlink, FIFO, device or anything else that is not a regular file is refused without
/// reading from it.
pub(crate) fn open_regular_at(dir: &File, name: &OsStr) -> io::Result<(File, u64)> {
    let fd = openat(dir, name, read_flags(), Mode::empty()).map_err(|e| {
        if e == rustix::io::Errno::LOOP {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "is a symlink where a regular file is expected (not followed)",
            )
        } else {
            e.into()
        }
    })?;
    let st = fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("is a {} where a regular file is expected", kind(&st)),
        ));
    }
    Ok((File::from(fd), st.st_size as u64))
}

/// Reads the whole regular file `name` inside `dir` if its size is within `min..=max`,
/// reading no more than `fstat` reported (a file that changes size meanwhile is refused).
pub(crate) fn read_small_at(dir: &File, name: &OsStr, min: u64, max: u64) -> io::Result<Vec<u8>> {
    let (f, len) = open_regular_at(dir, name)?;
    if len < min || len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            if min == max {
                format!("has {len} bytes (must be exactly {max})")
            } else {
                format!("has {len} bytes (must be {min} to {max})")
            },
        ));
    }
    let mut buf = Vec::with_capacity(len as usize);
    // One byte more than expected, to notice a file that grew.
    (&f).take(len + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 != len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "changed size while being read",
        ));
    }
    Ok(buf)
}

/// An unpredictable hidden temporary name (short: plaintext names may already be 255 bytes).
pub(crate) fn temp_name() -> String {
    let mut r = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut r);
    format!("{TEMP_PREFIX}{}", hex::encode(r))
}

/// Creates a new private (0600) file under a fresh unpredictable name in `dir`; never
/// opens an existing entry (`O_EXCL`) nor follows a symlink.
pub(crate) fn create_temp_at(dir: &File) -> io::Result<(String, File)> {
    let mut last = None;
    // A collision of 96 random bits means someone guessed it; try a few fresh names.
    for _ in 0..8 {
        let name = temp_name();
        match openat(
            dir,
            name.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => return Ok((name, File::from(fd))),
            Err(e) if e == rustix::io::Errno::EXIST => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.map_or_else(|| io::Error::other("no temporary name"), Into::into))
}

/// Creates the directory `name` in `dir` (mode 0700 until its final mode is set) or opens
/// the one already there. An existing symlink or non-directory is an error, never followed.
pub(crate) fn ensure_dir_at(dir: &File, name: &OsStr) -> io::Result<File> {
    match mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
        Ok(()) => {}
        Err(e) if e == rustix::io::Errno::EXIST => {}
        Err(e) => return Err(e.into()),
    }
    open_dir_at(dir, name).map_err(|e| {
        if matches!(
            e.raw_os_error(),
            Some(c) if c == rustix::io::Errno::LOOP.raw_os_error()
                || c == rustix::io::Errno::NOTDIR.raw_os_error()
        ) {
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "already exists and is not a directory (a symlink or other file; not followed, not replaced)",
            )
        } else {
            e
        }
    })
}

/// Removes the entry `name` in `dir` (cleanup of a temporary; errors are irrelevant then).
pub(crate) fn remove_at(dir: &File, name: &str) {
    let _ = rustix::fs::unlinkat(dir, name, rustix::fs::AtFlags::empty());
}

/// Renames `from` to `to` inside `dir`, replacing an existing non-directory entry `to`
/// atomically (the entry itself, never what a symlink there points to).
pub(crate) fn rename_into_place(dir: &File, from: &str, to: &OsStr) -> io::Result<()> {
    rustix::fs::renameat(dir, from, dir, to).map_err(|e| {
        if e == rustix::io::Errno::ISDIR
            || e == rustix::io::Errno::NOTEMPTY
            || e == rustix::io::Errno::EXIST
        {
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "already exists as a directory in the destination (not replaced)",
            )
        } else {
            e.into()
        }
    })
}

/// Whether `f` still has `len` bytes (input that changed while being read is refused).
pub(crate) fn same_size(f: &impl AsFd, len: u64) -> io::Result<()> {
    let now = fstat(f)?.st_size as u64;
    if now != len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("changed size while being read ({len} bytes, now {now})"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifos_and_symlinks_are_refused_without_blocking() {
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        std::os::unix::fs::symlink("/dev/zero", t.path().join("zero")).unwrap();
        std::fs::write(t.path().join("big"), vec![1u8; 100]).unwrap();
        let root = open_root(t.path()).unwrap();
        let e = open_regular_at(&root, OsStr::new("fifo")).unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
        let e = open_regular_at(&root, OsStr::new("zero")).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        let e = read_small_at(&root, OsStr::new("big"), 16, 16).unwrap_err();
        assert!(e.to_string().contains("100 bytes"), "{e}");
        assert_eq!(
            read_small_at(&root, OsStr::new("big"), 1, 100)
                .unwrap()
                .len(),
            100
        );
    }

    #[test]
    fn temporaries_are_new_and_unpredictable() {
        let t = tempfile::tempdir().unwrap();
        let root = open_root(t.path()).unwrap();
        let (a, _) = create_temp_at(&root).unwrap();
        let (b, _) = create_temp_at(&root).unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(TEMP_PREFIX) && a.len() == TEMP_PREFIX.len() + 24);
        std::os::unix::fs::symlink("/nonexistent", t.path().join("l")).unwrap();
        let e = ensure_dir_at(&root, OsStr::new("l")).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
    }
}
