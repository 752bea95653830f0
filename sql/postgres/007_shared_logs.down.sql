-- Undo 007: job logs go (they were the database's only copy), and stop requests.

ALTER TABLE jobs DROP COLUMN stop_message;
ALTER TABLE jobs DROP COLUMN stop_kind;
DROP TABLE job_logs;
