-- 006: nodes, a PostgreSQL store's (sql/postgres/006_nodes.sql). A SQLite store
-- has one writer, its own supervisor: it is its only node and keeps no table of
-- them. The step changes nothing here, so that schema 6 means the same on both.

SELECT 1;
