-- Undo 009: schedules and their runs go; jobs forget which schedule made them.

ALTER TABLE jobs DROP COLUMN slot;
ALTER TABLE jobs DROP COLUMN schedule;
DROP TABLE schedule_runs;
DROP TABLE schedules;
