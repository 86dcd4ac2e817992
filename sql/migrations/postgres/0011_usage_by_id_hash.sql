-- `usage_by_id` answers only "which rows have this id" (an intake's duplicate check, SPEC §6.2,
-- and a rating's row): a hash index does that with one bucket per id, where a B-tree kept ids
-- in order, and a load's ids, which come in no order, landed each on another of its pages.
-- `COPY` of a million-row month: 11.5–14.1 s with the B-tree, 8.6–9.0 s with the hash
-- (BENCHMARKS.md, item 22). SQLite has no hash index; its `usage_by_id` stays a B-tree.
DROP INDEX usage_by_id;
CREATE INDEX usage_by_id ON usage USING hash (id);
