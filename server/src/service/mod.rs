//! The KBS itself, independent of HTTP: the RCAR handshake, resource release and the admin
//! operations, each returning a typed [`KbsError`] that maps onto Trustee's error kinds.
//!
//! A [`Kbs`] is built from the configuration by [`Kbs::from_config`] (or, over a store the
//! caller opened, [`Kbs::with_store`]) with the [`Clock`] it reads every time from: sessions,
//! tokens, audit rows and reference values all expire by that clock, so tests step it.

mod admin;
mod build;
mod devices;
mod error;
mod handshake;
mod snapshot;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::attestation::Verifiers;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::policy::{defaults, PolicyEngine, TokenIssuer, CPU_POLICY_ID, RESOURCE_POLICY_ID};
use crate::secrets::SecretBackend;
use crate::store::{AuditEntry, PolicyKind, Store, StoreError};

pub use admin::{
    AdminAuth, AdminRoute, ResourceListEntry, ResourceMeta, ALIBABA_TOKEN_ACTOR,
    DEFAULT_ADMIN_TOKEN_MAX_TTL_SECS,
};
pub use build::{PolicyDirError, StartError};
pub use error::{
    AdminAuthError, AttestError, AttestationError, AuthError, Internal, InvalidPath, KbsError,
    NotFound, PluginError, PolicyEngineFailure, PolicyParseError, QueryError, RegisterError,
    RvListError, RvpsFailure, SerdeFailure, SetPolicyError, TokenFailure, Unavailable,
};
pub use snapshot::{PolicySnapshot, SnapshotCache};

/// Everything a request needs; shared by all HTTP workers. Built by [`Kbs::from_config`].
pub struct Kbs {
    store: Arc<dyn Store>,
    secrets: Arc<dyn SecretBackend>,
    verifiers: Verifiers,
    policies: PolicyEngine,
    tokens: TokenIssuer,
    admin: AdminAuth,
    clock: Arc<dyn Clock>,
    /// Session lifetime, seconds.
    session_ttl_secs: i64,
    /// Most sessions the database may hold; `/auth` answers 429 beyond (0: no bound).
    max_sessions: u64,
    /// `/auth` calls since this process last counted the session table: the count is a
    /// table scan, so it runs once per ~1% of `max_sessions` calls, not on every handshake.
    auths_since_count: AtomicU64,
    /// How resource policies see the resource path (upstream array or Alibaba string).
    resource_path_dialect: crate::policy::ResourcePathDialect,
    metrics: Metrics,
    /// Recently read policies and reference values.
    snapshots: SnapshotCache,
    /// Largest verified-claims JSON an attestation's audit row keeps
    /// (`audit.max_claims_bytes`); see [`capped_claims`].
    audit_claims_max_bytes: usize,
}

/// The first 8 characters of a session id: enough to follow one handshake in the log,
/// too few to replay its cookie.
pub(crate) fn short_session_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
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

/// An `io::Write` that only counts what it is given.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The verified claims an audit row keeps: as they are when their JSON fits in `max` bytes;
/// else with long strings and arrays elided (and [`CLAIMS_ELIDED_KEY`] saying so); else only
/// that key. The claims are public values (measurements, TCB status, runtime data holding
/// the nonce and the TEE's public key), never keys or secrets.
pub fn capped_claims(claims: Value, max: usize) -> Value {
    let len = |v: &Value| {
        // Measured without building the text: the store serialises the kept claims itself.
        let mut n = ByteCount(0);
        serde_json::to_writer(&mut n, v).map_or(usize::MAX, |()| n.0)
    };
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
    path.parse()
        .map_err(|e| KbsError::PluginInternalError(PluginError::IllegalPath(e)))
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
    pub async fn install_default_policies(&self) -> Result<(), KbsError> {
        let now = self.clock.now_secs()?;
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
            .await?;
        Ok(())
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
            tracing::error!(
                error = &e as &(dyn std::error::Error + 'static),
                action = %entry.action,
                "audit write failed"
            );
        }
    }

    /// Whether the database answers (`/readyz`).
    pub async fn ping(&self) -> Result<(), KbsError> {
        self.store
            .ping()
            .await
            .map_err(|e| KbsError::StorageUnavailable(Unavailable::Ping(e)))
    }

    /// The server's Prometheus metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The public JWKS that verifies this server's attestation tokens.
    pub fn jwks(&self) -> Value {
        self.tokens.jwks()
    }

    /// The clock every expiry is measured by.
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// Deletes expired sessions (run every minute); returns how many.
    pub async fn purge_expired_sessions(&self) -> Result<u64, KbsError> {
        let now = self.clock.now_secs()?;
        Ok(self.store.purge_expired_sessions(now).await?)
    }

    /// Applies the audit retention of `audit` (`max_age_secs`, `max_rows`; 0 disables
    /// either); returns how many rows were removed.
    pub async fn apply_audit_retention(
        &self,
        audit: &crate::config::AuditConfig,
    ) -> Result<u64, KbsError> {
        let max_age_ms = i64::try_from(audit.max_age_secs)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        let before = match audit.max_age_secs {
            0 => None,
            _ => Some(self.clock.now_ms()?.saturating_sub(max_age_ms)),
        };
        let keep = (audit.max_rows > 0).then_some(audit.max_rows);
        Ok(self.store.prune_audit(before, keep).await?)
    }
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
