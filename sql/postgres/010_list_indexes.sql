-- 010: a list of jobs by any filters, newest first, a page at a time (as in
-- sql/010). PostgreSQL's indexes carry no row id: a (state, queue) pair of
-- jobs_state is in id order only if the index names id, so jobs_state names it
-- now, and so does jobs_by_type. (Every index on jobs costs PostgreSQL an entry
-- on every state change, not only those that hold the state: a row whose indexed
-- column changes is written anew in each of them.)

DROP INDEX jobs_subject;
CREATE INDEX jobs_subject ON jobs (subject, type, generation) WHERE subject IS NOT NULL;
DROP INDEX jobs_state;
CREATE INDEX jobs_state ON jobs (state, queue, id);
CREATE INDEX jobs_by_type ON jobs (type, id);
