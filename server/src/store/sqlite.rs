//! SQLite store (the embedded default): one file, WAL journal, migrations from
//! `migrations/sqlite`.
//!
//! Statements run on the calling thread through one connection behind a mutex, not on a
//! connection thread reached through channels: a handshake's statements take microseconds
//! in WAL mode, and handing each one to another thread and back cost more CPU (context
//! switches, futex wake-ups) than the statement itself. SQLite serialises writers anyway, so
//! one connection loses no concurrency that mattered, and it never waits on SQLite's busy
//! handler for a lock held by its own process. WAL checkpoints, the only step that waits on
//! the disk (fsync), run on a background thread with their own connection; see
//! [`spawn_checkpointer`] for why its last step holds the request path's lock.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::{Mutex, MutexGuard};
use rusqlite::{params, params_from_iter, Connection, OpenFlags, OptionalExtension};

use super::sql::{
    self, audit_placeholders, audit_where, Arg, AUDIT_COLUMNS, AUDIT_SELECT, CONSUME_NONCE,
    PRUNE_BATCH,
};
use super::{
    AuditEntry, AuditFilter, AuditPage, AuditRow, PolicyKind, Session, SessionRow, SessionState,
    Store, StoreError, StoredPolicy,
};

/// How often the background thread checkpoints the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// A SQLite-backed [`Store`].
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::unavailable(e)
}

fn cannot_open(path: &Path) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::Open {
        path: path.to_path_buf(),
        source: Box::new(e),
    }
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(cannot_open(path))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(cannot_open(path))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
    )
    .map_err(cannot_open(path))?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and runs migrations.
    /// `_max_connections` is accepted for the common signature; SQLite uses one connection.
    pub async fn open(path: &str, _max_connections: u32) -> Result<Self, StoreError> {
        let file = path.split('?').next().unwrap_or(path);
        create_private(file)?;
        let file = PathBuf::from(file);
        let mut conn = open_connection(&file)?;
        // The request path never checkpoints (no fsync under the mutex); the thread below does.
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")
            .map_err(unavailable)?;
        super::migrate::run_sqlite(&mut conn)?;
        let conn = Arc::new(Mutex::new(conn));
        spawn_checkpointer(file, Arc::downgrade(&conn))?;
        Ok(SqliteStore { conn })
    }

    /// Runs one statement (prepared once, cached) and returns the rows it changed.
    fn run(&self, sql: &str, params: impl rusqlite::Params) -> Result<usize, StoreError> {
        self.conn()
            .prepare_cached(sql)
            .and_then(|mut st| st.execute(params))
            .map_err(unavailable)
    }

    /// The connection. A panic elsewhere while holding it leaves SQLite consistent (each
    /// statement is atomic), and parking_lot's lock does not poison. Its eventual fairness
    /// matters: the checkpointer waits for this lock while requests keep taking it.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock()
    }
}

/// Checkpoints the WAL every [`CHECKPOINT_EVERY`] on its own connection until the store is
/// dropped.
///
/// SQLite starts the WAL over from its beginning only after a checkpoint copied every frame
/// in it; a checkpoint that runs while the request path keeps committing never gets there,
/// so under sustained load the WAL grew without bound (half a gigabyte in a 20-second
/// benchmark) and every commit extended the file. Each round therefore copies what is there
/// without the lock (the bulk, and its fsync), then, holding the request path's mutex so no
/// commit slips in, copies the few frames committed meanwhile. The next commit then rewrites
/// the WAL from its start, in pages the kernel already holds.
fn spawn_checkpointer(
    file: PathBuf,
    store: std::sync::Weak<Mutex<Connection>>,
) -> Result<(), StoreError> {
    let conn = open_connection(&file)?;
    let file_for_error = file.clone();
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            let checkpoint = || conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);");
            loop {
                std::thread::sleep(CHECKPOINT_EVERY);
                let result = checkpoint().and_then(|()| {
                    let Some(main) = store.upgrade() else {
                        return Ok(());
                    };
                    let _quiet = main.lock();
                    checkpoint()
                });
                if store.strong_count() == 0 {
                    break;
                }
                if let Err(e) = result {
                    tracing::warn!(error = %e, "SQLite WAL checkpoint failed; retrying");
                }
            }
            let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
        })
        .map(|_| ())
        .map_err(|e| StoreError::Open {
            path: file_for_error,
            source: Box::new(e),
        })
}

/// Creates the database file readable by the owner only before SQLite opens it: SQLite
/// gives its `-wal` and `-shm` files the mode of the database file, so all three are 0600
/// whatever the umask.
fn create_private(file: &str) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    if file.is_empty() || file.starts_with(':') || file.starts_with("file:") {
        return Err(StoreError::NotAFile(file.to_string()));
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Open {
            path: PathBuf::from(file),
            source: Box::new(e),
        }),
    }
}

fn session_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id: row.get("id")?,
        tee: row.get("tee")?,
        hash_alg: row.get("hash_alg")?,
        protocol_version: row.get("protocol_version")?,
        state: row.get("state")?,
        nonce: row.get("nonce")?,
        token: row.get("token")?,
        created_at: row.get("created_at")?,
        expires_at: row.get("expires_at")?,
    })
}

fn audit_row(r: &rusqlite::Row<'_>, with_claims: bool) -> rusqlite::Result<AuditRow> {
    Ok(AuditRow {
        seq: r.get("seq")?,
        at_ms: r.get("at_ms")?,
        action: r.get("action")?,
        decision: r.get("decision")?,
        session_id: r.get("session_id")?,
        tee: r.get("tee")?,
        claims_digest: r.get("claims_digest")?,
        resource: r.get("resource")?,
        actor: r.get("actor")?,
        detail: r.get("detail")?,
        client_addr: r.get("client_addr")?,
        verdict: r.get("verdict")?,
        trust_vector: r.get("trust_vector")?,
        claims: if with_claims { r.get("claims")? } else { None },
        has_claims: r.get::<_, i64>("has_claims")? != 0,
    })
}

/// The shared SQL (`store/sql.rs`) numbers its parameters `$N`, which SQLite would read as
/// names; `?N` are SQLite's numbered parameters.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

fn arg_value(a: &Arg) -> rusqlite::types::Value {
    match a {
        Arg::Int(i) => rusqlite::types::Value::Integer(*i),
        Arg::Text(t) => rusqlite::types::Value::Text(t.clone()),
    }
}

/// An audit row's values in [`AUDIT_COLUMNS`] order.
fn audit_values(e: &AuditEntry) -> [rusqlite::types::Value; 13] {
    use rusqlite::types::Value;
    let text = |v: &Option<String>| v.clone().map_or(Value::Null, Value::Text);
    let json = |v: &Option<serde_json::Value>| {
        v.as_ref()
            .map_or(Value::Null, |v| Value::Text(v.to_string()))
    };
    [
        Value::Integer(e.at_ms),
        Value::Text(e.action.to_string()),
        Value::Text(e.decision.as_str().into()),
        text(&e.session_id),
        text(&e.tee),
        text(&e.claims_digest),
        text(&e.resource),
        text(&e.actor),
        text(&e.detail),
        text(&e.client_addr),
        text(&e.verdict),
        json(&e.trust_vector),
        json(&e.claims),
    ]
}

fn insert_audit(conn: &Connection, e: &AuditEntry) -> rusqlite::Result<()> {
    let sql = numbered(&format!(
        "INSERT INTO audit ({AUDIT_COLUMNS}) VALUES ({})",
        audit_placeholders(1)
    ));
    conn.prepare_cached(&sql)?
        .execute(params_from_iter(audit_values(e)))
        .map(|_| ())
}

/// Row counts fit i64; SQLite reports them as usize.
fn count(n: usize) -> u64 {
    n as u64
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.conn()
            .query_row("SELECT 1", [], |_| Ok(()))
            .map_err(unavailable)
    }

    async fn create_session(&self, s: &Session) -> Result<(), StoreError> {
        let SessionState::Authed { nonce } = &s.state else {
            return Err(StoreError::Misuse(
                "new sessions must be in the authed state",
            ));
        };
        self.conn()
            .prepare_cached(sql::CREATE_SESSION)
            .and_then(|mut st| {
                st.execute(params![
                    s.id,
                    s.tee.name(),
                    nonce,
                    s.hash_alg.name(),
                    s.protocol_version.as_str(),
                    s.created_at,
                    s.expires_at
                ])
            })
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn load_session(&self, id: &str, now: i64) -> Result<Option<Session>, StoreError> {
        self.conn()
            .prepare_cached(sql::LOAD_SESSION)
            .and_then(|mut st| st.query_row(params![id, now], session_row).optional())
            .map_err(unavailable)?
            .map(SessionRow::parse)
            .transpose()
    }

    async fn consume_nonce(
        &self,
        id: &str,
        nonce: &str,
        token: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.conn()
            .prepare_cached(&numbered(CONSUME_NONCE))
            .and_then(|mut st| st.execute(params![token, id, nonce, now]))
            .map(|n| n == 1)
            .map_err(unavailable)
    }

    async fn purge_expired_sessions(&self, now: i64) -> Result<u64, StoreError> {
        self.conn()
            .prepare_cached(sql::PURGE_EXPIRED_SESSIONS)
            .and_then(|mut st| st.execute(params![now]))
            .map(count)
            .map_err(unavailable)
    }

    async fn count_sessions(&self) -> Result<u64, StoreError> {
        self.conn()
            .prepare_cached("SELECT COUNT(*) FROM sessions")
            .and_then(|mut st| st.query_row([], |r| r.get::<_, i64>(0)))
            .map(|n| n.max(0) as u64)
            .map_err(unavailable)
    }

    async fn evict_sessions(&self, limit: u64, before: i64) -> Result<u64, StoreError> {
        self.conn()
            .prepare_cached(
                "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions \
                 WHERE created_at < ?2 ORDER BY state, created_at LIMIT ?1)",
            )
            .and_then(|mut st| st.execute(params![limit.min(i64::MAX as u64) as i64, before]))
            .map(count)
            .map_err(unavailable)
    }

    async fn put_policy(
        &self,
        id: &str,
        kind: PolicyKind,
        body: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.run(sql::PUT_POLICY, params![id, kind.as_str(), body, now])
            .map(|_| ())
    }

    async fn put_policy_if_absent(
        &self,
        id: &str,
        kind: PolicyKind,
        body: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.run(
            sql::PUT_POLICY_IF_ABSENT,
            params![id, kind.as_str(), body, now],
        )
        .map(|_| ())
    }

    async fn get_policy(&self, id: &str) -> Result<Option<StoredPolicy>, StoreError> {
        self.conn()
            .prepare_cached(sql::GET_POLICY)
            .and_then(|mut st| {
                st.query_row(params![id], |r| {
                    Ok((r.get(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get(3)?))
                })
                .optional()
            })
            .map_err(unavailable)?
            .map(|(id, kind, body, updated_at)| {
                Ok(StoredPolicy {
                    id,
                    kind: kind.parse()?,
                    body,
                    updated_at,
                })
            })
            .transpose()
    }

    async fn list_policy_ids(&self, kind: PolicyKind) -> Result<Vec<String>, StoreError> {
        self.conn()
            .prepare_cached(sql::LIST_POLICY_IDS)
            .and_then(|mut st| {
                st.query_map(params![kind.as_str()], |r| r.get(0))?
                    .collect()
            })
            .map_err(unavailable)
    }

    async fn delete_policy(&self, id: &str, kind: PolicyKind) -> Result<bool, StoreError> {
        self.run(sql::DELETE_POLICY, params![id, kind.as_str()])
            .map(|n| n > 0)
    }

    async fn put_reference_value(
        &self,
        name: &str,
        value: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        self.run(
            sql::PUT_REFERENCE_VALUE,
            params![name, value, expires_at, now],
        )
        .map(|_| ())
    }

    async fn reference_values(&self, now: i64) -> Result<Vec<(String, String)>, StoreError> {
        self.conn()
            .prepare_cached(sql::REFERENCE_VALUES)
            .and_then(|mut st| {
                st.query_map(params![now], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .map_err(unavailable)
    }

    async fn delete_reference_value(&self, name: &str) -> Result<bool, StoreError> {
        self.run(sql::DELETE_REFERENCE_VALUE, params![name])
            .map(|n| n > 0)
    }

    async fn put_resource(&self, path: &str, sealed: &[u8], now: i64) -> Result<(), StoreError> {
        self.run(sql::PUT_RESOURCE, params![path, sealed, now])
            .map(|_| ())
    }

    async fn get_resource(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn()
            .prepare_cached(sql::GET_RESOURCE)
            .and_then(|mut st| st.query_row(params![path], |r| r.get(0)).optional())
            .map_err(unavailable)
    }

    async fn delete_resource(&self, path: &str) -> Result<bool, StoreError> {
        self.run(sql::DELETE_RESOURCE, params![path]).map(|n| n > 0)
    }

    async fn list_resource_paths(&self) -> Result<Vec<String>, StoreError> {
        let mut paths: Vec<String> = self
            .conn()
            .prepare_cached(sql::LIST_RESOURCE_PATHS)
            .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
            .map_err(unavailable)?;
        // Sorted here, as the PostgreSQL store does (its collation may ignore `/`).
        paths.sort();
        Ok(paths)
    }

    async fn list_resource_meta(&self) -> Result<Vec<(String, i64, i64)>, StoreError> {
        // length() of a BLOB is its size in bytes; the bytes are not read out.
        let mut out: Vec<(String, i64, i64)> = self
            .conn()
            .prepare_cached("SELECT path, length(sealed), updated_at FROM resources")
            .and_then(|mut st| {
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .map_err(unavailable)?;
        out.sort();
        Ok(out)
    }

    async fn put_collateral(
        &self,
        key: &str,
        body: &str,
        not_after: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        self.run(sql::PUT_COLLATERAL, params![key, body, not_after, now])
            .map(|_| ())
    }

    async fn get_collateral(
        &self,
        key: &str,
        now: i64,
    ) -> Result<Option<(String, i64, i64)>, StoreError> {
        self.conn()
            .prepare_cached(sql::GET_COLLATERAL)
            .and_then(|mut st| {
                st.query_row(params![key, now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
            })
            .map_err(unavailable)
    }

    async fn put_wrapped_key_if_absent(
        &self,
        name: &str,
        body: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.run(sql::PUT_WRAPPED_KEY_IF_ABSENT, params![name, body, now])
            .map(|_| ())
    }

    async fn get_wrapped_key(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.conn()
            .query_row(sql::GET_WRAPPED_KEY, params![name], |r| r.get(0))
            .optional()
            .map_err(unavailable)
    }

    async fn consume_nonce_audited(
        &self,
        id: &str,
        nonce: &str,
        token: &str,
        now: i64,
        entry: &AuditEntry,
    ) -> Result<bool, StoreError> {
        // The nonce update and the audit row in one transaction: one commit, and no
        // attestation without its record.
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(unavailable)?;
        let consumed = tx
            .prepare_cached(&numbered(CONSUME_NONCE))
            .and_then(|mut st| st.execute(params![token, id, nonce, now]))
            .map_err(unavailable)?
            == 1;
        if !consumed {
            return Ok(false);
        }
        insert_audit(&tx, entry).map_err(unavailable)?;
        tx.commit().map_err(unavailable)?;
        Ok(true)
    }

    async fn append_audit(&self, e: &AuditEntry) -> Result<(), StoreError> {
        insert_audit(&self.conn(), e).map_err(unavailable)
    }

    async fn list_audit(&self, f: &AuditFilter) -> Result<AuditPage, StoreError> {
        let (cond, args) = audit_where(f);
        let mut values: Vec<rusqlite::types::Value> = args.iter().map(arg_value).collect();
        let conn = self.conn();
        let total: i64 = conn
            .prepare(&numbered(&format!("SELECT COUNT(*) FROM audit{cond}")))
            .and_then(|mut st| st.query_row(params_from_iter(values.iter()), |r| r.get(0)))
            .map_err(unavailable)?;
        let n = values.len();
        let sql = numbered(&format!(
            "{AUDIT_SELECT}{} FROM audit{cond} ORDER BY seq {} LIMIT ${} OFFSET ${}",
            if f.with_claims { ", claims" } else { "" },
            if f.oldest_first { "ASC" } else { "DESC" },
            n + 1,
            n + 2
        ));
        values.push(rusqlite::types::Value::Integer(f.limit.max(0)));
        values.push(rusqlite::types::Value::Integer(f.offset.max(0)));
        let rows: Vec<AuditRow> = conn
            .prepare(&sql)
            .and_then(|mut st| {
                st.query_map(params_from_iter(values.iter()), |r| {
                    audit_row(r, f.with_claims)
                })?
                .collect()
            })
            .map_err(unavailable)?;
        let entries = rows
            .into_iter()
            .map(AuditRow::parse)
            .collect::<Result<_, _>>()?;
        Ok(AuditPage {
            total,
            offset: f.offset.max(0),
            limit: f.limit.max(0),
            entries,
        })
    }

    async fn get_audit(&self, seq: i64) -> Result<Option<AuditEntry>, StoreError> {
        self.conn()
            .prepare_cached(&format!("{AUDIT_SELECT}, claims FROM audit WHERE seq = ?1"))
            .and_then(|mut st| {
                st.query_row(params![seq], |r| audit_row(r, true))
                    .optional()
            })
            .map_err(unavailable)?
            .map(AuditRow::parse)
            .transpose()
    }

    async fn audit_counts(&self, since_ms: i64) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.conn()
            .prepare_cached(
                "SELECT CASE WHEN substr(action, 1, 6) = 'admin:' THEN 'admin' ELSE action END AS a, \
                 decision, COUNT(*) FROM audit WHERE at_ms >= ?1 GROUP BY 1, 2 ORDER BY 1, 2",
            )
            .and_then(|mut st| {
                st.query_map(params![since_ms], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .map_err(unavailable)
    }

    async fn prune_audit(
        &self,
        before_ms: Option<i64>,
        keep_rows: Option<u64>,
    ) -> Result<u64, StoreError> {
        // A batch per statement, the lock released in between, so a first pass over a large
        // table does not stall handshakes.
        let batch = |sql: &str, a: i64| -> Result<u64, StoreError> {
            let mut removed = 0u64;
            loop {
                let n = self
                    .conn()
                    .prepare_cached(sql)
                    .and_then(|mut st| st.execute(params![a, PRUNE_BATCH]))
                    .map_err(unavailable)? as u64;
                removed += n;
                if n < PRUNE_BATCH as u64 {
                    return Ok(removed);
                }
            }
        };
        let mut removed = 0;
        if let Some(before) = before_ms {
            removed += batch(sql::PRUNE_AUDIT_BY_AGE, before)?;
        }
        if let Some(keep) = keep_rows {
            // The (keep+1)-th newest row and everything older.
            removed += batch(sql::PRUNE_AUDIT_BY_ROWS, keep.min(i64::MAX as u64) as i64)?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_protocol::AuditAction;

    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let s = SqliteStore::open(path.to_str().unwrap(), 2).await.unwrap();
        crate::store::tests::conformance(&s).await;
        // The database and its WAL companions are the owner's only.
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["", "-wal", "-shm"] {
            let f = dir.path().join(format!("t.db{suffix}"));
            let mode = std::fs::metadata(&f).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", f.display());
        }
        // Recorded rows never change; removal is the retention's (audit.max_*).
        assert!(s
            .conn()
            .execute("UPDATE audit SET decision = 'x'", [])
            .is_err());
        assert!(s.conn().execute("DELETE FROM audit", []).is_ok());
    }

    /// A stored name this build does not know is an error naming the column, never a
    /// default: a session whose hash algorithm read as SHA-384 would check evidence against
    /// the wrong digest.
    #[tokio::test]
    async fn unreadable_rows_are_errors_naming_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path().join("t.db").to_str().unwrap(), 1)
            .await
            .unwrap();
        let insert = |id: &str, tee: &str, alg: &str, version: &str| {
            s.conn()
                .execute(
                    "INSERT INTO sessions (id, tee, nonce, hash_alg, protocol_version, state, created_at, expires_at) \
                     VALUES (?1, ?2, 'n', ?3, ?4, 0, 0, 100)",
                    params![id, tee, alg, version],
                )
                .unwrap();
        };
        insert("alg", "sample", "sm3", "0.4.0");
        insert("tee", "quantum", "sha384", "0.4.0");
        insert("ver", "sample", "sha384", "9.9.9");
        insert("ok", "sample", "SHA256", "0.4.0");
        for (id, col) in [
            ("alg", "sessions.hash_alg"),
            ("tee", "sessions.tee"),
            ("ver", "sessions.protocol_version"),
        ] {
            match s.load_session(id, 1).await {
                Err(StoreError::Corrupt { column, .. }) => assert_eq!(column, col),
                other => panic!("{id}: {other:?}"),
            }
        }
        let ok = s.load_session("ok", 1).await.unwrap().unwrap();
        assert_eq!(ok.hash_alg, coffer_protocol::HashAlgorithm::Sha256);

        s.conn()
            .execute(
                "INSERT INTO policies (id, kind, body, updated_at) VALUES ('p', 'other', '', 0)",
                [],
            )
            .unwrap();
        assert!(matches!(
            s.get_policy("p").await,
            Err(StoreError::Corrupt {
                column: "policies.kind",
                ..
            })
        ));
        s.conn()
            .execute(
                "INSERT INTO audit (at_ms, action, decision) VALUES (1, 'admin:reboot', 'ok')",
                [],
            )
            .unwrap();
        let all = AuditFilter {
            limit: 10,
            ..Default::default()
        };
        // An action from a newer server is listed as stored (see AuditAction::Unrecognised);
        // a decision no version writes is corrupt data, named.
        let page = s.list_audit(&all).await.unwrap();
        assert_eq!(
            page.entries[0].action,
            AuditAction::Unrecognised("admin:reboot".into())
        );
        s.conn()
            .execute(
                "INSERT INTO audit (at_ms, action, decision) VALUES (2, 'attest', 'perhaps')",
                [],
            )
            .unwrap();
        assert!(matches!(
            s.list_audit(&all).await,
            Err(StoreError::Corrupt {
                column: "audit.decision",
                ..
            })
        ));
    }

    #[tokio::test]
    async fn reopening_keeps_data_and_applies_no_migration_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let p = path.to_str().unwrap();
        {
            let s = SqliteStore::open(p, 1).await.unwrap();
            s.put_resource("a/b/c", b"x", 1).await.unwrap();
        }
        let s = SqliteStore::open(p, 1).await.unwrap();
        assert_eq!(s.get_resource("a/b/c").await.unwrap().unwrap(), b"x");
    }

    /// The WAL header's checkpoint sequence number (bytes 12..16), which SQLite increments
    /// each time it starts the WAL over from its beginning.
    fn wal_restarts(db: &Path) -> u32 {
        let wal = std::fs::read(db.with_extension("db-wal")).unwrap_or_default();
        wal.get(12..16)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    #[tokio::test]
    async fn the_wal_starts_over_while_writes_never_pause() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let s = SqliteStore::open(path.to_str().unwrap(), 1).await.unwrap();
        s.put_resource("a/b/0", &[0u8; 512], 1).await.unwrap();
        let first = wal_restarts(&path);
        // Back-to-back commits for several checkpoint intervals: a checkpoint that runs
        // beside them never finds the WAL fully copied unless it stops them briefly.
        let until = std::time::Instant::now() + CHECKPOINT_EVERY * 6;
        let mut i = 0u64;
        while std::time::Instant::now() < until {
            s.put_resource(&format!("a/b/{}", i % 1000), &i.to_le_bytes(), 1)
                .await
                .unwrap();
            i += 1;
        }
        assert!(
            wal_restarts(&path) >= first + 2,
            "the WAL never started over under {i} back-to-back commits"
        );
    }

    #[tokio::test]
    async fn the_checkpointer_moves_the_wal_into_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let s = SqliteStore::open(path.to_str().unwrap(), 1).await.unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        for i in 0..200 {
            s.put_resource(&format!("a/b/{i}"), &[0u8; 4096], 1)
                .await
                .unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&path).unwrap().len() <= before + 200 * 4096 {
            assert!(std::time::Instant::now() < deadline, "no checkpoint ran");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
