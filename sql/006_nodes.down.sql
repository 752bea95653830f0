-- Undo 006: nothing was changed on SQLite.

SELECT 1;
