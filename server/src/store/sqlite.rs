//! SQLite store (the embedded default): one file, WAL journal, migrations from
//! `migrations/sqlite`.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;

use super::{AuditEntry, PolicyKind, Session, SessionState, Store, StoreError, StoredPolicy};

/// A SQLite-backed [`Store`].
pub struct SqliteStore {
    pool: SqlitePool,
}

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and runs migrations.
    pub async fn open(path: &str, max_connections: u32) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
            .map_err(unavailable)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts)
            .await
            .map_err(unavailable)?;
        sqlx::migrate!("../migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        Ok(SqliteStore { pool })
    }
}

fn session_from_row(row: &sqlx::sqlite::SqliteRow) -> Session {
    let state: i64 = row.get("state");
    let state = if state == 1 {
        SessionState::Attested {
            token: row.get::<Option<String>, _>("token").unwrap_or_default(),
        }
    } else {
        SessionState::Authed {
            nonce: row.get::<Option<String>, _>("nonce").unwrap_or_default(),
        }
    };
    Session {
        id: row.get("id"),
        tee: row.get("tee"),
        hash_alg: row.get("hash_alg"),
        state,
        created_at: row.get("created_at"),
        expires_at: row.get("expires_at"),
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn create_session(&self, s: &Session) -> Result<(), StoreError> {
        let SessionState::Authed { nonce } = &s.state else {
            return Err(StoreError::Unavailable(
                "new sessions must be in the authed state".into(),
            ));
        };
        sqlx::query(
            "INSERT INTO sessions (id, tee, nonce, hash_alg, state, created_at, expires_at) VALUES (?, ?, ?, ?, 0, ?, ?)",
        )
        .bind(&s.id)
        .bind(&s.tee)
        .bind(nonce)
        .bind(&s.hash_alg)
        .bind(s.created_at)
        .bind(s.expires_at)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(unavailable)
    }

    async fn load_session(&self, id: &str, now: i64) -> Result<Option<Session>, StoreError> {
        let row = sqlx::query("SELECT * FROM sessions WHERE id = ? AND expires_at > ?")
            .bind(id)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(row.as_ref().map(session_from_row))
    }

    async fn consume_nonce(
        &self,
        id: &str,
        nonce: &str,
        token: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE sessions SET state = 1, token = ?, nonce = NULL \
             WHERE id = ? AND state = 0 AND nonce = ? AND expires_at > ?",
        )
        .bind(token)
        .bind(id)
        .bind(nonce)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(r.rows_affected() == 1)
    }

    async fn purge_expired_sessions(&self, now: i64) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM sessions WHERE expires_at <= ?")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(r.rows_affected())
    }

    async fn put_policy(
        &self,
        id: &str,
        kind: PolicyKind,
        body: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO policies (id, kind, body, updated_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, body = excluded.body, updated_at = excluded.updated_at",
        )
        .bind(id)
        .bind(kind.as_str())
        .bind(body)
        .bind(now)
        .execute(&self.pool)
        .await
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
        sqlx::query("INSERT INTO policies (id, kind, body, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .bind(kind.as_str())
            .bind(body)
            .bind(now)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn get_policy(&self, id: &str) -> Result<Option<StoredPolicy>, StoreError> {
        let row = sqlx::query("SELECT id, kind, body, updated_at FROM policies WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(row.map(|r| StoredPolicy {
            id: r.get("id"),
            kind: r.get("kind"),
            body: r.get("body"),
            updated_at: r.get("updated_at"),
        }))
    }

    async fn list_policy_ids(&self, kind: PolicyKind) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT id FROM policies WHERE kind = ? ORDER BY id")
            .bind(kind.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(rows.iter().map(|r| r.get("id")).collect())
    }

    async fn put_reference_value(
        &self,
        name: &str,
        value: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO reference_values (name, value, expires_at, updated_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(value)
        .bind(expires_at)
        .bind(now)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(unavailable)
    }

    async fn reference_values(&self, now: i64) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT name, value FROM reference_values WHERE expires_at > ?")
            .bind(now)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(rows
            .iter()
            .map(|r| (r.get("name"), r.get("value")))
            .collect())
    }

    async fn put_resource(&self, path: &str, sealed: &[u8], now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO resources (path, sealed, updated_at) VALUES (?, ?, ?) \
             ON CONFLICT (path) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
        )
        .bind(path)
        .bind(sealed)
        .bind(now)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(unavailable)
    }

    async fn get_resource(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT sealed FROM resources WHERE path = ?")
            .bind(path)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(row.map(|r| r.get("sealed")))
    }

    async fn delete_resource(&self, path: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM resources WHERE path = ?")
            .bind(path)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(r.rows_affected() > 0)
    }

    async fn append_audit(&self, e: &AuditEntry) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit (at_ms, action, decision, session_id, tee, claims_digest, resource, actor, detail) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(e.at_ms)
        .bind(&e.action)
        .bind(&e.decision)
        .bind(&e.session_id)
        .bind(&e.tee)
        .bind(&e.claims_digest)
        .bind(&e.resource)
        .bind(&e.actor)
        .bind(&e.detail)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(unavailable)
    }

    async fn list_audit(&self, after: i64, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM (SELECT * FROM audit WHERE seq > ? ORDER BY seq DESC LIMIT ?) ORDER BY seq ASC",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                seq: r.get("seq"),
                at_ms: r.get("at_ms"),
                action: r.get("action"),
                decision: r.get("decision"),
                session_id: r.get("session_id"),
                tee: r.get("tee"),
                claims_digest: r.get("claims_digest"),
                resource: r.get("resource"),
                actor: r.get("actor"),
                detail: r.get("detail"),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let s = SqliteStore::open(path.to_str().unwrap(), 2).await.unwrap();
        (dir, s)
    }

    #[tokio::test]
    async fn nonce_is_single_use_and_sessions_expire() {
        let (_d, s) = store().await;
        let sess = Session {
            id: "abc".into(),
            tee: "sample".into(),
            hash_alg: "sha384".into(),
            state: SessionState::Authed { nonce: "n1".into() },
            created_at: 0,
            expires_at: 100,
        };
        s.create_session(&sess).await.unwrap();
        assert!(!s.consume_nonce("abc", "wrong", "t", 50).await.unwrap());
        assert!(s.consume_nonce("abc", "n1", "tok", 50).await.unwrap());
        assert!(!s.consume_nonce("abc", "n1", "tok2", 50).await.unwrap());
        let loaded = s.load_session("abc", 50).await.unwrap().unwrap();
        assert_eq!(
            loaded.state,
            SessionState::Attested {
                token: "tok".into()
            }
        );
        assert!(s.load_session("abc", 100).await.unwrap().is_none());
        assert_eq!(s.purge_expired_sessions(100).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn audit_is_append_only() {
        let (_d, s) = store().await;
        for i in 0..3 {
            s.append_audit(&AuditEntry {
                at_ms: i,
                action: "release".into(),
                decision: "allow".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        }
        let rows = s.list_audit(0, 2).await.unwrap();
        assert_eq!(rows.iter().map(|r| r.at_ms).collect::<Vec<_>>(), vec![1, 2]);
        assert!(sqlx::query("DELETE FROM audit")
            .execute(&s.pool)
            .await
            .is_err());
        assert!(sqlx::query("UPDATE audit SET decision = 'x'")
            .execute(&s.pool)
            .await
            .is_err());
    }

    #[tokio::test]
    async fn policies_and_defaults() {
        let (_d, s) = store().await;
        s.put_policy_if_absent("resource-policy", PolicyKind::Resource, "a", 1)
            .await
            .unwrap();
        s.put_policy_if_absent("resource-policy", PolicyKind::Resource, "b", 2)
            .await
            .unwrap();
        assert_eq!(
            s.get_policy("resource-policy").await.unwrap().unwrap().body,
            "a"
        );
        s.put_policy("resource-policy", PolicyKind::Resource, "c", 3)
            .await
            .unwrap();
        assert_eq!(
            s.get_policy("resource-policy").await.unwrap().unwrap().body,
            "c"
        );
        assert_eq!(
            s.list_policy_ids(PolicyKind::Resource).await.unwrap(),
            vec!["resource-policy"]
        );
    }
}
