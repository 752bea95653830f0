-- 009: schedules (semantica/schedules.py). A schedule makes one job per slot; the
-- claim of a slot, its job and its run are one transaction (store/schedule_ops.py).

CREATE TABLE schedules (
    name        TEXT PRIMARY KEY,
    spec        TEXT    NOT NULL,            -- the ScheduleSpec, as JSON
    paused      INTEGER NOT NULL DEFAULT 0,
    next_slot   REAL,                        -- the next slot to decide (NULL: paused, or none)
    next_fire   REAL,                        -- next_slot plus its jitter: when it is due
    created_at  REAL    NOT NULL,
    updated_at  REAL    NOT NULL,
    last_slot   REAL,                        -- the latest slot decided (fired or skipped)
    last_job_id INTEGER,                     -- the job of the latest slot fired or run by hand
    fired       INTEGER NOT NULL DEFAULT 0,
    skipped     INTEGER NOT NULL DEFAULT 0,
    missed      INTEGER NOT NULL DEFAULT 0
);
-- What the timer asks for: the earliest slot due, among the schedules that have one.
CREATE INDEX schedules_due ON schedules (next_fire) WHERE next_fire IS NOT NULL;

-- The last runs of each schedule (a bounded history: the store keeps the newest).
CREATE TABLE schedule_runs (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    schedule TEXT    NOT NULL,
    slot     REAL    NOT NULL,
    outcome  TEXT    NOT NULL,               -- fired | skipped | manual
    at       REAL    NOT NULL,
    job_id   INTEGER
);
CREATE INDEX schedule_runs_by_schedule ON schedule_runs (schedule, id);

-- A job made by a schedule says which, and for which slot.
ALTER TABLE jobs ADD COLUMN schedule TEXT;
ALTER TABLE jobs ADD COLUMN slot REAL;
