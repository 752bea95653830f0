-- Undo 008: the edges go, and with them what jobs waited for.

DROP INDEX jobs_waiting_deps;
ALTER TABLE jobs DROP COLUMN deps_unmet;
DROP TABLE job_deps;
