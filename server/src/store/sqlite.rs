//! SQLite store (the embedded default): one file, WAL journal, migrations from
//! `migrations/sqlite`.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;

use super::sql::unavailable;
use super::{
    AuditEntry, AuditFilter, AuditPage, PolicyKind, Session, SessionState, Store, StoreError,
    StoredPolicy,
};

/// A SQLite-backed [`Store`].
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// SQL function giving a BLOB's length in bytes.
    const BLOB_LENGTH: &'static str = "length";

    /// Opens (creating if needed) the database file at `path` and runs migrations.
    pub async fn open(path: &str, max_connections: u32) -> Result<Self, StoreError> {
        create_private(path)?;
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

/// Creates the database file readable by the owner only before SQLite opens it: SQLite
/// gives its `-wal` and `-shm` files the mode of the database file, so all three are 0600
/// whatever the umask.
fn create_private(path: &str) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = path.split('?').next().unwrap_or(path);
    if file.is_empty() || file.starts_with(':') || file.starts_with("file:") {
        return Ok(());
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

super::sql::sql_store!(SqliteStore, sqlx::sqlite::SqliteRow);

impl SqliteStore {
    /// SQLite: the nonce update and the audit insert in one transaction (one commit).
    async fn consume_nonce_audited_impl(
        &self,
        id: &str,
        nonce: &str,
        token: &str,
        now: i64,
        e: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let r = sqlx::query(super::sql::CONSUME_NONCE)
            .bind(token)
            .bind(id)
            .bind(nonce)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        let sql = format!(
            "INSERT INTO audit ({}) VALUES ({})",
            super::sql::AUDIT_COLUMNS,
            super::sql::audit_placeholders(1)
        );
        super::sql::bind_audit!(sqlx::query(&sql), e)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(true)
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
        // Recorded rows never change; removal is the retention's (audit.max_*).
        assert!(sqlx::query("UPDATE audit SET decision = 'x'")
            .execute(&s.pool)
            .await
            .is_err());
        assert!(sqlx::query("DELETE FROM audit")
            .execute(&s.pool)
            .await
            .is_ok());
    }
}
