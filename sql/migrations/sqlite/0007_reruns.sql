-- Re-runs of closed cycles (SPEC §8, §12.22): adjustment documents with who issued them, why
-- and when; a row in job_runs for every re-run; and issued documents kept immutable by the
-- database itself, whatever code or person connects to it.

-- Who issued each adjustment, for which document, why and when. The adjustment itself is a
-- document like any other (invoices, invoice_lines: kind 'adjustment', number '<invoice>-A<n>');
-- inserting this row is the claim that issues it once, however many re-runs race for it.
CREATE TABLE invoice_adjustments (
    company_id  TEXT NOT NULL,
    number      TEXT NOT NULL,
    adjusts     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    issued_by   TEXT NOT NULL,
    issued_at   BIGINT NOT NULL,
    PRIMARY KEY (company_id, number)
);
CREATE INDEX invoice_adjustments_by_invoice ON invoice_adjustments (company_id, adjusts);

-- An adjustment line names the kind of the line it corrects; NULL on every other line.
ALTER TABLE invoice_lines ADD COLUMN corrects TEXT;

-- A step's row stays the claim of (company, boundary, step), but a boundary may be re-run any
-- number of times, each re-run with its own row. SQLite can't drop a table's UNIQUE
-- constraint, so the table is rebuilt with a partial unique index instead, keeping every row
-- and its seq (the execution order).
CREATE TABLE job_runs_0007 (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    company_id      TEXT NOT NULL,
    boundary_index  BIGINT NOT NULL,
    boundary_at     BIGINT NOT NULL,
    boundary_date   TEXT NOT NULL,
    job             TEXT NOT NULL,
    status          TEXT NOT NULL,
    items           BIGINT NOT NULL,
    started_at      BIGINT NOT NULL,
    finished_at     BIGINT NOT NULL
);
INSERT INTO job_runs_0007 (seq, company_id, boundary_index, boundary_at, boundary_date, job,
                           status, items, started_at, finished_at)
SELECT seq, company_id, boundary_index, boundary_at, boundary_date, job, status, items,
       started_at, finished_at
FROM job_runs;
DROP TABLE job_runs;
ALTER TABLE job_runs_0007 RENAME TO job_runs;
CREATE UNIQUE INDEX job_runs_claim ON job_runs (company_id, boundary_index, job)
    WHERE job <> 'rerun';
CREATE INDEX job_runs_by_job ON job_runs (company_id, job, boundary_index);

-- What a re-run leaves out of the ledger it rebuilds from, usage a later close rated late, is
-- found through usage_ratings_late (migration 0006).

-- Issued documents never change: no update, no delete, of a document, its lines or the note
-- of who issued an adjustment.
CREATE TRIGGER invoices_no_update BEFORE UPDATE ON invoices
BEGIN SELECT RAISE(ABORT, 'issued documents are immutable: UPDATE of invoices refused'); END;
CREATE TRIGGER invoices_no_delete BEFORE DELETE ON invoices
BEGIN SELECT RAISE(ABORT, 'issued documents are immutable: DELETE of invoices refused'); END;
CREATE TRIGGER invoice_lines_no_update BEFORE UPDATE ON invoice_lines
BEGIN SELECT RAISE(ABORT, 'issued documents are immutable: UPDATE of invoice_lines refused'); END;
CREATE TRIGGER invoice_lines_no_delete BEFORE DELETE ON invoice_lines
BEGIN SELECT RAISE(ABORT, 'issued documents are immutable: DELETE of invoice_lines refused'); END;
CREATE TRIGGER invoice_adjustments_no_update BEFORE UPDATE ON invoice_adjustments
BEGIN SELECT RAISE(ABORT, 'issued documents are immutable: UPDATE of invoice_adjustments refused'); END;
CREATE TRIGGER invoice_adjustments_no_delete BEFORE DELETE ON invoice_adjustments
BEGIN SELECT RAISE(ABORT, 'issued documents are immutable: DELETE of invoice_adjustments refused'); END;
