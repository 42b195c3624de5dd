-- The KBS protocol version a guest named at /auth (0.1.0 ... 0.4.0). /attest and the
-- resource release read the session's version to parse the body and shape the JWE, since
-- later messages carry none. Sessions opened before this column existed spoke 0.4.0.
ALTER TABLE sessions ADD COLUMN protocol_version TEXT NOT NULL DEFAULT '0.4.0';
