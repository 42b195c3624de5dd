//! `coffer admin ...`: coffer-server's admin API with EdDSA-signed tokens.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use coffer::admin::{mint_admin_token, AdminClient};
use coffer_policy::defaults;
use coffer_protocol::ResourcePath;

use crate::{read_text, Cli};

#[derive(Args)]
pub(crate) struct AdminArgs {
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
pub(crate) enum AdminCommand {
    /// Print an admin token (for Trustee's kbs-client `--admin-token-file`, or scripts).
    Token {
        /// Lifetime in seconds. coffer-server refuses tokens that live longer than its
        /// admin.token_max_ttl_secs (default 3600).
        #[arg(long, default_value_t = 1800)]
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
        /// Policy id: `default_cpu` appraises CPU TEEs (upstream Trustee), unless a policy
        /// `default` exists (Alibaba Cloud Trustee's id), which then governs instead.
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
    /// List stored resources as repository/type/tag (names only, never values).
    ///
    /// Resources served from Aliyun KMS are not listed.
    ListResources {
        /// Only this repository (first path segment).
        #[arg(long)]
        repository: Option<String>,
        /// Only this type (second path segment).
        #[arg(long = "type")]
        kind: Option<String>,
    },
    /// List attestation policy ids with the SHA-384 (base64url) of their Rego text.
    ListAttestationPolicies,
    /// Print an attestation policy's Rego text.
    GetAttestationPolicy {
        /// Policy id (e.g. default_cpu).
        id: String,
    },
    /// Delete an attestation policy (default_cpu and default can only be replaced).
    DeleteAttestationPolicy {
        /// Policy id.
        id: String,
    },
    /// Print every unexpired reference value as one JSON object.
    ListReferenceValues,
    /// Delete a reference value (succeeds when it does not exist).
    DeleteReferenceValue {
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

/// Runs one `coffer admin` command.
pub(crate) async fn run(cli: &Cli, http: reqwest::Client, a: &AdminArgs) -> anyhow::Result<()> {
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
        AdminCommand::ListResources { repository, kind } => {
            for (r, t, g) in c
                .list_resources(repository.as_deref(), kind.as_deref())
                .await?
            {
                println!("{r}/{t}/{g}");
            }
        }
        AdminCommand::ListAttestationPolicies => {
            for (id, digest) in c.list_attestation_policies().await? {
                println!("{id}  sha384:{digest}");
            }
        }
        AdminCommand::GetAttestationPolicy { id } => {
            print!("{}", c.get_attestation_policy(id).await?)
        }
        AdminCommand::DeleteAttestationPolicy { id } => {
            c.delete_attestation_policy(id).await?;
            eprintln!("attestation policy {id} deleted");
        }
        AdminCommand::ListReferenceValues => println!("{}", c.list_reference_values().await?),
        AdminCommand::DeleteReferenceValue { name } => {
            c.delete_reference_value(name).await?;
            eprintln!("reference value {name} deleted (if it existed)");
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
