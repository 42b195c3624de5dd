//! FIFOs, sockets and device nodes: gocryptfs keeps them as the same type under an
//! encrypted name (there is no content to encrypt), so both directions can recreate them.
//! Their type, mode and device number are not authenticated, so the decryptor creates them
//! only when asked (`DecryptOptions::special_files`).

use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use rustix::fs::{mknodat, FileType, Mode, CWD};

use crate::tree::EntryError;

/// The special file type of `raw_mode` (`None` for regular files, directories, symlinks).
pub(crate) fn special_kind(raw_mode: u32) -> Option<FileType> {
    match FileType::from_raw_mode(raw_mode) {
        k @ (FileType::Fifo
        | FileType::Socket
        | FileType::CharacterDevice
        | FileType::BlockDevice) => Some(k),
        _ => None,
    }
}

/// Human name of a special file type, for reports.
pub(crate) fn kind_name(kind: FileType) -> &'static str {
    match kind {
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        _ => "file of unknown type",
    }
}

/// Creates at `dst` a special file of the same type, mode and device number as `meta`
/// (encryption side: `dst` is in the new cipher directory this process creates).
pub(crate) fn recreate(meta: &Metadata, dst: &Path) -> Result<(), EntryError> {
    let ft = meta.file_type();
    let kind = if ft.is_fifo() {
        FileType::Fifo
    } else if ft.is_socket() {
        FileType::Socket
    } else if ft.is_char_device() {
        FileType::CharacterDevice
    } else if ft.is_block_device() {
        FileType::BlockDevice
    } else {
        return Err(EntryError::UnsupportedType(meta.mode()));
    };
    let _ = std::fs::remove_file(dst);
    mknodat(
        CWD,
        dst,
        kind,
        Mode::from_raw_mode(meta.mode() & 0o7777),
        meta.rdev(),
    )
    .map_err(|e| EntryError::Special {
        path: dst.to_path_buf(),
        kind: kind_name(kind),
        source: e.into(),
    })?;
    // mknod applies the umask; chmod gives the exact mode.
    std::fs::set_permissions(
        dst,
        std::os::unix::fs::PermissionsExt::from_mode(meta.mode() & 0o7777),
    )
    .map_err(|source| EntryError::Path {
        path: dst.to_path_buf(),
        source,
    })
}

/// Creates in `dir` a special file `name` of type `kind` with `mode` and device `rdev`
/// (decryption side), under a fresh temporary name renamed over `name`, so an entry already
/// there is replaced, never followed. `shown` names it in errors.
pub(crate) fn recreate_at(
    dir: &File,
    name: &OsStr,
    kind: FileType,
    mode: u32,
    rdev: u64,
    shown: &Path,
) -> Result<(), EntryError> {
    let tmp = crate::fsat::temp_name();
    mknodat(dir, tmp.as_str(), kind, Mode::from_raw_mode(mode), rdev).map_err(|e| {
        EntryError::Special {
            path: shown.to_path_buf(),
            kind: kind_name(kind),
            source: e.into(),
        }
    })?;
    // mknod applies the umask; chmod gives the exact mode. The name is fresh and
    // unpredictable, so nobody has swapped it for a symlink in between.
    let done = rustix::fs::chmodat(
        dir,
        tmp.as_str(),
        Mode::from_raw_mode(mode),
        rustix::fs::AtFlags::empty(),
    )
    .map_err(std::io::Error::from)
    .and_then(|()| crate::fsat::rename_into_place(dir, &tmp, name));
    if let Err(source) = done {
        crate::fsat::remove_at(dir, &tmp);
        return Err(EntryError::Path {
            path: shown.to_path_buf(),
            source,
        });
    }
    Ok(())
}
