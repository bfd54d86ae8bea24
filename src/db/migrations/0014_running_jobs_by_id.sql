-- A supervisor's running jobs by id: the statements that lock the rows it holds look each one up
-- by (worker_id, id) (db/locking.ts), one index probe per row whatever the planner estimates.
DROP INDEX spindle.jobs_running_idx;
CREATE INDEX jobs_running_idx ON spindle.jobs (worker_id, id) WHERE state = 'running';
