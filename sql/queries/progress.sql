-- The completed steps of each company's latest boundary whose `usage-email` (its last step) is
-- done, and of every later boundary: closes run oldest first, so everything before is closed.
-- Re-runs are not steps of a close.
SELECT j.company_id, j.boundary_index, j.job
FROM job_runs j
WHERE j.job <> 'rerun' AND j.boundary_index >= COALESCE(
    (SELECT MAX(g.boundary_index) FROM job_runs g
     WHERE g.company_id = j.company_id AND g.job = 'usage-email'), 0)
