-- Flow control: limits per job type or queue that hold across every supervisor, and pausing.
-- See ARCHITECTURE.md, "Flow control": a limit is counted from the jobs table itself (running rows),
-- under an advisory lock per limited scope, inside the claim; nothing is counted up and down, so
-- nothing can drift when a supervisor dies, a job is cancelled, times out, retries or is reaped.

CREATE TABLE spindle.limits (
  kind       text        NOT NULL CHECK (kind IN ('type', 'queue')),
  name       text        NOT NULL,
  -- What the worker module declares (written by supervisors as they start; types only) and what
  -- an operator set (CLI, HTTP, Client): the operator's fields win, one by one; null lifts a limit.
  module     jsonb       NOT NULL DEFAULT '{}',
  operator   jsonb       NOT NULL DEFAULT '{}',
  paused     boolean     NOT NULL DEFAULT false,
  -- The concurrency key a keyed claim served last: the next claim starts after it (round-robin).
  key_cursor text,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (kind, name)
);

-- The limits in force, one column each; `active` when a claim must go through claim_limited.
CREATE VIEW spindle.flow_limits AS
SELECT kind, name, paused, key_cursor, module, operator,
       (e ->> 'globalConcurrency')::int AS global_concurrency,
       (e ->> 'keyConcurrency')::int AS key_concurrency,
       (e #>> '{rateLimit,limit}')::int AS rate_limit,
       (e #>> '{rateLimit,intervalMs}')::int AS rate_interval_ms,
       (e #>> '{keyRateLimit,limit}')::int AS key_rate_limit,
       (e #>> '{keyRateLimit,intervalMs}')::int AS key_rate_interval_ms,
       coalesce((e ->> 'fair')::boolean, false) AS fair,
       paused OR e ->> 'globalConcurrency' IS NOT NULL OR e ->> 'keyConcurrency' IS NOT NULL
         OR jsonb_typeof(e -> 'rateLimit') = 'object' OR jsonb_typeof(e -> 'keyRateLimit') = 'object'
         OR coalesce((e ->> 'fair')::boolean, false) AS active
  FROM (SELECT l.*, l.module || l.operator AS e FROM spindle.limits l) l;

-- Starts inside a rate limit's window: one row per start of a rate-limited scope (key '' for the
-- scope as a whole), deleted by the claim once older than the window.
CREATE TABLE spindle.limit_starts (
  scope text        NOT NULL,
  key   text        NOT NULL,
  at    timestamptz NOT NULL
);
CREATE INDEX limit_starts_idx ON spindle.limit_starts (scope, key, at);

-- The window a rate limit counts starts in, measured at the claim: the interval and a margin for
-- the hop from the claim to the handler (a thread's first job also imports its module), so the
-- handlers' own start times keep the limit too while that hop takes less than the margin.
CREATE FUNCTION spindle.rate_window_ms(interval_ms int) RETURNS int
LANGUAGE sql IMMUTABLE AS $$
  SELECT interval_ms + least(interval_ms / 5, 200)
$$;

-- The lock that makes claims of one limited scope take turns (the two-key form keeps it apart from
-- the application's own advisory locks and spindle's others).
CREATE FUNCTION spindle.lock_scope(scope_kind text, scope_name text) RETURNS void
LANGUAGE sql AS $$
  SELECT pg_advisory_xact_lock(hashtext('spindle.limits'), hashtext(scope_kind || ':' || scope_name))
$$;

-- Claims up to `want` jobs of one limited scope (a type, or a queue's jobs of unlimited types) and
-- leases them, never past a limit: the scope's lock is held to the end of the transaction, so the
-- running rows it counts are every claim's that came before (their commits precede the lock).
-- Returns {"jobs": [...as spindle.claim...], "retryMs": ms until a rate window frees a start, or null}.
CREATE FUNCTION spindle.claim_limited(
  scope_kind text, scope_name text, served_types text[], served_queues text[], type_max_attempts int[],
  want int, supervisor text, lease_ms int)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
  lim           spindle.flow_limits;
  scope_id      text := scope_kind || ':' || scope_name;
  at_ts         timestamptz;
  left_n        int;
  rate_left     int;
  retry_ms      double precision;
  limited_types text[];
  paused_queues text[] := '{}';
  queue_left    jsonb := '{}';
  q             record;
  n             int;
  keyed         boolean;
  key_running   jsonb := '{}';
  k             text;
  next_key      text;
  cand_id       bigint;
  cand_queue    text;
  wrapped       boolean := false;
  took_in_round int := 0;
  probes        int := 0;
  candidates    refcursor;
  claimed       jsonb := '[]';
  one           jsonb;
  last_key      text;
BEGIN
  PERFORM spindle.lock_scope(scope_kind, scope_name);
  -- Read after the lock: every statement of this function sees what committed before it.
  SELECT * INTO lim FROM spindle.flow_limits WHERE kind = scope_kind AND name = scope_name;
  IF lim.name IS NULL OR NOT lim.active OR lim.paused OR want <= 0 THEN
    RETURN jsonb_build_object('jobs', '[]'::jsonb, 'retryMs', NULL);
  END IF;
  at_ts := clock_timestamp();
  left_n := want;

  -- The scope's own concurrency, counted from its running jobs.
  IF lim.global_concurrency IS NOT NULL THEN
    SELECT lim.global_concurrency - count(*) INTO n FROM spindle.jobs
     WHERE state = 'running' AND CASE WHEN scope_kind = 'type' THEN type = scope_name ELSE queue = scope_name END;
    left_n := least(left_n, n);
  END IF;
  -- The scope's rate: starts in the window, the oldest deciding when the next is allowed.
  IF lim.rate_limit IS NOT NULL THEN
    DELETE FROM spindle.limit_starts
     WHERE limit_starts.scope = scope_id AND at <= at_ts - spindle.rate_window_ms(lim.rate_interval_ms) * interval '1 millisecond';
    SELECT lim.rate_limit - count(*) INTO rate_left FROM spindle.limit_starts WHERE limit_starts.scope = scope_id AND key = '';
    IF rate_left <= 0 THEN
      SELECT extract(epoch FROM min(at) + spindle.rate_window_ms(lim.rate_interval_ms) * interval '1 millisecond' - at_ts) * 1000 INTO retry_ms
        FROM (SELECT at FROM spindle.limit_starts WHERE limit_starts.scope = scope_id AND key = ''
               ORDER BY at DESC OFFSET lim.rate_limit - 1 LIMIT 1) oldest;
    END IF;
    left_n := least(left_n, rate_left);
  END IF;
  IF left_n <= 0 THEN
    RETURN jsonb_build_object('jobs', '[]'::jsonb, 'retryMs', retry_ms);
  END IF;

  -- A type's jobs may sit in limited queues: those queues are locked too (after the type, in name
  -- order: every claim takes its locks in that order, so none waits in a circle) and counted.
  IF scope_kind = 'type' THEN
    FOR q IN SELECT * FROM spindle.flow_limits
              WHERE kind = 'queue' AND active AND (cardinality(served_queues) = 0 OR name = ANY(served_queues))
              ORDER BY name LOOP
      PERFORM spindle.lock_scope('queue', q.name);
      IF q.paused THEN
        paused_queues := paused_queues || q.name;
        CONTINUE;
      END IF;
      n := 2147483647;
      IF q.global_concurrency IS NOT NULL THEN
        SELECT q.global_concurrency - count(*) INTO n FROM spindle.jobs WHERE state = 'running' AND queue = q.name;
      END IF;
      IF q.rate_limit IS NOT NULL THEN
        DELETE FROM spindle.limit_starts
         WHERE limit_starts.scope = 'queue:' || q.name AND at <= at_ts - spindle.rate_window_ms(q.rate_interval_ms) * interval '1 millisecond';
        n := least(n, q.rate_limit - (SELECT count(*) FROM spindle.limit_starts WHERE limit_starts.scope = 'queue:' || q.name AND key = '')::int);
      END IF;
      queue_left := queue_left || jsonb_build_object(q.name, n);
    END LOOP;
  ELSE
    -- A queue's own call takes only types without limits of their own (their calls take the rest).
    SELECT coalesce(array_agg(name), '{}') INTO limited_types FROM spindle.flow_limits WHERE kind = 'type' AND active;
  END IF;

  keyed := scope_kind = 'type' AND (lim.key_concurrency IS NOT NULL OR lim.key_rate_limit IS NOT NULL OR lim.fair);
  IF lim.key_rate_limit IS NOT NULL THEN
    DELETE FROM spindle.limit_starts
     WHERE limit_starts.scope = scope_id AND key <> '' AND at <= at_ts - spindle.rate_window_ms(lim.key_rate_interval_ms) * interval '1 millisecond';
  END IF;
  IF lim.key_concurrency IS NOT NULL THEN
    SELECT coalesce(jsonb_object_agg(concurrency_key, c), '{}') INTO key_running
      FROM (SELECT concurrency_key, count(*) c FROM spindle.jobs
             WHERE state = 'running' AND type = scope_name AND concurrency_key IS NOT NULL GROUP BY 1) r;
  END IF;

  IF NOT keyed THEN
    -- In claim order, passing over jobs whose queue is full; a bounded walk of the scope's own jobs.
    IF scope_kind = 'type' THEN
      OPEN candidates FOR
        SELECT j.id, j.queue FROM spindle.jobs j
         WHERE j.state = 'queued' AND j.type = scope_name AND j.run_at <= now()
           AND (cardinality(served_queues) = 0 OR j.queue = ANY(served_queues)) AND j.queue <> ALL(paused_queues)
         ORDER BY j.priority DESC, j.run_at, j.id
         LIMIT want * 4 + 100;
    ELSE
      OPEN candidates FOR
        SELECT j.id, j.queue FROM spindle.jobs j
         WHERE j.state = 'queued' AND j.queue = scope_name AND j.run_at <= now()
           AND j.type = ANY(served_types) AND j.type <> ALL(limited_types)
         ORDER BY j.priority DESC, j.run_at, j.id
         LIMIT want * 4 + 100;
    END IF;
    LOOP
      FETCH candidates INTO cand_id, cand_queue;
      EXIT WHEN NOT FOUND OR left_n <= 0;
      CONTINUE WHEN coalesce((queue_left ->> cand_queue)::int, 1) <= 0;
      one := spindle.claim_one(cand_id, supervisor, lease_ms, at_ts, served_types, type_max_attempts);
      CONTINUE WHEN one IS NULL;
      claimed := claimed || one;
      left_n := left_n - 1;
      IF queue_left ? cand_queue THEN
        queue_left := jsonb_set(queue_left, ARRAY[cand_queue], to_jsonb((queue_left ->> cand_queue)::int - 1));
      END IF;
    END LOOP;
    CLOSE candidates;
  ELSE
    -- Round-robin over the type's concurrency keys, from the one after the key served last: one
    -- job per key per round, an index probe per key, so a key with 100,000 jobs waits its turn
    -- like a key with one. Jobs without a key take their turn after the last key. Ends when a
    -- whole round took nothing.
    k := lim.key_cursor;
    LOOP
      EXIT WHEN left_n <= 0 OR probes >= want * 4 + 200;
      probes := probes + 1;
      next_key := NULL;
      IF k IS NULL THEN
        SELECT j.concurrency_key INTO next_key FROM spindle.jobs j
         WHERE j.state = 'queued' AND j.type = scope_name AND j.concurrency_key IS NOT NULL
         ORDER BY j.concurrency_key LIMIT 1;
      ELSE
        SELECT j.concurrency_key INTO next_key FROM spindle.jobs j
         WHERE j.state = 'queued' AND j.type = scope_name AND j.concurrency_key > k
         ORDER BY j.concurrency_key LIMIT 1;
      END IF;
      k := next_key;
      cand_id := NULL;
      IF k IS NULL THEN
        -- Past the last key: the keyless jobs' turn, then the round starts again.
        SELECT j.id, j.queue INTO cand_id, cand_queue FROM spindle.jobs j
         WHERE j.state = 'queued' AND j.type = scope_name AND j.concurrency_key IS NULL AND j.run_at <= now()
           AND (cardinality(served_queues) = 0 OR j.queue = ANY(served_queues)) AND j.queue <> ALL(paused_queues)
           AND coalesce((queue_left ->> j.queue)::int, 1) > 0
         ORDER BY j.priority DESC, j.run_at, j.id LIMIT 1;
      ELSIF (lim.key_concurrency IS NULL OR coalesce((key_running ->> k)::int, 0) < lim.key_concurrency)
        AND (lim.key_rate_limit IS NULL OR (SELECT count(*) FROM spindle.limit_starts s
              WHERE s.scope = scope_id AND s.key = k) < lim.key_rate_limit) THEN
        SELECT j.id, j.queue INTO cand_id, cand_queue FROM spindle.jobs j
         WHERE j.state = 'queued' AND j.type = scope_name AND j.concurrency_key = k AND j.run_at <= now()
           AND (cardinality(served_queues) = 0 OR j.queue = ANY(served_queues)) AND j.queue <> ALL(paused_queues)
           AND coalesce((queue_left ->> j.queue)::int, 1) > 0
         ORDER BY j.priority DESC, j.run_at, j.id LIMIT 1;
      END IF;
      IF cand_id IS NOT NULL THEN
        one := spindle.claim_one(cand_id, supervisor, lease_ms, at_ts, served_types, type_max_attempts);
        IF one IS NOT NULL THEN
          claimed := claimed || one;
          left_n := left_n - 1;
          took_in_round := took_in_round + 1;
          last_key := k;
          IF k IS NOT NULL THEN
            key_running := jsonb_set(key_running, ARRAY[k], to_jsonb(coalesce((key_running ->> k)::int, 0) + 1));
            IF lim.key_rate_limit IS NOT NULL THEN
              INSERT INTO spindle.limit_starts (scope, key, at) VALUES (scope_id, k, at_ts);
            END IF;
          END IF;
          IF queue_left ? cand_queue THEN
            queue_left := jsonb_set(queue_left, ARRAY[cand_queue], to_jsonb((queue_left ->> cand_queue)::int - 1));
          END IF;
        END IF;
      END IF;
      IF k IS NULL THEN
        EXIT WHEN wrapped AND took_in_round = 0;
        wrapped := true;
        took_in_round := 0;
      END IF;
    END LOOP;
    IF jsonb_array_length(claimed) > 0 THEN
      UPDATE spindle.limits SET key_cursor = last_key WHERE kind = scope_kind AND name = scope_name;
    END IF;
  END IF;

  -- Each claimed job is a start inside the rate windows of its scope and of its limited queue.
  IF jsonb_array_length(claimed) > 0 THEN
    IF lim.rate_limit IS NOT NULL THEN
      INSERT INTO spindle.limit_starts (scope, key, at)
      SELECT scope_id, '', at_ts FROM generate_series(1, jsonb_array_length(claimed));
    END IF;
    INSERT INTO spindle.limit_starts (scope, key, at)
    SELECT 'queue:' || (c ->> 'queue'), '', at_ts
      FROM jsonb_array_elements(claimed) c
      JOIN spindle.flow_limits f ON f.kind = 'queue' AND f.name = c ->> 'queue' AND f.rate_limit IS NOT NULL
     WHERE scope_kind = 'type';
  END IF;
  RETURN jsonb_build_object('jobs', claimed, 'retryMs', retry_ms);
END $$;

-- Claims one queued job for claim_limited, as spindle.claim does (db/claims.ts); null when it is
-- no longer queued and due, or another writer holds it.
CREATE FUNCTION spindle.claim_one(
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
    'timeout_ms', j.timeout_ms, 'queue', j.queue,
    'wait_ms', greatest(0, extract(epoch FROM at_ts - j.run_at) * 1000)::float8)
$$;

-- Why a queued job is not running yet, in words, or null when nothing of flow control holds it.
CREATE FUNCTION spindle.waiting_for(j spindle.jobs) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
  l     spindle.flow_limits;
  n     bigint;
  label text;
BEGIN
  IF j.state <> 'queued' THEN
    RETURN NULL;
  END IF;
  FOR l IN SELECT * FROM spindle.flow_limits
            WHERE active AND ((kind = 'type' AND name = j.type) OR (kind = 'queue' AND name = j.queue))
            ORDER BY kind DESC LOOP
    label := l.kind || ' ' || l.name;
    IF l.paused THEN
      RETURN 'paused: ' || label;
    END IF;
    IF l.global_concurrency IS NOT NULL THEN
      SELECT count(*) INTO n FROM spindle.jobs
       WHERE state = 'running' AND CASE WHEN l.kind = 'type' THEN type = l.name ELSE queue = l.name END;
      IF n >= l.global_concurrency THEN
        RETURN 'waiting for a slot: ' || label || ' at ' || n || '/' || l.global_concurrency;
      END IF;
    END IF;
    IF l.kind = 'type' AND l.key_concurrency IS NOT NULL AND j.concurrency_key IS NOT NULL THEN
      SELECT count(*) INTO n FROM spindle.jobs WHERE state = 'running' AND type = j.type AND concurrency_key = j.concurrency_key;
      IF n >= l.key_concurrency THEN
        RETURN 'waiting for a slot: key ' || j.concurrency_key || ' at ' || n || '/' || l.key_concurrency;
      END IF;
    END IF;
    IF l.rate_limit IS NOT NULL THEN
      SELECT count(*) INTO n FROM spindle.limit_starts s
       WHERE s.scope = l.kind || ':' || l.name AND s.key = '' AND s.at > clock_timestamp() - spindle.rate_window_ms(l.rate_interval_ms) * interval '1 millisecond';
      IF n >= l.rate_limit THEN
        RETURN 'rate limit: ' || l.rate_limit || ' per ' || spindle.interval_text(l.rate_interval_ms) || ' (' || label || ')';
      END IF;
    END IF;
    IF l.kind = 'type' AND l.key_rate_limit IS NOT NULL AND j.concurrency_key IS NOT NULL THEN
      SELECT count(*) INTO n FROM spindle.limit_starts s
       WHERE s.scope = 'type:' || l.name AND s.key = j.concurrency_key
         AND s.at > clock_timestamp() - spindle.rate_window_ms(l.key_rate_interval_ms) * interval '1 millisecond';
      IF n >= l.key_rate_limit THEN
        RETURN 'rate limit: ' || l.key_rate_limit || ' per ' || spindle.interval_text(l.key_rate_interval_ms) || ' (key ' || j.concurrency_key || ')';
      END IF;
    END IF;
    IF l.kind = 'type' AND l.fair AND j.concurrency_key IS NOT NULL THEN
      RETURN 'waiting its turn: key ' || j.concurrency_key || ' (fair, round-robin by key)';
    END IF;
  END LOOP;
  RETURN NULL;
END $$;

-- 1000 -> '1 s', 1500 -> '1500 ms', 60000 -> '1 min'.
CREATE FUNCTION spindle.interval_text(ms int) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN ms % 60000 = 0 THEN (ms / 60000) || ' min'
              WHEN ms % 1000 = 0 THEN (ms / 1000) || ' s'
              ELSE ms || ' ms' END
$$;
