-- A step's compensation may be skipped: an earlier-run (newer) step's compensation failed for good,
-- and that step did not ask to go on past its failure (continueOnError).

ALTER TABLE spindle.workflow_steps DROP CONSTRAINT workflow_steps_compensation_state_check;
ALTER TABLE spindle.workflow_steps ADD CONSTRAINT workflow_steps_compensation_state_check
  CHECK (compensation_state IN ('succeeded', 'failed', 'skipped'));
