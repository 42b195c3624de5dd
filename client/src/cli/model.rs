//! `coffer model ...`: encrypt, decrypt and verify gocryptfs model trees.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use coffer::model::{password_from_bytes, KeySource, RunOptions, RunReport, TreeTotals};
use coffer::ClientError;
use coffer_cryptfs::tree::{DecryptOptions, Progress};
use coffer_cryptfs::{MasterKey, ModelDigest};
use coffer_protocol::ResourcePath;
use zeroize::Zeroizing;

use crate::{tee_client, Cli, TeeArgs};

#[derive(Subcommand)]
pub(crate) enum ModelCommand {
    /// Encrypt a model directory into a new gocryptfs v2 cipher directory (default flags;
    /// mountable by gocryptfs 2.x).
    Encrypt {
        /// Plaintext model directory.
        src: PathBuf,
        /// New cipher directory (must not exist or be empty).
        cipher_dir: PathBuf,
        /// File whose first line is the password.
        #[arg(long)]
        password_file: PathBuf,
        /// scrypt cost as log2(N) (gocryptfs default 16).
        #[arg(long, default_value_t = 16)]
        scryptn: u8,
        #[command(flatten)]
        out: RunArgs,
    },
    /// Decrypt a gocryptfs v2 cipher directory into DEST (e.g. a tmpfs), on all cores.
    ///
    /// Each file is written under a temporary name and renamed when every block has
    /// authenticated; a corrupt file is reported (with the block) and left out. Exit code 6
    /// when any entry failed.
    ///
    /// The cipher directory is untrusted: only regular files, directories and symlinks are
    /// created (FIFOs, sockets, device nodes are reported and skipped), modes are masked to
    /// 0775, extended attributes are not copied, and nothing outside DEST is touched. Files
    /// already in DEST are replaced atomically; an existing symlink or non-directory where a
    /// directory is needed is an error naming it (never followed).
    Decrypt {
        /// The cipher directory (holds gocryptfs.conf).
        cipher_dir: PathBuf,
        /// Destination directory (created if missing).
        dest: PathBuf,
        /// The model digest the tree must have (as `model encrypt` or `model digest`
        /// printed it). Catches files swapped, rolled back, deleted, added or truncated on
        /// the storage, which gocryptfs cannot; on a mismatch or any failed entry
        /// everything written is removed (exit code 9 or 6). DEST must be empty or new.
        #[arg(long, value_name = "HEX")]
        expect_digest: Option<String>,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        tree: TreeArgs,
        #[command(flatten)]
        out: RunArgs,
    },
    /// Check a cipher directory without writing anything: authenticate every name, symlink
    /// target, encrypted extended attribute and content block, and apply the checks decrypt
    /// applies (gocryptfs.diriv and long-name files, duplicate names, file types). Exit code
    /// 6 when any entry fails.
    ///
    /// It cannot tell whether whole files were swapped between paths, rolled back to older
    /// versions, deleted or added, or cut at a block boundary: the format does not protect
    /// that (the model digest does: `coffer model digest`, `decrypt --expect-digest`).
    /// All-zero blocks pass as holes unless --strict.
    Verify {
        /// The cipher directory (holds gocryptfs.conf).
        cipher_dir: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        /// Refuse all-zero (hole) blocks in regular files.
        #[arg(long)]
        strict: bool,
        #[command(flatten)]
        out: RunArgs,
    },
    /// Print the model digest of a cipher directory (made by `coffer model encrypt` or by
    /// the real gocryptfs): SHA-256 over every entry's name, every file's ID and size and
    /// the authentication tag of each of its blocks. Every block is authenticated on the
    /// way; nothing is written. Exit code 6 when any entry fails.
    Digest {
        /// The cipher directory (holds gocryptfs.conf).
        cipher_dir: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        out: RunArgs,
    },
}

/// How a model command runs and reports.
#[derive(Args)]
pub(crate) struct RunArgs {
    /// Print a JSON summary on stdout (implies no progress bar).
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    /// Worker threads [default: two per core, so reads from a cold disk overlap decryption].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
}

impl RunArgs {
    fn options(&self, tree: DecryptOptions) -> RunOptions {
        RunOptions {
            threads: self
                .threads
                .map_or_else(coffer::model::default_threads, usize::from),
            tree,
        }
    }

    /// The progress display for a run over `totals` (hidden with --quiet or --json).
    fn bar(&self, totals: TreeTotals) -> TreeBar {
        TreeBar::new(totals, self.quiet || self.json)
    }
}

/// Progress display for a tree run: bytes, files done of total, throughput; driven by the
/// tree engine's [`Progress`] reports.
struct TreeBar {
    bar: indicatif::ProgressBar,
    files_total: u64,
    files_done: AtomicU64,
}

impl TreeBar {
    fn new(totals: TreeTotals, hidden: bool) -> Self {
        let bar = if hidden {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new(totals.bytes)
        };
        // The template is a constant that parses; the plain bar is only a fallback.
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(format!("0/{} files", totals.files));
        TreeBar {
            bar,
            files_total: totals.files,
            files_done: AtomicU64::new(0),
        }
    }

    fn update(&self, p: Progress) {
        match p {
            Progress::Bytes(n) => self.bar.inc(n),
            Progress::FileDone => {
                let done = self.files_done.fetch_add(1, Ordering::Relaxed) + 1;
                self.bar
                    .set_message(format!("{done}/{} files", self.files_total));
            }
        }
    }
}

impl Drop for TreeBar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// Verifies `cipher_dir` with a progress bar.
fn verify(
    cipher_dir: &Path,
    key: KeySource,
    out: &RunArgs,
    tree: DecryptOptions,
) -> Result<RunReport, ClientError> {
    let bar = out.bar(TreeTotals::of_cipher(cipher_dir));
    coffer::model::verify(cipher_dir, key, out.options(tree), &|p| bar.update(p))
}

/// What `decrypt` creates beyond regular files, directories and symlinks (none of it is
/// authenticated by gocryptfs, so each is opt-in).
#[derive(Args)]
pub(crate) struct TreeArgs {
    /// Also create FIFOs, sockets and device nodes found in the tree (modes still masked).
    #[arg(long)]
    special_files: bool,
    /// Copy user extended attributes and POSIX ACLs onto the output.
    #[arg(long)]
    xattrs: bool,
    /// Refuse all-zero (hole) blocks in regular files.
    #[arg(long)]
    strict: bool,
}

impl TreeArgs {
    fn options(&self) -> DecryptOptions {
        DecryptOptions {
            special_files: self.special_files,
            xattrs: self.xattrs,
            strict: self.strict,
        }
    }
}

/// Where the model key comes from (exactly one).
#[derive(Args)]
pub(crate) struct KeyArgs {
    /// File whose first line is the gocryptfs password.
    #[arg(long, group = "keysource")]
    password_file: Option<PathBuf>,
    /// The master key in hex (dashes allowed), as gocryptfs -init printed it. Visible to
    /// every process in the argument list: prefer --masterkey-file or $COFFER_MASTERKEY
    /// (used when no other key source is given).
    #[arg(long, group = "keysource")]
    masterkey: Option<String>,
    /// File holding the master key in hex (first line).
    #[arg(long, group = "keysource")]
    masterkey_file: Option<PathBuf>,
    /// Fetch the password from the KBS at --url after attesting (kbs:///repo/type/tag);
    /// it never touches disk.
    #[arg(long, group = "keysource")]
    key: Option<ResourcePath>,
    /// With --key: take the resource from the confidential-containers guest's Confidential
    /// Data Hub REST API at URL (there: http://127.0.0.1:8006), which attests for the pod,
    /// instead of attesting here.
    #[arg(long, conflicts_with_all = ["password_file", "masterkey"], value_name = "URL")]
    cdh: Option<String>,
    #[command(flatten)]
    tee: TeeArgs,
}

/// What `verify` cannot tell, printed after its summary (the format does not protect it).
const VERIFY_LIMITS: &str = "checked: names, symlink targets, encrypted xattrs, every content block (holes pass unless --strict); \
not checkable from the format: whole files swapped between paths, rolled back, deleted or added, or cut at a 4 KiB block boundary \
(compare `coffer model digest` with the digest `coffer model encrypt` printed, or decrypt with --expect-digest)";

/// Environment variable holding the master key in hex (when no key option is given).
pub(crate) const MASTERKEY_ENV: &str = "COFFER_MASTERKEY";

fn master_key(hex: &[u8], from: &str) -> anyhow::Result<KeySource> {
    let line = password_from_bytes(hex);
    let text = std::str::from_utf8(&line)
        .ok()
        .map(str::trim)
        .with_context(|| format!("{from}: expected 64 hex digits"))?;
    // The message names the source only: the key itself never goes into an error.
    Ok(KeySource::MasterKey(
        MasterKey::from_hex(text).with_context(|| format!("{from}: expected 64 hex digits"))?,
    ))
}

async fn key_source(cli: &Cli, http: reqwest::Client, k: &KeyArgs) -> anyhow::Result<KeySource> {
    if let Some(f) = &k.masterkey_file {
        let bytes = Zeroizing::new(
            std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?,
        );
        return master_key(&bytes, &format!("--masterkey-file {}", f.display()));
    }
    Ok(match (&k.password_file, &k.masterkey, &k.key) {
        (Some(f), ..) => KeySource::Password(password_from_bytes(&Zeroizing::new(
            std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?,
        ))),
        (_, Some(hex), _) => master_key(hex.as_bytes(), "--masterkey")?,
        (_, _, Some(path)) => {
            let secret = match &k.cdh {
                Some(cdh) => coffer::cdh::get_resource(&http, cdh, path).await?,
                None => tee_client(cli, http, &k.tee)?.get_resource(path).await?,
            };
            KeySource::Password(password_from_bytes(&secret))
        }
        _ => match std::env::var_os(MASTERKEY_ENV) {
            Some(v) => master_key(
                &Zeroizing::new(v.into_encoded_bytes()),
                &format!("${MASTERKEY_ENV}"),
            )?,
            None => bail!(
                "give --password-file, --masterkey-file, --masterkey, --key or ${MASTERKEY_ENV}"
            ),
        },
    })
}

/// Runs one `coffer model` command.
pub(crate) async fn run(
    cli: &Cli,
    http: reqwest::Client,
    cmd: &ModelCommand,
) -> anyhow::Result<()> {
    match cmd {
        ModelCommand::Verify {
            cipher_dir,
            key,
            strict,
            out,
        } => {
            let source = key_source(cli, http, key).await?;
            let tree = DecryptOptions {
                strict: *strict,
                ..DecryptOptions::default()
            };
            let report = verify(cipher_dir, source, out, tree)?;
            print_report("authenticated", &report, out.json)?;
            if !out.json {
                eprintln!("{VERIFY_LIMITS}");
            }
            report.into_result()?;
        }
        ModelCommand::Encrypt {
            src,
            cipher_dir,
            password_file,
            scryptn,
            out,
        } => {
            let pw = password_from_bytes(&Zeroizing::new(
                std::fs::read(password_file)
                    .with_context(|| format!("cannot read {}", password_file.display()))?,
            ));
            let bar = out.bar(TreeTotals::of_plain(src));
            let report = coffer::model::encrypt(
                src,
                cipher_dir,
                &pw,
                *scryptn,
                out.options(DecryptOptions::default()),
                &|p| bar.update(p),
            )?;
            drop(bar);
            print_report("encrypted", &report, out.json)?;
            let report = report.into_result()?;
            print_digest(&report, out.json);
        }
        ModelCommand::Digest {
            cipher_dir,
            key,
            out,
        } => {
            let source = key_source(cli, http, key).await?;
            let report = verify(cipher_dir, source, out, DecryptOptions::default())?;
            print_report("authenticated", &report, out.json)?;
            let report = report.into_result()?;
            print_digest(&report, out.json);
        }
        ModelCommand::Decrypt {
            cipher_dir,
            dest,
            expect_digest,
            key,
            tree,
            out,
        } => {
            let expected = expect_digest
                .as_deref()
                .map(|h| {
                    ModelDigest::from_hex(h)
                        .with_context(|| format!("--expect-digest {h}: expected 64 hex digits"))
                })
                .transpose()?;
            let created = !dest.exists();
            if expected.is_some()
                && !coffer::model::is_empty_or_missing(dest)
                    .with_context(|| dest.display().to_string())?
            {
                bail!(
                    "{} is not empty: --expect-digest needs an empty or new destination, so that a mismatch can remove everything written",
                    dest.display()
                );
            }
            let source = key_source(cli, http, key).await?;
            let bar = out.bar(TreeTotals::of_cipher(cipher_dir));
            let report = coffer::model::decrypt(
                cipher_dir,
                dest,
                source,
                out.options(tree.options()),
                &|p| bar.update(p),
            )?;
            drop(bar);
            let wipe = || {
                let _ = coffer::model::remove_contents(dest);
                if created {
                    let _ = std::fs::remove_dir(dest);
                }
            };
            if let Some(want) = expected {
                let s = &report.summary;
                if !s.failures.is_empty() {
                    wipe();
                } else if s.digest != Some(want) {
                    wipe();
                    // Without failures the run computed a digest; all zeros never matches.
                    return Err(ClientError::DigestMismatch {
                        tree: cipher_dir.clone(),
                        expected: want,
                        actual: s.digest.unwrap_or(ModelDigest([0; 32])),
                    }
                    .into());
                }
            }
            print_report("decrypted", &report, out.json)?;
            report.into_result()?;
        }
    }
    Ok(())
}

/// Prints the summary: the report as JSON on stdout, or a line and every skipped and
/// failed entry on stderr. Failed entries are then an error of the caller's
/// ([`RunReport::into_result`], exit code 6).
fn print_report(verb: &str, report: &RunReport, json: bool) -> anyhow::Result<()> {
    let s = &report.summary;
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        eprintln!(
            "{verb} {} files, {} dirs, {} symlinks, {} special files, {} bytes in {:.2} s ({:.0} MB/s)",
            s.files, s.dirs, s.symlinks, s.special, s.bytes, report.seconds, report.mb_per_s
        );
        for k in &s.skipped {
            eprintln!("SKIPPED {}: {}", k.cipher_path.display(), k.reason);
        }
        for f in &s.failures {
            eprintln!("FAILED {}: {}", f.cipher_path.display(), f.error);
        }
    }
    Ok(())
}

/// Prints the model digest on stdout (the JSON summary already carries it).
fn print_digest(report: &RunReport, json: bool) {
    if let (Some(d), false) = (report.summary.digest, json) {
        println!("{d}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_keys_are_read_from_the_first_line_and_never_echoed() {
        let hex = "fd890dab-86bf61cf-ec5ad460-ad3ed01f-9c52d546-2a31783d-a56b088d-3d05232e";
        let ok = master_key(format!("{hex}\n").as_bytes(), "--masterkey-file k").unwrap();
        assert!(matches!(ok, KeySource::MasterKey(_)));
        let bad = "fd890dab-86bf61cf-ec5ad460-NOT-HEX";
        let e = master_key(bad.as_bytes(), "$COFFER_MASTERKEY")
            .err()
            .unwrap();
        let shown = format!("{e:#}");
        assert!(shown.contains("$COFFER_MASTERKEY"), "{shown}");
        assert!(!shown.contains("fd890dab"), "{shown}");
    }
}
