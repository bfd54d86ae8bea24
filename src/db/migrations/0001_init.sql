-- The job table, its attempts, the live supervisors, and the enqueue function.

CREATE TABLE spindle.jobs (
  id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  type                text        NOT NULL,
  queue               text        NOT NULL DEFAULT 'default',
  state               text        NOT NULL DEFAULT 'queued'
                      CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled')),
  priority            integer     NOT NULL DEFAULT 0,
  input               jsonb       NOT NULL DEFAULT 'null',
  output              jsonb,
  error               jsonb,
  attempt             integer     NOT NULL DEFAULT 0,
  -- NULL until claimed: then the worker module's maxAttempts, or 3.
  max_attempts        integer     CHECK (max_attempts >= 1),
  timeout_ms          integer     CHECK (timeout_ms >= 1),
  key                 text,
  run_at              timestamptz NOT NULL DEFAULT now(),
  created_at          timestamptz NOT NULL DEFAULT now(),
  started_at          timestamptz,
  finished_at         timestamptz,
  worker_id           text,
  lease_expires_at    timestamptz,
  progress            real,
  progress_message    text,
  progress_data       jsonb,
  cancel_reason       text,
  cancel_requested_at timestamptz,
  compensation        jsonb,
  logs                text
);

-- The claim walks this index in order and stops after the batch.
CREATE INDEX jobs_claim_idx ON spindle.jobs (priority DESC, run_at, id) WHERE state = 'queued';
-- The reaper's scan for expired leases, and the heartbeat's lookup by holder.
CREATE INDEX jobs_lease_idx ON spindle.jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_worker_idx ON spindle.jobs (worker_id) WHERE state = 'running';
-- At most one live job per dedupe key.
CREATE UNIQUE INDEX jobs_key_idx ON spindle.jobs (key) WHERE key IS NOT NULL AND state IN ('queued', 'running');
-- Retention deletes finished jobs oldest first.
CREATE INDEX jobs_finished_idx ON spindle.jobs (state, finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_type_state_idx ON spindle.jobs (type, state);

CREATE TABLE spindle.attempts (
  job_id      bigint      NOT NULL REFERENCES spindle.jobs (id) ON DELETE CASCADE,
  attempt     integer     NOT NULL,
  worker_id   text,
  outcome     text        NOT NULL
              CHECK (outcome IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'crashed', 'lost', 'interrupted')),
  error       jsonb,
  logs        text,
  started_at  timestamptz,
  finished_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (job_id, attempt)
);

CREATE TABLE spindle.supervisors (
  id           text        PRIMARY KEY,
  host         text        NOT NULL,
  pid          integer     NOT NULL,
  version      text        NOT NULL,
  queues       text[]      NOT NULL,
  types        text[]      NOT NULL,
  concurrency  integer     NOT NULL,
  started_at   timestamptz NOT NULL DEFAULT now(),
  last_seen_at timestamptz NOT NULL DEFAULT now()
);

-- Raises invalid_parameter_value with a message that names the field, like the Client's ValidationError.
CREATE FUNCTION spindle.invalid(field text, problem text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = field || ' ' || problem, DETAIL = 'spindle:' || field;
END $$;

-- Reads an optional non-negative integer option, or raises naming it.
CREATE FUNCTION spindle.int_opt(opts jsonb, name text, minimum bigint, maximum bigint) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  v jsonb := opts -> name;
  n numeric;
BEGIN
  IF v IS NULL OR v = 'null'::jsonb THEN
    RETURN NULL;
  END IF;
  IF jsonb_typeof(v) <> 'number' THEN
    PERFORM spindle.invalid('options.' || name, 'must be an integer, got ' || jsonb_typeof(v));
  END IF;
  n := v::numeric;
  IF n <> trunc(n) OR n < minimum OR n > maximum THEN
    PERFORM spindle.invalid('options.' || name, 'must be an integer from ' || minimum || ' to ' || maximum || ', got ' || n);
  END IF;
  RETURN n::bigint;
END $$;

-- Enqueues one job and returns its row; with a live job of the same key, returns that one instead.
CREATE FUNCTION spindle.enqueue_job(job_type text, job_input jsonb, opts jsonb DEFAULT '{}')
RETURNS spindle.jobs
LANGUAGE plpgsql AS $$
DECLARE
  o           jsonb := coalesce(opts, '{}'::jsonb);
  unknown_key text;
  q           text;
  k           text;
  at          timestamptz;
  delay       bigint;
  max_bytes   bigint := coalesce(nullif(current_setting('spindle.max_input_bytes', true), '')::bigint, 1048576);
  row         spindle.jobs;
BEGIN
  IF jsonb_typeof(o) <> 'object' THEN
    PERFORM spindle.invalid('options', 'must be a JSON object');
  END IF;
  SELECT x INTO unknown_key FROM jsonb_object_keys(o) AS x
   WHERE x NOT IN ('queue', 'priority', 'runAt', 'delayMs', 'maxAttempts', 'timeoutMs', 'key') LIMIT 1;
  IF unknown_key IS NOT NULL THEN
    PERFORM spindle.invalid('options.' || unknown_key, 'is not a known option');
  END IF;
  IF job_type IS NULL OR job_type !~ '^[A-Za-z0-9_.:-]{1,128}$' THEN
    PERFORM spindle.invalid('type', 'must be 1 to 128 characters of A-Z a-z 0-9 _ . : -');
  END IF;
  IF octet_length(coalesce(job_input, 'null'::jsonb)::text) > max_bytes THEN
    PERFORM spindle.invalid('input', 'is larger than ' || max_bytes || ' bytes');
  END IF;
  q := coalesce(o ->> 'queue', 'default');
  IF jsonb_typeof(o -> 'queue') NOT IN ('string', 'null') OR q !~ '^[A-Za-z0-9_.:-]{1,128}$' THEN
    PERFORM spindle.invalid('options.queue', 'must be 1 to 128 characters of A-Z a-z 0-9 _ . : -');
  END IF;
  k := o ->> 'key';
  IF jsonb_typeof(o -> 'key') NOT IN ('string', 'null') OR length(k) NOT BETWEEN 1 AND 512 THEN
    PERFORM spindle.invalid('options.key', 'must be a string of 1 to 512 characters');
  END IF;
  IF o ? 'runAt' AND o ? 'delayMs' THEN
    PERFORM spindle.invalid('options.runAt', 'cannot be combined with options.delayMs');
  END IF;
  IF jsonb_typeof(o -> 'runAt') = 'string' THEN
    BEGIN
      at := (o ->> 'runAt')::timestamptz;
    EXCEPTION WHEN others THEN
      PERFORM spindle.invalid('options.runAt', 'must be a valid ISO date, got "' || (o ->> 'runAt') || '"');
    END;
  ELSIF jsonb_typeof(o -> 'runAt') NOT IN ('null') THEN
    PERFORM spindle.invalid('options.runAt', 'must be a valid ISO date string');
  END IF;
  delay := spindle.int_opt(o, 'delayMs', 0, 9007199254740991);
  IF delay IS NOT NULL THEN
    at := now() + delay * interval '1 millisecond';
  END IF;

  INSERT INTO spindle.jobs (type, queue, priority, input, max_attempts, timeout_ms, key, run_at)
  VALUES (
    job_type, q,
    coalesce(spindle.int_opt(o, 'priority', -2147483648, 2147483647), 0),
    coalesce(job_input, 'null'::jsonb),
    spindle.int_opt(o, 'maxAttempts', 1, 1000000),
    spindle.int_opt(o, 'timeoutMs', 1, 2147483647),
    k,
    coalesce(at, now()))
  ON CONFLICT (key) WHERE key IS NOT NULL AND state IN ('queued', 'running') DO NOTHING
  RETURNING * INTO row;

  IF row.id IS NULL THEN
    -- The live job with this key; it may finish between the conflict and this read, so try once more.
    SELECT * INTO row FROM spindle.jobs WHERE key = k AND state IN ('queued', 'running');
    IF row.id IS NULL THEN
      RETURN spindle.enqueue_job(job_type, job_input, opts);
    END IF;
    RETURN row;
  END IF;

  -- PostgreSQL folds identical notifications of one transaction into one, so a batch notifies once per queue.
  PERFORM pg_notify('spindle_jobs', q);
  RETURN row;
END $$;

-- The public form: enqueues one job and returns its id, for triggers and other languages.
CREATE FUNCTION spindle.enqueue(job_type text, job_input jsonb, opts jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE sql AS $$
  SELECT (spindle.enqueue_job(job_type, job_input, opts)).id
$$;

-- Cancels a job: a queued one ends at once; a running one is marked and its holder told by NOTIFY.
-- Returns {"found", "state", "changed"}: the state after the call, and whether anything changed.
CREATE FUNCTION spindle.cancel(job_id bigint, reason text)
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
    RETURN jsonb_build_object('found', true, 'state', 'cancelled', 'changed', true);
  ELSIF job.state = 'running' THEN
    IF job.cancel_requested_at IS NULL THEN
      UPDATE spindle.jobs SET cancel_reason = reason, cancel_requested_at = now() WHERE id = job_id;
    END IF;
    PERFORM pg_notify('spindle_cancel', json_build_object('id', job.id::text, 'workerId', job.worker_id, 'attempt', job.attempt, 'reason', left(coalesce(job.cancel_reason, reason), 1000))::text);
    RETURN jsonb_build_object('found', true, 'state', 'running', 'changed', job.cancel_requested_at IS NULL);
  END IF;
  RETURN jsonb_build_object('found', true, 'state', job.state, 'changed', false);
END $$;
