-- A company's master data, replacing what was recorded under its id.
INSERT INTO companies (id, name, time_zone, currency, anchor, billing, card_verified,
                       credit_sharing, primary_office, ar_threshold, ar_amount)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (id) DO UPDATE SET
    name = excluded.name, time_zone = excluded.time_zone, currency = excluded.currency,
    anchor = excluded.anchor, billing = excluded.billing, card_verified = excluded.card_verified,
    credit_sharing = excluded.credit_sharing, primary_office = excluded.primary_office,
    ar_threshold = excluded.ar_threshold, ar_amount = excluded.ar_amount
