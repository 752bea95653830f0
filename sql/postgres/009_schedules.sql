-- 009: schedules (semantica/schedules.py). A schedule makes one job per slot; the
-- claim of a slot (a compare-and-set on next_slot, the row taken FOR UPDATE SKIP
-- LOCKED), its job and its run are one transaction (store/schedule_ops.py), so
-- several nodes never make two jobs for one slot.

CREATE TABLE schedules (
    name        text    PRIMARY KEY,
    spec        text    NOT NULL,            -- the ScheduleSpec, as JSON
    paused      boolean NOT NULL DEFAULT false,
    next_slot   double precision,            -- the next slot to decide (NULL: paused, or none)
    next_fire   double precision,            -- next_slot plus its jitter: when it is due
    created_at  double precision NOT NULL,
    updated_at  double precision NOT NULL,
    last_slot   double precision,            -- the latest slot decided (fired or skipped)
    last_job_id bigint,                      -- the job of the latest slot fired or run by hand
    fired       bigint  NOT NULL DEFAULT 0,
    skipped     bigint  NOT NULL DEFAULT 0,
    missed      bigint  NOT NULL DEFAULT 0
);
-- What the timer asks for: the earliest slot due, among the schedules that have one.
CREATE INDEX schedules_due ON schedules (next_fire) WHERE next_fire IS NOT NULL;

-- The last runs of each schedule (a bounded history: the store keeps the newest).
CREATE TABLE schedule_runs (
    id       bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    schedule text    NOT NULL REFERENCES schedules (name) ON DELETE CASCADE,
    slot     double precision NOT NULL,
    outcome  text    NOT NULL,               -- fired | skipped | manual
    at       double precision NOT NULL,
    job_id   bigint
);
CREATE INDEX schedule_runs_by_schedule ON schedule_runs (schedule, id);

-- A job made by a schedule says which, and for which slot.
ALTER TABLE jobs ADD COLUMN schedule text;
ALTER TABLE jobs ADD COLUMN slot double precision;
