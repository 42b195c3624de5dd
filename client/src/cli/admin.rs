//! `coffer admin ...`: coffer-server's admin API with EdDSA-signed tokens.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use coffer::admin::{mint_admin_token, AdminClient};
use coffer_policy::defaults;
use coffer_protocol::{AuditPage, ResourcePath};

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
    #[command(
        group(clap::ArgGroup::new("policy").required(true)),
        override_usage = "coffer admin set-resource-policy <--file <FILE>|--builtin <POLICY>>"
    )]
    SetResourcePolicy {
        /// Rego file.
        #[arg(long, group = "policy")]
        file: Option<PathBuf>,
        /// One of the policies shipped with coffer.
        #[arg(long, group = "policy", value_enum, value_name = "POLICY")]
        builtin: Option<BuiltinPolicy>,
        /// Old spelling of `--builtin allow-all`.
        #[arg(long, group = "policy", hide = true)]
        allow_all: bool,
        /// Old spelling of `--builtin deny-all`.
        #[arg(long, group = "policy", hide = true)]
        deny_all: bool,
        /// Old spelling of `--builtin affirming`.
        #[arg(long, group = "policy", hide = true)]
        affirming: bool,
        /// Old spelling of `--builtin default`.
        #[arg(long, group = "policy", hide = true)]
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
    /// List the audit log: attestations, releases and refusals, admin changes.
    ///
    /// Newest first, one page at a time (--offset for the next); the total of matching
    /// rows goes to stderr. TIME is RFC 3339 (2026-12-02T10:00:00Z), a date (2026-12-02,
    /// UTC), Unix milliseconds, or an age: 30s, 15m, 2h, 7d ago.
    ///
    /// Example: coffer admin --key admin.key audit --since 1h --decision deny --tee tdx
    #[command(verbatim_doc_comment)]
    Audit(AuditArgs),
    /// Serve the web console on this machine's loopback interface.
    ///
    /// The console signs every call to the server in this process with --key (the key
    /// never reaches the browser) and prints the URL to open; the URL carries a one-session
    /// token. Pages: overview, policies (Rego editor with compile errors, diff against the
    /// active policy, a test pane over recorded attestations), resources (names, sizes,
    /// upload, delete; never values), reference values, audit (filters, export).
    ///
    /// Example: coffer --url https://kbs.example admin --key admin.key console --listen 127.0.0.1:8765
    #[command(verbatim_doc_comment)]
    Console {
        /// Loopback address and port to listen on (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:8765")]
        listen: std::net::SocketAddr,
    },
    /// Print one audit row as JSON, with the verified claims of an attestation.
    AuditShow {
        /// The row's sequence number (first column of `audit`).
        seq: i64,
    },
}

/// The resource policies shipped with coffer (`set-resource-policy --builtin`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum BuiltinPolicy {
    /// Release everything to every attested TEE (testing only).
    AllowAll,
    /// Release nothing.
    DenyAll,
    /// Require ear.status == "affirming".
    Affirming,
    /// coffer's default (any real TEE, never `sample`).
    Default,
}

impl BuiltinPolicy {
    /// The Rego text.
    fn text(self) -> &'static str {
        match self {
            BuiltinPolicy::AllowAll => defaults::RESOURCE_ALLOW_ALL,
            BuiltinPolicy::DenyAll => defaults::RESOURCE_DENY_ALL,
            BuiltinPolicy::Affirming => defaults::RESOURCE_AFFIRMING,
            BuiltinPolicy::Default => defaults::RESOURCE,
        }
    }

    /// The policy `--builtin` or one of the hidden old flags (`--allow-all`, ...) named;
    /// clap's group lets at most one through.
    fn chosen(
        builtin: Option<BuiltinPolicy>,
        [allow_all, deny_all, affirming, default]: [bool; 4],
    ) -> Option<BuiltinPolicy> {
        builtin.or_else(|| {
            [
                (allow_all, BuiltinPolicy::AllowAll),
                (deny_all, BuiltinPolicy::DenyAll),
                (affirming, BuiltinPolicy::Affirming),
                (default, BuiltinPolicy::Default),
            ]
            .into_iter()
            .find_map(|(set, p)| set.then_some(p))
        })
    }
}

/// Filters of `coffer admin audit`.
#[derive(Args)]
pub(crate) struct AuditArgs {
    /// Rows at or after TIME.
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Rows before TIME.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// attest, release, admin (every admin change) or admin:<operation>.
    #[arg(long)]
    action: Option<String>,
    /// TEE type (tdx, sample, ...).
    #[arg(long)]
    tee: Option<String>,
    /// Resource path or policy id; a trailing * matches a prefix (default/aliyun/*).
    #[arg(long)]
    resource: Option<String>,
    /// allow, deny or ok (admin changes).
    #[arg(long)]
    decision: Option<String>,
    /// Session id (the kbs-session-id cookie).
    #[arg(long)]
    session: Option<String>,
    /// Only rows after this sequence number (implies --oldest-first).
    #[arg(long)]
    after: Option<i64>,
    /// Oldest rows first.
    #[arg(long)]
    oldest_first: bool,
    /// Rows to skip (paging).
    #[arg(long, default_value_t = 0)]
    offset: i64,
    /// Rows per page (at most 1000).
    #[arg(long, default_value_t = 100)]
    limit: i64,
    /// Print the page as JSON ({total, offset, limit, entries}) instead of a table.
    #[arg(long)]
    json: bool,
}

/// Unix milliseconds of a TIME argument (see `coffer admin audit --help`).
pub(crate) fn parse_time(s: &str, now_ms: i64) -> anyhow::Result<i64> {
    use time::format_description::well_known::Rfc3339;
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    if let Some(unit) = s.chars().last().filter(|c| "smhdw".contains(*c)) {
        if let Ok(n) = s[..s.len() - 1].parse::<i64>() {
            let secs = match unit {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                _ => 7 * 86_400,
            };
            return Ok(now_ms - n.saturating_mul(secs).saturating_mul(1000));
        }
    }
    let text = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    let t = time::OffsetDateTime::parse(&text, &Rfc3339).with_context(|| {
        format!(
            "time {s:?}: expected RFC 3339, YYYY-MM-DD, Unix milliseconds or an age (15m, 2h, 7d)"
        )
    })?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// `2026-12-02 10:00:00.123Z` for Unix milliseconds.
pub(crate) fn human_time(ms: i64) -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| ms.to_string())
}

impl AuditArgs {
    fn query(&self) -> anyhow::Result<Vec<(&'static str, String)>> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .context("the system clock is set before 1970")?;
        let mut q = vec![
            ("limit", self.limit.to_string()),
            ("offset", self.offset.to_string()),
        ];
        if let Some(t) = &self.since {
            q.push(("since", parse_time(t, now).context("--since")?.to_string()));
        }
        if let Some(t) = &self.until {
            q.push(("until", parse_time(t, now).context("--until")?.to_string()));
        }
        for (k, v) in [
            ("action", &self.action),
            ("tee", &self.tee),
            ("resource", &self.resource),
            ("decision", &self.decision),
            ("session", &self.session),
        ] {
            if let Some(v) = v {
                q.push((k, v.clone()));
            }
        }
        if let Some(a) = self.after {
            q.push(("after", a.to_string()));
        }
        if self.oldest_first || self.after.is_some() {
            q.push(("order", "asc".into()));
        }
        Ok(q)
    }
}

fn print_audit(page: &AuditPage) {
    let rows = &page.entries;
    println!(
        "{:>6}  {:<24}  {:<22}  {:<6}  {:<7}  {:<10}  {:<15}  {:<30}  detail",
        "seq", "time (UTC)", "action", "result", "tee", "session", "client", "resource / actor"
    );
    for r in rows {
        let s = |v: &Option<String>| v.as_deref().unwrap_or("-").to_string();
        let session: String = s(&r.session_id).chars().take(10).collect();
        let target = match (&r.resource, &r.actor) {
            (Some(res), Some(actor)) => format!("{res} by {actor}"),
            (Some(res), None) => res.clone(),
            (None, Some(actor)) => format!("by {actor}"),
            (None, None) => "-".into(),
        };
        let mut detail = s(&r.detail);
        if let Some(tv) = r.trust_vector.as_ref().filter(|v| v.is_object()) {
            detail = format!("{detail} {tv}");
        }
        println!(
            "{:>6}  {:<24}  {:<22}  {:<6}  {:<7}  {:<10}  {:<15}  {:<30}  {}",
            r.seq,
            human_time(r.at_ms),
            r.action.to_string(),
            r.decision.as_str(),
            s(&r.tee),
            session,
            s(&r.client_addr),
            target,
            detail
        );
    }
    let (total, offset) = (page.total, page.offset);
    if rows.is_empty() {
        eprintln!("no rows (of {total} matching)");
    } else {
        let last = offset + rows.len() as i64;
        let more = if last < total {
            format!("; --offset {last} for more")
        } else {
            String::new()
        };
        eprintln!("rows {}-{last} of {total}{more}", offset + 1);
    }
}

/// An admin token from `--key` (minted for 300 s) or `--token-file`.
pub(crate) fn admin_token(
    key: Option<&std::path::Path>,
    token_file: Option<&std::path::Path>,
    issuer: &str,
    audience: &str,
) -> anyhow::Result<String> {
    Ok(match (key, token_file) {
        (Some(k), _) => mint_admin_token(&read_text(k)?, issuer, audience, 300)
            .with_context(|| k.display().to_string())?,
        (None, Some(t)) => read_text(t)?,
        (None, None) => bail!("admin commands need --key ADMIN_KEY (PEM) or --token-file FILE"),
    })
}

/// Runs one `coffer admin` command.
pub(crate) async fn run(cli: &Cli, http: reqwest::Client, a: &AdminArgs) -> anyhow::Result<()> {
    if let AdminCommand::Console { listen } = &a.cmd {
        let key = a
            .key
            .as_ref()
            .context("`admin console` needs --key: it mints a token for every call")?;
        let cfg = coffer::console::ConsoleConfig {
            server: cli.url.trim_end_matches('/').to_string(),
            key_pem: zeroize::Zeroizing::new(read_text(key)?),
            issuer: a.issuer.clone(),
            audience: a.audience.clone(),
            http,
            listen: *listen,
        };
        let server = cfg.server.clone();
        // The console runs its own HTTP runtime, on a thread of its own.
        let worker = std::thread::spawn(move || {
            coffer::console::serve(cfg, |url| {
                println!("coffer console for {server}: {url}");
                use std::io::Write;
                let _ = std::io::stdout().flush();
            })
        });
        return tokio::task::spawn_blocking(move || worker.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the console thread panicked"))?
            .map_err(Into::into);
    }
    let token = admin_token(
        a.key.as_deref(),
        a.token_file.as_deref(),
        &a.issuer,
        &a.audience,
    )?;
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
        AdminCommand::Token { .. } | AdminCommand::Console { .. } => {}
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
            builtin,
            allow_all,
            deny_all,
            affirming,
            default,
        } => {
            let chosen =
                BuiltinPolicy::chosen(*builtin, [*allow_all, *deny_all, *affirming, *default]);
            let text = match (file, chosen) {
                (Some(f), _) => read_text(f)?,
                (None, Some(p)) => p.text().to_string(),
                (None, None) => bail!("give --file or --builtin"),
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
        AdminCommand::Audit(args) => {
            let page = c.audit(&args.query()?).await?;
            if args.json {
                println!("{}", serde_json::to_string(&page)?);
            } else {
                print_audit(&page);
            }
        }
        AdminCommand::AuditShow { seq } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&c.audit_entry(*seq).await?)?
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    fn chosen(args: &[&str]) -> Result<Option<BuiltinPolicy>, clap::Error> {
        let mut full = vec!["coffer", "admin", "set-resource-policy"];
        full.extend_from_slice(args);
        let cli = crate::Cli::try_parse_from(full)?;
        let crate::Command::Admin(a) = cli.cmd else {
            panic!("not admin")
        };
        let AdminCommand::SetResourcePolicy {
            builtin,
            allow_all,
            deny_all,
            affirming,
            default,
            ..
        } = a.cmd
        else {
            panic!("not set-resource-policy")
        };
        Ok(BuiltinPolicy::chosen(
            builtin,
            [allow_all, deny_all, affirming, default],
        ))
    }

    #[test]
    fn builtin_resource_policies_are_one_option_and_the_old_flags_still_work() {
        assert_eq!(
            chosen(&["--builtin", "deny-all"]).unwrap(),
            Some(BuiltinPolicy::DenyAll)
        );
        for (old, p) in [
            ("--allow-all", BuiltinPolicy::AllowAll),
            ("--deny-all", BuiltinPolicy::DenyAll),
            ("--affirming", BuiltinPolicy::Affirming),
            ("--default", BuiltinPolicy::Default),
        ] {
            assert_eq!(chosen(&[old]).unwrap(), Some(p), "{old}");
        }
        assert_eq!(chosen(&["--file", "p.rego"]).unwrap(), None);
        let kind = |args: &[&str]| chosen(args).unwrap_err().kind();
        use clap::error::ErrorKind;
        assert_eq!(kind(&["--builtin", "allow"]), ErrorKind::InvalidValue);
        assert_eq!(kind(&[]), ErrorKind::MissingRequiredArgument);
        assert_eq!(
            kind(&["--builtin", "default", "--allow-all"]),
            ErrorKind::ArgumentConflict
        );
        let mut cmd = crate::Cli::command();
        let help = cmd
            .find_subcommand_mut("admin")
            .and_then(|a| a.find_subcommand_mut("set-resource-policy"))
            .unwrap()
            .render_long_help()
            .to_string();
        for v in ["allow-all", "deny-all", "affirming", "default"] {
            assert!(help.contains(v), "{v} missing: {help}");
        }
        assert!(
            !help.contains("--allow-all"),
            "old flags are hidden: {help}"
        );
    }
}
