-- The usage history of one company, with the wallets each row was paid from (empty while it
-- is not rated). The caller appends the company, the scope, the selection, the filters and the
-- order, and names the offices, users and groups from the company's own lists.
SELECT u.id, u.occurred_at, u.office, u.party, u.remote_number, u.service, u.usage_type,
       u.direction, u.duration_s, u.billable_quantity, u.unit, u.rate_micros, u.rate_scale,
       u.increment, u.cost, COALESCE(r.wallet_sources, '') AS wallet_sources
FROM usage u
LEFT JOIN usage_ratings r ON r.company_id = u.company_id AND r.id = u.id
WHERE u.company_id = 