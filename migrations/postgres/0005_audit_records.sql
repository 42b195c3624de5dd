-- Audit records worth reading. Per attestation: the client address, the verdict (EAR status),
-- the trust vector and the verified claims (annotated evidence, public values only,
-- size-capped by audit.max_claims_bytes), all JSON text. Rows are removed by the server's
-- retention (audit.max_age_secs / audit.max_rows), so DELETE is allowed from now on; UPDATE
-- stays refused: a recorded row never changes.
ALTER TABLE audit ADD COLUMN client_addr TEXT;
ALTER TABLE audit ADD COLUMN verdict TEXT;
ALTER TABLE audit ADD COLUMN trust_vector TEXT;
ALTER TABLE audit ADD COLUMN claims TEXT;
DROP TRIGGER audit_no_update ON audit;
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE INDEX audit_at ON audit (at_ms);
CREATE INDEX audit_session ON audit (session_id);
CREATE INDEX audit_resource ON audit (resource);
