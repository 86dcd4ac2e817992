-- Usage keyed (company, time, id), the order in which a close, an export and an email read
-- it: the key replaces the index `usage_by_time`, so a row written goes to the table and two
-- B-trees, not three. `usage_by_id` finds an id across companies (the duplicate check of an
-- intake, SPEC §6.2, which keeps an id to one row, and a rating's row).
ALTER TABLE usage DROP CONSTRAINT usage_pkey;
ALTER TABLE usage ADD PRIMARY KEY (company_id, occurred_at, id);
DROP INDEX usage_by_time;
