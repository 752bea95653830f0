-- Undo 010: jobs_subject begins with the type again.

DROP INDEX jobs_subject;
CREATE INDEX jobs_subject ON jobs (type, subject, generation) WHERE subject IS NOT NULL;
