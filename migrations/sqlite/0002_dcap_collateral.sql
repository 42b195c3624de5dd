-- DCAP collateral (TCB info, QE identity, CRLs) fetched from a PCS/PCCS, per
-- (TEE, FMSPC, PCK CA). Shared by replicas so one fetch serves all; rows are replaced on
-- refresh and ignored once past not_after.
CREATE TABLE dcap_collateral (
    key         TEXT PRIMARY KEY,            -- e.g. 'TDX/90C06F000000/platform'
    body        TEXT NOT NULL,               -- QuoteCollateralV3 JSON
    not_after   INTEGER NOT NULL,            -- earliest nextUpdate of its items (unix s)
    fetched_at  INTEGER NOT NULL
);
