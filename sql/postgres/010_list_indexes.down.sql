-- Undo 010: no index by type, jobs_state without the id, jobs_subject beginning
-- with the type again.

DROP INDEX jobs_by_type;
DROP INDEX jobs_state;
CREATE INDEX jobs_state ON jobs (state, queue);
DROP INDEX jobs_subject;
CREATE INDEX jobs_subject ON jobs (type, subject, generation) WHERE subject IS NOT NULL;
