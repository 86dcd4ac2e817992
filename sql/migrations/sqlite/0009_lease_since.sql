-- When the current holder took each company's lease (a renewal keeps it), so `status` can say
-- how long a company has been held. 0 for leases taken before this column existed.
ALTER TABLE company_leases ADD COLUMN taken_at BIGINT NOT NULL DEFAULT 0;
