/**
 * Workflow runs, steps and events.
 *
 * A run is resumed by the one supervisor that holds its claim (claimed_by, claim_seq, lease). Every
 * write of a resume first locks the run row where the claim is still ours: in the statement itself
 * (writeWorkflowStepFenced, a step), or with lockWorkflowClaim in the same transaction (a job's
 * enqueue with its step, an event taken with its step): a resume whose claim was taken writes nothing.
 */
import type { Queryable } from './queryable.ts';

/** A workflow run as stored. */
export interface WorkflowRunRow {
  id: string;
  name: string;
  version: string | null;
  state: string;
  input: unknown;
  output: unknown;
  error: unknown;
  blocked_reason: string | null;
  wake_at: Date | null;
  waiting_job: string | null;
  waiting_event: string | null;
  claimed_by: string | null;
  claim_seq: number;
  lease_expires_at: Date | null;
  resumes: number;
  step_count: number;
  state_bytes: string;
  cancel_requested_at: Date | null;
  cancel_reason: string | null;
  compensation_plan: number[] | null;
  created_at: Date;
  updated_at: Date;
  finished_at: Date | null;
  /** The W3C traceparent of the startWorkflow that made it, when traced (tracing.ts). */
  trace_context: string | null;
}

/** A recorded step of a run. */
export interface WorkflowStepRow {
  run_id: string;
  seq: number;
  name: string;
  kind: string;
  state: 'waiting' | 'succeeded' | 'failed';
  result: unknown;
  error: unknown;
  job_id: string | null;
  until: Date | null;
  has_compensation: boolean;
  compensation_state: 'succeeded' | 'failed' | 'skipped' | null;
  compensation_attempts: number;
  compensation_error: unknown;
  started_at: Date;
  finished_at: Date | null;
  /** Where the call's end falls among the run's ends (see StepWrite.doneSeq); null while it waits. */
  done_seq: number | null;
}

/** The claim a resume holds; its writes are fenced on it. */
export interface WorkflowClaim {
  runId: string;
  supervisorId: string;
  claimSeq: number;
}

/** The workflow run states a scheduler resumes. */
const ACTIVE_RUN_STATES = "('running', 'sleeping', 'waiting', 'compensating')";
const FINAL_JOB_STATES = "('succeeded', 'failed', 'timed_out', 'cancelled')";

/**
 * Creates a run, or returns the existing one with the same id (`created` false): the id is an
 * idempotency key. Notifies the scheduler. The existing run is read by a statement of its own: one
 * inserted by a concurrent call commits after the INSERT's snapshot, where a read in the same
 * statement would not see it.
 */
export async function insertWorkflowRun(
  db: Queryable,
  run: { id: string; name: string; inputJson: string; traceparent?: string },
): Promise<{ row: WorkflowRunRow; created: boolean }> {
  // A run deleted between the conflict and the read (retention) lets the next try insert.
  for (let tries = 0; ; tries++) {
    const { rows } = await db.query<WorkflowRunRow>(
      `WITH ins AS (
         INSERT INTO spindle.workflow_runs (id, name, input, wake_at, trace_context) VALUES ($1, $2, $3::jsonb, now(), $4)
         ON CONFLICT (id) DO NOTHING
         RETURNING *
       ), told AS (SELECT pg_notify('spindle_workflows', id) FROM ins)
       SELECT ins.* FROM ins, (SELECT count(*) FROM told) t`,
      [run.id, run.name, run.inputJson, run.traceparent ?? null],
    );
    if (rows[0]) return { row: rows[0], created: true };
    const existing = await getWorkflowRun(db, run.id);
    if (existing) return { row: existing, created: false };
    if (tries >= 3) throw new Error(`workflow run ${run.id} was deleted each time it was started`);
  }
}

export async function getWorkflowRun(db: Queryable, id: string): Promise<WorkflowRunRow | undefined> {
  const { rows } = await db.query<WorkflowRunRow>('SELECT * FROM spindle.workflow_runs WHERE id = $1', [id]);
  return rows[0];
}

/**
 * Newest first; `after` (a run id) pages on: the runs that come after it in that order (a keyset,
 * so a page deep in a long table costs what the first does).
 */
export async function listWorkflowRuns(
  db: Queryable,
  filter: { state?: string; name?: string; limit: number; after?: string },
): Promise<WorkflowRunRow[]> {
  const { rows } = await db.query<WorkflowRunRow>(
    `SELECT r.* FROM spindle.workflow_runs r
      WHERE ($1::text IS NULL OR r.state = $1) AND ($2::text IS NULL OR r.name = $2)
        AND ($4::text IS NULL OR EXISTS (
              SELECT 1 FROM spindle.workflow_runs c
               WHERE c.id = $4 AND (r.created_at < c.created_at OR (r.created_at = c.created_at AND r.id > c.id))))
      ORDER BY r.created_at DESC, r.id LIMIT $3`,
    [filter.state ?? null, filter.name ?? null, filter.limit, filter.after ?? null],
  );
  return rows;
}

/** An event of a run's inbox, as the dashboard shows it. */
export interface WorkflowEventRow {
  id: string;
  name: string;
  payload: unknown;
  createdAt: Date;
  /** When a wait took it (null: still in the inbox), and the step that took it. */
  consumedAt: Date | null;
  consumedBySeq: number | null;
}

/** The newest `limit` events sent to a run, newest first, taken or not. */
export async function listWorkflowEvents(db: Queryable, runId: string, limit: number): Promise<WorkflowEventRow[]> {
  const { rows } = await db.query<WorkflowEventRow>(
    `SELECT id::text, name, payload, created_at AS "createdAt", consumed_at AS "consumedAt", consumed_by_seq AS "consumedBySeq"
       FROM spindle.workflow_events WHERE run_id = $1 ORDER BY id DESC LIMIT $2`,
    [runId, limit],
  );
  return rows;
}

/** A job a run's step enqueued (`wf.run`), as it stands now. */
export interface WorkflowChildJobRow {
  seq: number;
  id: string;
  type: string;
  state: string;
  attempt: number;
  startedAt: Date | null;
  finishedAt: Date | null;
}

/** The jobs a run's steps enqueued, in step order (a job deleted by retention is left out). */
export async function listWorkflowChildJobs(db: Queryable, runId: string): Promise<WorkflowChildJobRow[]> {
  const { rows } = await db.query<WorkflowChildJobRow>(
    `SELECT s.seq, j.id::text, j.type, j.state, j.attempt, j.started_at AS "startedAt", j.finished_at AS "finishedAt"
       FROM spindle.workflow_steps s JOIN spindle.jobs j ON j.id = s.job_id
      WHERE s.run_id = $1 AND s.job_id IS NOT NULL ORDER BY s.seq`,
    [runId],
  );
  return rows;
}

export async function listWorkflowSteps(db: Queryable, runId: string): Promise<WorkflowStepRow[]> {
  const { rows } = await db.query<WorkflowStepRow>(
    'SELECT * FROM spindle.workflow_steps WHERE run_id = $1 ORDER BY seq',
    [runId],
  );
  return rows;
}

/**
 * Puts an event in a run's inbox and wakes the run if it waits for that name. Returns the run's
 * state, or undefined for an unknown run; nothing is inserted into a finished run.
 */
export async function insertWorkflowEvent(
  db: Queryable,
  e: { runId: string; name: string; payloadJson: string },
): Promise<{ state: string; eventId: string | null } | undefined> {
  const { rows } = await db.query<{ state: string; event_id: string | null }>(
    `WITH r AS (
       SELECT id, state FROM spindle.workflow_runs WHERE id = $1 FOR SHARE
     ), ins AS (
       INSERT INTO spindle.workflow_events (run_id, name, payload)
       SELECT id, $2, $3::jsonb FROM r WHERE r.state NOT IN ('succeeded', 'failed', 'cancelled', 'compensation_failed')
       RETURNING id, run_id
     ), woken AS (
       UPDATE spindle.workflow_runs w SET wake_at = now()
         FROM ins WHERE w.id = ins.run_id AND w.state = 'waiting' AND w.waiting_event = $2
       RETURNING w.id
     ), told AS (SELECT pg_notify('spindle_workflows', run_id) FROM ins)
     SELECT r.state, (SELECT id::text FROM ins) AS event_id
       FROM r, (SELECT count(*) FROM woken) w, (SELECT count(*) FROM told) t`,
    [e.runId, e.name, e.payloadJson],
  );
  const row = rows[0];
  return row ? { state: row.state, eventId: row.event_id } : undefined;
}

/**
 * Asks a run to cancel: it takes effect at the run's next wf.* call, or at its next resume (woken
 * now) when suspended. Returns the run's state and whether this call changed anything.
 */
export async function requestWorkflowCancel(
  db: Queryable,
  runId: string,
  reason: string | null,
): Promise<{ state: string; changed: boolean } | undefined> {
  const { rows } = await db.query<{ state: string; changed: boolean }>(
    `WITH r AS (SELECT id, state, cancel_requested_at FROM spindle.workflow_runs WHERE id = $1 FOR UPDATE),
     upd AS (
       UPDATE spindle.workflow_runs w
          SET cancel_requested_at = now(), cancel_reason = $2, wake_at = now(), updated_at = now()
         FROM r
        WHERE w.id = r.id AND r.cancel_requested_at IS NULL
          AND r.state IN ('running', 'sleeping', 'waiting', 'blocked')
        RETURNING w.id
     ), told AS (SELECT pg_notify('spindle_workflows', id) FROM upd)
     SELECT r.state, EXISTS (SELECT 1 FROM upd) AS changed FROM r, (SELECT count(*) FROM told) t`,
    [runId, reason],
  );
  return rows[0];
}

/**
 * Claims up to `limit` runs to resume: woken (wake time passed, their job ended, their event came),
 * or claimed by a supervisor whose lease on them expired (as for jobs, a claim holds until its lease
 * ends, whatever its supervisor's heartbeat says). Leases them to `supervisorId`.
 * Returns the rows and the database's clock.
 */
export async function claimWorkflowRuns(
  db: Queryable,
  c: {
    supervisorId: string;
    limit: number;
    leaseMs: number;
    exclude: string[];
    /** The names and versions this supervisor's modules serve: it claims their runs. */
    servable: { name: string; version: string }[];
    /**
     * Also the runs nobody here serves that have waited a lease for one that does (the leader's
     * claim, so that it blocks them, visibly, with the reason).
     */
    any: boolean;
  },
): Promise<(WorkflowRunRow & { db_now: Date })[]> {
  const { rows } = await db.query<WorkflowRunRow & { db_now: Date }>(
    `WITH picked AS (
       SELECT r.id FROM spindle.workflow_runs r
        WHERE r.state IN ${ACTIVE_RUN_STATES}
          AND NOT (r.id = ANY($4::text[]))
          AND (EXISTS (SELECT 1 FROM unnest($5::text[], $6::text[]) AS s(name, version)
                        WHERE s.name = r.name AND (r.version IS NULL OR r.version = s.version))
               -- A run nobody here serves, once it has been runnable a lease long, unclaimed by any
               -- supervisor that serves it.
               OR ($7 AND coalesce(CASE WHEN r.claimed_by IS NOT NULL THEN r.lease_expires_at ELSE r.wake_at END, r.updated_at)
                          < now() - $3 * interval '1 millisecond'))
          AND CASE WHEN r.claimed_by IS NOT NULL
                THEN r.lease_expires_at < now()
                ELSE r.wake_at <= now()
                     OR (r.waiting_job IS NOT NULL AND EXISTS (
                           SELECT 1 FROM spindle.jobs j WHERE j.id = r.waiting_job AND j.state IN ${FINAL_JOB_STATES}))
                     OR (r.waiting_event IS NOT NULL AND EXISTS (
                           SELECT 1 FROM spindle.workflow_events e
                            WHERE e.run_id = r.id AND e.name = r.waiting_event AND e.consumed_at IS NULL))
              END
        ORDER BY r.wake_at NULLS LAST
        LIMIT $2
        FOR UPDATE SKIP LOCKED
     )
     UPDATE spindle.workflow_runs r
        SET claimed_by = $1, claim_seq = r.claim_seq + 1, resumes = r.resumes + 1,
            lease_expires_at = now() + $3 * interval '1 millisecond', updated_at = now()
       FROM picked WHERE r.id = picked.id
      RETURNING r.*, now() AS db_now`,
    [c.supervisorId, c.limit, c.leaseMs, c.exclude, c.servable.map((s) => s.name), c.servable.map((s) => s.version), c.any],
  );
  return rows;
}

/** Extends the leases of the runs this supervisor is resuming; returns the ids still held. */
export async function extendWorkflowLeases(
  db: Queryable,
  supervisorId: string,
  claims: { runId: string; claimSeq: number }[],
  leaseMs: number,
): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    `UPDATE spindle.workflow_runs r SET lease_expires_at = now() + $2 * interval '1 millisecond'
       FROM unnest($3::text[], $4::int[]) AS c(id, seq)
      WHERE r.id = c.id AND r.claim_seq = c.seq AND r.claimed_by = $1
      RETURNING r.id`,
    [supervisorId, leaseMs, claims.map((c) => c.runId), claims.map((c) => c.claimSeq)],
  );
  return rows.map((r) => r.id);
}

/**
 * Locks the run row if the claim is still ours (inside the caller's transaction) and returns
 * whether a cancel was requested; undefined when the claim was lost.
 */
export async function lockWorkflowClaim(
  db: Queryable,
  claim: WorkflowClaim,
): Promise<{ cancelRequested: boolean; dbNow: Date } | undefined> {
  const { rows } = await db.query<{ cancel_requested: boolean; db_now: Date }>(
    `SELECT cancel_requested_at IS NOT NULL AS cancel_requested, now() AS db_now FROM spindle.workflow_runs
      WHERE id = $1 AND claimed_by = $2 AND claim_seq = $3 FOR UPDATE`,
    [claim.runId, claim.supervisorId, claim.claimSeq],
  );
  const row = rows[0];
  return row ? { cancelRequested: row.cancel_requested, dbNow: row.db_now } : undefined;
}

/** One step to record (insert, or update a waiting one). */
export interface StepWrite {
  seq: number;
  name: string;
  kind: string;
  state: 'waiting' | 'succeeded' | 'failed';
  resultJson: string | null;
  errorJson: string | null;
  jobId?: string | null;
  until?: Date | null;
  hasCompensation?: boolean;
  /**
   * When the step began, for a step recorded only once it is done (a `wf.step` function): by the
   * database's clock, at most the write's time. Default: the write's time (a step recorded as it begins).
   */
  startedAt?: Date;
  /**
   * For a call that ended (succeeded or failed): its place in the order in which the run's body saw
   * its calls end, so that a replay hands results back in the same order.
   */
  doneSeq?: number;
}

/** The columns of a step's row. */
const STEP_COLUMNS = 'run_id, seq, name, kind, state, result, error, job_id, until, has_compensation, started_at, finished_at, done_seq';
/** A step written again (a waiting one that ended) keeps its start and takes the rest. */
const STEP_ON_CONFLICT = `ON CONFLICT (run_id, seq) DO UPDATE
         SET state = EXCLUDED.state, result = EXCLUDED.result, error = EXCLUDED.error,
             job_id = coalesce(EXCLUDED.job_id, st.job_id), until = coalesce(EXCLUDED.until, st.until),
             has_compensation = EXCLUDED.has_compensation, finished_at = EXCLUDED.finished_at,
             done_seq = EXCLUDED.done_seq`;

/** A step write under a claim, as writeWorkflowStepsFenced takes it. */
export interface FencedStepWrite {
  claim: WorkflowClaim;
  version: string;
  step: StepWrite;
}

/** What a fenced step write left: the run's state size, and whether a cancel was asked. */
export interface StepWritten {
  stateBytes: number;
  cancelRequested: boolean;
}

/**
 * Writes steps of many runs in one statement (one round trip, one commit), each fenced on its run's
 * claim: a run's row is locked where the claim is still that resume's, and its step is written only
 * then (inside a transaction that holds the lock already, the same). Each write adds its bytes to
 * the run's state size and step count, and a run's first write records the version of its module.
 * At most one write per step of a run (two would meet in ON CONFLICT). Returns, by run id, what
 * the writes left; a run missing from the answer had its claim taken (nothing of it was written).
 */
export async function writeWorkflowStepsFenced(db: Queryable, writes: FencedStepWrite[]): Promise<Map<string, StepWritten>> {
  const { rows } = await db.query<{ id: string; state_bytes: string; cancel_requested: boolean }>({
    name: 'spindle.workflow_steps',
    text: `WITH d AS (
       SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::int[], $6::text[], $7::text[], $8::text[],
                            $9::text[], $10::text[], $11::bigint[], $12::timestamptz[], $13::boolean[], $14::timestamptz[], $15::int[])
         AS d(run_id, claimed_by, claim_seq, version, seq, name, kind, state, result, error, job_id, until, has_compensation, started_at, done_seq)
     ), claim AS MATERIALIZED (
       SELECT r.id, r.cancel_requested_at FROM spindle.workflow_runs r
        WHERE EXISTS (SELECT 1 FROM d WHERE d.run_id = r.id AND d.claimed_by = r.claimed_by AND d.claim_seq = r.claim_seq)
        ORDER BY r.id
          FOR UPDATE
     ), up AS (
       INSERT INTO spindle.workflow_steps AS st (${STEP_COLUMNS})
       SELECT d.run_id, d.seq, d.name, d.kind, d.state, d.result::jsonb, d.error::jsonb, d.job_id, d.until, d.has_compensation,
              least(coalesce(d.started_at, now()), now()), CASE WHEN d.state = 'waiting' THEN NULL ELSE now() END, d.done_seq
         FROM d JOIN claim ON claim.id = d.run_id
       ${STEP_ON_CONFLICT}
       RETURNING st.run_id, (xmax = 0) AS inserted
     ), per_run AS (
       SELECT d.run_id, min(d.version) AS version,
              sum(coalesce(octet_length(d.result), 0) + coalesce(octet_length(d.error), 0)) AS bytes
         FROM d JOIN claim ON claim.id = d.run_id
        GROUP BY d.run_id
     )
     UPDATE spindle.workflow_runs r
        SET version = coalesce(r.version, p.version),
            step_count = r.step_count + (SELECT count(*) FROM up WHERE up.run_id = r.id AND up.inserted),
            state_bytes = r.state_bytes + p.bytes,
            updated_at = now()
       FROM per_run p JOIN claim ON claim.id = p.run_id
      WHERE r.id = p.run_id
      RETURNING r.id, r.state_bytes, claim.cancel_requested_at IS NOT NULL AS cancel_requested`,
    values: [
      writes.map((w) => w.claim.runId),
      writes.map((w) => w.claim.supervisorId),
      writes.map((w) => w.claim.claimSeq),
      writes.map((w) => w.version),
      writes.map((w) => w.step.seq),
      writes.map((w) => w.step.name),
      writes.map((w) => w.step.kind),
      writes.map((w) => w.step.state),
      writes.map((w) => w.step.resultJson),
      writes.map((w) => w.step.errorJson),
      writes.map((w) => w.step.jobId ?? null),
      writes.map((w) => w.step.until ?? null),
      writes.map((w) => w.step.hasCompensation ?? false),
      writes.map((w) => w.step.startedAt ?? null),
      writes.map((w) => w.step.doneSeq ?? null),
    ],
  });
  return new Map(rows.map((r) => [r.id, { stateBytes: Number(r.state_bytes), cancelRequested: r.cancel_requested }]));
}

/** Takes the oldest unconsumed event of `name` for the run (under the claim lock); undefined if none. */
export async function consumeWorkflowEvent(
  db: Queryable,
  e: { runId: string; name: string; seq: number },
): Promise<{ payload: unknown } | undefined> {
  const { rows } = await db.query<{ payload: unknown }>(
    `UPDATE spindle.workflow_events SET consumed_at = now(), consumed_by_seq = $3
      WHERE id = (SELECT id FROM spindle.workflow_events
                   WHERE run_id = $1 AND name = $2 AND consumed_at IS NULL
                   ORDER BY id LIMIT 1 FOR UPDATE)
      RETURNING payload`,
    [e.runId, e.name, e.seq],
  );
  return rows[0];
}

/** What a suspended run waits for. */
export interface WorkflowWait {
  state: 'sleeping' | 'waiting';
  wakeAt: Date | null;
  jobId?: string | null;
  event?: string | null;
}

/**
 * Suspends a run and gives up the claim (fenced). A wait whose job already ended or whose event is
 * already in the inbox is woken at once, so nothing that happened meanwhile is missed.
 */
export async function suspendWorkflowRun(db: Queryable, claim: WorkflowClaim, wait: WorkflowWait): Promise<boolean> {
  const { rowCount } = await db.query({
    name: 'spindle.workflow_suspend',
    text: `UPDATE spindle.workflow_runs r
        SET state = $4, waiting_job = $6, waiting_event = $7, claimed_by = NULL, lease_expires_at = NULL,
            updated_at = now(),
            wake_at = CASE
              WHEN $6::bigint IS NOT NULL AND EXISTS (SELECT 1 FROM spindle.jobs j WHERE j.id = $6 AND j.state IN ${FINAL_JOB_STATES}) THEN now()
              WHEN $7::text IS NOT NULL AND EXISTS (SELECT 1 FROM spindle.workflow_events e
                    WHERE e.run_id = r.id AND e.name = $7 AND e.consumed_at IS NULL) THEN now()
              WHEN r.cancel_requested_at IS NOT NULL THEN now()
              ELSE $5::timestamptz END
      WHERE id = $1 AND claimed_by = $2 AND claim_seq = $3`,
    values: [claim.runId, claim.supervisorId, claim.claimSeq, wait.state, wait.wakeAt, wait.jobId ?? null, wait.event ?? null],
  });
  return rowCount === 1;
}

/** Gives up a claim without changing the run, to be resumed again at `wakeAt` (after an infrastructure error). */
export async function releaseWorkflowRun(db: Queryable, claim: WorkflowClaim, retryInMs: number): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE spindle.workflow_runs
        SET claimed_by = NULL, lease_expires_at = NULL, wake_at = now() + $4 * interval '1 millisecond', updated_at = now()
      WHERE id = $1 AND claimed_by = $2 AND claim_seq = $3`,
    [claim.runId, claim.supervisorId, claim.claimSeq, retryInMs],
  );
  return rowCount === 1;
}

/** Ends a run (fenced): succeeded, failed, cancelled or compensation_failed. Notifies waiters. */
export async function finishWorkflowRun(
  db: Queryable,
  claim: WorkflowClaim,
  end: { state: string; outputJson: string | null; errorJson: string | null },
): Promise<boolean> {
  const { rows } = await db.query({
    name: 'spindle.workflow_finish',
    text: `WITH done AS (
       UPDATE spindle.workflow_runs
          SET state = $4, output = $5::jsonb, error = $6::jsonb, finished_at = now(), updated_at = now(),
              claimed_by = NULL, lease_expires_at = NULL, wake_at = NULL, waiting_job = NULL, waiting_event = NULL
        WHERE id = $1 AND claimed_by = $2 AND claim_seq = $3
        RETURNING id
     )
     SELECT id, pg_notify('spindle_workflow_finished', id) FROM done`,
    values: [claim.runId, claim.supervisorId, claim.claimSeq, end.state, end.outputJson, end.errorJson],
  });
  return rows.length === 1;
}

/** Blocks a run (fenced) with the reason: no module of its version can resume it. */
export async function blockWorkflowRun(db: Queryable, claim: WorkflowClaim, reason: string): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE spindle.workflow_runs
        SET state = 'blocked', blocked_reason = $4, claimed_by = NULL, lease_expires_at = NULL, updated_at = now()
      WHERE id = $1 AND claimed_by = $2 AND claim_seq = $3`,
    [claim.runId, claim.supervisorId, claim.claimSeq, reason],
  );
  return rowCount === 1;
}

/**
 * Makes blocked runs runnable again when this supervisor has a module that can serve them: the
 * given (name, version) pairs, a NULL version matching any. Returns the ids.
 */
export async function unblockWorkflowRuns(db: Queryable, servable: { name: string; version: string }[]): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    `UPDATE spindle.workflow_runs r
        SET state = CASE WHEN r.cancel_requested_at IS NOT NULL AND r.compensation_plan IS NOT NULL THEN 'compensating' ELSE 'running' END,
            blocked_reason = NULL, wake_at = now(), updated_at = now()
       FROM unnest($1::text[], $2::text[]) AS s(name, version)
      WHERE r.state = 'blocked' AND r.name = s.name AND (r.version IS NULL OR r.version = s.version)
      RETURNING r.id`,
    [servable.map((s) => s.name), servable.map((s) => s.version)],
  );
  return rows.map((r) => r.id);
}

/** Starts compensation (under the claim lock): state `compensating` with the plan, newest first. */
export async function beginWorkflowCompensation(db: Queryable, runId: string, plan: number[]): Promise<void> {
  await db.query(
    `UPDATE spindle.workflow_runs SET state = 'compensating', compensation_plan = $2::jsonb, waiting_job = NULL,
            waiting_event = NULL, updated_at = now()
      WHERE id = $1`,
    [runId, JSON.stringify(plan)],
  );
}

/** Counts one more attempt of a step's compensation (under the claim lock); returns the count. */
export async function countCompensationAttempt(db: Queryable, runId: string, seq: number): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `UPDATE spindle.workflow_steps SET compensation_attempts = compensation_attempts + 1
      WHERE run_id = $1 AND seq = $2 RETURNING compensation_attempts AS n`,
    [runId, seq],
  );
  return rows[0]?.n ?? 0;
}

/** Records how a step's compensation ended (under the claim lock). */
export async function recordStepCompensation(
  db: Queryable,
  c: { runId: string; seq: number; state: 'succeeded' | 'failed'; errorJson: string | null },
): Promise<void> {
  await db.query(
    `UPDATE spindle.workflow_steps SET compensation_state = $3, compensation_error = $4::jsonb
      WHERE run_id = $1 AND seq = $2`,
    [c.runId, c.seq, c.state, c.errorJson],
  );
}

/** Records that these steps' compensations will not run (one before them failed for good). */
export async function skipStepCompensations(db: Queryable, runId: string, seqs: number[]): Promise<void> {
  await db.query(
    `UPDATE spindle.workflow_steps SET compensation_state = 'skipped'
      WHERE run_id = $1 AND seq = ANY($2::int[]) AND compensation_state IS NULL`,
    [runId, seqs],
  );
}

/**
 * Deletes up to `limit` finished runs in `states` that finished more than `olderThanMs` ago, oldest
 * first, their steps and events with them (ON DELETE CASCADE); returns how many runs.
 */
export async function deleteFinishedRuns(db: Queryable, states: string[], olderThanMs: number, limit: number): Promise<number> {
  const { rowCount } = await db.query(
    `DELETE FROM spindle.workflow_runs
      WHERE id IN (
              SELECT id FROM spindle.workflow_runs
               WHERE state = ANY($1::text[]) AND finished_at < now() - $2 * interval '1 millisecond'
               ORDER BY finished_at
               LIMIT $3
               FOR UPDATE SKIP LOCKED)
        AND state = ANY($1::text[]) AND finished_at < now() - $2 * interval '1 millisecond'`,
    [states, olderThanMs, limit],
  );
  return rowCount ?? 0;
}
