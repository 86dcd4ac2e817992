-- Master data, recorded events, and what the closes write.
-- Money is integer micro-units (10^-6); instants are integer microseconds since the Unix epoch,
-- UTC; local dates are TEXT 'YYYY-MM-DD'.

CREATE TABLE companies (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    time_zone       TEXT NOT NULL,
    currency        TEXT NOT NULL,
    anchor          TEXT NOT NULL,
    billing         TEXT NOT NULL,
    card_verified   BOOLEAN NOT NULL,
    credit_sharing  TEXT NOT NULL,
    primary_office  TEXT NOT NULL,
    ar_threshold    BIGINT,
    ar_amount       BIGINT
);

CREATE TABLE offices (
    company_id  TEXT NOT NULL,
    id          TEXT NOT NULL,
    name        TEXT NOT NULL,
    ord         BIGINT NOT NULL,
    PRIMARY KEY (company_id, id)
);

CREATE TABLE parties (
    company_id  TEXT NOT NULL,
    id          TEXT NOT NULL,
    kind        TEXT NOT NULL,
    office_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    phone       TEXT,
    product     TEXT,
    ord         BIGINT NOT NULL,
    PRIMARY KEY (company_id, id)
);

CREATE TABLE admins (
    company_id  TEXT NOT NULL,
    email       TEXT NOT NULL,
    office_id   TEXT,
    ord         BIGINT NOT NULL,
    PRIMARY KEY (company_id, email)
);

CREATE TABLE products (
    code        TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    term        TEXT NOT NULL,
    unit_price  BIGINT NOT NULL
);

CREATE TABLE initial_pools (
    company_id  TEXT NOT NULL,
    office_id   TEXT NOT NULL,
    product     TEXT NOT NULL,
    quantity    BIGINT NOT NULL,
    ord         BIGINT NOT NULL,
    PRIMARY KEY (company_id, office_id, product)
);

CREATE TABLE bundles (
    company_id  TEXT NOT NULL,
    id          TEXT NOT NULL,
    scope       TEXT NOT NULL,
    kind        TEXT NOT NULL,
    credits     BIGINT NOT NULL,
    fee         BIGINT NOT NULL,
    cadence     TEXT NOT NULL,
    start       TEXT NOT NULL,
    ord         BIGINT NOT NULL,
    PRIMARY KEY (company_id, id)
);

CREATE TABLE allowances (
    company_id  TEXT NOT NULL,
    ord         BIGINT NOT NULL,
    service     TEXT NOT NULL,
    amount      BIGINT NOT NULL,
    PRIMARY KEY (company_id, ord)
);

CREATE TABLE rates (
    ord         BIGINT PRIMARY KEY,
    service     TEXT NOT NULL,
    usage_type  TEXT,
    direction   TEXT,
    prefix      TEXT,
    product     TEXT,
    price       TEXT NOT NULL,
    increment   TEXT
);

-- Every event as it arrived, accepted or rejected; `seq` is the global arrival order.
CREATE TABLE events (
    company_id  TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    source      TEXT NOT NULL,
    line        BIGINT NOT NULL,
    event_id    TEXT,
    kind        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    accepted    BOOLEAN NOT NULL,
    PRIMARY KEY (company_id, seq)
);
CREATE UNIQUE INDEX events_by_id ON events (company_id, event_id) WHERE event_id IS NOT NULL AND accepted;

-- Items refused by a rule, with their reason (§6.2, §10).
CREATE TABLE rejections (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id  TEXT,
    source      TEXT NOT NULL,
    line        BIGINT NOT NULL,
    item_id     TEXT NOT NULL,
    reason      TEXT NOT NULL
);

-- One row per step per (company, boundary); the unique key is the claim.
CREATE TABLE job_runs (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id      TEXT NOT NULL,
    boundary_index  BIGINT NOT NULL,
    boundary_at     BIGINT NOT NULL,
    boundary_date   TEXT NOT NULL,
    job             TEXT NOT NULL,
    status          TEXT NOT NULL,
    items           BIGINT NOT NULL,
    error           TEXT,
    started_at      BIGINT NOT NULL,
    finished_at     BIGINT NOT NULL,
    UNIQUE (company_id, boundary_index, job)
);

-- Removals applied at a boundary by the apply-removals step.
CREATE TABLE license_removals (
    company_id      TEXT NOT NULL,
    boundary_index  BIGINT NOT NULL,
    office_id       TEXT NOT NULL,
    product         TEXT NOT NULL,
    quantity        BIGINT NOT NULL,
    PRIMARY KEY (company_id, boundary_index, office_id, product)
);

-- Issued documents; never updated.
CREATE TABLE invoices (
    company_id      TEXT NOT NULL,
    number          TEXT NOT NULL,
    kind            TEXT NOT NULL,
    boundary_index  BIGINT NOT NULL,
    boundary        TEXT NOT NULL,
    period_start    TEXT NOT NULL,
    period_end      TEXT NOT NULL,
    currency        TEXT NOT NULL,
    total           BIGINT NOT NULL,
    PRIMARY KEY (company_id, number)
);

CREATE TABLE invoice_lines (
    company_id      TEXT NOT NULL,
    number          TEXT NOT NULL,
    line_no         BIGINT NOT NULL,
    kind            TEXT NOT NULL,
    office          TEXT NOT NULL,
    product         TEXT NOT NULL,
    description     TEXT NOT NULL,
    quantity        BIGINT,
    unit_price      BIGINT,
    amount          BIGINT NOT NULL,
    source          TEXT NOT NULL,
    PRIMARY KEY (company_id, number, line_no)
);

CREATE TABLE card_charges (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id  TEXT NOT NULL,
    at          BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    amount      BIGINT NOT NULL,
    currency    TEXT NOT NULL,
    reference   TEXT NOT NULL
);
CREATE UNIQUE INDEX card_charges_by_reference ON card_charges (company_id, kind, reference);
