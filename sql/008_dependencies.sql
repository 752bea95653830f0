-- 008: jobs that wait for other jobs (--after, --after-end).
-- One row per edge: `job_id` waits for `after_id`, until it is DONE (mode 'done') or
-- until it ends (mode 'end'). `status` says whether the edge is still 'waiting', was
-- 'met', or 'failed' (the job waited for ended otherwise: the waiting job was cancelled).
-- A job counts its waiting edges in `deps_unmet`: a lease reads that one column, and
-- never takes a job whose count is not 0. A job without dependencies has no row here.

CREATE TABLE job_deps (
    job_id   INTEGER NOT NULL,
    after_id INTEGER NOT NULL,
    mode     TEXT    NOT NULL CHECK (mode IN ('done', 'end')),
    status   TEXT    NOT NULL DEFAULT 'waiting' CHECK (status IN ('waiting', 'met', 'failed')),
    PRIMARY KEY (job_id, after_id)
) WITHOUT ROWID;
-- A job's dependents: whom its end concerns, and `show`'s list.
CREATE INDEX job_deps_after ON job_deps (after_id, status);

ALTER TABLE jobs ADD COLUMN deps_unmet INTEGER NOT NULL DEFAULT 0;
-- The queued jobs that wait for dependencies (status, top); no entry for any other job.
CREATE INDEX jobs_waiting_deps ON jobs (id) WHERE state = 'QUEUED' AND deps_unmet > 0;
