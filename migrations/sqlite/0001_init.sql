-- Handshake sessions. A row is created by /auth and consumed (nonce cleared, state 1) by the
-- first successful /attest; the conditional UPDATE makes a nonce single-use across replicas.
CREATE TABLE sessions (
    id          TEXT PRIMARY KEY,
    tee         TEXT NOT NULL,
    nonce       TEXT,
    hash_alg    TEXT NOT NULL,
    state       INTEGER NOT NULL DEFAULT 0,  -- 0 authed, 1 attested
    token       TEXT,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- Rego policies: attestation policies by id (e.g. default_cpu) and the resource policy.
CREATE TABLE policies (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,               -- 'attestation' | 'resource'
    body        TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- Reference values for attestation policies (query_reference_value).
CREATE TABLE reference_values (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL,               -- JSON
    expires_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- Resources, AES-256-GCM sealed under the key-encryption key (never plaintext).
CREATE TABLE resources (
    path        TEXT PRIMARY KEY,
    sealed      BLOB NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- Append-only audit log.
CREATE TABLE audit (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms         INTEGER NOT NULL,
    action        TEXT NOT NULL,
    decision      TEXT NOT NULL,
    session_id    TEXT,
    tee           TEXT,
    claims_digest TEXT,
    resource      TEXT,
    actor         TEXT,
    detail        TEXT
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
