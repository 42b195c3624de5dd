//! The KBS itself, independent of HTTP: the RCAR handshake, resource release and the admin
//! operations, each returning a typed [`KbsError`] that maps onto Trustee's error kinds.

mod admin;
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
    AdminAuth, ResourceListEntry, RvListError, ALIBABA_TOKEN_ACTOR,
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
    /// How resource policies see the resource path (upstream array or Alibaba string).
    pub resource_path_dialect: crate::policy::ResourcePathDialect,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Recently read policies and reference values.
    pub snapshots: SnapshotCache,
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

    /// Appends to the audit log; a failure is logged and counted but does not undo the
    /// operation it describes (the operation already happened).
    pub(crate) async fn audit(&self, entry: AuditEntry) {
        if let Err(e) = self.store.append_audit(&entry).await {
            self.metrics.audit_failures.inc();
            tracing::error!(error = %e, action = %entry.action, "audit write failed");
        }
    }
}

/// Current time in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
