//! Schema migrations for the SQLite store, applied with rusqlite from the same embedded
//! files and recorded in the same `_sqlx_migrations` table (same columns, same SHA-384
//! checksums) as sqlx's migrator, so databases created by earlier coffer versions open
//! unchanged and a changed migration file is refused instead of silently skipped.

use rusqlite::{params, Connection};

use super::StoreError;

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

fn failed(e: rusqlite::Error) -> StoreError {
    StoreError::MigrationDriver(Box::new(e))
}

/// Applies every migration of `migrations/sqlite` that `conn` lacks, each in its own
/// transaction.
pub(crate) fn run_sqlite(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
            version BIGINT PRIMARY KEY,
            description TEXT NOT NULL,
            installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
            success BOOLEAN NOT NULL,
            checksum BLOB NOT NULL,
            execution_time BIGINT NOT NULL
        );",
    )
    .map_err(failed)?;
    let applied: Vec<(i64, Vec<u8>, bool)> = conn
        .prepare("SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version")
        .and_then(|mut st| {
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .map_err(failed)?;
    if let Some((v, _, _)) = applied.iter().find(|(_, _, ok)| !ok) {
        return Err(StoreError::Migration(format!(
            "migration {v} was left partially applied; restore the database from a backup"
        )));
    }
    for m in SQLITE.iter() {
        if let Some((_, sum, _)) = applied.iter().find(|(v, _, _)| *v == m.version) {
            if sum.as_slice() != &*m.checksum {
                return Err(StoreError::Migration(format!(
                    "migration {} ({}) differs from the one applied to this database",
                    m.version, m.description
                )));
            }
            continue;
        }
        let started = std::time::Instant::now();
        let tx = conn.transaction().map_err(failed)?;
        tx.execute_batch(&m.sql)
            .map_err(|e| StoreError::MigrationStep {
                version: m.version,
                description: m.description.to_string(),
                source: Box::new(e),
            })?;
        tx.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (?1, ?2, TRUE, ?3, ?4)",
            params![
                m.version,
                &*m.description,
                &*m.checksum,
                started.elapsed().as_nanos().min(i64::MAX as u128) as i64
            ],
        )
        .map_err(failed)?;
        tx.commit().map_err(failed)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_migration_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        run_sqlite(&mut conn).unwrap();
        run_sqlite(&mut conn).unwrap();
        conn.execute(
            "UPDATE _sqlx_migrations SET checksum = x'00' WHERE version = 1",
            [],
        )
        .unwrap();
        let e = run_sqlite(&mut conn).unwrap_err().to_string();
        assert!(e.contains("differs"), "{e}");
    }
}
