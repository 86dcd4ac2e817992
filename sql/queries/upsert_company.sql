-- Companies' master data, replacing what was recorded under their ids. The caller writes
-- `INSERT INTO companies (id, name, …) VALUES (…), (…)` before this text.
ON CONFLICT (id) DO UPDATE SET
    name = excluded.name, time_zone = excluded.time_zone, currency = excluded.currency,
    anchor = excluded.anchor, billing = excluded.billing, card_verified = excluded.card_verified,
    credit_sharing = excluded.credit_sharing, primary_office = excluded.primary_office,
    ar_threshold = excluded.ar_threshold, ar_amount = excluded.ar_amount
