-- Undo 002: drop the progress columns.

ALTER TABLE jobs DROP COLUMN progress_message;
ALTER TABLE jobs DROP COLUMN progress;
