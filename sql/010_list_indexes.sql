-- 010: a list of jobs by any one filter, newest first, a page at a time.
-- A list is `WHERE <filters> ORDER BY id DESC LIMIT n` (with `id < before` for the
-- next page). Without an index that holds a filter's jobs in id order, a list by
-- state sorted every job of the state (all the DONE ones, to show 50), and a list
-- by subject, type or a rare queue read the whole table. Each index below is one
-- column, and so, in SQLite, that column then the rowid: the jobs of one state,
-- queue, type or subject newest first, read from the end until the page is full.
-- (A state and a queue together have jobs_state, whose order is the same.)
-- The latest FAILED jobs that top shows are the same read.

CREATE INDEX jobs_by_state ON jobs (state);
CREATE INDEX jobs_by_queue ON jobs (queue);
CREATE INDEX jobs_by_type ON jobs (type);
CREATE INDEX jobs_by_subject ON jobs (subject) WHERE subject IS NOT NULL;
