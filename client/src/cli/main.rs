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
use coffer::evidence::{self, TeeChoice};
use coffer::exit::Exit;
use coffer::{http_client, ClientError, KbsClient};
use coffer_protocol::jwe::JweShape;
use coffer_protocol::jwk::RsaAlg;
use coffer_protocol::{ProtocolVersion, ResourcePath, Tee, TeeKeyPair};

use admin::AdminArgs;
use model::ModelCommand;
use policy::PolicyCommand;

/// coffer: keep models encrypted everywhere except inside an attested confidential VM.
#[derive(Parser)]
#[command(name = "coffer", version, after_help = Exit::help())]
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

/// `--tee` values: `auto` and the TEEs this client collects evidence for
/// ([`coffer::evidence::SUPPORTED`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum CliTee {
    /// TDX when this is a TD (configfs-tsm or /dev/tdx_guest present), else `sample`.
    Auto,
    /// Intel TDX: a quote from configfs-tsm or the legacy guest device.
    Tdx,
    /// No hardware (development only; production policies refuse it).
    Sample,
}

impl From<CliTee> for TeeChoice {
    fn from(t: CliTee) -> Self {
        match t {
            CliTee::Auto => TeeChoice::Auto,
            CliTee::Tdx => TeeChoice::Only(Tee::Tdx),
            CliTee::Sample => TeeChoice::Only(Tee::Sample),
        }
    }
}

/// `--gpu` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum GpuEvidence {
    /// Every NVIDIA GPU in confidential-computing mode the driver lists.
    Auto,
    /// None.
    Off,
}

#[derive(Args)]
struct TeeArgs {
    /// Evidence type.
    #[arg(long, value_enum, default_value = "auto", env = "COFFER_TEE")]
    tee: CliTee,
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
    #[arg(long, value_enum, default_value = "auto", env = "COFFER_GPU")]
    gpu: GpuEvidence,
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
        evidence::provider(tee.tee.into(), &tdx_paths(tee))?,
        key,
    )
    .with_protocol_version(version);
    let client = if tee.gpu == GpuEvidence::Auto {
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

/// The exit code for a failed run: the [`ClientError`] in it decides
/// ([`ClientError::exit`]); anything else is a local error.
fn exit_code(e: &anyhow::Error) -> Exit {
    e.downcast_ref::<ClientError>()
        .map_or(Exit::Failure, ClientError::exit)
}

/// The error and its causes on one line, each cause once: typed errors keep their cause
/// as a source and often show it in their own message too.
fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
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
            eprintln!("coffer: {}", message(&e));
            exit_code(&e).into()
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
    fn exit_codes_are_in_help_and_typed_errors_choose_them() {
        use super::{exit_code, message, Exit};
        use clap::CommandFactory;
        let help = super::Cli::command().render_long_help().to_string();
        for e in Exit::ALL {
            let line = format!("{:>2}  {}", e.code(), e.meaning());
            assert!(help.contains(&line), "{line:?} missing from --help: {help}");
        }
        let tee = anyhow::Error::new(coffer::ClientError::NoTee("nothing".into()))
            .context("tee")
            .context("launch");
        assert_eq!(exit_code(&tee), Exit::NoTee);
        assert_eq!(exit_code(&anyhow::anyhow!("bad file")), Exit::Failure);
        let denied = anyhow::Error::new(coffer::ClientError::PolicyDenies {
            resource: "a/b/c".into(),
        });
        assert_eq!(exit_code(&denied), Exit::Refused);
        // A cause repeated in its wrapper's message is shown once.
        let io = std::io::Error::other("disk on fire");
        let wrapped = anyhow::Error::new(coffer_cryptfs::TreeError::Io {
            path: "/m".into(),
            source: io,
        })
        .context("decrypt");
        assert_eq!(message(&wrapped), "decrypt: /m: disk on fire");
    }

    #[test]
    fn tee_and_gpu_values_are_parsed_and_listed() {
        use clap::{CommandFactory, Parser};
        let cli = super::Cli::try_parse_from(["coffer", "attest", "--tee", "tdx"]).unwrap();
        let super::Command::Attest { tee } = cli.cmd else {
            panic!("not attest")
        };
        assert_eq!(
            coffer::evidence::TeeChoice::from(tee.tee),
            coffer::evidence::TeeChoice::Only(coffer_protocol::Tee::Tdx)
        );
        assert_eq!(tee.gpu, super::GpuEvidence::Auto);
        for bad in [["--tee", "snp"], ["--gpu", "on"]] {
            let e = super::Cli::try_parse_from(["coffer", "attest", bad[0], bad[1]])
                .err()
                .unwrap();
            assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue, "{bad:?}");
        }
        let mut cmd = super::Cli::command();
        let attest = cmd.find_subcommand_mut("attest").unwrap();
        let help = attest.render_long_help().to_string();
        for v in ["auto", "tdx", "sample", "off"] {
            assert!(help.contains(v), "{v} missing: {help}");
        }
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
