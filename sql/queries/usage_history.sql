-- The usage history of one company: office and party names instead of ids, and the wallets
-- each row was paid from (empty while it is not rated). The caller appends the company, the
-- scope, the selection, the filters and the order.
SELECT u.id, u.occurred_at, u.office, COALESCE(o.name, u.office) AS office_name,
       COALESCE(p.name, '') AS party_name, u.remote_number, u.service, u.usage_type,
       u.direction, u.duration_s, u.billable_quantity, u.unit, u.rate_micros, u.rate_scale,
       u.increment, u.cost, COALESCE(r.wallet_sources, '') AS wallet_sources
FROM usage u
LEFT JOIN offices o ON o.company_id = u.company_id AND o.id = u.office
LEFT JOIN parties p ON p.company_id = u.company_id AND p.id = u.party
LEFT JOIN usage_ratings r ON r.company_id = u.company_id AND r.id = u.id
WHERE u.company_id = 
