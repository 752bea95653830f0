-- 004: the cross-queue dispatch index goes (as in sql/004): leases walk
-- jobs_queue_ready queue by queue.

DROP INDEX jobs_ready;
