//! `coffer model ...`: encrypt, decrypt and verify gocryptfs model trees.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use coffer::model::{password_from_bytes, KeySource, RunOptions};
use coffer_cryptfs::MasterKey;
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
    Decrypt {
        /// The cipher directory (holds gocryptfs.conf).
        cipher_dir: PathBuf,
        /// Destination directory (created if missing).
        dest: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        out: RunArgs,
    },
    /// Authenticate every name, symlink and content block without writing plaintext;
    /// report every corrupt entry. Exit code 6 when any entry fails.
    Verify {
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
    fn options(&self) -> RunOptions {
        RunOptions {
            quiet: self.quiet || self.json,
            threads: self
                .threads
                .map_or_else(coffer::model::default_threads, usize::from),
        }
    }
}

/// Where the model key comes from (exactly one).
#[derive(Args)]
pub(crate) struct KeyArgs {
    /// File whose first line is the gocryptfs password.
    #[arg(long, group = "keysource", required = true)]
    password_file: Option<PathBuf>,
    /// The master key in hex (dashes allowed), as gocryptfs -init printed it.
    #[arg(long, group = "keysource")]
    masterkey: Option<String>,
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

async fn key_source(cli: &Cli, http: reqwest::Client, k: &KeyArgs) -> anyhow::Result<KeySource> {
    Ok(match (&k.password_file, &k.masterkey, &k.key) {
        (Some(f), ..) => KeySource::Password(password_from_bytes(&Zeroizing::new(
            std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?,
        ))),
        (_, Some(hex), _) => KeySource::MasterKey(
            MasterKey::from_hex(hex).context("--masterkey: expected 64 hex digits")?,
        ),
        (_, _, Some(path)) => {
            let secret = match &k.cdh {
                Some(cdh) => coffer::cdh::get_resource(&http, cdh, path).await?,
                None => tee_client(cli, http, &k.tee)?.get_resource(path).await?,
            };
            KeySource::Password(password_from_bytes(&secret))
        }
        _ => bail!("give --password-file, --masterkey or --key"),
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
            out,
        } => {
            let source = key_source(cli, http, key).await?;
            let report = coffer::model::decrypt(cipher_dir, None, source, out.options())?;
            print_report("verified", &report, out.json)?;
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
            let report = coffer::model::encrypt(src, cipher_dir, &pw, *scryptn, out.options())?;
            print_report("encrypted", &report, out.json)?;
        }
        ModelCommand::Decrypt {
            cipher_dir,
            dest,
            key,
            out,
        } => {
            let source = key_source(cli, http, key).await?;
            let report = coffer::model::decrypt(cipher_dir, Some(dest), source, out.options())?;
            print_report("decrypted", &report, out.json)?;
        }
    }
    Ok(())
}

/// Prints the summary; fails (exit code 6) when any entry failed.
fn print_report(verb: &str, report: &coffer::model::RunReport, json: bool) -> anyhow::Result<()> {
    let s = &report.summary;
    let rate = s.bytes as f64 / report.seconds.max(1e-9) / 1e6;
    if json {
        println!(
            "{}",
            serde_json::json!({"files": s.files, "dirs": s.dirs, "symlinks": s.symlinks, "special": s.special, "bytes": s.bytes,
                "seconds": report.seconds, "mb_per_s": rate, "failures": s.failures})
        );
    } else {
        eprintln!(
            "{verb} {} files, {} dirs, {} symlinks, {} special files, {} bytes in {:.2} s ({rate:.0} MB/s)",
            s.files, s.dirs, s.symlinks, s.special, s.bytes, report.seconds
        );
        for f in &s.failures {
            eprintln!("FAILED {}: {}", f.cipher_path.display(), f.error);
        }
    }
    if s.failures.is_empty() {
        Ok(())
    } else {
        Err(anyhow::Error::new(ModelFailures(s.failures.len())))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0} entries failed")]
pub(crate) struct ModelFailures(usize);
