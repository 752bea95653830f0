-- 010: a list of jobs by any filters, newest first, a page at a time, with one
-- index more on jobs. A list is `WHERE <filters> ORDER BY id DESC LIMIT n` (with
-- `id < before` for the next page), and each index on jobs costs every enqueue an
-- entry, and one that holds the state every state change. So lists read the
-- indexes there are where they can (store/listing.py): the jobs of one state and
-- queue are in id order in jobs_state (state, queue, then the rowid), so a list by
-- state or by queue walks each (state, queue) pair from its newest job and merges;
-- a list by subject reads the subject's few jobs from jobs_subject, which begins
-- with the subject now (retry's look-up by type and subject reads it as well).
-- A type is the first column of no index: jobs_by_type (type, then the rowid)
-- holds a type's jobs newest last. (An index for each of state, queue, type and
-- subject made an enqueue cost about half as much again in the store.)

DROP INDEX jobs_subject;
CREATE INDEX jobs_subject ON jobs (subject, type, generation) WHERE subject IS NOT NULL;
CREATE INDEX jobs_by_type ON jobs (type);
