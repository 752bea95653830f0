-- Undo 006: no nodes; running jobs keep their lease ids (fencing is unchanged).

DROP INDEX jobs_running_node;
ALTER TABLE jobs DROP COLUMN node_id;
DROP TABLE nodes;
