-- 010: a list of jobs by any filters, newest first, a page at a time, without an
-- index more on jobs. A list is `WHERE <filters> ORDER BY id DESC LIMIT n` (with
-- `id < before` for the next page); each index on jobs costs every enqueue an
-- entry more, and one that holds the state costs every state change. So lists read
-- the indexes there are (store/listing.py): the jobs of one state and queue are in
-- id order in jobs_state (state, queue, then the rowid), so a list by state or by
-- queue walks each (state, queue) pair from its newest job and merges; a list by
-- subject reads the subject's few jobs from jobs_subject, which therefore begins
-- with the subject now (retry's look-up by type and subject reads it as well);
-- other lists walk the table from its newest row. One index per filter (state,
-- queue, type, subject) made a batch enqueue cost about a third more CPU.

DROP INDEX jobs_subject;
CREATE INDEX jobs_subject ON jobs (subject, type, generation) WHERE subject IS NOT NULL;
