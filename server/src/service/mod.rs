//! The KBS itself, independent of HTTP: the RCAR handshake, resource release and the admin
//! operations, each returning a typed [`KbsError`] that maps onto Trustee's error kinds.

mod admin;
mod devices;
mod handshake;
mod snapshot;

use std::sync::Arc;

use coffer_protocol::ErrorKind;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::attestation::Verifiers;
use crate::metrics::Metrics;
use crate::policy::{defaults, PolicyEngine, TokenIssuer, CPU_POLICY_ID, RESOURCE_POLICY_ID};
use crate::secrets::{SecretBackend, SecretError};
use crate::store::{AuditEntry, PolicyKind, Store, StoreError};

pub use admin::{
    AdminAuth, ResourceListEntry, ResourceMeta, RvListError, ALIBABA_TOKEN_ACTOR,
    DEFAULT_ADMIN_TOKEN_MAX_TTL_SECS,
};
pub use snapshot::{PolicySnapshot, SnapshotCache};

/// An error answer: a Trustee error kind and a detail that is safe to show the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KbsError {
    /// Kind (decides the HTTP status).
    pub kind: ErrorKind,
    /// Human-readable detail; never contains secret material.
    pub detail: String,
}

impl KbsError {
    /// Builds an error.
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        KbsError {
            kind,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for KbsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.name(), self.detail)
    }
}

impl From<StoreError> for KbsError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "storage failure");
        KbsError::new(
            ErrorKind::StorageUnavailable,
            "storage unavailable; retry later",
        )
    }
}

impl From<SecretError> for KbsError {
    fn from(e: SecretError) -> Self {
        tracing::error!(error = %e, "secret backend failure");
        match e {
            SecretError::Unavailable(_) => KbsError::new(
                ErrorKind::StorageUnavailable,
                "secret backend unavailable; retry later",
            ),
            SecretError::Integrity(p) => KbsError::new(
                ErrorKind::InternalError,
                format!("stored resource {p} failed its integrity check"),
            ),
            SecretError::Refused(reason) => KbsError::new(
                ErrorKind::PluginInternalError,
                format!("Plugin internal error: secret backend refused the request ({reason})"),
            ),
            SecretError::ReadOnly(p) => KbsError::new(
                ErrorKind::PluginInternalError,
                format!("resource backend for {p} is read-only"),
            ),
        }
    }
}

/// Everything a request needs; shared by all HTTP workers.
pub struct Kbs {
    /// Persistent state.
    pub store: Arc<dyn Store>,
    /// Resource bytes.
    pub secrets: Arc<dyn SecretBackend>,
    /// Evidence verifiers by TEE.
    pub verifiers: Verifiers,
    /// Rego evaluation.
    pub policies: PolicyEngine,
    /// Attestation token signing / verification.
    pub tokens: TokenIssuer,
    /// Admin token checks.
    pub admin: AdminAuth,
    /// Session lifetime, seconds.
    pub session_ttl_secs: i64,
    /// Most sessions the database may hold; `/auth` answers 429 beyond (0: no bound).
    pub max_sessions: u64,
    /// `/auth` calls since this process last counted the session table: the count is a
    /// table scan, so it runs once per ~1% of `max_sessions` calls, not on every handshake.
    pub auths_since_count: std::sync::atomic::AtomicU64,
    /// How resource policies see the resource path (upstream array or Alibaba string).
    pub resource_path_dialect: crate::policy::ResourcePathDialect,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Recently read policies and reference values.
    pub snapshots: SnapshotCache,
    /// Largest verified-claims JSON an attestation's audit row keeps
    /// (`audit.max_claims_bytes`); see [`capped_claims`].
    pub audit_claims_max_bytes: usize,
}

/// Key added to recorded claims that were shortened to fit `audit.max_claims_bytes`.
pub const CLAIMS_ELIDED_KEY: &str = "coffer.audit-elided";

/// Strings longer than this are the first to go when claims are over the cap (event logs,
/// raw quotes, certificates); measurements (96 hex digits) stay.
const ELIDE_STRING_CHARS: usize = 256;

/// Arrays longer than this keep only their first entries when claims are over the cap.
const ELIDE_ARRAY_LEN: usize = 64;

fn elide(v: &mut Value) {
    match v {
        Value::String(s) if s.len() > ELIDE_STRING_CHARS => {
            *s = format!("<{} bytes elided>", s.len());
        }
        Value::Array(a) => {
            if a.len() > ELIDE_ARRAY_LEN {
                let n = a.len();
                a.truncate(ELIDE_ARRAY_LEN);
                a.push(Value::String(format!(
                    "<{} more entries elided>",
                    n - ELIDE_ARRAY_LEN
                )));
            }
            a.iter_mut().for_each(elide);
        }
        Value::Object(m) => m.values_mut().for_each(elide),
        _ => {}
    }
}

/// The verified claims an audit row keeps: as they are when their JSON fits in `max` bytes;
/// else with long strings and arrays elided (and [`CLAIMS_ELIDED_KEY`] saying so); else only
/// that key. The claims are public values (measurements, TCB status, runtime data holding
/// the nonce and the TEE's public key), never keys or secrets.
pub fn capped_claims(claims: Value, max: usize) -> Value {
    let len = |v: &Value| serde_json::to_string(v).map_or(usize::MAX, |s| s.len());
    let full = len(&claims);
    if full <= max {
        return claims;
    }
    let mut shortened = claims;
    elide(&mut shortened);
    if let Value::Object(m) = &mut shortened {
        m.insert(
            CLAIMS_ELIDED_KEY.into(),
            Value::String(format!(
                "claims were {full} bytes, over audit.max_claims_bytes ({max}): long values elided"
            )),
        );
        if len(&shortened) <= max {
            return shortened;
        }
    }
    serde_json::json!({
        CLAIMS_ELIDED_KEY: format!("claims were {full} bytes, over audit.max_claims_bytes ({max}): not recorded")
    })
}

/// Parses a resource path as Trustee's resource plugin does (401 `PluginInternalError`).
pub(crate) fn parse_resource_path(path: &str) -> Result<coffer_protocol::ResourcePath, KbsError> {
    path.parse().map_err(|e| {
        KbsError::new(
            ErrorKind::PluginInternalError,
            format!("Plugin internal error: illegal resource path: {e}"),
        )
    })
}

/// Words in a resource policy that show it looks at what runs in the TEE (the appraisal's
/// verdict, which uses reference values, or measurements directly).
const MEASUREMENT_WORDS: &[&str] = &[
    "ear.status",
    "ear.trustworthiness-vector",
    "mr_td",
    "rtmr",
    "mr_enclave",
    "mr_signer",
    "launch_digest",
    "reference",
    "init_data",
];

/// Why the resource policy `body` releases without checking any measurement, or `None`
/// when it appears to check one (or never releases). A heuristic for a start-up warning,
/// not a verdict: a policy may name a measurement and still not constrain it.
pub fn unmeasured_release(body: &str) -> Option<&'static str> {
    let trimmed = body.trim();
    if trimmed == defaults::RESOURCE.trim() {
        return Some("it is the shipped default, which releases to any non-debug TDX TD on a genuine platform whatever it runs");
    }
    if trimmed == defaults::RESOURCE_ALLOW_ALL.trim() {
        return Some("it allows every request");
    }
    if trimmed == defaults::RESOURCE_DENY_ALL.trim() {
        return None;
    }
    let code: String = body
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    if MEASUREMENT_WORDS.iter().any(|w| code.contains(w)) {
        return None;
    }
    Some("it mentions no measurement, appraisal status or reference value")
}

/// Hex SHA-256 of the canonical JSON of `claims` (what the audit log records).
pub fn claims_digest(claims: &Value) -> String {
    hex::encode(Sha256::digest(
        coffer_protocol::jcs::canonicalize(claims).as_bytes(),
    ))
}

impl Kbs {
    /// Installs the built-in policies where the database has none (never overwrites).
    pub async fn install_default_policies(&self) -> Result<(), StoreError> {
        let now = crate::now_secs();
        self.store
            .put_policy_if_absent(
                CPU_POLICY_ID,
                PolicyKind::Attestation,
                defaults::ATTESTATION_CPU,
                now,
            )
            .await?;
        self.store
            .put_policy_if_absent(
                RESOURCE_POLICY_ID,
                PolicyKind::Resource,
                defaults::RESOURCE,
                now,
            )
            .await
    }

    /// Installs every `*.rego` of `dir` (see `server.policy_dir`), refusing the first that
    /// does not compile. Returns the installed ids.
    pub async fn install_policy_dir(&self, dir: &std::path::Path) -> Result<Vec<String>, String> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "rego"))
            .collect();
        files.sort();
        let mut ids = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
            self.policies
                .check(&text)
                .map_err(|e| format!("{}: {e}", f.display()))?;
            let id = f
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let kind = if id == RESOURCE_POLICY_ID {
                PolicyKind::Resource
            } else {
                PolicyKind::Attestation
            };
            self.store
                .put_policy(&id, kind, &text, crate::now_secs())
                .await
                .map_err(|e| e.to_string())?;
            ids.push(id);
        }
        self.snapshots.invalidate();
        Ok(ids)
    }

    /// Logs a warning when the active resource policy releases without any measurement
    /// check (see [`unmeasured_release`]).
    pub async fn warn_if_unmeasured(&self) -> Result<(), StoreError> {
        let Some(p) = self.store.get_policy(RESOURCE_POLICY_ID).await? else {
            return Ok(());
        };
        if let Some(why) = unmeasured_release(&p.body) {
            tracing::warn!(
                policy = RESOURCE_POLICY_ID,
                "the resource policy releases secrets without checking any measurement: {why}. Register reference values and set a policy that checks them (coffer admin set-resource-policy --affirming)"
            );
        }
        Ok(())
    }

    /// Appends to the audit log; a failure is logged and counted but does not undo the
    /// operation it describes (the operation already happened).
    pub(crate) async fn audit(&self, entry: AuditEntry) {
        if let Err(e) = self.store.append_audit(&entry).await {
            self.metrics.audit_failures.inc();
            tracing::error!(error = %e, action = %entry.action, "audit write failed");
        }
    }
}

/// Current time in Unix milliseconds (for the HTTP layer).
pub fn now_ms_pub() -> i64 {
    now_ms()
}

/// Current time in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_capped() {
        let small = serde_json::json!({"tdx": {"mr_td": "ab".repeat(48)}});
        assert_eq!(capped_claims(small.clone(), 1000), small);
        let big = serde_json::json!({"tdx": {"mr_td": "ab".repeat(48), "log": "x".repeat(5000),
                                     "events": (0..200).collect::<Vec<_>>()}});
        let c = capped_claims(big, 2000);
        assert!(serde_json::to_string(&c).unwrap().len() <= 2000);
        assert_eq!(c["tdx"]["mr_td"], "ab".repeat(48), "measurements stay");
        assert_eq!(c["tdx"]["log"], "<5000 bytes elided>");
        assert_eq!(
            c["tdx"]["events"].as_array().unwrap().len(),
            ELIDE_ARRAY_LEN + 1
        );
        assert!(c[CLAIMS_ELIDED_KEY].as_str().unwrap().contains("elided"));
        let huge =
            serde_json::json!({"m": (0..5000).map(|i| format!("{i:0>200}")).collect::<Vec<_>>()});
        let c = capped_claims(huge, 2000);
        assert!(c[CLAIMS_ELIDED_KEY]
            .as_str()
            .unwrap()
            .contains("not recorded"));
        assert_eq!(c.as_object().unwrap().len(), 1);
    }

    #[test]
    fn unmeasured_resource_policies_are_recognised() {
        assert!(unmeasured_release(defaults::RESOURCE).is_some());
        assert!(unmeasured_release(&format!("\n{}\n", defaults::RESOURCE)).is_some());
        assert!(unmeasured_release(defaults::RESOURCE_ALLOW_ALL).is_some());
        assert!(unmeasured_release(defaults::RESOURCE_DENY_ALL).is_none());
        assert!(unmeasured_release(defaults::RESOURCE_AFFIRMING).is_none());
        let path_only = "package policy\n# checks ear.status? no\nallow if { data[\"resource-path\"][0] == \"default\" }\n";
        assert!(unmeasured_release(path_only).is_some());
        let pinned = "package policy\nallow if { input.submods.cpu0[\"ear.veraison.annotated-evidence\"].tdx.quote.body.mr_td == \"ab\" }\n";
        assert!(unmeasured_release(pinned).is_none());
    }
}
