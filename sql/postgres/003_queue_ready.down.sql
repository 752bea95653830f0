-- Undo 003: the index goes; the queue rows it added are harmless defaults and stay.

DROP INDEX jobs_queue_ready;
