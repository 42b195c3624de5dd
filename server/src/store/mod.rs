//! Persistent state behind one trait: sessions, policies, reference values, sealed
//! resources and the audit log. Nothing the handshake needs lives in process memory, so any
//! replica can serve any step.

mod migrate;
mod postgres;
mod sql;
mod sqlite;
#[cfg(test)]
mod tests;

use async_trait::async_trait;
use serde::Serialize;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or refused the operation.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database URL is not supported.
    #[error("unsupported database URL scheme {0:?} (expected sqlite://PATH or postgres://...)")]
    UnsupportedUrl(String),
    /// Migrations failed.
    #[error("database migration failed: {0}")]
    Migration(String),
}

/// State of a handshake session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionState {
    /// After `/auth`: the challenge nonce is still unused.
    Authed {
        /// The challenge nonce.
        nonce: String,
    },
    /// After a successful `/attest`.
    Attested {
        /// The attestation token issued.
        token: String,
    },
}

/// A stored session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Cookie value.
    pub id: String,
    /// TEE named at `/auth`.
    pub tee: String,
    /// Hash algorithm for the runtime-data binding.
    pub hash_alg: String,
    /// KBS protocol version named at `/auth`; decides the `/attest` body and the JWE shape.
    pub protocol_version: coffer_protocol::ProtocolVersion,
    /// Where the handshake is.
    pub state: SessionState,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

/// A policy kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// Attestation (appraisal) policy, producing trust claims.
    Attestation,
    /// Resource policy, producing `allow`.
    Resource,
}

impl PolicyKind {
    /// The stored spelling (`StoredPolicy::kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Attestation => "attestation",
            PolicyKind::Resource => "resource",
        }
    }
}

/// A stored policy.
#[derive(Debug, Clone, Serialize)]
pub struct StoredPolicy {
    /// Policy id.
    pub id: String,
    /// `attestation` or `resource`.
    pub kind: String,
    /// Rego text.
    pub body: String,
    /// Unix seconds.
    pub updated_at: i64,
}

/// One audit row.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct AuditEntry {
    /// Sequence number (assigned by the store).
    pub seq: i64,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// `attest`, `release`, `admin:<operation>`.
    pub action: String,
    /// `allow`, `deny` (attestations and releases), `ok` (admin changes).
    pub decision: String,
    /// Session id (cookie), when the call had one.
    pub session_id: Option<String>,
    /// TEE type.
    pub tee: Option<String>,
    /// SHA-256 (hex) of the token claims the decision was based on.
    pub claims_digest: Option<String>,
    /// Resource path or policy id concerned.
    pub resource: Option<String>,
    /// Admin identity (`sub`/`iss` of the admin token) for admin changes.
    pub actor: Option<String>,
    /// Short reason; never secret material.
    pub detail: Option<String>,
    /// The caller's address (TCP peer), when known.
    #[serde(default)]
    pub client_addr: Option<String>,
    /// For attestations: the EAR status (`affirming`, `warning`, `contraindicated`, `none`).
    #[serde(default)]
    pub verdict: Option<String>,
    /// For attestations: the trust vector the attestation policy gave.
    #[serde(default)]
    pub trust_vector: Option<serde_json::Value>,
    /// For attestations: the verified claims (annotated evidence; public values only,
    /// size-capped). Listings leave them out unless asked; [`Store::get_audit`] has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<serde_json::Value>,
    /// Whether the row has recorded claims (also when a listing leaves them out).
    #[serde(default)]
    pub has_claims: bool,
}

/// Which audit rows a listing returns. Every `Some` narrows the result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    /// Rows at or after this time (Unix ms).
    pub since_ms: Option<i64>,
    /// Rows before this time (Unix ms).
    pub until_ms: Option<i64>,
    /// Action: exact (`attest`, `release`, `admin:set-resource`), or `admin` for every admin
    /// change.
    pub action: Option<String>,
    /// TEE type.
    pub tee: Option<String>,
    /// Resource path or policy id: exact, or a prefix when it ends in `*`.
    pub resource: Option<String>,
    /// Decision (`allow`, `deny`, `ok`).
    pub decision: Option<String>,
    /// Session id.
    pub session_id: Option<String>,
    /// Rows with a sequence number above this.
    pub after_seq: Option<i64>,
    /// Newest first (default) or oldest first.
    pub oldest_first: bool,
    /// Rows skipped (paging).
    pub offset: i64,
    /// Most rows returned.
    pub limit: i64,
    /// Include the recorded claims in each row.
    pub with_claims: bool,
}

/// One page of audit rows and how many rows match the filter in all.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct AuditPage {
    /// Rows matching the filter, before paging.
    pub total: i64,
    /// Rows skipped.
    pub offset: i64,
    /// Most rows asked for.
    pub limit: i64,
    /// The rows of this page.
    pub entries: Vec<AuditEntry>,
}

/// The storage seam. Implementations must make [`Store::consume_nonce`] atomic across
/// processes sharing the database.
#[async_trait]
pub trait Store: Send + Sync {
    /// Succeeds when the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Inserts a new `Authed` session.
    async fn create_session(&self, s: &Session) -> Result<(), StoreError>;
    /// Loads a session that has not expired at `now`.
    async fn load_session(&self, id: &str, now: i64) -> Result<Option<Session>, StoreError>;
    /// Atomically moves an `Authed` session whose nonce is `nonce` to `Attested { token }`.
    /// Returns false when the session is gone, expired, already attested or the nonce differs:
    /// the nonce can be consumed once, by one replica.
    async fn consume_nonce(
        &self,
        id: &str,
        nonce: &str,
        token: &str,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Deletes sessions expired at `now`; returns how many.
    async fn purge_expired_sessions(&self, now: i64) -> Result<u64, StoreError>;
    /// Number of stored sessions, expired or not (what the table holds).
    async fn count_sessions(&self) -> Result<u64, StoreError>;
    /// Deletes up to `limit` sessions created before `before` to make room: those that never
    /// attested first (a flood of bare `/auth` calls leaves only such rows), oldest first,
    /// then attested ones; returns how many.
    async fn evict_sessions(&self, limit: u64, before: i64) -> Result<u64, StoreError>;

    /// Inserts or replaces a policy.
    async fn put_policy(
        &self,
        id: &str,
        kind: PolicyKind,
        body: &str,
        now: i64,
    ) -> Result<(), StoreError>;
    /// Inserts a policy only if no policy with that id exists (start-up defaults).
    async fn put_policy_if_absent(
        &self,
        id: &str,
        kind: PolicyKind,
        body: &str,
        now: i64,
    ) -> Result<(), StoreError>;
    /// Loads a policy.
    async fn get_policy(&self, id: &str) -> Result<Option<StoredPolicy>, StoreError>;
    /// Lists policy ids of a kind.
    async fn list_policy_ids(&self, kind: PolicyKind) -> Result<Vec<String>, StoreError>;
    /// Deletes the policy `id` if it is of `kind`; returns whether one was deleted.
    async fn delete_policy(&self, id: &str, kind: PolicyKind) -> Result<bool, StoreError>;

    /// Inserts or replaces a reference value (JSON text).
    async fn put_reference_value(
        &self,
        name: &str,
        value: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError>;
    /// All unexpired reference values as (name, JSON text).
    async fn reference_values(&self, now: i64) -> Result<Vec<(String, String)>, StoreError>;
    /// Deletes a reference value (expired or not); returns whether it existed.
    async fn delete_reference_value(&self, name: &str) -> Result<bool, StoreError>;

    /// Inserts or replaces a sealed resource.
    async fn put_resource(&self, path: &str, sealed: &[u8], now: i64) -> Result<(), StoreError>;
    /// Loads a sealed resource.
    async fn get_resource(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Deletes a resource; returns whether it existed.
    async fn delete_resource(&self, path: &str) -> Result<bool, StoreError>;
    /// Paths of every stored resource, sorted (names only; the sealed bytes stay put).
    async fn list_resource_paths(&self) -> Result<Vec<String>, StoreError>;
    /// Every stored resource as (path, sealed length in bytes, updated_at), sorted by path;
    /// the sealed bytes are not read out.
    async fn list_resource_meta(&self) -> Result<Vec<(String, i64, i64)>, StoreError>;

    /// Stores fetched DCAP collateral under `key`, replacing an older copy.
    async fn put_collateral(
        &self,
        key: &str,
        body: &str,
        not_after: i64,
        now: i64,
    ) -> Result<(), StoreError>;
    /// Cached DCAP collateral for `key` still valid at `now`: (JSON, not_after, fetched_at).
    async fn get_collateral(
        &self,
        key: &str,
        now: i64,
    ) -> Result<Option<(String, i64, i64)>, StoreError>;

    /// Stores a KMS-wrapped key under `name` unless one is already stored (first replica
    /// wins); never replaces.
    async fn put_wrapped_key_if_absent(
        &self,
        name: &str,
        body: &str,
        now: i64,
    ) -> Result<(), StoreError>;
    /// The KMS-wrapped key stored under `name`.
    async fn get_wrapped_key(&self, name: &str) -> Result<Option<String>, StoreError>;

    /// [`Store::consume_nonce`] and, when the nonce was consumed, [`Store::append_audit`] of
    /// `entry`, in one statement (PostgreSQL) or one transaction (SQLite): a successful
    /// attestation costs the handshake no extra round trip for its audit row.
    async fn consume_nonce_audited(
        &self,
        id: &str,
        nonce: &str,
        token: &str,
        now: i64,
        entry: &AuditEntry,
    ) -> Result<bool, StoreError>;

    /// Appends an audit row.
    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// One page of the audit rows matching `filter`, with the total.
    async fn list_audit(&self, filter: &AuditFilter) -> Result<AuditPage, StoreError>;
    /// One audit row by sequence number, with its recorded claims.
    async fn get_audit(&self, seq: i64) -> Result<Option<AuditEntry>, StoreError>;
    /// Counts of audit rows since `since_ms` by (action, decision), admin actions folded
    /// into `admin`.
    async fn audit_counts(&self, since_ms: i64) -> Result<Vec<(String, String, i64)>, StoreError>;
    /// Retention: deletes rows older than `before_ms` and all but the newest `keep_rows`;
    /// returns how many were removed.
    async fn prune_audit(
        &self,
        before_ms: Option<i64>,
        keep_rows: Option<u64>,
    ) -> Result<u64, StoreError>;
}

/// Opens the store named by `url`, creating and migrating it as needed.
pub async fn open(
    url: &str,
    max_connections: u32,
) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(std::sync::Arc::new(
            SqliteStore::open(path, max_connections).await?,
        ))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(
            PgStore::open(url, max_connections).await?,
        ))
    } else {
        Err(StoreError::UnsupportedUrl(
            url.split("://").next().unwrap_or("").to_string(),
        ))
    }
}
