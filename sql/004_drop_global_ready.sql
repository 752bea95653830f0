-- 004: the cross-queue dispatch index goes. Leases walk jobs_queue_ready (003)
-- queue by queue, and so does the one other reader (the waiting list of
-- `semctl top`), so jobs_ready only cost a b-tree insert on every enqueue and
-- a delete on every lease.

DROP INDEX jobs_ready;
