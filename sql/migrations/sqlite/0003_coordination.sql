-- Running many instances at once: per-company leases with fencing tokens, and the history of
-- failed steps.

-- Who is closing a company's boundaries, until when. A process takes a company by raising
-- its fence; every step it commits must still hold that fence, so a process whose lease was
-- taken over (it stalled or crashed) can no longer write.
CREATE TABLE company_leases (
    company_id   TEXT PRIMARY KEY,
    owner        TEXT NOT NULL,
    fence        BIGINT NOT NULL,
    lease_until  BIGINT NOT NULL
);

-- Every failed attempt at a step, with its error. A company with a failure newer than the
-- step's completion is parked: its later boundaries wait, and the next run retries it.
CREATE TABLE job_failures (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    company_id      TEXT NOT NULL,
    boundary_index  BIGINT NOT NULL,
    boundary_date   TEXT NOT NULL,
    job             TEXT NOT NULL,
    error           TEXT NOT NULL,
    failed_at       BIGINT NOT NULL
);
CREATE INDEX job_failures_by_company ON job_failures (company_id, boundary_index, job);
CREATE INDEX job_runs_by_job ON job_runs (company_id, job, boundary_index);
