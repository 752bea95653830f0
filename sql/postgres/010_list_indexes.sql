-- 010: a list of jobs by any one filter, newest first, a page at a time (as in
-- sql/010). PostgreSQL's indexes carry no row id: each names id after its column,
-- so that a list walks one index backwards and stops when the page is full.

CREATE INDEX jobs_by_state ON jobs (state, id);
CREATE INDEX jobs_by_queue ON jobs (queue, id);
CREATE INDEX jobs_by_type ON jobs (type, id);
CREATE INDEX jobs_by_subject ON jobs (subject, id) WHERE subject IS NOT NULL;
