-- Undo 010: lists by one filter sort or scan again.

DROP INDEX jobs_by_subject;
DROP INDEX jobs_by_type;
DROP INDEX jobs_by_queue;
DROP INDEX jobs_by_state;
