//! The SQL of the sqlx store body ([`sql_store!`], instantiated for PostgreSQL), and the audit
//! statements' pieces (columns, filter, nonce consumption) the SQLite store (rusqlite) shares.
//! Statements use `$N` placeholders; the SQLite store renumbers them `?N`.

/// Any sqlx failure: the database could not serve the request.
pub(crate) fn unavailable(e: sqlx::Error) -> super::StoreError {
    super::StoreError::unavailable(e)
}

/// The columns an audit insert writes, in the order [`bind_audit!`] binds them.
pub(crate) const AUDIT_COLUMNS: &str = "at_ms, action, decision, session_id, tee, claims_digest, \
     resource, actor, detail, client_addr, verdict, trust_vector, claims";

/// The start of an audit listing (every column but `claims`, and whether the row has them).
pub(crate) const AUDIT_SELECT: &str =
    "SELECT seq, at_ms, action, decision, session_id, tee, claims_digest, \
     resource, actor, detail, client_addr, verdict, trust_vector, \
     CASE WHEN claims IS NULL THEN 0 ELSE 1 END AS has_claims";

/// `$first, $first+1, ...` for the [`AUDIT_COLUMNS`].
pub(crate) fn audit_placeholders(first: usize) -> String {
    (first..first + 13)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Binds an [`super::AuditEntry`]'s values in [`AUDIT_COLUMNS`] order.
macro_rules! bind_audit {
    ($q:expr, $e:expr) => {
        $q.bind($e.at_ms)
            .bind($e.action.to_string())
            .bind($e.decision.as_str())
            .bind(&$e.session_id)
            .bind(&$e.tee)
            .bind(&$e.claims_digest)
            .bind(&$e.resource)
            .bind(&$e.actor)
            .bind(&$e.detail)
            .bind(&$e.client_addr)
            .bind(&$e.verdict)
            .bind($e.trust_vector.as_ref().map(|v| v.to_string()))
            .bind($e.claims.as_ref().map(|v| v.to_string()))
    };
}
pub(crate) use bind_audit;

/// A value bound to a dynamically built statement.
pub(crate) enum Arg {
    /// An integer.
    Int(i64),
    /// A text.
    Text(String),
}

/// The `WHERE` clause (possibly empty) and its arguments for an audit filter.
pub(crate) fn audit_where(f: &super::AuditFilter) -> (String, Vec<Arg>) {
    let mut conds: Vec<String> = Vec::new();
    let mut args: Vec<Arg> = Vec::new();
    let mut add = |cond: &str, arg: Arg| {
        args.push(arg);
        conds.push(cond.replace('?', &format!("${}", args.len())));
    };
    if let Some(t) = f.since_ms {
        add("at_ms >= ?", Arg::Int(t));
    }
    if let Some(t) = f.until_ms {
        add("at_ms < ?", Arg::Int(t));
    }
    match &f.action {
        Some(super::ActionFilter::AnyAdmin) => add(
            "substr(action, 1, length(?)) = ?",
            Arg::Text("admin:".into()),
        ),
        Some(super::ActionFilter::Is(a)) => add("action = ?", Arg::Text(a.to_string())),
        None => {}
    }
    if let Some(t) = &f.tee {
        add("tee = ?", Arg::Text(t.clone()));
    }
    if let Some(r) = &f.resource {
        match r.strip_suffix('*') {
            // substr/length rather than LIKE: SQLite's LIKE ignores case and both treat
            // `%` and `_` in the path as wildcards.
            Some(prefix) => add(
                "substr(resource, 1, length(?)) = ?",
                Arg::Text(prefix.to_string()),
            ),
            None => add("resource = ?", Arg::Text(r.clone())),
        }
    }
    if let Some(d) = f.decision {
        add("decision = ?", Arg::Text(d.as_str().into()));
    }
    if let Some(id) = &f.session_id {
        add("session_id = ?", Arg::Text(id.clone()));
    }
    if let Some(seq) = f.after_seq {
        add("seq > ?", Arg::Int(seq));
    }
    if conds.is_empty() {
        (String::new(), args)
    } else {
        (format!(" WHERE {}", conds.join(" AND ")), args)
    }
}

/// The nonce consumption: `$1` token, `$2` session id, `$3` nonce, `$4` now.
pub(crate) const CONSUME_NONCE: &str = "UPDATE sessions SET state = 1, token = $1, nonce = NULL \
     WHERE id = $2 AND state = 0 AND nonce = $3 AND expires_at > $4";

/// Rows one retention statement removes at most, so a first pass over a large table does
/// not hold the write lock for long.
pub(crate) const PRUNE_BATCH: i64 = 5000;

// Statements both stores run as they are. `$N` placeholders are numbered in the order they
// first appear, so SQLite, which reads `$1` as a named parameter indexed by first appearance,
// binds them by position just as PostgreSQL does (checked by a test below).
pub(crate) const CREATE_SESSION: &str =
    "INSERT INTO sessions (id, tee, nonce, hash_alg, protocol_version, state, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, 0, $6, $7)";
pub(crate) const LOAD_SESSION: &str = "SELECT * FROM sessions WHERE id = $1 AND expires_at > $2";
pub(crate) const PURGE_EXPIRED_SESSIONS: &str = "DELETE FROM sessions WHERE expires_at <= $1";
pub(crate) const PUT_POLICY: &str =
    "INSERT INTO policies (id, kind, body, updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, body = excluded.body, updated_at = excluded.updated_at";
pub(crate) const PUT_POLICY_IF_ABSENT: &str =
    "INSERT INTO policies (id, kind, body, updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING";
pub(crate) const GET_POLICY: &str = "SELECT id, kind, body, updated_at FROM policies WHERE id = $1";
pub(crate) const LIST_POLICY_IDS: &str = "SELECT id FROM policies WHERE kind = $1 ORDER BY id";
pub(crate) const DELETE_POLICY: &str = "DELETE FROM policies WHERE id = $1 AND kind = $2";
pub(crate) const PUT_REFERENCE_VALUE: &str =
    "INSERT INTO reference_values (name, value, expires_at, updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at, updated_at = excluded.updated_at";
pub(crate) const REFERENCE_VALUES: &str =
    "SELECT name, value FROM reference_values WHERE expires_at > $1";
pub(crate) const DELETE_REFERENCE_VALUE: &str = "DELETE FROM reference_values WHERE name = $1";
pub(crate) const PUT_RESOURCE: &str =
    "INSERT INTO resources (path, sealed, updated_at) VALUES ($1, $2, $3) ON CONFLICT (path) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at";
pub(crate) const GET_RESOURCE: &str = "SELECT sealed FROM resources WHERE path = $1";
pub(crate) const DELETE_RESOURCE: &str = "DELETE FROM resources WHERE path = $1";
pub(crate) const LIST_RESOURCE_PATHS: &str = "SELECT path FROM resources";
pub(crate) const PUT_COLLATERAL: &str =
    "INSERT INTO dcap_collateral (key, body, not_after, fetched_at) VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO UPDATE SET body = excluded.body, not_after = excluded.not_after, fetched_at = excluded.fetched_at";
pub(crate) const GET_COLLATERAL: &str =
    "SELECT body, not_after, fetched_at FROM dcap_collateral WHERE key = $1 AND not_after > $2";
pub(crate) const PUT_WRAPPED_KEY_IF_ABSENT: &str =
    "INSERT INTO wrapped_keys (name, body, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING";
pub(crate) const GET_WRAPPED_KEY: &str = "SELECT body FROM wrapped_keys WHERE name = $1";
pub(crate) const PRUNE_AUDIT_BY_AGE: &str =
    "DELETE FROM audit WHERE seq IN (SELECT seq FROM audit WHERE at_ms < $1 ORDER BY seq LIMIT $2)";
pub(crate) const PRUNE_AUDIT_BY_ROWS: &str =
    "DELETE FROM audit WHERE seq IN (SELECT seq FROM audit WHERE seq <= (SELECT seq FROM audit ORDER BY seq DESC LIMIT 1 OFFSET $1) ORDER BY seq LIMIT $2)";

/// Implements [`super::Store`] for `$store` (a struct with a `pool` field) whose rows are
/// `$row`.
macro_rules! sql_store {
    ($store:ty, $row:ty) => {
        fn session_from_row(row: &$row) -> Result<Session, StoreError> {
            super::SessionRow {
                id: row.try_get("id").map_err(unavailable)?,
                tee: row.try_get("tee").map_err(unavailable)?,
                hash_alg: row.try_get("hash_alg").map_err(unavailable)?,
                protocol_version: row.try_get("protocol_version").map_err(unavailable)?,
                state: row.try_get("state").map_err(unavailable)?,
                nonce: row.try_get("nonce").map_err(unavailable)?,
                token: row.try_get("token").map_err(unavailable)?,
                created_at: row.try_get("created_at").map_err(unavailable)?,
                expires_at: row.try_get("expires_at").map_err(unavailable)?,
            }
            .parse()
        }

        fn audit_from_row(r: &$row, with_claims: bool) -> Result<AuditEntry, StoreError> {
            super::AuditRow {
                seq: r.try_get("seq").map_err(unavailable)?,
                at_ms: r.try_get("at_ms").map_err(unavailable)?,
                action: r.try_get("action").map_err(unavailable)?,
                decision: r.try_get("decision").map_err(unavailable)?,
                session_id: r.try_get("session_id").map_err(unavailable)?,
                tee: r.try_get("tee").map_err(unavailable)?,
                claims_digest: r.try_get("claims_digest").map_err(unavailable)?,
                resource: r.try_get("resource").map_err(unavailable)?,
                actor: r.try_get("actor").map_err(unavailable)?,
                detail: r.try_get("detail").map_err(unavailable)?,
                client_addr: r.try_get("client_addr").map_err(unavailable)?,
                verdict: r.try_get("verdict").map_err(unavailable)?,
                trust_vector: r.try_get("trust_vector").map_err(unavailable)?,
                claims: if with_claims {
                    r.try_get("claims").map_err(unavailable)?
                } else {
                    None
                },
                has_claims: r.try_get::<i32, _>("has_claims").map_err(unavailable)? != 0,
            }
            .parse()
        }

        /// Binds dynamically built arguments.
        fn bind_args<'q>(
            mut q: sqlx::query::Query<'q, <$row as sqlx::Row>::Database, <<$row as sqlx::Row>::Database as sqlx::Database>::Arguments<'q>>,
            args: &[super::sql::Arg],
        ) -> sqlx::query::Query<'q, <$row as sqlx::Row>::Database, <<$row as sqlx::Row>::Database as sqlx::Database>::Arguments<'q>> {
            for a in args {
                q = match a {
                    super::sql::Arg::Int(i) => q.bind(*i),
                    super::sql::Arg::Text(t) => q.bind(t.clone()),
                };
            }
            q
        }

        use $crate::store::sql::AUDIT_SELECT;

        #[async_trait]
        impl Store for $store {
            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1")
                    .execute(&self.pool)
                    .await
                    .map(|_| ())
                    .map_err(unavailable)
            }

            async fn create_session(&self, s: &Session) -> Result<(), StoreError> {
                let SessionState::Authed { nonce } = &s.state else {
                    return Err(StoreError::Misuse("new sessions must be in the authed state"));
                };
                sqlx::query(super::sql::CREATE_SESSION)
                .bind(&s.id)
                .bind(s.tee.name())
                .bind(nonce)
                .bind(s.hash_alg.name())
                .bind(s.protocol_version.as_str())
                .bind(s.created_at)
                .bind(s.expires_at)
                .execute(&self.pool)
                .await
                .map(|_| ())
                .map_err(unavailable)
            }

            async fn load_session(&self, id: &str, now: i64) -> Result<Option<Session>, StoreError> {
                let row = sqlx::query(super::sql::LOAD_SESSION)
                    .bind(id)
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                row.as_ref().map(session_from_row).transpose()
            }

            async fn consume_nonce(
                &self,
                id: &str,
                nonce: &str,
                token: &str,
                now: i64,
            ) -> Result<bool, StoreError> {
                let r = sqlx::query(super::sql::CONSUME_NONCE)
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
                let r = sqlx::query(super::sql::PURGE_EXPIRED_SESSIONS)
                    .bind(now)
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(r.rows_affected())
            }

            async fn evict_sessions(&self, limit: u64, before: i64) -> Result<u64, StoreError> {
                // SKIP LOCKED: replicas evicting at the same moment take different rows;
                // without it the later one waited for the first one's rows, found them gone,
                // evicted nothing and refused /auth with 429.
                let r = sqlx::query(
                    "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions \
                     WHERE created_at < $2 ORDER BY state, created_at LIMIT $1 FOR UPDATE SKIP LOCKED)",
                )
                .bind(limit.min(i64::MAX as u64) as i64)
                .bind(before)
                .execute(&self.pool)
                .await
                .map_err(unavailable)?;
                Ok(r.rows_affected())
            }

            async fn count_sessions(&self) -> Result<u64, StoreError> {
                let row = sqlx::query("SELECT COUNT(*) AS n FROM sessions")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(row.get::<i64, _>("n").max(0) as u64)
            }

            async fn put_policy(
                &self,
                id: &str,
                kind: PolicyKind,
                body: &str,
                now: i64,
            ) -> Result<(), StoreError> {
                sqlx::query(super::sql::PUT_POLICY)
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
                sqlx::query(super::sql::PUT_POLICY_IF_ABSENT)
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
                let row = sqlx::query(super::sql::GET_POLICY)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                row.map(|r| {
                    Ok(StoredPolicy {
                        id: r.get("id"),
                        kind: r.get::<String, _>("kind").parse()?,
                        body: r.get("body"),
                        updated_at: r.get("updated_at"),
                    })
                })
                .transpose()
            }

            async fn list_policy_ids(&self, kind: PolicyKind) -> Result<Vec<String>, StoreError> {
                let rows = sqlx::query(super::sql::LIST_POLICY_IDS)
                    .bind(kind.as_str())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(rows.iter().map(|r| r.get("id")).collect())
            }

            async fn delete_policy(&self, id: &str, kind: PolicyKind) -> Result<bool, StoreError> {
                let r = sqlx::query(super::sql::DELETE_POLICY)
                    .bind(id)
                    .bind(kind.as_str())
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(r.rows_affected() > 0)
            }

            async fn put_reference_value(
                &self,
                name: &str,
                value: &str,
                expires_at: i64,
                now: i64,
            ) -> Result<(), StoreError> {
                sqlx::query(super::sql::PUT_REFERENCE_VALUE)
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
                let rows = sqlx::query(super::sql::REFERENCE_VALUES)
                    .bind(now)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(rows
                    .iter()
                    .map(|r| (r.get("name"), r.get("value")))
                    .collect())
            }

            async fn delete_reference_value(&self, name: &str) -> Result<bool, StoreError> {
                let r = sqlx::query(super::sql::DELETE_REFERENCE_VALUE)
                    .bind(name)
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(r.rows_affected() > 0)
            }

            async fn put_resource(&self, path: &str, sealed: &[u8], now: i64) -> Result<(), StoreError> {
                sqlx::query(super::sql::PUT_RESOURCE)
                .bind(path)
                .bind(sealed)
                .bind(now)
                .execute(&self.pool)
                .await
                .map(|_| ())
                .map_err(unavailable)
            }

            async fn get_resource(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
                let row = sqlx::query(super::sql::GET_RESOURCE)
                    .bind(path)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(row.map(|r| r.get("sealed")))
            }

            async fn delete_resource(&self, path: &str) -> Result<bool, StoreError> {
                let r = sqlx::query(super::sql::DELETE_RESOURCE)
                    .bind(path)
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(r.rows_affected() > 0)
            }

            async fn list_resource_paths(&self) -> Result<Vec<String>, StoreError> {
                let rows = sqlx::query(super::sql::LIST_RESOURCE_PATHS)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                // Sorted here, not by the database: PostgreSQL's collation may ignore `/`.
                let mut paths: Vec<String> = rows.iter().map(|r| r.get("path")).collect();
                paths.sort();
                Ok(paths)
            }

            async fn list_resource_meta(&self) -> Result<Vec<(String, i64, i64)>, StoreError> {
                // octet_length: bytes in PostgreSQL; SQLite has no octet_length, and its
                // length() of a BLOB is bytes, so each backend names its function.
                let sql = format!(
                    "SELECT path, CAST({}(sealed) AS BIGINT) AS n, updated_at FROM resources",
                    <$store>::BLOB_LENGTH
                );
                let rows = sqlx::query(&sql)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                let mut out: Vec<(String, i64, i64)> = rows
                    .iter()
                    .map(|r| (r.get("path"), r.get("n"), r.get("updated_at")))
                    .collect();
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
                sqlx::query(super::sql::PUT_COLLATERAL)
                .bind(key)
                .bind(body)
                .bind(not_after)
                .bind(now)
                .execute(&self.pool)
                .await
                .map(|_| ())
                .map_err(unavailable)
            }

            async fn get_collateral(
                &self,
                key: &str,
                now: i64,
            ) -> Result<Option<(String, i64, i64)>, StoreError> {
                let row = sqlx::query(super::sql::GET_COLLATERAL)
                .bind(key)
                .bind(now)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
                Ok(row.map(|r| (r.get("body"), r.get("not_after"), r.get("fetched_at"))))
            }

            async fn put_wrapped_key_if_absent(
                &self,
                name: &str,
                body: &str,
                now: i64,
            ) -> Result<(), StoreError> {
                sqlx::query(super::sql::PUT_WRAPPED_KEY_IF_ABSENT)
                    .bind(name)
                    .bind(body)
                    .bind(now)
                    .execute(&self.pool)
                    .await
                    .map(|_| ())
                    .map_err(unavailable)
            }

            async fn get_wrapped_key(&self, name: &str) -> Result<Option<String>, StoreError> {
                let row = sqlx::query(super::sql::GET_WRAPPED_KEY)
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(row.map(|r| r.get("body")))
            }

            async fn consume_nonce_audited(
                &self,
                id: &str,
                nonce: &str,
                token: &str,
                now: i64,
                entry: &AuditEntry,
            ) -> Result<bool, StoreError> {
                self.consume_nonce_audited_impl(id, nonce, token, now, entry).await
            }

            async fn append_audit(&self, e: &AuditEntry) -> Result<(), StoreError> {
                let sql = format!(
                    "INSERT INTO audit ({}) VALUES ({})",
                    super::sql::AUDIT_COLUMNS,
                    super::sql::audit_placeholders(1)
                );
                super::sql::bind_audit!(sqlx::query(&sql), e)
                    .execute(&self.pool)
                    .await
                    .map(|_| ())
                    .map_err(unavailable)
            }

            async fn list_audit(&self, f: &AuditFilter) -> Result<AuditPage, StoreError> {
                let (cond, args) = super::sql::audit_where(f);
                let count_sql = format!("SELECT COUNT(*) AS n FROM audit{cond}");
                let total: i64 = bind_args(sqlx::query(&count_sql), &args)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(unavailable)?
                    .get("n");
                let n = args.len();
                let sql = format!(
                    "{AUDIT_SELECT}{} FROM audit{cond} ORDER BY seq {} LIMIT ${} OFFSET ${}",
                    if f.with_claims { ", claims" } else { "" },
                    if f.oldest_first { "ASC" } else { "DESC" },
                    n + 1,
                    n + 2
                );
                let rows = bind_args(sqlx::query(&sql), &args)
                    .bind(f.limit.max(0))
                    .bind(f.offset.max(0))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(AuditPage {
                    total,
                    offset: f.offset.max(0),
                    limit: f.limit.max(0),
                    entries: rows
                        .iter()
                        .map(|r| audit_from_row(r, f.with_claims))
                        .collect::<Result<_, _>>()?,
                })
            }

            async fn get_audit(&self, seq: i64) -> Result<Option<AuditEntry>, StoreError> {
                let sql = format!("{AUDIT_SELECT}, claims FROM audit WHERE seq = $1");
                let row = sqlx::query(&sql)
                    .bind(seq)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                row.as_ref().map(|r| audit_from_row(r, true)).transpose()
            }

            async fn audit_counts(&self, since_ms: i64) -> Result<Vec<(String, String, i64)>, StoreError> {
                let rows = sqlx::query(
                    "SELECT CASE WHEN substr(action, 1, 6) = 'admin:' THEN 'admin' ELSE action END AS a, \
                     decision, COUNT(*) AS n FROM audit WHERE at_ms >= $1 GROUP BY 1, 2 ORDER BY 1, 2",
                )
                .bind(since_ms)
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
                Ok(rows
                    .iter()
                    .map(|r| (r.get("a"), r.get("decision"), r.get("n")))
                    .collect())
            }

            async fn prune_audit(
                &self,
                before_ms: Option<i64>,
                keep_rows: Option<u64>,
            ) -> Result<u64, StoreError> {
                let mut removed = 0;
                if let Some(before) = before_ms {
                    removed += delete_in_batches(self, super::sql::PRUNE_AUDIT_BY_AGE, before).await?;
                }
                if let Some(keep) = keep_rows {
                    // The (keep+1)-th newest row and everything older.
                    let keep = keep.min(i64::MAX as u64) as i64;
                    removed += delete_in_batches(self, super::sql::PRUNE_AUDIT_BY_ROWS, keep).await?;
                }
                Ok(removed)
            }
        }

        /// Runs `sql` (binding `a` and [`PRUNE_BATCH`](super::sql::PRUNE_BATCH)) until a run
        /// removes less than a batch; the rows removed.
        async fn delete_in_batches(store: &$store, sql: &str, a: i64) -> Result<u64, StoreError> {
            let mut removed = 0u64;
            loop {
                let n = sqlx::query(sql)
                    .bind(a)
                    .bind(super::sql::PRUNE_BATCH)
                    .execute(&store.pool)
                    .await
                    .map_err(unavailable)?
                    .rows_affected();
                removed += n;
                if n < super::sql::PRUNE_BATCH as u64 {
                    return Ok(removed);
                }
            }
        }
    };
}

pub(crate) use sql_store;

#[cfg(test)]
mod tests {
    /// Every statement the two stores share: its `$N` placeholders first appear in the order
    /// 1, 2, 3, ..., which is what lets SQLite bind them by position (see the constants).
    #[test]
    fn shared_statements_number_their_placeholders_in_order() {
        for (name, sql) in [
            ("CONSUME_NONCE", super::CONSUME_NONCE),
            ("CREATE_SESSION", super::CREATE_SESSION),
            ("LOAD_SESSION", super::LOAD_SESSION),
            ("PURGE_EXPIRED_SESSIONS", super::PURGE_EXPIRED_SESSIONS),
            ("PUT_POLICY", super::PUT_POLICY),
            ("PUT_POLICY_IF_ABSENT", super::PUT_POLICY_IF_ABSENT),
            ("GET_POLICY", super::GET_POLICY),
            ("LIST_POLICY_IDS", super::LIST_POLICY_IDS),
            ("DELETE_POLICY", super::DELETE_POLICY),
            ("PUT_REFERENCE_VALUE", super::PUT_REFERENCE_VALUE),
            ("REFERENCE_VALUES", super::REFERENCE_VALUES),
            ("DELETE_REFERENCE_VALUE", super::DELETE_REFERENCE_VALUE),
            ("PUT_RESOURCE", super::PUT_RESOURCE),
            ("GET_RESOURCE", super::GET_RESOURCE),
            ("DELETE_RESOURCE", super::DELETE_RESOURCE),
            ("LIST_RESOURCE_PATHS", super::LIST_RESOURCE_PATHS),
            ("PUT_COLLATERAL", super::PUT_COLLATERAL),
            ("GET_COLLATERAL", super::GET_COLLATERAL),
            (
                "PUT_WRAPPED_KEY_IF_ABSENT",
                super::PUT_WRAPPED_KEY_IF_ABSENT,
            ),
            ("GET_WRAPPED_KEY", super::GET_WRAPPED_KEY),
            ("PRUNE_AUDIT_BY_AGE", super::PRUNE_AUDIT_BY_AGE),
            ("PRUNE_AUDIT_BY_ROWS", super::PRUNE_AUDIT_BY_ROWS),
        ] {
            let mut first = Vec::new();
            for n in sql.split('$').skip(1).map(|rest| {
                rest.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            }) {
                let n: usize = n.parse().unwrap_or_else(|_| panic!("{name}: a bare $"));
                if !first.contains(&n) {
                    first.push(n);
                }
            }
            assert_eq!(first, (1..=first.len()).collect::<Vec<_>>(), "{name}");
        }
    }
}
