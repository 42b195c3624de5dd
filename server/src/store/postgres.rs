//! PostgreSQL store, for several replicas sharing one database. Migrations from
//! `migrations/postgres`.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Row;

use super::sql::unavailable;
use super::{
    AuditEntry, AuditFilter, AuditPage, PolicyKind, Session, SessionState, Store, StoreError,
    StoredPolicy,
};

/// A PostgreSQL-backed [`Store`].
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// SQL function giving a BLOB's length in bytes.
    const BLOB_LENGTH: &'static str = "octet_length";

    /// Connects to `url` (`postgres://...`) and runs migrations. Several servers may do so
    /// at once: sqlx serialises migrations with an advisory lock.
    pub async fn open(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        // Every connection is opened up front and re-opened in the background: a connection
        // made on a request's path waits for name resolution and authentication, which in a
        // fresh pod or compose network can take longer than the acquire timeout.
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .min_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(unavailable)?;
        sqlx::migrate!("../migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::MigrationDriver(Box::new(e)))?;
        Ok(PgStore { pool })
    }
}

super::sql::sql_store!(PgStore, sqlx::postgres::PgRow);

impl PgStore {
    /// PostgreSQL: one statement, the audit row inserted from the nonce update's
    /// `RETURNING` (nothing is inserted when the nonce was not consumed): one round trip,
    /// as for the plain update.
    async fn consume_nonce_audited_impl(
        &self,
        id: &str,
        nonce: &str,
        token: &str,
        now: i64,
        e: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "WITH consumed AS ({} RETURNING id) INSERT INTO audit ({}) SELECT {} FROM consumed",
            super::sql::CONSUME_NONCE,
            super::sql::AUDIT_COLUMNS,
            super::sql::audit_placeholders(5)
        );
        let q = sqlx::query(&sql).bind(token).bind(id).bind(nonce).bind(now);
        let r = super::sql::bind_audit!(q, e)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(r.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The machine's PostgreSQL (trust auth); `COFFER_TEST_PG_URL` overrides. Each test gets
    /// a fresh database, dropped afterwards.
    pub(crate) async fn fresh_db() -> (String, String) {
        let admin = std::env::var("COFFER_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into());
        let name = format!("coffer_t_{}", uuid::Uuid::new_v4().simple());
        let pool = PgPool::connect(&admin)
            .await
            .expect("PostgreSQL at COFFER_TEST_PG_URL (scripts/test.sh starts it)");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&pool)
            .await
            .unwrap();
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap();
        (format!("{base}/{name}"), name)
    }

    #[tokio::test]
    async fn conformance() {
        let (url, _name) = fresh_db().await;
        let s = PgStore::open(&url, 2).await.unwrap();
        crate::store::tests::conformance(&s).await;
        // Recorded rows never change; removal is the retention's (audit.max_*).
        assert!(sqlx::query("UPDATE audit SET decision = 'x'")
            .execute(&s.pool)
            .await
            .is_err());
        assert!(sqlx::query("DELETE FROM audit")
            .execute(&s.pool)
            .await
            .is_ok());
        // a second server migrating the same database is a no-op
        PgStore::open(&url, 1).await.unwrap();
    }

    #[tokio::test]
    async fn nonce_consumed_once_under_concurrency() {
        let (url, _name) = fresh_db().await;
        let s = std::sync::Arc::new(PgStore::open(&url, 8).await.unwrap());
        let sess = Session {
            id: "race".into(),
            tee: coffer_protocol::Tee::Sample,
            hash_alg: coffer_protocol::HashAlgorithm::Sha384,
            protocol_version: coffer_protocol::ProtocolVersion::V0_2_0,
            state: SessionState::Authed { nonce: "n".into() },
            created_at: 0,
            expires_at: i64::MAX,
        };
        s.create_session(&sess).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..16 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                s.consume_nonce("race", "n", &format!("t{i}"), 1)
                    .await
                    .unwrap()
            }));
        }
        let mut wins = 0;
        for t in tasks {
            wins += t.await.unwrap() as u32;
        }
        assert_eq!(wins, 1);
    }
}
