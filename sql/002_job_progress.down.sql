-- Undo 002: drop the progress columns (SQLite 3.35+ drops columns in place).

ALTER TABLE jobs DROP COLUMN progress_message;
ALTER TABLE jobs DROP COLUMN progress;
