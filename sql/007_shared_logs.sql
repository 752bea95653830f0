-- 007: job logs and stop requests kept in a shared store (sql/postgres/007_shared_logs.sql).
-- A SQLite store's supervisor keeps job logs in files and runs every job itself, so
-- the step changes nothing here, and schema 7 means the same on both.

SELECT 1;
