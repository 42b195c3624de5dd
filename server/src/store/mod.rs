//! Persistent state behind one trait: sessions, policies, reference values, sealed
//! resources and the audit log. Nothing the handshake needs lives in process memory, so any
//! replica can serve any step.

mod migrate;
mod postgres;
mod sql;
mod sqlite;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::str::FromStr;

use async_trait::async_trait;
use coffer_protocol::{HashAlgorithm, ProtocolVersion, Tee};

// The audit log's and the listings' wire types are coffer-protocol's, shared with the client;
// re-exported here because the store reads and writes them.
pub use coffer_protocol::admin::{PolicyKind, StoredPolicy, UnknownPolicyKind};
pub use coffer_protocol::audit::{
    AdminOp, AuditAction, AuditEntry, AuditPage, Decision, UnknownAction, UnknownDecision,
};

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// A driver's error (sqlx, rusqlite) or an I/O error, kept as the cause of a [`StoreError`].
pub type DriverError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Store failures. The texts never contain stored values other than the unreadable one of
/// [`StoreError::Corrupt`] (an identifier such as a TEE or algorithm name, never a secret).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or refused the operation (the driver's error says why).
    #[error("database unavailable")]
    Unavailable(#[source] DriverError),
    /// The database file could not be created or opened.
    #[error("cannot open the database {path}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The driver's or the file system's error.
        #[source]
        source: DriverError,
    },
    /// A `sqlite://` URL that names no file (`:memory:`, `file:` URIs, nothing).
    #[error("{0:?} is not a database file path (use sqlite:///path/to/coffer.db)")]
    NotAFile(String),
    /// The database URL is not supported.
    #[error("unsupported database URL scheme {0:?} (expected sqlite://PATH or postgres://...)")]
    UnsupportedUrl(String),
    /// Migrations failed: the database holds a migration history this build does not
    /// accept (changed or half-applied migrations).
    #[error("database migration failed: {0}")]
    Migration(String),
    /// Running the migrations failed in the driver.
    #[error("database migration failed")]
    MigrationDriver(#[source] DriverError),
    /// One migration's SQL failed.
    #[error("database migration {version} ({description}) failed")]
    MigrationStep {
        /// Its number.
        version: i64,
        /// Its name.
        description: String,
        /// The driver's error.
        #[source]
        source: DriverError,
    },
    /// The caller broke the [`Store`] contract (a bug in this server, not a database
    /// problem), e.g. creating a session that is not in the `Authed` state.
    #[error("store misuse: {0}")]
    Misuse(&'static str),
    /// A stored value cannot be read back as its type: written by hand, or by another
    /// version of this server.
    #[error("stored {column} {value:?} is not valid")]
    Corrupt {
        /// `table.column`.
        column: &'static str,
        /// The stored text.
        value: String,
    },
}

/// A stored policy kind that is neither `attestation` nor `resource`.
impl From<UnknownPolicyKind> for StoreError {
    fn from(e: UnknownPolicyKind) -> Self {
        StoreError::Corrupt {
            column: "policies.kind",
            value: e.0,
        }
    }
}

impl StoreError {
    /// Wraps a driver error as [`StoreError::Unavailable`].
    pub fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Unavailable(Box::new(e))
    }
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
    /// TEE named at `/auth` (stored as its wire name).
    pub tee: Tee,
    /// Hash algorithm for the runtime-data binding (stored as its name).
    pub hash_alg: HashAlgorithm,
    /// KBS protocol version named at `/auth`; decides the `/attest` body and the JWE shape.
    pub protocol_version: ProtocolVersion,
    /// Where the handshake is.
    pub state: SessionState,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

/// Which actions an audit listing returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionFilter {
    /// Exactly this action.
    Is(AuditAction),
    /// Every admin change (`action=admin`).
    AnyAdmin,
}

impl FromStr for ActionFilter {
    type Err = UnknownAction;

    fn from_str(s: &str) -> Result<Self, UnknownAction> {
        if s == "admin" {
            Ok(ActionFilter::AnyAdmin)
        } else {
            s.parse().map(ActionFilter::Is)
        }
    }
}

/// Reads a stored column through `FromStr`, naming the column when it does not parse.
pub(crate) fn parse_column<T: FromStr>(
    column: &'static str,
    value: String,
) -> Result<T, StoreError> {
    value
        .parse()
        .map_err(|_| StoreError::Corrupt { column, value })
}

/// Reads a stored hash algorithm name; one this build does not know is an error, never the
/// default algorithm (the evidence would be checked against the wrong digest).
pub(crate) fn parse_hash_alg(value: String) -> Result<HashAlgorithm, StoreError> {
    HashAlgorithm::from_name(&value).ok_or(StoreError::Corrupt {
        column: "sessions.hash_alg",
        value,
    })
}

/// A `sessions` row as a driver reads it, before its columns are parsed.
pub(crate) struct SessionRow {
    pub id: String,
    pub tee: String,
    pub hash_alg: String,
    pub protocol_version: String,
    pub state: i64,
    pub nonce: Option<String>,
    pub token: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

impl SessionRow {
    /// The session, or [`StoreError::Corrupt`] naming the first column that does not parse
    /// (a TEE, algorithm or protocol version this build does not know, a missing nonce or
    /// token).
    pub(crate) fn parse(self) -> Result<Session, StoreError> {
        let missing = |column| StoreError::Corrupt {
            column,
            value: "NULL".into(),
        };
        let state = if self.state == 1 {
            SessionState::Attested {
                token: self.token.ok_or_else(|| missing("sessions.token"))?,
            }
        } else {
            SessionState::Authed {
                nonce: self.nonce.ok_or_else(|| missing("sessions.nonce"))?,
            }
        };
        Ok(Session {
            id: self.id,
            tee: parse_column("sessions.tee", self.tee)?,
            hash_alg: parse_hash_alg(self.hash_alg)?,
            protocol_version: parse_column("sessions.protocol_version", self.protocol_version)?,
            state,
            created_at: self.created_at,
            expires_at: self.expires_at,
        })
    }
}

/// An `audit` row as a driver reads it, before its columns are parsed.
pub(crate) struct AuditRow {
    pub seq: i64,
    pub at_ms: i64,
    pub action: String,
    pub decision: String,
    pub session_id: Option<String>,
    pub tee: Option<String>,
    pub claims_digest: Option<String>,
    pub resource: Option<String>,
    pub actor: Option<String>,
    pub detail: Option<String>,
    pub client_addr: Option<String>,
    pub verdict: Option<String>,
    pub trust_vector: Option<String>,
    pub claims: Option<String>,
    pub has_claims: bool,
}

impl AuditRow {
    /// The entry; an action from a newer server reads as [`AuditAction::Unrecognised`], a
    /// decision no version of this server writes is [`StoreError::Corrupt`]. JSON columns
    /// that do not parse read as absent: they are informative only, and one bad row must not
    /// hide the rest of the log.
    pub(crate) fn parse(self) -> Result<AuditEntry, StoreError> {
        let json = |t: Option<String>| t.and_then(|t| serde_json::from_str(&t).ok());
        Ok(AuditEntry {
            seq: self.seq,
            at_ms: self.at_ms,
            action: AuditAction::from_stored(&self.action),
            decision: parse_column("audit.decision", self.decision)?,
            session_id: self.session_id,
            tee: self.tee,
            claims_digest: self.claims_digest,
            resource: self.resource,
            actor: self.actor,
            detail: self.detail,
            client_addr: self.client_addr,
            verdict: self.verdict,
            trust_vector: json(self.trust_vector),
            claims: json(self.claims),
            has_claims: self.has_claims,
        })
    }
}

/// Which audit rows a listing returns. Every `Some` narrows the result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    /// Rows at or after this time (Unix ms).
    pub since_ms: Option<i64>,
    /// Rows before this time (Unix ms).
    pub until_ms: Option<i64>,
    /// Action: one, or every admin change.
    pub action: Option<ActionFilter>,
    /// TEE type.
    pub tee: Option<String>,
    /// Resource path or policy id: exact, or a prefix when it ends in `*`.
    pub resource: Option<String>,
    /// Decision.
    pub decision: Option<Decision>,
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
