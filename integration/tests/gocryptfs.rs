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
/// names, nesting, symlinks, modes.
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
        .args(["-q", "-passfile"])
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
        .args(["model", "decrypt", "-q", "--password-file"])
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
        .args(["-q", "-ro", "-passfile"])
        .arg(&pw)
        .arg(&cipher)
        .arg(&mnt));
    let _m = Mount(&mnt);
    assert_same_tree(&plain, &mnt);
}
