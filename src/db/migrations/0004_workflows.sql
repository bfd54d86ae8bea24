-- Durable workflows (runs, their recorded steps, an event inbox) and cron ticks.

CREATE TABLE spindle.workflow_runs (
  -- The caller's idempotency key (or a random id): starting the same id twice returns the first run.
  id                  text        PRIMARY KEY,
  name                text        NOT NULL,
  -- The module version that first ran it; NULL until then.
  version             text,
  state               text        NOT NULL DEFAULT 'running'
                      CHECK (state IN ('running', 'sleeping', 'waiting', 'blocked', 'succeeded', 'failed',
                                       'compensating', 'cancelled', 'compensation_failed')),
  input               jsonb       NOT NULL DEFAULT 'null',
  output              jsonb,
  error               jsonb,
  -- Why a blocked run is blocked.
  blocked_reason      text,
  -- When the scheduler should resume it (sleep end, wait timeout, or now() when something happened).
  wake_at             timestamptz,
  -- What a waiting run waits for: a job or an event name.
  waiting_job         bigint,
  waiting_event       text,
  -- The claim of the supervisor resuming it: every write of a resume is fenced on (claimed_by, claim_seq).
  claimed_by          text,
  claim_seq           integer     NOT NULL DEFAULT 0,
  lease_expires_at    timestamptz,
  resumes             integer     NOT NULL DEFAULT 0,
  step_count          integer     NOT NULL DEFAULT 0,
  state_bytes         bigint      NOT NULL DEFAULT 0,
  cancel_requested_at timestamptz,
  cancel_reason       text,
  -- Sequence numbers of the steps to compensate, newest first, written when compensation begins.
  compensation_plan   jsonb,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now(),
  finished_at         timestamptz
);

-- The scheduler's scan: active runs by wake time.
CREATE INDEX workflow_runs_wake_idx ON spindle.workflow_runs (wake_at)
  WHERE state IN ('running', 'sleeping', 'waiting', 'compensating');
-- A finished job wakes the run that waits for it.
CREATE INDEX workflow_runs_job_idx ON spindle.workflow_runs (waiting_job) WHERE waiting_job IS NOT NULL;
CREATE INDEX workflow_runs_list_idx ON spindle.workflow_runs (created_at DESC);
CREATE INDEX workflow_runs_state_idx ON spindle.workflow_runs (state, name);

CREATE TABLE spindle.workflow_steps (
  run_id                 text        NOT NULL REFERENCES spindle.workflow_runs (id) ON DELETE CASCADE,
  seq                    integer     NOT NULL,
  name                   text        NOT NULL,
  kind                   text        NOT NULL CHECK (kind IN ('step', 'job', 'sleep', 'event', 'now', 'random', 'patch')),
  state                  text        NOT NULL CHECK (state IN ('waiting', 'succeeded', 'failed')),
  result                 jsonb,
  error                  jsonb,
  job_id                 bigint,
  -- A sleep's end or an event wait's deadline.
  until                  timestamptz,
  has_compensation       boolean     NOT NULL DEFAULT false,
  compensation_state     text        CHECK (compensation_state IN ('succeeded', 'failed')),
  compensation_attempts  integer     NOT NULL DEFAULT 0,
  compensation_error     jsonb,
  started_at             timestamptz NOT NULL DEFAULT now(),
  finished_at            timestamptz,
  PRIMARY KEY (run_id, seq)
);

CREATE TABLE spindle.workflow_events (
  id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  run_id          text        NOT NULL REFERENCES spindle.workflow_runs (id) ON DELETE CASCADE,
  name            text        NOT NULL,
  payload         jsonb       NOT NULL DEFAULT 'null',
  created_at      timestamptz NOT NULL DEFAULT now(),
  consumed_at     timestamptz,
  consumed_by_seq integer
);

-- A wait takes the oldest unconsumed event of its name.
CREATE INDEX workflow_events_inbox_idx ON spindle.workflow_events (run_id, name, id) WHERE consumed_at IS NULL;

-- One row per fired tick of a schedule: the primary key makes a tick fire once, whoever fires it.
CREATE TABLE spindle.cron_ticks (
  schedule   text        NOT NULL,
  tick_at    timestamptz NOT NULL,
  -- The run a workflow schedule started (a job schedule's job has the key cron:<schedule>:<tick>).
  run_id     text,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (schedule, tick_at)
);

-- A workflow's job that ends wakes the run waiting for it, in the same transaction as the job's
-- outcome (nothing to miss), and tells the scheduler.
CREATE FUNCTION spindle.wake_workflow_on_job() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  woken text;
BEGIN
  FOR woken IN
    UPDATE spindle.workflow_runs SET wake_at = now()
     WHERE waiting_job = NEW.id AND state = 'waiting'
     RETURNING id
  LOOP
    PERFORM pg_notify('spindle_workflows', woken);
  END LOOP;
  RETURN NULL;
END $$;

CREATE TRIGGER jobs_wake_workflow
  AFTER UPDATE OF state ON spindle.jobs
  FOR EACH ROW
  WHEN (OLD.state IS DISTINCT FROM NEW.state
        AND NEW.state IN ('succeeded', 'failed', 'timed_out', 'cancelled')
        AND NEW.key LIKE 'wf:%')
  EXECUTE FUNCTION spindle.wake_workflow_on_job();
