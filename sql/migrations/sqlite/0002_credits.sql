-- The credit half: accepted usage, its ratings, and the append-only ledger.

-- Accepted usage rows, priced when taken in; rated (debited) by a close.
CREATE TABLE usage (
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
    rate                TEXT NOT NULL,
    increment           TEXT NOT NULL,
    cost                BIGINT NOT NULL,
    content             TEXT NOT NULL,
    PRIMARY KEY (company_id, id)
);
CREATE INDEX usage_by_id ON usage (id);
CREATE INDEX usage_by_time ON usage (company_id, occurred_at, id);

-- Which close rated a usage row, from which wallets. Append-only.
CREATE TABLE usage_ratings (
    company_id      TEXT NOT NULL,
    id              TEXT NOT NULL,
    boundary_index  BIGINT NOT NULL,
    wallet_sources  TEXT NOT NULL,
    late            BOOLEAN NOT NULL,
    PRIMARY KEY (company_id, id)
);

-- Every balance change. A balance is the sum of its entries; none is stored.
CREATE TABLE ledger_entries (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    company_id  TEXT NOT NULL,
    at          BIGINT NOT NULL,
    scope       TEXT NOT NULL,
    wallet      TEXT NOT NULL,
    entry       TEXT NOT NULL,
    amount      BIGINT NOT NULL,
    reference   TEXT NOT NULL,
    expires_at  BIGINT
);
CREATE INDEX ledger_by_company ON ledger_entries (company_id, seq);
