-- The concurrency key: jobs that share one are limited together (a per-key limit, fair claiming
-- round-robin across keys; see migration 0012 and ARCHITECTURE.md, "Flow control").

ALTER TABLE spindle.jobs ADD COLUMN concurrency_key text;

-- Queued jobs by type in claim order (replacing the index by type alone, same rows): a claim of
-- one type walks only that type's jobs, so a backlog of other types ahead of them (paused, limited
-- or served elsewhere) costs it nothing; the unknown-type sweep steps through it as before. And by
-- type and key in claim order: a keyed claim steps from key to key with one probe each, and finds
-- the jobs without a key (NULLs last) the same way; it adds one entry per queued job to an enqueue,
-- none to a claim or an outcome (a row leaves it as it leaves 'queued').
DROP INDEX spindle.jobs_queued_type_idx;
CREATE INDEX jobs_queued_type_idx ON spindle.jobs (type, priority DESC, run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_queued_key_idx ON spindle.jobs (type, concurrency_key, priority DESC, run_at, id) WHERE state = 'queued';

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
   WHERE x NOT IN ('queue', 'priority', 'runAt', 'delayMs', 'maxAttempts', 'timeoutMs', 'key', 'concurrencyKey') LIMIT 1;
  IF unknown_key IS NOT NULL THEN
    PERFORM spindle.invalid('options.' || unknown_key, 'is not a known option');
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
  IF delay IS NOT NULL THEN
    at := now() + delay * interval '1 millisecond';
  END IF;

  INSERT INTO spindle.jobs (type, queue, priority, input, max_attempts, timeout_ms, key, concurrency_key, run_at)
  VALUES (
    job_type, q,
    coalesce(spindle.int_opt(o, 'priority', -2147483648, 2147483647), 0),
    coalesce(job_input, 'null'::jsonb),
    spindle.int_opt(o, 'maxAttempts', 1, 1000000),
    spindle.int_opt(o, 'timeoutMs', 1, 2147483647),
    k,
    ck,
    coalesce(at, now()))
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

  -- PostgreSQL folds identical notifications of one transaction into one, so a batch notifies once per queue.
  PERFORM pg_notify('spindle_jobs', q);
  RETURN row;
END $$;
