-- Ledger entries keyed by company first, like every table that grows with usage, so that the
-- database can be split by company (ARCHITECTURE.md, "Ready to shard by company"). `seq` still
-- numbers the entries in the order made across all companies; the store assigns it under the
-- write lock, as SQLite's AUTOINCREMENT is for a one-column key only.
CREATE TABLE ledger_entries_by_company (
    company_id  TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    at          BIGINT NOT NULL,
    scope       TEXT NOT NULL,
    wallet      TEXT NOT NULL,
    entry       TEXT NOT NULL,
    amount      BIGINT NOT NULL,
    reference   TEXT NOT NULL,
    expires_at  BIGINT,
    PRIMARY KEY (company_id, seq)
);
INSERT INTO ledger_entries_by_company
    (company_id, seq, at, scope, wallet, entry, amount, reference, expires_at)
SELECT company_id, seq, at, scope, wallet, entry, amount, reference, expires_at
FROM ledger_entries;
DROP TABLE ledger_entries;
ALTER TABLE ledger_entries_by_company RENAME TO ledger_entries;
-- The order made, for ledger.csv and the next number.
CREATE INDEX ledger_by_seq ON ledger_entries (seq);
