-- Undo 010: no index by type; jobs_subject begins with the type again.

DROP INDEX jobs_by_type;
DROP INDEX jobs_subject;
CREATE INDEX jobs_subject ON jobs (type, subject, generation) WHERE subject IS NOT NULL;
