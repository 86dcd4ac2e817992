-- Rated usage with its rating.
SELECT u.company_id, u.id, u.source, u.line, u.occurred_at, u.received_at, u.office, u.party,
       u.service, u.usage_type, u.direction, u.remote_number, u.number_used, u.duration_s,
       u.billable_quantity, u.unit, u.rate_micros, u.rate_scale, u.increment, u.cost, u.content,
       r.boundary_index, r.wallet_sources, r.late
FROM usage u
JOIN usage_ratings r ON r.company_id = u.company_id AND r.id = u.id
