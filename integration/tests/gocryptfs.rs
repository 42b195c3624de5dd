//! Round trips with the real gocryptfs binary (FUSE): a tree written through a gocryptfs
//! mount decrypts with `coffer model decrypt`, and a tree made by `coffer model encrypt`
//! mounts in gocryptfs, reads back identical and passes `gocryptfs -fsck`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use coffer_integration::binary;

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The tree every test uses: edge sizes, a multi-MiB file, short, 255-byte and unicode
/// names, nesting, symlinks, modes, user xattrs, a FIFO and POSIX ACLs.
fn make_tree(root: &Path) {
    let w = |rel: &str, data: &[u8]| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    };
    let pattern = |n: usize| {
        (0..n)
            .map(|i| (i * 7 + i / 4096) as u8)
            .collect::<Vec<u8>>()
    };
    w("empty", b"");
    w("one", b"1");
    w("b4095", &pattern(4095));
    w("b4096", &pattern(4096));
    w("b4097", &pattern(4097));
    w("model.safetensors", &pattern(5 * 1024 * 1024 + 123));
    w("x", b"short name");
    w(&"L".repeat(255), b"long name");
    w("dir/sub/deeper/模型-权重.bin", "unicode".as_bytes());
    w("dir/config.json", b"{\"a\": 1}");
    std::os::unix::fs::symlink("model.safetensors", root.join("link-rel")).unwrap();
    std::os::unix::fs::symlink("/opt/abs/target", root.join("dir/link-abs")).unwrap();
    std::fs::set_permissions(root.join("one"), std::fs::Permissions::from_mode(0o640)).unwrap();
    for (rel, name, value) in XATTRS {
        xattr::set(root.join(rel), name, value).unwrap();
    }
    run(Command::new("mkfifo")
        .args(["-m", "0620"])
        .arg(root.join("dir/pipe")));
    // POSIX ACLs: an access ACL on a file, a default ACL on a directory and a file that
    // inherits it (gocryptfs passes them through when mounted with -acl).
    xattr::set(root.join("b4096"), ACL_ACCESS, &acl(&ACCESS_ENTRIES)).unwrap();
    std::fs::create_dir(root.join("shared")).unwrap();
    xattr::set(root.join("shared"), ACL_DEFAULT, &acl(&DEFAULT_ENTRIES)).unwrap();
    w("shared/inherits", b"acl from the directory");
}

const ACL_ACCESS: &str = "system.posix_acl_access";
const ACL_DEFAULT: &str = "system.posix_acl_default";
/// (tag, permissions, id): owner rw, user 1000 r, group r, mask r, other none.
const ACCESS_ENTRIES: [(u16, u16, u32); 5] = [
    (1, 6, u32::MAX),
    (2, 4, 1000),
    (4, 4, u32::MAX),
    (0x10, 4, u32::MAX),
    (0x20, 0, u32::MAX),
];
/// owner rwx, user 1000 r-x, group r-x, mask r-x, other r-x.
const DEFAULT_ENTRIES: [(u16, u16, u32); 5] = [
    (1, 7, u32::MAX),
    (2, 5, 1000),
    (4, 5, u32::MAX),
    (0x10, 5, u32::MAX),
    (0x20, 5, u32::MAX),
];

/// An ACL in the kernel's xattr form: version 2, then little-endian (tag, perm, id).
fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        v.extend(tag.to_le_bytes());
        v.extend(perm.to_le_bytes());
        v.extend(id.to_le_bytes());
    }
    v
}

/// User extended attributes on a file, an empty one, and on a directory.
const XATTRS: [(&str, &str, &[u8]); 3] = [
    (
        "model.safetensors",
        "user.model-id",
        b"qwen2.5-3b sha256:abc",
    ),
    ("one", "user.empty", b""),
    ("dir", "user.note", b"weights"),
];

fn assert_same_tree(a: &Path, b: &Path) {
    // diff reports two FIFOs as different; the FIFO is checked by type and mode below.
    let out = Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg("--exclude=pipe")
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "trees differ: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&b.join("one")), 0o640);
    let pipe = std::fs::symlink_metadata(b.join("dir/pipe")).unwrap();
    assert!(
        std::os::unix::fs::FileTypeExt::is_fifo(&pipe.file_type()),
        "dir/pipe is not a FIFO"
    );
    assert_eq!(pipe.permissions().mode() & 0o777, 0o620);
    for (rel, name, value) in XATTRS {
        assert_eq!(
            xattr::get(b.join(rel), name).unwrap().as_deref(),
            Some(value),
            "{rel} {name}"
        );
    }
    let get = |root: &Path, rel: &str, name: &str| xattr::get(root.join(rel), name).unwrap();
    assert_eq!(get(b, "b4096", ACL_ACCESS), Some(acl(&ACCESS_ENTRIES)));
    assert_eq!(get(b, "shared", ACL_DEFAULT), Some(acl(&DEFAULT_ENTRIES)));
    let inherited = get(a, "shared/inherits", ACL_ACCESS);
    assert!(inherited.is_some());
    assert_eq!(get(b, "shared/inherits", ACL_ACCESS), inherited);
    assert_eq!(
        get(b, "b4095", ACL_ACCESS),
        None,
        "no ACL where the source has none"
    );
}

struct Mount<'a>(&'a Path);
impl Drop for Mount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("fusermount3").arg("-u").arg(self.0).status();
    }
}

#[test]
fn gocryptfs_written_tree_decrypts_with_coffer() {
    let t = tempfile::tempdir().unwrap();
    let (cipher, mnt, plain, out) = (
        t.path().join("c"),
        t.path().join("m"),
        t.path().join("p"),
        t.path().join("o"),
    );
    for d in [&cipher, &mnt, &plain] {
        std::fs::create_dir(d).unwrap();
    }
    let pw = t.path().join("pw");
    std::fs::write(&pw, "correct horse\n").unwrap();
    run(Command::new("gocryptfs")
        .args(["-init", "-q", "-scryptn", "10", "-passfile"])
        .arg(&pw)
        .arg(&cipher));
    make_tree(&plain);
    run(Command::new("gocryptfs")
        .args(["-q", "-acl", "-passfile"])
        .arg(&pw)
        .arg(&cipher)
        .arg(&mnt));
    {
        let _m = Mount(&mnt);
        run(Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", plain.display()))
            .arg(&mnt));
    }
    let o = run(Command::new(binary("coffer"))
        // The FIFO, xattrs and ACLs are restored only when asked (none is authenticated).
        .args([
            "model",
            "decrypt",
            "-q",
            "--special-files",
            "--xattrs",
            "--password-file",
        ])
        .arg(&pw)
        .arg(&cipher)
        .arg(&out));
    assert!(o.stdout.is_empty());
    assert_same_tree(&plain, &out);
}

#[test]
fn coffer_encrypted_tree_mounts_in_gocryptfs() {
    let t = tempfile::tempdir().unwrap();
    let (cipher, mnt, plain) = (t.path().join("c"), t.path().join("m"), t.path().join("p"));
    std::fs::create_dir(&mnt).unwrap();
    let pw = t.path().join("pw");
    std::fs::write(&pw, "s3cret pass\n").unwrap();
    make_tree(&plain);
    run(Command::new(binary("coffer"))
        .args([
            "model",
            "encrypt",
            "-q",
            "--scryptn",
            "10",
            "--password-file",
        ])
        .arg(&pw)
        .arg(&plain)
        .arg(&cipher));
    let fsck = Command::new("gocryptfs")
        .args(["-fsck", "-q", "-passfile"])
        .arg(&pw)
        .arg(&cipher)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "fsck: {}",
        String::from_utf8_lossy(&fsck.stderr)
    );
    run(Command::new("gocryptfs")
        .args(["-q", "-ro", "-acl", "-passfile"])
        .arg(&pw)
        .arg(&cipher)
        .arg(&mnt));
    let _m = Mount(&mnt);
    assert_same_tree(&plain, &mnt);
}
