-- Money as integer micro-units everywhere: rate prices and the rate each usage row was priced
-- at, with the number of decimals they were written with (so `0.0250` reads back as written).
-- Call increments as two integers. `job_runs.error` was never written: failures live in
-- `job_failures`. The text is converted digit by digit, never through floating point.

ALTER TABLE rates ADD COLUMN price_micros BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rates ADD COLUMN price_scale BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rates ADD COLUMN increment_first BIGINT;
ALTER TABLE rates ADD COLUMN increment_next BIGINT;
UPDATE rates SET
    price_micros = CASE WHEN instr(price, '.') = 0 THEN CAST(price AS INTEGER) * 1000000
        ELSE CAST(substr(price, 1, instr(price, '.') - 1) AS INTEGER) * 1000000
           + CAST(substr(substr(price, instr(price, '.') + 1) || '000000', 1, 6) AS INTEGER) END,
    price_scale = CASE WHEN instr(price, '.') = 0 THEN 0 ELSE length(price) - instr(price, '.') END,
    increment_first = CAST(substr(increment, 1, instr(increment, '/') - 1) AS INTEGER),
    increment_next = CAST(substr(increment, instr(increment, '/') + 1) AS INTEGER);
ALTER TABLE rates DROP COLUMN price;
ALTER TABLE rates DROP COLUMN increment;

ALTER TABLE usage ADD COLUMN rate_micros BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage ADD COLUMN rate_scale BIGINT NOT NULL DEFAULT 0;
UPDATE usage SET
    rate_micros = CASE WHEN instr(rate, '.') = 0 THEN CAST(rate AS INTEGER) * 1000000
        ELSE CAST(substr(rate, 1, instr(rate, '.') - 1) AS INTEGER) * 1000000
           + CAST(substr(substr(rate, instr(rate, '.') + 1) || '000000', 1, 6) AS INTEGER) END,
    rate_scale = CASE WHEN instr(rate, '.') = 0 THEN 0 ELSE length(rate) - instr(rate, '.') END;
ALTER TABLE usage DROP COLUMN rate;

ALTER TABLE job_runs DROP COLUMN error;
