-- 006: nodes. Every supervisor sharing this database registers as a node and
-- renews a heartbeat (the database's clock); a lease records its node, so the
-- jobs of a node declared dead go back to the queue, and only those.

CREATE TABLE nodes (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key          text    NOT NULL,          -- one supervisor across restarts (host + state dir)
    name         text    NOT NULL,
    host         text    NOT NULL,
    pid          integer NOT NULL,
    version      text    NOT NULL,
    workers      integer NOT NULL DEFAULT 0,
    started_at   double precision NOT NULL, -- Unix seconds, the database's clock
    heartbeat_at double precision NOT NULL,
    state        text    NOT NULL DEFAULT 'alive' CHECK (state IN ('alive', 'dead', 'gone')),
    ended_at     double precision,          -- when it was declared dead or left
    detail       bytea   NOT NULL DEFAULT '\x'::bytea  -- the supervisor's own JSON
);
CREATE INDEX nodes_alive ON nodes (heartbeat_at) WHERE state = 'alive';
CREATE INDEX nodes_key ON nodes (key);

ALTER TABLE jobs ADD COLUMN node_id bigint;  -- the node running the job (RUNNING only)
CREATE INDEX jobs_running_node ON jobs (node_id) WHERE state = 'RUNNING';
