-- The W3C trace context of a job's enqueue (its producer span), so the attempt's span, in whatever
-- process claims it, continues the same trace (src/tracing.ts); likewise a workflow run's. Set by the Client from the active
-- span; from SQL, as the option "traceparent".

ALTER TABLE spindle.jobs ADD COLUMN trace_context text;
-- A workflow run's: the context of its startWorkflow, which each resume's span continues.
ALTER TABLE spindle.workflow_runs ADD COLUMN trace_context text;

DROP FUNCTION spindle.enqueue_job(text, jsonb, jsonb, boolean);

CREATE FUNCTION spindle.enqueue_job(job_type text, job_input jsonb, opts jsonb DEFAULT '{}', input_checked boolean DEFAULT false)
RETURNS spindle.jobs
LANGUAGE plpgsql AS $$
DECLARE
  o           jsonb := coalesce(opts, '{}'::jsonb);
  unknown_key text;
  q           text;
  k           text;
  ck          text;
  tk          text;
  dk          text;
  tp          text;
  tw          bigint;
  opened      boolean;
  prio        integer;
  attempts    integer;
  timeout     integer;
  run_at_text text;
  at          timestamptz;
  delay       bigint;
  max_bytes   bigint := coalesce(nullif(current_setting('spindle.max_input_bytes', true), '')::bigint, 1048576);
  row         spindle.jobs;
BEGIN
  IF jsonb_typeof(o) <> 'object' THEN
    PERFORM spindle.invalid('options', 'must be a JSON object');
  END IF;
  SELECT x INTO unknown_key FROM jsonb_object_keys(o) AS x
   WHERE x NOT IN ('queue', 'priority', 'runAt', 'delayMs', 'maxAttempts', 'timeoutMs', 'key', 'concurrencyKey', 'throttle', 'debounce', 'traceparent') LIMIT 1;
  IF unknown_key IS NOT NULL THEN
    PERFORM spindle.invalid('options.' || unknown_key, 'is not a known option');
  END IF;
  tp := o ->> 'traceparent';
  IF jsonb_typeof(o -> 'traceparent') NOT IN ('string', 'null') OR tp !~ '^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$' THEN
    PERFORM spindle.invalid('options.traceparent', 'must be a W3C traceparent: 00-<32 hex>-<16 hex>-<2 hex>');
  END IF;
  IF job_type IS NULL OR job_type !~ '^[A-Za-z0-9_.:-]{1,128}$' THEN
    PERFORM spindle.invalid('type', 'must be 1 to 128 characters of A-Z a-z 0-9 _ . : -');
  END IF;
  IF NOT input_checked AND octet_length(coalesce(job_input, 'null'::jsonb)::text) > max_bytes THEN
    PERFORM spindle.invalid('input', 'is larger than ' || max_bytes || ' bytes');
  END IF;
  IF NOT input_checked AND jsonb_path_exists(job_input, 'strict $.**{1000} ? (@.type() == "array" || @.type() == "object")') THEN
    PERFORM spindle.invalid('input', 'is nested deeper than 1000 levels');
  END IF;
  q := coalesce(o ->> 'queue', 'default');
  IF jsonb_typeof(o -> 'queue') NOT IN ('string', 'null') OR q !~ '^[A-Za-z0-9_.:-]{1,128}$' THEN
    PERFORM spindle.invalid('options.queue', 'must be 1 to 128 characters of A-Z a-z 0-9 _ . : -');
  END IF;
  k := o ->> 'key';
  IF jsonb_typeof(o -> 'key') NOT IN ('string', 'null') OR length(k) NOT BETWEEN 1 AND 512 THEN
    PERFORM spindle.invalid('options.key', 'must be a string of 1 to 512 characters');
  END IF;
  ck := o ->> 'concurrencyKey';
  IF jsonb_typeof(o -> 'concurrencyKey') NOT IN ('string', 'null') OR length(ck) NOT BETWEEN 1 AND 128 THEN
    PERFORM spindle.invalid('options.concurrencyKey', 'must be a string of 1 to 128 characters');
  END IF;
  tk := spindle.flow_key(o, 'throttle', 'windowMs');
  dk := spindle.flow_key(o, 'debounce', 'delayMs');
  -- A dedupe key, a throttle and a debounce each decide alone whether an enqueue makes a job.
  IF tk IS NOT NULL AND dk IS NOT NULL THEN
    PERFORM spindle.invalid('options.throttle', 'cannot be combined with options.debounce');
  END IF;
  IF tk IS NOT NULL AND k IS NOT NULL THEN
    PERFORM spindle.invalid('options.throttle', 'cannot be combined with options.key');
  END IF;
  IF dk IS NOT NULL AND k IS NOT NULL THEN
    PERFORM spindle.invalid('options.debounce', 'cannot be combined with options.key');
  END IF;
  IF dk IS NOT NULL AND (o ? 'runAt' OR o ? 'delayMs') THEN
    PERFORM spindle.invalid('options.debounce',
      'cannot be combined with options.' || CASE WHEN o ? 'runAt' THEN 'runAt' ELSE 'delayMs' END
      || ': its own delayMs decides when the job runs');
  END IF;
  IF o ? 'runAt' AND o ? 'delayMs' THEN
    PERFORM spindle.invalid('options.runAt', 'cannot be combined with options.delayMs');
  END IF;
  IF jsonb_typeof(o -> 'runAt') = 'string' THEN
    run_at_text := o ->> 'runAt';
    IF run_at_text ~ '^\d{4}-\d{2}-\d{2}$' THEN
      run_at_text := run_at_text || 'T00:00:00Z';
    END IF;
    BEGIN
      IF run_at_text !~ '^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}(:?\d{2})?)$' THEN
        RAISE EXCEPTION 'not an ISO date';
      END IF;
      at := run_at_text::timestamptz;
    EXCEPTION WHEN others THEN
      PERFORM spindle.invalid('options.runAt',
        'must be an ISO 8601 date (2026-12-02) or date-time with a time zone (2026-12-02T10:00:00Z), got "'
        || left(o ->> 'runAt', 40) || '"');
    END;
    IF extract(year FROM at AT TIME ZONE 'UTC') NOT BETWEEN 1 AND 9999 THEN
      PERFORM spindle.invalid('options.runAt', 'must be a date from year 1 to 9999');
    END IF;
  ELSIF jsonb_typeof(o -> 'runAt') NOT IN ('null') THEN
    PERFORM spindle.invalid('options.runAt', 'must be an ISO 8601 date string');
  END IF;
  delay := spindle.int_opt(o, 'delayMs', 0, 3155760000000);
  IF dk IS NOT NULL THEN
    delay := (o -> 'debounce' -> 'delayMs')::numeric;
  END IF;
  IF delay IS NOT NULL THEN
    at := now() + delay * interval '1 millisecond';
  END IF;
  tw := (o -> 'throttle' -> 'windowMs')::numeric;
  -- Every option is checked before anything is written.
  prio := coalesce(spindle.int_opt(o, 'priority', -2147483648, 2147483647), 0);
  attempts := spindle.int_opt(o, 'maxAttempts', 1, 1000000);
  timeout := spindle.int_opt(o, 'timeoutMs', 1, 2147483647);

  IF dk IS NOT NULL THEN
    -- Enqueues of one debounce key take turns (a lock on a hash of the key, held to commit): after
    -- the one before commits, the next sees the job it made or moved. Two keys of one hash only wait
    -- for each other.
    PERFORM pg_advisory_xact_lock(hashtextextended('spindle.debounce:' || dk, 0));
    -- The queued job of the key that has never run becomes this enqueue's job, to run `delay` from
    -- now. A claim that locked it first wins: this UPDATE waits for the claim, then finds the row
    -- running and changes nothing, and a new job is made below. One that locks it after this UPDATE
    -- skips it (SKIP LOCKED), then finds its run_at moved on.
    UPDATE spindle.jobs j
       SET type = job_type, queue = q, priority = prio, input = coalesce(job_input, 'null'::jsonb),
           max_attempts = attempts, timeout_ms = timeout, concurrency_key = ck, run_at = at, trace_context = tp
     WHERE j.id = (SELECT id FROM spindle.jobs
                    WHERE debounce_key = dk AND state = 'queued' AND attempt = 0
                    ORDER BY id DESC LIMIT 1)
       AND j.state = 'queued' AND j.attempt = 0
    RETURNING * INTO row;
    IF row.id IS NOT NULL THEN
      PERFORM pg_notify('spindle_jobs', q);
      RETURN row;
    END IF;
  ELSIF tk IS NOT NULL THEN
    -- Opens the key's window when there is none or it has ended. Either way the row stays locked to
    -- commit: an enqueue of the key that comes meanwhile waits, then finds this window open. The
    -- clock is the statement's, not the transaction's: a long transaction must not open a window
    -- that has already ended by the time it commits.
    INSERT INTO spindle.throttle_windows AS w (key, ends_at)
    VALUES (tk, clock_timestamp() + tw * interval '1 millisecond')
    ON CONFLICT (key) DO UPDATE SET job_id = NULL, ends_at = excluded.ends_at
     WHERE w.ends_at <= clock_timestamp()
    RETURNING true INTO opened;
    IF opened IS NULL THEN
      -- A fresh snapshot, taken after the lock: it sees the job of the window's opener.
      SELECT j.* INTO row FROM spindle.throttle_windows w JOIN spindle.jobs j ON j.id = w.job_id WHERE w.key = tk;
      IF row.id IS NOT NULL THEN
        RETURN row;
      END IF;
      -- Retention keeps a window's job while the window is open, so only a hand deleted it: with no
      -- job to return, the window is opened again.
      UPDATE spindle.throttle_windows
         SET job_id = NULL, ends_at = clock_timestamp() + tw * interval '1 millisecond'
       WHERE key = tk;
    END IF;
  END IF;

  INSERT INTO spindle.jobs (type, queue, priority, input, max_attempts, timeout_ms, key, concurrency_key, debounce_key, trace_context, run_at)
  VALUES (
    job_type, q, prio, coalesce(job_input, 'null'::jsonb), attempts, timeout, k, ck, dk, tp, coalesce(at, now()))
  ON CONFLICT (key) WHERE key IS NOT NULL AND state IN ('queued', 'running') DO NOTHING
  RETURNING * INTO row;

  IF row.id IS NULL THEN
    -- The live job with this key; it may finish between the conflict and this read, so try once more.
    SELECT * INTO row FROM spindle.jobs WHERE key = k AND state IN ('queued', 'running');
    IF row.id IS NULL THEN
      RETURN spindle.enqueue_job(job_type, job_input, opts, input_checked);
    END IF;
    RETURN row;
  END IF;

  IF tk IS NOT NULL THEN
    UPDATE spindle.throttle_windows SET job_id = row.id WHERE key = tk;
  END IF;

  -- PostgreSQL folds identical notifications of one transaction into one, so a batch notifies once per queue.
  PERFORM pg_notify('spindle_jobs', q);
  RETURN row;
END $$;

-- The limited claim hands the trace context to the supervisor, as the plain claim does.
CREATE OR REPLACE FUNCTION spindle.claim_one(
  job_id bigint, supervisor text, lease_ms int, at_ts timestamptz, served_types text[], type_max_attempts int[])
RETURNS jsonb
LANGUAGE sql AS $$
  UPDATE spindle.jobs j
     SET state = 'running', attempt = j.attempt + 1, worker_id = supervisor, started_at = at_ts,
         lease_expires_at = now() + lease_ms * interval '1 millisecond',
         max_attempts = coalesce(j.max_attempts,
           (SELECT d.max_attempts FROM unnest(served_types, type_max_attempts) AS d(type, max_attempts) WHERE d.type = j.type), 3),
         progress = NULL, progress_message = NULL, progress_data = NULL
   -- Re-checked on the row it locks, skipping one another writer holds: a debounced enqueue may be
   -- pushing its start later (migration 0011), a cancel ending it.
   WHERE j.id = (SELECT q.id FROM spindle.jobs q
                  WHERE q.id = job_id AND q.state = 'queued' AND q.run_at <= now()
                    FOR UPDATE SKIP LOCKED)
  RETURNING jsonb_build_object(
    'id', j.id::text, 'type', j.type, 'input', j.input, 'attempt', j.attempt, 'max_attempts', j.max_attempts,
    'timeout_ms', j.timeout_ms, 'queue', j.queue, 'trace_context', j.trace_context,
    'wait_ms', greatest(0, extract(epoch FROM at_ts - j.run_at) * 1000)::float8)
$$;
