-- Usage ratings of a close as arrays.
INSERT INTO usage_ratings (company_id, id, boundary_index, wallet_sources, late)
SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::bool[])
