//! `coffer` CLI: attest to a KBS, fetch secrets, administer coffer-server.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use coffer::admin::{mint_admin_token, AdminClient};
use coffer::model::{password_from_bytes, KeySource};
use coffer::{evidence, http_client, ClientError, KbsClient};
use coffer_cryptfs::MasterKey;
use coffer_policy::defaults;
use coffer_protocol::{ResourcePath, TeeKeyPair};
use zeroize::Zeroizing;

/// coffer: keep models encrypted everywhere except inside an attested confidential VM.
///
/// Exit codes: 0 success, 1 local error (files, keys, arguments), 2 usage,
/// 3 refused by the KBS (attestation or policy) or by a policy under `policy test`,
/// 4 not found, 5 KBS unreachable or failing, 6 some model files failed to decrypt.
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
    #[command(subcommand)]
    cmd: Command,
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
    /// PKCS#8 PEM private key to use as the TEE key (default: a fresh P-256 key).
    #[arg(long)]
    tee_key_file: Option<PathBuf>,
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
    /// Work with Rego policies locally (nothing is sent to a server).
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Evaluate an attestation and/or a resource policy on recorded evidence, with the same
    /// engine coffer-server runs, before uploading them.
    ///
    /// The input is what `coffer attest` printed (an EAR token; its signature is not
    /// checked), the token's claims as JSON, or annotated evidence JSON. With
    /// --attestation-policy the evidence is appraised afresh and a resource policy sees the
    /// resulting token; without it, the resource policy sees the recorded token.
    ///
    /// Exit codes: 0 evaluated (and the resource allowed), 3 the resource policy denies,
    /// 1 unreadable input or a policy that does not compile or evaluate.
    ///
    /// Example: coffer attest > token.jwt && coffer policy test --input token.jwt
    /// --attestation-policy my_cpu.rego --reference-values rv.json
    /// --resource-policy my_resource.rego --resource default/aliyun/model-decryption-key
    #[command(verbatim_doc_comment)]
    Test(PolicyTestArgs),
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("policies").required(true).multiple(true)))]
struct PolicyTestArgs {
    /// Recorded input: token, token claims or annotated evidence (`-` for stdin).
    #[arg(long)]
    input: PathBuf,
    /// Attestation (appraisal) policy to evaluate, as uploaded with set-attestation-policy.
    #[arg(long, group = "policies")]
    attestation_policy: Option<PathBuf>,
    /// Reference values for the attestation policy: a JSON object of name -> value, as
    /// registered with `admin set-reference-value NAME VALUE`.
    #[arg(long, requires = "attestation_policy")]
    reference_values: Option<PathBuf>,
    /// Resource policy to evaluate, as uploaded with set-resource-policy.
    #[arg(long, group = "policies", requires = "resource")]
    resource_policy: Option<PathBuf>,
    /// The requested resource (`repo/type/tag` or kbs:/// URI) the resource policy sees.
    #[arg(long, requires = "resource_policy")]
    resource: Option<ResourcePath>,
    /// Query parameters of the request, as the policy sees them in data.query.
    #[arg(long = "query", value_name = "KEY=VALUE")]
    query: Vec<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum ModelCommand {
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
        /// Print a JSON summary on stdout.
        #[arg(long)]
        json: bool,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
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
        /// Print a JSON summary on stdout.
        #[arg(long)]
        json: bool,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Authenticate every name, symlink and content block without writing plaintext;
    /// report every corrupt entry. Exit code 6 when any entry fails.
    Verify {
        /// The cipher directory (holds gocryptfs.conf).
        cipher_dir: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        /// Print a JSON summary on stdout.
        #[arg(long)]
        json: bool,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
}

/// Where the model key comes from (exactly one).
#[derive(Args)]
struct KeyArgs {
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
            let mut client = tee_client(cli, http, &k.tee)?;
            KeySource::Password(password_from_bytes(&client.get_resource(path).await?))
        }
        _ => bail!("give --password-file, --masterkey or --key"),
    })
}

#[derive(Args)]
struct AdminArgs {
    /// Ed25519 admin private key (PEM); a short-lived token is minted from it per call.
    #[arg(long, env = "COFFER_ADMIN_KEY", conflicts_with = "token_file")]
    key: Option<PathBuf>,
    /// File holding a ready admin token (e.g. one made with `coffer admin token`).
    #[arg(long, env = "COFFER_ADMIN_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// `iss` of minted tokens (must match the server's admin.issuer).
    #[arg(long, default_value = "coffer")]
    issuer: String,
    /// `aud` of minted tokens (must match the server's admin.audience).
    #[arg(long, default_value = "kbs")]
    audience: String,
    #[command(subcommand)]
    cmd: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Print an admin token (for Trustee's kbs-client `--admin-token-file`, or scripts).
    Token {
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
    },
    /// Store a resource from a file.
    SetResource {
        /// Resource path.
        path: ResourcePath,
        /// File with the resource bytes.
        #[arg(long)]
        file: PathBuf,
    },
    /// Delete a resource.
    DeleteResource {
        /// Resource path.
        path: ResourcePath,
    },
    /// Upload an attestation (appraisal) policy.
    SetAttestationPolicy {
        /// Rego file.
        #[arg(long)]
        file: PathBuf,
        /// Policy id; `default_cpu` is the one applied to CPU TEEs.
        #[arg(long, default_value = "default_cpu")]
        id: String,
    },
    /// Upload the resource policy: a Rego file or one of the shipped policies.
    SetResourcePolicy {
        /// Rego file.
        #[arg(long, group = "policy", required = true)]
        file: Option<PathBuf>,
        /// Release everything to every attested TEE (testing only).
        #[arg(long, group = "policy")]
        allow_all: bool,
        /// Release nothing.
        #[arg(long, group = "policy")]
        deny_all: bool,
        /// Require ear.status == "affirming".
        #[arg(long, group = "policy")]
        affirming: bool,
        /// coffer's default (any real TEE, never `sample`).
        #[arg(long, group = "policy")]
        default: bool,
    },
    /// Print the current resource policy (Rego).
    GetResourcePolicy,
    /// Print a stored policy by id (e.g. default_cpu).
    GetPolicy {
        /// Policy id.
        id: String,
    },
    /// Register a reference value (value is JSON, e.g. '["1"]', or a plain string).
    SetReferenceValue {
        /// Name used by query_reference_value().
        name: String,
        /// Value.
        value: String,
    },
    /// Print a reference value.
    GetReferenceValue {
        /// Name.
        name: String,
    },
    /// List the audit log (releases, denials, admin changes).
    Audit {
        /// Only rows after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// At most this many rows (the newest).
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn tee_client(cli: &Cli, http: reqwest::Client, tee: &TeeArgs) -> anyhow::Result<KbsClient> {
    let key = match &tee.tee_key_file {
        Some(p) => {
            TeeKeyPair::from_pkcs8_pem(&read_text(p)?).with_context(|| p.display().to_string())?
        }
        None => TeeKeyPair::generate(),
    };
    let client = KbsClient::new(
        http,
        &cli.url,
        evidence::provider(
            &tee.tee,
            &coffer::tdx::TdxPaths {
                tsm_report_dir: tee.tsm_report_dir.clone(),
                ccel: tee.ccel.clone(),
                aael: tee.aael.clone(),
                tdx_guest: tee.tdx_guest.clone(),
            },
        )?,
        key,
    );
    Ok(match &tee.initdata {
        Some(p) => client.with_init_data(read_text(p)?),
        None => client,
    })
}

fn write_secret(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("coffer-tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

async fn admin(cli: &Cli, http: reqwest::Client, a: &AdminArgs) -> anyhow::Result<()> {
    let token = match (&a.key, &a.token_file) {
        (Some(k), _) => mint_admin_token(&read_text(k)?, &a.issuer, &a.audience, 300)
            .with_context(|| k.display().to_string())?,
        (None, Some(t)) => read_text(t)?,
        (None, None) => bail!("admin commands need --key ADMIN_KEY (PEM) or --token-file FILE"),
    };
    if let AdminCommand::Token { ttl } = &a.cmd {
        let key = a.key.as_ref().context("`admin token` needs --key")?;
        println!(
            "{}",
            mint_admin_token(&read_text(key)?, &a.issuer, &a.audience, *ttl)?
        );
        return Ok(());
    }
    let c = AdminClient::new(http, &cli.url, token);
    match &a.cmd {
        AdminCommand::Token { .. } => {}
        AdminCommand::SetResource { path, file } => {
            let bytes =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            c.set_resource(path, bytes).await?;
            eprintln!("stored {path}");
        }
        AdminCommand::DeleteResource { path } => {
            c.delete_resource(path).await?;
            eprintln!("deleted {path}");
        }
        AdminCommand::SetAttestationPolicy { file, id } => {
            c.set_attestation_policy(id, &read_text(file)?).await?;
            eprintln!("attestation policy {id} set");
        }
        AdminCommand::SetResourcePolicy {
            file,
            allow_all,
            deny_all,
            affirming,
            default,
        } => {
            let text = match (file, allow_all, deny_all, affirming, default) {
                (Some(f), ..) => read_text(f)?,
                (_, true, ..) => defaults::RESOURCE_ALLOW_ALL.to_string(),
                (_, _, true, ..) => defaults::RESOURCE_DENY_ALL.to_string(),
                (_, _, _, true, _) => defaults::RESOURCE_AFFIRMING.to_string(),
                _ => defaults::RESOURCE.to_string(),
            };
            c.set_resource_policy(&text).await?;
            eprintln!("resource policy set");
        }
        AdminCommand::GetResourcePolicy => print!("{}", c.get_policy("resource-policy").await?),
        AdminCommand::GetPolicy { id } => print!("{}", c.get_policy(id).await?),
        AdminCommand::SetReferenceValue { name, value } => {
            let v: serde_json::Value = serde_json::from_str(value)
                .unwrap_or_else(|_| serde_json::Value::String(value.clone()));
            c.set_reference_values(&serde_json::json!({ name: v }))
                .await?;
            eprintln!("reference value {name} set");
        }
        AdminCommand::GetReferenceValue { name } => {
            println!("{}", c.get_reference_value(name).await?)
        }
        AdminCommand::Audit { after, limit, json } => {
            let rows = c.audit(*after, *limit).await?;
            if *json {
                println!("{}", serde_json::Value::Array(rows));
            } else {
                println!(
                    "{:>6}  {:<24}  {:<24}  {:<6}  {:<8}  {:<32}  detail",
                    "seq", "time (ms)", "action", "result", "tee", "resource"
                );
                for r in rows {
                    let s = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("-").to_string();
                    println!(
                        "{:>6}  {:<24}  {:<24}  {:<6}  {:<8}  {:<32}  {}",
                        r["seq"].as_i64().unwrap_or(0),
                        r["at_ms"].as_i64().unwrap_or(0),
                        s("action"),
                        s("decision"),
                        s("tee"),
                        s("resource"),
                        s("detail")
                    );
                }
            }
        }
    }
    Ok(())
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
        Command::Admin(a) => admin(&cli, http, a).await?,
        Command::Policy(PolicyCommand::Test(t)) => policy_test(t)?,
        Command::Model(ModelCommand::Verify {
            cipher_dir,
            key,
            json,
            quiet,
        }) => {
            let source = key_source(&cli, http, key).await?;
            let report = coffer::model::decrypt(cipher_dir, None, source, *quiet || *json)?;
            print_report("verified", &report, *json)?;
        }
        Command::Model(ModelCommand::Encrypt {
            src,
            cipher_dir,
            password_file,
            scryptn,
            json,
            quiet,
        }) => {
            let pw = password_from_bytes(&Zeroizing::new(
                std::fs::read(password_file)
                    .with_context(|| format!("cannot read {}", password_file.display()))?,
            ));
            let report = coffer::model::encrypt(src, cipher_dir, &pw, *scryptn, *quiet || *json)?;
            print_report("encrypted", &report, *json)?;
        }
        Command::Model(ModelCommand::Decrypt {
            cipher_dir,
            dest,
            key,
            json,
            quiet,
        }) => {
            let source = key_source(&cli, http, key).await?;
            let report = coffer::model::decrypt(cipher_dir, Some(dest), source, *quiet || *json)?;
            print_report("decrypted", &report, *json)?;
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
struct ModelFailures(usize);

#[derive(Debug, thiserror::Error)]
#[error("the resource policy denies {0}")]
struct PolicyDenies(String);

fn read_input(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("cannot read stdin")?;
        return Ok(s);
    }
    read_text(path)
}

fn policy_test(t: &PolicyTestArgs) -> anyhow::Result<()> {
    use coffer::policy_test::{run, NamedPolicy, Recorded};
    let input = read_input(&t.input)?;
    let recorded = Recorded::parse(&input).with_context(|| t.input.display().to_string())?;
    let rvs: std::collections::HashMap<String, serde_json::Value> = match &t.reference_values {
        Some(p) => serde_json::from_str(&read_text(p)?)
            .with_context(|| format!("{}: expected a JSON object of name -> value", p.display()))?,
        None => Default::default(),
    };
    let mut query = serde_json::Map::new();
    for q in &t.query {
        let (k, v) = q
            .split_once('=')
            .with_context(|| format!("--query {q:?}: expected KEY=VALUE"))?;
        query.insert(k.to_string(), serde_json::Value::String(v.to_string()));
    }
    let texts = [&t.attestation_policy, &t.resource_policy].map(|p| {
        p.as_ref()
            .map(|p| Ok::<_, anyhow::Error>((p.display().to_string(), read_text(p)?)))
            .transpose()
    });
    let [attestation, resource] = texts;
    let (attestation, resource) = (attestation?, resource?);
    fn named(p: &Option<(String, String)>) -> Option<coffer::policy_test::NamedPolicy<'_>> {
        p.as_ref().map(|(name, text)| NamedPolicy { name, text })
    }
    let resource_req = match (named(&resource), &t.resource) {
        (Some(p), Some(path)) => Some((p, path, query)),
        _ => None,
    };
    let report = run(&recorded, named(&attestation), rvs, resource_req)?;
    if t.json {
        println!("{}", report.to_json());
    } else {
        if let (Some(a), Some((name, _))) = (&report.appraisal, &attestation) {
            let tiers: Vec<String> = a
                .trust_vector
                .iter()
                .filter(|(_, v)| v.as_i64() != Some(0))
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            println!(
                "attestation policy {name}: {} ({})",
                a.status,
                tiers.join(", ")
            );
        }
        if let (Some((path, allow)), Some((name, _))) = (&report.resource, &resource) {
            let verdict = if *allow { "allow" } else { "deny" };
            println!("resource policy {name} on {path}: {verdict}");
        }
    }
    match report.resource {
        Some((path, false)) => Err(PolicyDenies(path).into()),
        _ => Ok(()),
    }
}

fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<ModelFailures>().is_some() {
        return 6;
    }
    if e.downcast_ref::<PolicyDenies>().is_some() {
        return 3;
    }
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Kbs { status: 404, .. }) => 4,
        Some(ClientError::Kbs {
            status: 401 | 403, ..
        }) => 3,
        Some(
            ClientError::Kbs { .. } | ClientError::Transport { .. } | ClientError::Protocol(_),
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
    #[test]
    fn cli_definition_is_valid() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
