-- 003: leases look queue by queue, so a paused or full queue costs nothing.
-- Every queue with jobs gets a row in queues (enqueue adds one from now on).

CREATE INDEX jobs_queue_ready ON jobs (queue, priority DESC, id) WHERE state = 'QUEUED';
INSERT INTO queues (name) SELECT DISTINCT queue FROM jobs ON CONFLICT DO NOTHING;
