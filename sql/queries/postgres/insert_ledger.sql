-- Ledger entries of a close as arrays, inserted in the order given.
INSERT INTO ledger_entries (company_id, at, scope, wallet, entry, amount, reference, expires_at)
SELECT c, a, s, w, e, m, r, x
FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::text[], $8::int8[])
     WITH ORDINALITY AS u(c, a, s, w, e, m, r, x, n)
ORDER BY n
