//! `coffer policy test`: Rego policies evaluated locally on recorded evidence.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::builder::TypedValueParser;
use clap::{Args, Subcommand};
use coffer_policy::ResourcePathDialect;
use coffer_protocol::ResourcePath;

use crate::read_text;

#[derive(Subcommand)]
pub(crate) enum PolicyCommand {
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
pub(crate) struct PolicyTestArgs {
    /// Recorded input: token, token claims or annotated evidence (`-` for stdin).
    #[arg(
        long,
        required_unless_present = "from_audit",
        conflicts_with = "from_audit"
    )]
    input: Option<PathBuf>,
    /// Use the verified claims, verdict and trust vector the server recorded for an
    /// attestation: the audit row's sequence number (`coffer admin audit --action attest`).
    /// Fetched from --url with the admin --key or --token-file.
    #[arg(long, value_name = "SEQ")]
    from_audit: Option<i64>,
    /// Admin private key (PEM) for --from-audit.
    #[arg(
        long,
        env = "COFFER_ADMIN_KEY",
        requires = "from_audit",
        conflicts_with = "token_file"
    )]
    key: Option<PathBuf>,
    /// File holding an admin token, for --from-audit.
    #[arg(long, env = "COFFER_ADMIN_TOKEN_FILE", requires = "from_audit")]
    token_file: Option<PathBuf>,
    /// `iss` of the minted admin token (the server's admin.issuer).
    #[arg(long, default_value = "coffer")]
    issuer: String,
    /// `aud` of the minted admin token (the server's admin.audience).
    #[arg(long, default_value = "kbs")]
    audience: String,
    /// Attestation (appraisal) policy to evaluate, as uploaded with set-attestation-policy.
    #[arg(long, group = "policies")]
    attestation_policy: Option<PathBuf>,
    /// GPU appraisal policy for the token's GPU submodules (gpu0, ...), as uploaded with
    /// `set-attestation-policy --id default_gpu`. Recorded GPUs are appraised afresh with it
    /// (or with the built-in default_gpu when only --attestation-policy is given).
    #[arg(long, group = "policies")]
    gpu_policy: Option<PathBuf>,
    /// Reference values for the attestation and GPU policies: a JSON object of name ->
    /// value, as registered with `admin set-reference-value NAME VALUE`.
    #[arg(long)]
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
    /// How the resource policy sees data["resource-path"], as the server's
    /// `attestation.resource_path_dialect`: auto (upstream's ["repo","type","tag"]; a policy
    /// that cannot be evaluated with it, such as Alibaba's split(...), gets
    /// "resource/repo/type/tag"), upstream, or alibaba.
    #[arg(long, default_value = "auto", value_name = "DIALECT",
          value_parser = clap::builder::PossibleValuesParser::new(ResourcePathDialect::NAMES)
              .map(|s| s.parse::<ResourcePathDialect>().unwrap_or_default()))]
    resource_path_dialect: ResourcePathDialect,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn read_input(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("cannot read stdin")?;
        return Ok(s);
    }
    read_text(path)
}

/// Runs `coffer policy test`; a denial is a [`coffer::ClientError::PolicyDenies`] error
/// (exit code 3).
pub(crate) async fn test(
    cli: &crate::Cli,
    http: reqwest::Client,
    t: &PolicyTestArgs,
) -> anyhow::Result<()> {
    use coffer::policy_test::{run, NamedPolicy, Recorded};
    let recorded = match (&t.input, t.from_audit) {
        (_, Some(seq)) => {
            let token = crate::admin::admin_token(
                t.key.as_deref(),
                t.token_file.as_deref(),
                &t.issuer,
                &t.audience,
            )
            .context("--from-audit")?;
            let c = coffer::admin::AdminClient::new(http, &cli.url, token);
            let row = c.audit_entry(seq).await?;
            Recorded::from_audit_row(&row).with_context(|| format!("--from-audit {seq}"))?
        }
        (Some(path), None) => {
            let input = read_input(path)?;
            Recorded::parse(&input).with_context(|| path.display().to_string())?
        }
        (None, None) => anyhow::bail!("give --input FILE or --from-audit SEQ"),
    };
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
    let texts = [&t.attestation_policy, &t.resource_policy, &t.gpu_policy].map(|p| {
        p.as_ref()
            .map(|p| Ok::<_, anyhow::Error>((p.display().to_string(), read_text(p)?)))
            .transpose()
    });
    let [attestation, resource, gpu] = texts;
    let (attestation, resource, gpu) = (attestation?, resource?, gpu?);
    fn named(p: &Option<(String, String)>) -> Option<coffer::policy_test::NamedPolicy<'_>> {
        p.as_ref().map(|(name, text)| NamedPolicy { name, text })
    }
    let resource_req = match (named(&resource), &t.resource) {
        (Some(p), Some(path)) => Some((p, path, query)),
        _ => None,
    };
    let report = run(
        &recorded,
        named(&attestation),
        named(&gpu),
        rvs,
        resource_req,
        t.resource_path_dialect,
    )?;
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
                "attestation policy {name} ({} rules): {} ({})",
                a.form.as_str(),
                a.status,
                tiers.join(", ")
            );
        }
        for (submod, a) in &report.devices {
            println!("device {submod}: {}", a.status);
        }
        if let (Some((path, v)), Some((name, _))) = (&report.resource, &resource) {
            let verdict = if v.allow { "allow" } else { "deny" };
            println!(
                "resource policy {name} on {path}: {verdict} (resource-path as {})",
                v.dialect.as_str()
            );
        }
    }
    match report.resource {
        Some((path, v)) if !v.allow => {
            Err(coffer::ClientError::PolicyDenies { resource: path }.into())
        }
        _ => Ok(()),
    }
}
