-- Claims the queued emails due at $3, up to $4 of them, for owner $1 until $2: moving their
-- due instant to the end of the claim keeps every other sender off them until then.
UPDATE usage_emails
SET claimed_by = $1, next_attempt_at = $2, attempts = attempts + 1
WHERE status = 'queued' AND next_attempt_at <= $3
  AND (company_id, boundary_index, recipient) IN (
    SELECT company_id, boundary_index, recipient FROM usage_emails
    WHERE status = 'queued' AND next_attempt_at <= $3
    ORDER BY next_attempt_at, company_id, boundary_index, recipient
    LIMIT $4)
RETURNING company_id, boundary_index, boundary_date, recipient, scope, message_id, subject,
          summary, attachment, status, attempts, next_attempt_at, last_error
