-- Safe intake: every file loaded is recorded by its SHA-256, so a load retried with the same
-- content is a no-op; and every intake bumps its companies' version, so a close computed from
-- a history that has since grown is refused at commit and computed again.

CREATE TABLE loaded_files (
    sha256     TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    loaded_at  BIGINT NOT NULL
);

-- One row per company that ever took anything in. Intake transactions update their companies'
-- rows first, and a close's commit checks and locks the row of each company it writes, so an
-- intake and a close of the same company are serialized.
CREATE TABLE company_intake (
    company_id  TEXT PRIMARY KEY,
    version     BIGINT NOT NULL
);
