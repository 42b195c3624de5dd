//! SQLite store (the embedded default): one file, WAL journal, migrations from
//! `migrations/sqlite`.
//!
//! Statements run on the calling thread through one connection behind a mutex, not on a
//! connection thread reached through channels: a handshake's statements take microseconds
//! in WAL mode, and handing each one to another thread and back cost more CPU (context
//! switches, futex wake-ups) than the statement itself. SQLite serialises writers anyway, so
//! one connection loses no concurrency that mattered, and it never waits on SQLite's busy
//! handler for a lock held by its own process. WAL checkpoints, the only step that waits on
//! the disk (fsync), run on a background thread with their own connection.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::{AuditEntry, PolicyKind, Session, SessionState, Store, StoreError, StoredPolicy};

/// How often the background thread checkpoints the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// A SQLite-backed [`Store`].
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| {
        StoreError::Unavailable(format!("cannot open the database {}: {e}", path.display()))
    })?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(unavailable)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
    )
    .map_err(unavailable)?;
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

    /// The connection; a panic elsewhere while holding it leaves SQLite consistent (each
    /// statement is atomic), so a poisoned lock is taken over.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Checkpoints the WAL every [`CHECKPOINT_EVERY`] on its own connection until the store is
/// dropped. PASSIVE never blocks the request path's reads or writes.
fn spawn_checkpointer(file: PathBuf, store: std::sync::Weak<Mutex<Connection>>) -> Result<(), StoreError> {
    let conn = open_connection(&file)?;
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            while store.strong_count() > 0 {
                std::thread::sleep(CHECKPOINT_EVERY);
                if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);") {
                    tracing::warn!(error = %e, "SQLite WAL checkpoint failed; retrying");
                }
            }
            let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
        })
        .map(|_| ())
        .map_err(|e| StoreError::Unavailable(format!("cannot start the checkpoint thread: {e}")))
}

/// Creates the database file readable by the owner only before SQLite opens it: SQLite
/// gives its `-wal` and `-shm` files the mode of the database file, so all three are 0600
/// whatever the umask.
fn create_private(file: &str) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    if file.is_empty() || file.starts_with(':') || file.starts_with("file:") {
        return Err(StoreError::Unavailable(format!(
            "{file:?} is not a database file path (use sqlite:///path/to/coffer.db)"
        )));
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Unavailable(format!(
            "cannot create the database file {file}: {e}"
        ))),
    }
}

fn session_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Session> {
    let state: i64 = row.get("state")?;
    let state = if state == 1 {
        SessionState::Attested {
            token: row.get::<_, Option<String>>("token")?.unwrap_or_default(),
        }
    } else {
        SessionState::Authed {
            nonce: row.get::<_, Option<String>>("nonce")?.unwrap_or_default(),
        }
    };
    Ok(Session {
        id: row.get("id")?,
        tee: row.get("tee")?,
        hash_alg: row.get("hash_alg")?,
        // Rows are written by this server from a parsed version; a value it does not know
        // (a newer server's) falls back to the newest version.
        protocol_version: row
            .get::<_, String>("protocol_version")?
            .parse()
            .unwrap_or_default(),
        state,
        created_at: row.get("created_at")?,
        expires_at: row.get("expires_at")?,
    })
}

fn audit_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
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
    })
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
            return Err(StoreError::Unavailable(
                "new sessions must be in the authed state".into(),
            ));
        };
        self.conn()
            .prepare_cached(
                "INSERT INTO sessions (id, tee, nonce, hash_alg, protocol_version, state, created_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    s.id,
                    s.tee,
                    nonce,
                    s.hash_alg,
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
            .prepare_cached("SELECT * FROM sessions WHERE id = ?1 AND expires_at > ?2")
            .and_then(|mut st| st.query_row(params![id, now], session_from_row).optional())
            .map_err(unavailable)
    }

    async fn consume_nonce(
        &self,
        id: &str,
        nonce: &str,
        token: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.conn()
            .prepare_cached(
                "UPDATE sessions SET state = 1, token = ?1, nonce = NULL \
                 WHERE id = ?2 AND state = 0 AND nonce = ?3 AND expires_at > ?4",
            )
            .and_then(|mut st| st.execute(params![token, id, nonce, now]))
            .map(|n| n == 1)
            .map_err(unavailable)
    }

    async fn purge_expired_sessions(&self, now: i64) -> Result<u64, StoreError> {
        self.conn()
            .prepare_cached("DELETE FROM sessions WHERE expires_at <= ?1")
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
        self.conn()
            .execute(
                "INSERT INTO policies (id, kind, body, updated_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, body = excluded.body, updated_at = excluded.updated_at",
                params![id, kind.as_str(), body, now],
            )
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn put_policy_if_absent(
        &self,
        id: &str,
        kind: PolicyKind,
        body: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO policies (id, kind, body, updated_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (id) DO NOTHING",
                params![id, kind.as_str(), body, now],
            )
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn get_policy(&self, id: &str) -> Result<Option<StoredPolicy>, StoreError> {
        self.conn()
            .prepare_cached("SELECT id, kind, body, updated_at FROM policies WHERE id = ?1")
            .and_then(|mut st| {
                st.query_row(params![id], |r| {
                    Ok(StoredPolicy {
                        id: r.get(0)?,
                        kind: r.get(1)?,
                        body: r.get(2)?,
                        updated_at: r.get(3)?,
                    })
                })
                .optional()
            })
            .map_err(unavailable)
    }

    async fn list_policy_ids(&self, kind: PolicyKind) -> Result<Vec<String>, StoreError> {
        self.conn()
            .prepare_cached("SELECT id FROM policies WHERE kind = ?1 ORDER BY id")
            .and_then(|mut st| {
                st.query_map(params![kind.as_str()], |r| r.get(0))?
                    .collect()
            })
            .map_err(unavailable)
    }

    async fn delete_policy(&self, id: &str, kind: PolicyKind) -> Result<bool, StoreError> {
        self.conn()
            .execute(
                "DELETE FROM policies WHERE id = ?1 AND kind = ?2",
                params![id, kind.as_str()],
            )
            .map(|n| n > 0)
            .map_err(unavailable)
    }

    async fn put_reference_value(
        &self,
        name: &str,
        value: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO reference_values (name, value, expires_at, updated_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at, updated_at = excluded.updated_at",
                params![name, value, expires_at, now],
            )
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn reference_values(&self, now: i64) -> Result<Vec<(String, String)>, StoreError> {
        self.conn()
            .prepare_cached("SELECT name, value FROM reference_values WHERE expires_at > ?1")
            .and_then(|mut st| {
                st.query_map(params![now], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .map_err(unavailable)
    }

    async fn delete_reference_value(&self, name: &str) -> Result<bool, StoreError> {
        self.conn()
            .execute(
                "DELETE FROM reference_values WHERE name = ?1",
                params![name],
            )
            .map(|n| n > 0)
            .map_err(unavailable)
    }

    async fn put_resource(&self, path: &str, sealed: &[u8], now: i64) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO resources (path, sealed, updated_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (path) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
                params![path, sealed, now],
            )
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn get_resource(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn()
            .prepare_cached("SELECT sealed FROM resources WHERE path = ?1")
            .and_then(|mut st| st.query_row(params![path], |r| r.get(0)).optional())
            .map_err(unavailable)
    }

    async fn delete_resource(&self, path: &str) -> Result<bool, StoreError> {
        self.conn()
            .execute("DELETE FROM resources WHERE path = ?1", params![path])
            .map(|n| n > 0)
            .map_err(unavailable)
    }

    async fn list_resource_paths(&self) -> Result<Vec<String>, StoreError> {
        let mut paths: Vec<String> = self
            .conn()
            .prepare_cached("SELECT path FROM resources")
            .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
            .map_err(unavailable)?;
        // Sorted here, as the PostgreSQL store does (its collation may ignore `/`).
        paths.sort();
        Ok(paths)
    }

    async fn put_collateral(
        &self,
        key: &str,
        body: &str,
        not_after: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO dcap_collateral (key, body, not_after, fetched_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (key) DO UPDATE SET body = excluded.body, not_after = excluded.not_after, fetched_at = excluded.fetched_at",
                params![key, body, not_after, now],
            )
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn get_collateral(
        &self,
        key: &str,
        now: i64,
    ) -> Result<Option<(String, i64, i64)>, StoreError> {
        self.conn()
            .prepare_cached(
                "SELECT body, not_after, fetched_at FROM dcap_collateral WHERE key = ?1 AND not_after > ?2",
            )
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
        self.conn()
            .execute(
                "INSERT INTO wrapped_keys (name, body, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (name) DO NOTHING",
                params![name, body, now],
            )
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn get_wrapped_key(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.conn()
            .query_row(
                "SELECT body FROM wrapped_keys WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()
            .map_err(unavailable)
    }

    async fn append_audit(&self, e: &AuditEntry) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO audit (at_ms, action, decision, session_id, tee, claims_digest, resource, actor, detail) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    e.at_ms,
                    e.action,
                    e.decision,
                    e.session_id,
                    e.tee,
                    e.claims_digest,
                    e.resource,
                    e.actor,
                    e.detail
                ])
            })
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn list_audit(&self, after: i64, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        self.conn()
            .prepare_cached(
                "SELECT * FROM (SELECT * FROM audit WHERE seq > ?1 ORDER BY seq DESC LIMIT ?2) ORDER BY seq ASC",
            )
            .and_then(|mut st| st.query_map(params![after, limit], audit_from_row)?.collect())
            .map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(s.conn().execute("DELETE FROM audit", []).is_err());
        assert!(s.conn().execute("UPDATE audit SET decision = 'x'", []).is_err());
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
