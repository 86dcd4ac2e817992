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
-- number of times, each re-run with its own row.
ALTER TABLE job_runs DROP CONSTRAINT job_runs_company_id_boundary_index_job_key;
CREATE UNIQUE INDEX job_runs_claim ON job_runs (company_id, boundary_index, job)
    WHERE job <> 'rerun';

-- What a re-run leaves out of the ledger it rebuilds from, usage a later close rated late, is
-- found through usage_ratings_late (migration 0006).

-- Issued documents never change: no update, delete or truncate of a document, its lines or
-- the note of who issued an adjustment.
CREATE FUNCTION refuse_change_of_issued_documents() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'issued documents are immutable: % of % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$;
CREATE TRIGGER invoices_immutable BEFORE UPDATE OR DELETE ON invoices
    FOR EACH ROW EXECUTE FUNCTION refuse_change_of_issued_documents();
CREATE TRIGGER invoices_no_truncate BEFORE TRUNCATE ON invoices
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change_of_issued_documents();
CREATE TRIGGER invoice_lines_immutable BEFORE UPDATE OR DELETE ON invoice_lines
    FOR EACH ROW EXECUTE FUNCTION refuse_change_of_issued_documents();
CREATE TRIGGER invoice_lines_no_truncate BEFORE TRUNCATE ON invoice_lines
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change_of_issued_documents();
CREATE TRIGGER invoice_adjustments_immutable BEFORE UPDATE OR DELETE ON invoice_adjustments
    FOR EACH ROW EXECUTE FUNCTION refuse_change_of_issued_documents();
CREATE TRIGGER invoice_adjustments_no_truncate BEFORE TRUNCATE ON invoice_adjustments
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change_of_issued_documents();
