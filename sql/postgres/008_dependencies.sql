-- 008: jobs that wait for other jobs (--after, --after-end); as sql/008_dependencies.sql.
-- One row per edge: `job_id` waits for `after_id`, until it is DONE (mode 'done') or
-- until it ends (mode 'end'). `status` says whether the edge is still 'waiting', was
-- 'met', or 'failed' (the job waited for ended otherwise: the waiting job was cancelled).
-- A job counts its waiting edges in `deps_unmet`: a lease reads that one column, and
-- never takes a job whose count is not 0. A job without dependencies has no row here.
-- No foreign keys: retention deletes a job's edges with it (a key would cost every
-- delete of a job a look here, and an edge's job may be another node's to lock).

CREATE TABLE job_deps (
    job_id   bigint NOT NULL,
    after_id bigint NOT NULL,
    mode     text   NOT NULL CHECK (mode IN ('done', 'end')),
    status   text   NOT NULL DEFAULT 'waiting' CHECK (status IN ('waiting', 'met', 'failed')),
    PRIMARY KEY (job_id, after_id)
);
CREATE INDEX job_deps_after ON job_deps (after_id, status);

ALTER TABLE jobs ADD COLUMN deps_unmet integer NOT NULL DEFAULT 0;
CREATE INDEX jobs_waiting_deps ON jobs (id) WHERE state = 'QUEUED' AND deps_unmet > 0;
