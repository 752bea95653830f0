-- Undo 005: enqueues find a subject's live jobs through jobs_subject again.

DROP INDEX jobs_live_subject;
