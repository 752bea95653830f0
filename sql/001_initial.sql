-- 001: the job store. Times are Unix epoch seconds (REAL); JSON is stored as text.

CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT, -- the job id users see; never reused
    type             TEXT    NOT NULL,
    queue            TEXT    NOT NULL DEFAULT 'default',
    subject          TEXT,
    generation       INTEGER,
    priority         INTEGER NOT NULL DEFAULT 0,
    state            TEXT    NOT NULL CHECK (state IN
                         ('QUEUED', 'RUNNING', 'DONE', 'FAILED', 'CANCELLED', 'SUPERSEDED')),
    payload          TEXT    NOT NULL DEFAULT 'null',
    result           TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL DEFAULT 3,
    timeout_s        REAL,
    backoff_s        REAL,
    require_charging INTEGER NOT NULL DEFAULT 0,
    require_idle     INTEGER NOT NULL DEFAULT 0,
    created_at       REAL    NOT NULL,
    run_after        REAL    NOT NULL,             -- not started before this time
    started_at       REAL,
    finished_at      REAL,
    error_kind       TEXT,
    error_message    TEXT,
    lease_id         INTEGER,                      -- the lease of the current attempt (fencing)
    worker_pid       INTEGER,
    superseded_by    INTEGER                       -- the newer job that replaced this one
);

-- The dispatch order: highest priority first, then FIFO by id, among queued jobs only.
-- Queries that must walk it name it (INDEXED BY): the planner would rather use
-- jobs_state and sort every queued job for each lease.
CREATE INDEX jobs_ready ON jobs (priority DESC, id) WHERE state = 'QUEUED';
-- When the next delayed or backed-off job comes due.
CREATE INDEX jobs_due ON jobs (run_after) WHERE state = 'QUEUED';
-- Counts by state and queue; running jobs of a queue.
CREATE INDEX jobs_state ON jobs (state, queue);
CREATE INDEX jobs_subject ON jobs (type, subject, generation) WHERE subject IS NOT NULL;
-- Queued jobs that wait for a condition: the probes run only while there are some.
CREATE INDEX jobs_conditions ON jobs (require_charging, require_idle)
    WHERE state = 'QUEUED' AND (require_charging = 1 OR require_idle = 1);
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE queues (
    name        TEXT PRIMARY KEY,
    paused      INTEGER NOT NULL DEFAULT 0,
    max_running INTEGER NOT NULL DEFAULT 0       -- 0: no cap
);
