-- Monthly usage emails: what each close spent, and the queue of emails to admins.

-- What the usage rated by each close cost, by office, service and the wallet it was drawn
-- from (the sum of its debits). The usage email of the next close compares with it.
CREATE TABLE usage_spend (
    company_id      TEXT NOT NULL,
    boundary_index  BIGINT NOT NULL,
    office          TEXT NOT NULL,
    service         TEXT NOT NULL,
    wallet          TEXT NOT NULL,
    amount          BIGINT NOT NULL,
    PRIMARY KEY (company_id, boundary_index, office, service, wallet)
);

-- One email per (company, boundary, admin), queued in the transaction of the `usage-email`
-- step; the key is what makes it once. `status` is queued, sent or failed (refused for good);
-- a queued email is due at `next_attempt_at`. A sender claims it by moving that instant past
-- its own lease (`claimed_by`), so a crashed sender's email becomes due again by itself.
CREATE TABLE usage_emails (
    company_id      TEXT NOT NULL,
    boundary_index  BIGINT NOT NULL,
    recipient       TEXT NOT NULL,
    boundary_date   TEXT NOT NULL,
    scope           TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    subject         TEXT NOT NULL,
    summary         TEXT NOT NULL,
    attachment      TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    claimed_by      TEXT,
    last_error      TEXT,
    queued_at       BIGINT NOT NULL,
    sent_at         BIGINT,
    PRIMARY KEY (company_id, boundary_index, recipient)
);
CREATE INDEX usage_emails_due ON usage_emails (status, next_attempt_at);

-- The late rows a close rated, which head its emailed CSV; the rest of the CSV is read in
-- time order through usage_by_time.
CREATE INDEX usage_ratings_late ON usage_ratings (company_id, boundary_index) WHERE late;

-- Closes made before this version: their spend from the ledger's debits, and their
-- `usage-email` step marked done with nothing queued, so an upgrade does not mail the past.
INSERT INTO usage_spend (company_id, boundary_index, office, service, wallet, amount)
SELECT r.company_id, r.boundary_index, u.office, u.service, l.wallet, -SUM(l.amount)
FROM usage_ratings r
JOIN usage u ON u.company_id = r.company_id AND u.id = r.id
JOIN ledger_entries l ON l.company_id = r.company_id AND l.reference = r.id AND l.entry = 'debit'
GROUP BY r.company_id, r.boundary_index, u.office, u.service, l.wallet;

INSERT INTO job_runs (company_id, boundary_index, boundary_at, boundary_date, job, status, items,
                      started_at, finished_at)
SELECT company_id, boundary_index, boundary_at, boundary_date, 'usage-email', 'ok', 0,
       finished_at, finished_at
FROM job_runs WHERE job = 'grant';
