-- Keys wrapped by an external KMS (envelope encryption), shared by every replica on this
-- database: the first replica to start inserts, the others read. Only KMS ciphertext is
-- stored; a row is never replaced.
CREATE TABLE wrapped_keys (
    name        TEXT PRIMARY KEY,            -- e.g. 'kek'
    body        TEXT NOT NULL,               -- JSON: kms_key_id, algorithm, ciphertext_blob, iv
    created_at  BIGINT NOT NULL
);
