-- Money as integer micro-units everywhere: rate prices and the rate each usage row was priced
-- at, with the number of decimals they were written with (so `0.0250` reads back as written).
-- Call increments as two integers. `job_runs.error` was never written: failures live in
-- `job_failures`.

ALTER TABLE rates
    ADD COLUMN price_micros    BIGINT,
    ADD COLUMN price_scale     BIGINT,
    ADD COLUMN increment_first BIGINT,
    ADD COLUMN increment_next  BIGINT;
UPDATE rates SET
    price_micros    = (price::numeric * 1000000)::bigint,
    price_scale     = scale(price::numeric),
    increment_first = split_part(increment, '/', 1)::bigint,
    increment_next  = split_part(increment, '/', 2)::bigint;
ALTER TABLE rates
    ALTER COLUMN price_micros SET NOT NULL,
    ALTER COLUMN price_scale SET NOT NULL,
    DROP COLUMN price,
    DROP COLUMN increment;

ALTER TABLE usage
    ADD COLUMN rate_micros BIGINT,
    ADD COLUMN rate_scale  BIGINT;
UPDATE usage SET
    rate_micros = (rate::numeric * 1000000)::bigint,
    rate_scale  = scale(rate::numeric);
ALTER TABLE usage
    ALTER COLUMN rate_micros SET NOT NULL,
    ALTER COLUMN rate_scale SET NOT NULL,
    DROP COLUMN rate;

ALTER TABLE job_runs DROP COLUMN error;
