//! FIFOs, sockets and device nodes: gocryptfs keeps them as the same type under an
//! encrypted name (there is no content to encrypt), so both directions recreate them.

use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use rustix::fs::{mknodat, FileType, Mode, CWD};

/// Creates at `dst` a special file of the same type, mode and device number as `meta`.
pub(crate) fn recreate(meta: &Metadata, dst: &Path) -> Result<(), String> {
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
        return Err("unsupported file type".into());
    };
    let _ = std::fs::remove_file(dst);
    mknodat(
        CWD,
        dst,
        kind,
        Mode::from_raw_mode(meta.mode() & 0o7777),
        meta.rdev(),
    )
    .map_err(|e| {
        format!(
            "{}: cannot create {kind:?}: {e} (device nodes need CAP_MKNOD)",
            dst.display()
        )
    })?;
    // mknod applies the umask; chmod gives the exact mode.
    std::fs::set_permissions(
        dst,
        std::os::unix::fs::PermissionsExt::from_mode(meta.mode() & 0o7777),
    )
    .map_err(|e| format!("{}: {e}", dst.display()))
}
