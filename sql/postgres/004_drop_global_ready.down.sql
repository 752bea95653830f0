-- Undo 004: the cross-queue dispatch index comes back.

CREATE INDEX jobs_ready ON jobs (priority DESC, id) WHERE state = 'QUEUED';
