-- Ledger entries keyed by company first, like every table that grows with usage, so that the
-- database can be split by company (ARCHITECTURE.md, "Ready to shard by company"). `seq` still
-- numbers the entries in the order made across all companies.
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_pkey;
ALTER TABLE ledger_entries ADD PRIMARY KEY (company_id, seq);
DROP INDEX ledger_by_company;
-- The order made, for ledger.csv.
CREATE INDEX ledger_by_seq ON ledger_entries (seq);
