-- 005: the QUEUED and RUNNING jobs of a subject, apart from its finished history.
-- An enqueue with a subject looks for a live job to deduplicate against and for
-- older queued ones to supersede; through jobs_subject that walked every
-- generation the subject ever had, so an often-updated subject made each enqueue
-- slower (and one request of 40,000 jobs of one subject took minutes).

CREATE INDEX jobs_live_subject ON jobs (type, subject, generation)
    WHERE subject IS NOT NULL AND state IN ('QUEUED', 'RUNNING');
