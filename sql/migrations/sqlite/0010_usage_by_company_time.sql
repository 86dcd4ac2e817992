-- Usage keyed (company, time, id), the order in which a close, an export and an email read
-- it: the key replaces the index `usage_by_time`, so a row written goes to the table and two
-- B-trees, not three. `usage_by_id` finds an id across companies (the duplicate check of an
-- intake, SPEC §6.2, which keeps an id to one row, and a rating's row). Usage rows are wide,
-- so they stay in a rowid table (stored in their key's order, inserting a month took half as
-- long again). Ratings and ledger entries are narrow: each is stored in its key's order
-- (WITHOUT ROWID), one B-tree instead of a rowid table and an index holding the key.
CREATE TABLE usage_by_company (
    company_id          TEXT NOT NULL,
    id                  TEXT NOT NULL,
    source              TEXT NOT NULL,
    line                BIGINT NOT NULL,
    occurred_at         BIGINT NOT NULL,
    received_at         BIGINT NOT NULL,
    office              TEXT NOT NULL,
    party               TEXT NOT NULL,
    service             TEXT NOT NULL,
    usage_type          TEXT NOT NULL,
    direction           TEXT NOT NULL,
    remote_number       TEXT NOT NULL,
    number_used         TEXT NOT NULL,
    duration_s          TEXT NOT NULL,
    billable_quantity   BIGINT NOT NULL,
    unit                TEXT NOT NULL,
    rate_micros         BIGINT NOT NULL,
    rate_scale          BIGINT NOT NULL,
    increment           TEXT NOT NULL,
    cost                BIGINT NOT NULL,
    content             TEXT NOT NULL,
    PRIMARY KEY (company_id, occurred_at, id)
);
INSERT INTO usage_by_company
    (company_id, id, source, line, occurred_at, received_at, office, party, service, usage_type,
     direction, remote_number, number_used, duration_s, billable_quantity, unit, rate_micros,
     rate_scale, increment, cost, content)
SELECT company_id, id, source, line, occurred_at, received_at, office, party, service, usage_type,
       direction, remote_number, number_used, duration_s, billable_quantity, unit, rate_micros,
       rate_scale, increment, cost, content
FROM usage ORDER BY company_id, occurred_at, id;
DROP TABLE usage;
ALTER TABLE usage_by_company RENAME TO usage;
CREATE INDEX usage_by_id ON usage (id);

CREATE TABLE usage_ratings_clustered (
    company_id      TEXT NOT NULL,
    id              TEXT NOT NULL,
    boundary_index  BIGINT NOT NULL,
    wallet_sources  TEXT NOT NULL,
    late            BOOLEAN NOT NULL,
    PRIMARY KEY (company_id, id)
) WITHOUT ROWID;
INSERT INTO usage_ratings_clustered (company_id, id, boundary_index, wallet_sources, late)
SELECT company_id, id, boundary_index, wallet_sources, late FROM usage_ratings
ORDER BY company_id, id;
DROP TABLE usage_ratings;
ALTER TABLE usage_ratings_clustered RENAME TO usage_ratings;
CREATE INDEX usage_ratings_late ON usage_ratings (company_id, boundary_index) WHERE late;

CREATE TABLE ledger_entries_clustered (
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
) WITHOUT ROWID;
INSERT INTO ledger_entries_clustered
    (company_id, seq, at, scope, wallet, entry, amount, reference, expires_at)
SELECT company_id, seq, at, scope, wallet, entry, amount, reference, expires_at
FROM ledger_entries ORDER BY company_id, seq;
DROP TABLE ledger_entries;
ALTER TABLE ledger_entries_clustered RENAME TO ledger_entries;
CREATE INDEX ledger_by_seq ON ledger_entries (seq);
