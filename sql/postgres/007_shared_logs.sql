-- 007: what several nodes share beyond the jobs.
-- Job logs live in the database, so that any node reads (`semctl logs`) and follows
-- (`semctl tail`) the log of a job that runs on any node. Lines are numbered in the
-- order they were added, and go with their job.

CREATE TABLE job_logs (
    job_id  bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq     bigint GENERATED ALWAYS AS IDENTITY,
    line    text   NOT NULL,
    PRIMARY KEY (job_id, seq)
);

-- A cancel made on another node than the one running the job: that node stops it
-- and ends it with this error. Cleared by the next lease.
ALTER TABLE jobs ADD COLUMN stop_kind text;
ALTER TABLE jobs ADD COLUMN stop_message text;
