-- Undo 007: nothing was changed here.

SELECT 1;
