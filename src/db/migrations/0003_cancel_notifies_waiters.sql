-- A queued job that is cancelled ends at once: tell waiters (client.waitFor) as every other ending does.
CREATE OR REPLACE FUNCTION spindle.cancel(job_id bigint, reason text)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
  job spindle.jobs;
BEGIN
  SELECT * INTO job FROM spindle.jobs WHERE id = job_id FOR UPDATE;
  IF job.id IS NULL THEN
    RETURN jsonb_build_object('found', false);
  END IF;
  IF job.state = 'queued' THEN
    UPDATE spindle.jobs
       SET state = 'cancelled', cancel_reason = reason, cancel_requested_at = now(), finished_at = now(),
           lease_expires_at = NULL, worker_id = NULL
     WHERE id = job_id;
    PERFORM pg_notify('spindle_finished', job.id::text);
    RETURN jsonb_build_object('found', true, 'state', 'cancelled', 'changed', true);
  ELSIF job.state = 'running' THEN
    IF job.cancel_requested_at IS NULL THEN
      UPDATE spindle.jobs SET cancel_reason = reason, cancel_requested_at = now() WHERE id = job_id;
    END IF;
    PERFORM pg_notify('spindle_cancel', json_build_object('id', job.id::text, 'workerId', job.worker_id,
      'attempt', job.attempt, 'reason', left(coalesce(job.cancel_reason, reason), 1000))::text);
    RETURN jsonb_build_object('found', true, 'state', 'running', 'changed', job.cancel_requested_at IS NULL);
  END IF;
  RETURN jsonb_build_object('found', true, 'state', job.state, 'changed', false);
END $$;
