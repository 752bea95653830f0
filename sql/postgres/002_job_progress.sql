-- 002: how far a running job has got, as its handler reports it (ctx.progress).

ALTER TABLE jobs ADD COLUMN progress double precision;  -- 0.0 .. 1.0, NULL until reported
ALTER TABLE jobs ADD COLUMN progress_message text;      -- what the handler said with it
ALTER TABLE jobs ALTER COLUMN progress_message SET STORAGE EXTERNAL;
