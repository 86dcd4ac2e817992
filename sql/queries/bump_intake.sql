-- (Follows a VALUES list of (company_id, version).) Taking anything in for a company raises its
-- version, and the row lock held until commit keeps a close of the company waiting.
ON CONFLICT (company_id) DO UPDATE SET version = company_intake.version + 1
