-- Retention deletes finished runs oldest first, by state: an index like the jobs' keeps each batch
-- from scanning every run of that state. Deleting a run deletes its events (ON DELETE CASCADE),
-- found by run_id.

CREATE INDEX workflow_runs_finished_idx ON spindle.workflow_runs (state, finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX workflow_events_run_idx ON spindle.workflow_events (run_id);
