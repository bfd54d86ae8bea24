-- Fewer writes per job. A claim and an outcome are each an UPDATE that cannot be HOT (the state
-- column is in index predicates), so every index that takes the new row version costs a write, and
-- the no-op benchmark showed those writes as most of PostgreSQL's share of a short job.

-- Only queued jobs are looked up by type (the unknown-type sweep lists the queued types), and a
-- queued job leaves this index when it is claimed: claims and outcomes write nothing to it.
DROP INDEX spindle.jobs_type_state_idx;
CREATE INDEX jobs_queued_type_idx ON spindle.jobs (type) WHERE state = 'queued';

-- One index of running jobs serves the heartbeat and the cancel sweep (by holder). The reaper reads
-- every running job anyway (a job of a dead supervisor is lost whatever its lease says), so the
-- lease needs no index of its own, and a lease extension no longer touches an index: it can be HOT.
DROP INDEX spindle.jobs_lease_idx;
DROP INDEX spindle.jobs_worker_idx;
CREATE INDEX jobs_running_idx ON spindle.jobs (worker_id) WHERE state = 'running';

-- A succeeded attempt is the job's last, and the job row already says all of it (attempt,
-- worker_id, logs, started_at, finished_at): it gets no row of its own. The rows that are written
-- move to attempt_log, and `attempts` becomes a view of both, so queries by hand read every attempt
-- as before. (Writers go to attempt_log: supervisors older than this migration must be stopped
-- before it runs, as their outcome writes would fail.)
ALTER TABLE spindle.attempts RENAME TO attempt_log;
ALTER TABLE spindle.attempt_log RENAME CONSTRAINT attempts_pkey TO attempt_log_pkey;
DELETE FROM spindle.attempt_log a
 USING spindle.jobs j
 WHERE a.outcome = 'succeeded' AND j.id = a.job_id AND j.attempt = a.attempt AND j.state = 'succeeded';

CREATE VIEW spindle.attempts AS
  SELECT job_id, attempt, worker_id, outcome, error, logs, started_at, finished_at
    FROM spindle.attempt_log
  UNION ALL
  SELECT id, attempt, worker_id, 'succeeded', NULL::jsonb, logs, started_at, finished_at
    FROM spindle.jobs
   WHERE state = 'succeeded';
