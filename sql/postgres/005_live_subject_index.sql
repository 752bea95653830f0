-- 005: the QUEUED and RUNNING jobs of a subject, apart from its finished history
-- (as in sql/005).

CREATE INDEX jobs_live_subject ON jobs (type, subject, generation)
    WHERE subject IS NOT NULL AND state IN ('QUEUED', 'RUNNING');
