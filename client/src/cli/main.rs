//! `coffer` CLI: attest to a KBS, fetch secrets, administer coffer-server, work with
//! encrypted models and test policies. The command groups live in their own modules; the
//! work itself is in the `coffer` library.

mod admin;
mod launch;
mod model;
mod policy;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use coffer::{evidence, http_client, ClientError, KbsClient};
use coffer_protocol::jwe::JweShape;
use coffer_protocol::jwk::RsaAlg;
use coffer_protocol::{ProtocolVersion, ResourcePath, TeeKeyPair};

use admin::AdminArgs;
use model::ModelCommand;
use policy::PolicyCommand;

/// coffer: keep models encrypted everywhere except inside an attested confidential VM.
///
/// Exit codes: 0 success, 1 local error (files, keys, arguments), 2 usage,
/// 3 refused by the KBS (attestation or policy) or by a policy under `policy test`,
/// 4 not found, 5 KBS (or Confidential Data Hub) unreachable or failing, 6 some model
/// files failed to decrypt (tampered or corrupt ciphertext), 7 wrong model key, 8 not
/// enough space for the plaintext, 9 model digest mismatch, 10 no TEE (`launch`).
/// `coffer launch` becomes the service's script on success: its exit code is the script's.
#[derive(Parser)]
#[command(name = "coffer", version)]
struct Cli {
    /// KBS base URL (coffer-server or Trustee's KBS).
    #[arg(
        long,
        global = true,
        env = "COFFER_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    /// Extra PEM root certificate for an HTTPS KBS.
    #[arg(long, global = true, env = "COFFER_CERT_FILE")]
    cert_file: Option<PathBuf>,
    /// KBS protocol version to speak (for older KBSes). 0.1.x uses an RSA-2048 TEE key
    /// with RSA1_5 and the legacy JWE; 0.1.0 sends the evidence as a JSON string.
    #[arg(
        long,
        global = true,
        env = "COFFER_PROTOCOL_VERSION",
        value_enum,
        default_value = "0.4.0"
    )]
    protocol_version: CliProtocolVersion,
    #[command(subcommand)]
    cmd: Command,
}

/// `--protocol-version` values (clap needs its own enum; the protocol crate has no clap).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum CliProtocolVersion {
    /// Trustee ≤ v0.9.0, Alibaba Trustee ≤ v1.5 (PAI-EAS).
    #[value(name = "0.1.0")]
    V010,
    /// Trustee v0.10 – v0.11.
    #[value(name = "0.1.1")]
    V011,
    /// Trustee v0.12 – v0.13.
    #[value(name = "0.2.0")]
    V020,
    /// Trustee main of June 2025 (composite evidence).
    #[value(name = "0.3.0")]
    V030,
    /// Trustee v0.14 on, Alibaba Trustee v1.6 on.
    #[value(name = "0.4.0")]
    V040,
}

impl From<CliProtocolVersion> for ProtocolVersion {
    fn from(v: CliProtocolVersion) -> Self {
        match v {
            CliProtocolVersion::V010 => ProtocolVersion::V0_1_0,
            CliProtocolVersion::V011 => ProtocolVersion::V0_1_1,
            CliProtocolVersion::V020 => ProtocolVersion::V0_2_0,
            CliProtocolVersion::V030 => ProtocolVersion::V0_3_0,
            CliProtocolVersion::V040 => ProtocolVersion::V0_4_0,
        }
    }
}

#[derive(Args)]
struct TeeArgs {
    /// Evidence type: `auto` (TDX when this is a TD, else `sample`), `tdx` or `sample`.
    #[arg(long, default_value = "auto", env = "COFFER_TEE")]
    tee: String,
    /// configfs-tsm report directory (TDX quotes).
    #[arg(long, env = "COFFER_TSM_REPORT_DIR", default_value = coffer::tdx::TSM_REPORT_DIR)]
    tsm_report_dir: PathBuf,
    /// CC event log area (sent with TDX evidence when present).
    #[arg(long, env = "COFFER_CCEL", default_value = coffer::tdx::CCEL_PATH)]
    ccel: PathBuf,
    /// Attestation-Agent runtime event log (appended to the CC event log when present).
    #[arg(long, env = "AAEL_PATH", default_value = coffer::tdx::AAEL_PATH)]
    aael: PathBuf,
    /// Init-data TOML sent with the evidence (the TD's MRCONFIGID must carry its digest).
    #[arg(long, env = "COFFER_INITDATA")]
    initdata: Option<PathBuf>,
    /// Legacy TDX guest device, used with the host's QGS over vsock when configfs-tsm is absent.
    #[arg(long, env = "COFFER_TDX_GUEST", default_value = coffer::tdx::TDX_GUEST_DEV)]
    tdx_guest: PathBuf,
    /// PKCS#8 PEM private key to use as the TEE key (default: a fresh P-256 key, or RSA-2048
    /// for protocol 0.1.x, which must be RSA).
    #[arg(long)]
    tee_key_file: Option<PathBuf>,
    /// GPU evidence: `auto` sends a report and certificate chain for every NVIDIA GPU in
    /// confidential-computing mode the driver (NVML) lists (none without the driver);
    /// `off` sends none.
    #[arg(long, default_value = "auto", env = "COFFER_GPU", value_parser = ["auto", "off"])]
    gpu: String,
}

#[derive(Subcommand)]
enum Command {
    /// Attest, then fetch a resource (`repo/type/tag` or `kbs:///repo/type/tag`).
    GetResource {
        /// Resource path or kbs:/// URI.
        path: ResourcePath,
        /// Write the secret to this file (mode 0600) instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Print base64 instead of raw bytes (what Trustee's kbs-client prints).
        #[arg(long)]
        base64: bool,
        #[command(flatten)]
        tee: TeeArgs,
    },
    /// Run the attestation handshake and print the attestation token (EAR JWT).
    Attest {
        #[command(flatten)]
        tee: TeeArgs,
    },
    /// Administer coffer-server (admin token required).
    Admin(AdminArgs),
    /// Work with gocryptfs-encrypted model directories.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Run a PAI-EAS service JSON: attest to its trustee_endpoint, fetch its
    /// decryption_key, decrypt its gocryptfs storage into mount_path, record the model
    /// digest in the TD's measurements (AAEL + RTMR3), then exec the container's script.
    ///
    /// One timed line per step on stderr. Exit codes of failed steps: 3 policy refusal,
    /// 5 KBS unreachable (after --retries), 6 tampered ciphertext, 7 wrong key, 8 no space,
    /// 9 digest mismatch, 10 no TEE; nothing decrypted stays in mount_path. On success the
    /// process becomes the script (same pid, signals and exit code are the script's).
    Launch(launch::LaunchArgs),
    /// Work with Rego policies locally (nothing is sent to a server).
    #[command(subcommand)]
    Policy(PolicyCommand),
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn tee_client(cli: &Cli, http: reqwest::Client, tee: &TeeArgs) -> anyhow::Result<KbsClient> {
    tee_client_for(cli, http, tee, &cli.url)
}

/// The TD interfaces named by `tee`.
fn tdx_paths(tee: &TeeArgs) -> coffer::tdx::TdxPaths {
    coffer::tdx::TdxPaths {
        tsm_report_dir: tee.tsm_report_dir.clone(),
        ccel: tee.ccel.clone(),
        aael: tee.aael.clone(),
        tdx_guest: tee.tdx_guest.clone(),
    }
}

/// A KBS client for the KBS at `url` with the evidence and key `tee` selects.
fn tee_client_for(
    cli: &Cli,
    http: reqwest::Client,
    tee: &TeeArgs,
    url: &str,
) -> anyhow::Result<KbsClient> {
    let version = ProtocolVersion::from(cli.protocol_version);
    // 0.1.x KBSes wrap the secret with RSA PKCS#1 v1.5 and nothing else.
    let legacy = version.jwe_shape() == JweShape::Legacy;
    let key = match (&tee.tee_key_file, legacy) {
        (Some(p), false) => {
            TeeKeyPair::from_pkcs8_pem(&read_text(p)?).with_context(|| p.display().to_string())?
        }
        (Some(p), true) => TeeKeyPair::from_pkcs8_pem(&read_text(p)?)
            .and_then(|k| k.with_rsa_alg(RsaAlg::Rsa1_5))
            .with_context(|| format!("{} (protocol {version})", p.display()))?,
        (None, false) => TeeKeyPair::generate(),
        (None, true) => TeeKeyPair::generate_rsa(2048, RsaAlg::Rsa1_5)?,
    };
    let client = KbsClient::new(
        http,
        url,
        evidence::provider(&tee.tee, &tdx_paths(tee))?,
        key,
    )
    .with_protocol_version(version);
    let client = if tee.gpu == "auto" {
        client.with_gpus(Box::new(coffer::gpu::NvmlDevices))
    } else {
        client
    };
    Ok(match &tee.initdata {
        Some(p) => client.with_init_data(read_text(p)?),
        None => client,
    })
}

/// Writes `bytes` to `path` with mode 0600: into a new file under an unpredictable name
/// beside it (`O_EXCL | O_NOFOLLOW`, so a planted file or symlink is never opened or
/// followed), then renamed over `path` (which replaces an existing entry, a symlink
/// included, instead of writing through it).
fn write_secret(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use rand::RngCore;
    let name = path
        .file_name()
        .with_context(|| format!("{}: not a file name", path.display()))?;
    let mut suffix = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut suffix);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.coffer-tmp", hex::encode(suffix)));
    let tmp = path.with_file_name(tmp_name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let done = f
        .write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))
        .and_then(|_| {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
        });
    if done.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    done
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let ca = match &cli.cert_file {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?),
        None => None,
    };
    let http = http_client(ca.as_deref())?;
    match &cli.cmd {
        Command::GetResource {
            path,
            output,
            base64,
            tee,
        } => {
            let mut client = tee_client(&cli, http, tee)?;
            let secret = client.get_resource(path).await?;
            match output {
                Some(p) => write_secret(p, &secret)?,
                None if *base64 => println!("{}", coffer_protocol::b64::std_encode(&secret[..])),
                None => std::io::stdout()
                    .write_all(&secret)
                    .context("cannot write to stdout")?,
            }
        }
        Command::Attest { tee } => {
            let mut client = tee_client(&cli, http, tee)?;
            println!("{}", client.attest().await?);
        }
        Command::Admin(a) => admin::run(&cli, http, a).await?,
        Command::Policy(PolicyCommand::Test(t)) => policy::test(&cli, http, t).await?,
        Command::Model(m) => model::run(&cli, http, m).await?,
        Command::Launch(a) => launch::run(&cli, http, a).await?,
    }
    Ok(())
}

fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<model::ModelFailures>().is_some()
        || e.downcast_ref::<launch::Tampered>().is_some()
    {
        return 6;
    }
    if e.downcast_ref::<model::DigestMismatch>().is_some() {
        return 9;
    }
    if e.downcast_ref::<launch::NoTee>().is_some() {
        return 10;
    }
    if e.downcast_ref::<policy::PolicyDenies>().is_some() {
        return 3;
    }
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Kbs { status: 404, .. }) => 4,
        Some(ClientError::Kbs {
            status: 401 | 403, ..
        }) => 3,
        Some(ClientError::Cdh { status: 404, .. }) => 4,
        Some(ClientError::Cdh {
            status: 401 | 403, ..
        }) => 3,
        Some(ClientError::WrongKey(_)) => 7,
        Some(ClientError::NoSpace(_)) => 8,
        Some(
            ClientError::Kbs { .. }
            | ClientError::Transport { .. }
            | ClientError::Protocol(_)
            | ClientError::Cdh { .. }
            | ClientError::CdhUnreachable { .. },
        ) => 5,
        _ => 1,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coffer: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    /// `-o FILE` never writes through a symlink planted at FILE or at the temporary name the
    /// previous version used (`FILE.coffer-tmp`), and leaves FILE private.
    #[test]
    fn secrets_are_not_written_through_planted_symlinks() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let out = t.path().join("secret.bin");
        std::os::unix::fs::symlink(&victim, &out).unwrap();
        std::os::unix::fs::symlink(&victim, t.path().join("secret.coffer-tmp")).unwrap();
        super::write_secret(&out, b"s3cret").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        let meta = std::fs::symlink_metadata(&out).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&out).unwrap(), b"s3cret");
        let names: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 3, "no temporary left: {names:?}");
    }

    #[test]
    fn cli_definition_is_valid() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    #[test]
    fn protocol_versions_are_listed_and_default_to_the_newest() {
        use clap::{CommandFactory, Parser};
        let help = super::Cli::command().render_long_help().to_string();
        for v in ["0.1.0", "0.1.1", "0.2.0", "0.3.0", "0.4.0"] {
            assert!(help.contains(v), "{v} missing from --help: {help}");
        }
        let cli = super::Cli::try_parse_from(["coffer", "attest"]).unwrap();
        assert_eq!(
            coffer_protocol::ProtocolVersion::from(cli.protocol_version),
            coffer_protocol::ProtocolVersion::V0_4_0
        );
        let cli = super::Cli::try_parse_from(["coffer", "attest", "--protocol-version", "0.1.0"])
            .unwrap();
        assert_eq!(
            coffer_protocol::ProtocolVersion::from(cli.protocol_version),
            coffer_protocol::ProtocolVersion::V0_1_0
        );
        assert!(
            super::Cli::try_parse_from(["coffer", "--protocol-version", "0.5.0", "attest"])
                .is_err()
        );
    }
}
