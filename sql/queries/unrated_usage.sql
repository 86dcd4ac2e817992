-- Accepted usage not yet rated that occurred and arrived before each company's bound; the
-- bounds are a VALUES list written before this text: `WITH bounds (company_id, until) AS (…)`.
SELECT u.company_id, u.id, u.occurred_at, u.received_at, u.office, u.service, u.cost
FROM usage u
JOIN bounds b ON b.company_id = u.company_id
WHERE u.occurred_at < b.until AND u.received_at < b.until
  AND NOT EXISTS (SELECT 1 FROM usage_ratings r WHERE r.company_id = u.company_id AND r.id = u.id)
