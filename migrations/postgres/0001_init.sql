-- PostgreSQL schema; same tables and meaning as migrations/sqlite/0001_init.sql.
CREATE TABLE sessions (
    id          TEXT PRIMARY KEY,
    tee         TEXT NOT NULL,
    nonce       TEXT,
    hash_alg    TEXT NOT NULL,
    state       BIGINT NOT NULL DEFAULT 0,   -- 0 authed, 1 attested
    token       TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_at);

CREATE TABLE policies (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    body        TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE reference_values (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE resources (
    path        TEXT PRIMARY KEY,
    sealed      BYTEA NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE audit (
    seq           BIGSERIAL PRIMARY KEY,
    at_ms         BIGINT NOT NULL,
    action        TEXT NOT NULL,
    decision      TEXT NOT NULL,
    session_id    TEXT,
    tee           TEXT,
    claims_digest TEXT,
    resource      TEXT,
    actor         TEXT,
    detail        TEXT
);
CREATE FUNCTION audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
