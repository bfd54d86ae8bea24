/**
 * Every SQL statement of the runtime, one named function each. Nothing outside src/db/ writes SQL.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { BackoffOptions } from '../backoff.ts';
import type { AttemptRow, JobRow, JobState } from '../job.ts';
import type { CheckedEnqueueOptions } from '../validate.ts';
import { backoffMsSql } from './backoff-sql.ts';

/** A pool or a client: anything that runs a query. */
export type Queryable = Pick<pg.Pool, 'query'> | Pick<pg.PoolClient, 'query'>;

// ---- migrations -------------------------------------------------------------

/** Key of the advisory lock held while migrating. */
const MIGRATION_LOCK = "hashtext('spindle.migrate')";

export async function lockMigrations(db: Queryable): Promise<void> {
  await db.query(`SELECT pg_advisory_lock(${MIGRATION_LOCK})`);
}

export async function unlockMigrations(db: Queryable): Promise<void> {
  await db.query(`SELECT pg_advisory_unlock(${MIGRATION_LOCK})`);
}

export async function ensureMigrationsTable(db: Queryable): Promise<void> {
  await db.query(`
    CREATE SCHEMA IF NOT EXISTS spindle;
    CREATE TABLE IF NOT EXISTS spindle.migrations (
      name       text PRIMARY KEY,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
}

export async function appliedMigrations(db: Queryable): Promise<Set<string>> {
  const { rows } = await db.query<{ name: string }>('SELECT name FROM spindle.migrations');
  return new Set(rows.map((r) => r.name));
}

export async function recordMigration(db: Queryable, name: string): Promise<void> {
  await db.query('INSERT INTO spindle.migrations (name) VALUES ($1)', [name]);
}

// ---- enqueue and read -------------------------------------------------------

/** Enqueues one job the Client has checked (its input too: enqueue_job is told so and does not measure it again). */
export async function enqueueJob(db: Queryable, type: string, inputJson: string, options: object): Promise<JobRow> {
  const { rows } = await db.query<JobRow>('SELECT * FROM spindle.enqueue_job($1, $2::jsonb, $3::jsonb, true)', [
    type,
    inputJson,
    JSON.stringify(options),
  ]);
  return rows[0]!;
}

/** A job to enqueue, as the client has checked it: its input already JSON text. */
export interface CheckedJobSpec {
  type: string;
  inputJson: string;
  options: CheckedEnqueueOptions;
}

/**
 * Enqueues many jobs in one statement; rows come back in the order given. They are inserted in the
 * order of their keys: two calls whose keys overlap then wait for each other's keys in one order, not
 * in a circle.
 */
export async function enqueueJobs(db: Queryable, specs: CheckedJobSpec[]): Promise<JobRow[]> {
  const { rows } = await db.query<JobRow>(
    `SELECT j.*
       FROM (SELECT * FROM unnest($1::text[], $2::jsonb[], $3::jsonb[]) WITH ORDINALITY AS s(type, input, opts, n)
              ORDER BY s.opts ->> 'key', s.n) s
      CROSS JOIN LATERAL spindle.enqueue_job(s.type, s.input, s.opts, true) AS j
      ORDER BY s.n`,
    [specs.map((s) => s.type), specs.map((s) => s.inputJson), specs.map((s) => JSON.stringify(s.options))],
  );
  return rows;
}

/**
 * Enqueues many jobs without dedupe keys in one INSERT, rows back in the order given, each queue
 * woken once. It does what enqueueJobs does for such jobs, without a call of enqueue_job per row
 * re-checking what the client has checked: the statement for 20,000 jobs took 0.55 s instead of
 * 1.8 s. (A job with a key needs enqueue_job's answer to a conflict, row by row.)
 */
export async function insertJobs(db: Queryable, specs: CheckedJobSpec[]): Promise<JobRow[]> {
  const { rows } = await db.query<JobRow>(
    `WITH ins AS (
       INSERT INTO spindle.jobs (type, queue, priority, input, max_attempts, timeout_ms, run_at)
       -- jsonb_to_recordset reads an input of JSON null as SQL NULL: it is stored as JSON null, as enqueue does.
       SELECT type, coalesce(queue, 'default'), coalesce(priority, 0), coalesce(input, 'null'), max_attempts, timeout_ms,
              coalesce(run_at, now() + delay_ms * interval '1 millisecond', now())
         FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS (type text, input jsonb, queue text, priority int,
                max_attempts int, timeout_ms int, run_at timestamptz, delay_ms bigint))
              WITH ORDINALITY AS s(type, input, queue, priority, max_attempts, timeout_ms, run_at, delay_ms, n)
        ORDER BY n
       RETURNING *
     )
     -- Identities are taken in the order of the SELECT: ordered by id, rows come back as given.
     SELECT ins.* FROM ins, (SELECT count(pg_notify('spindle_jobs', queue)) FROM (SELECT DISTINCT queue FROM ins) q) woken
      ORDER BY ins.id`,
    [jobSpecsJson(specs)],
  );
  return rows;
}

/**
 * The specs as one JSON array for jsonb_to_recordset, each input spliced in as the JSON text it
 * already is: eight arrays, every element escaped by pg in turn, made enqueueMany of 20,000 jobs
 * take 0.47 s instead of 0.33 s. Options left out are absent keys (NULL columns).
 */
function jobSpecsJson(specs: CheckedJobSpec[]): string {
  let json = '[';
  for (let i = 0; i < specs.length; i++) {
    const { type, inputJson, options: o } = specs[i]!;
    if (i > 0) json += ',';
    json += `{"type":${JSON.stringify(type)},"input":${inputJson}`;
    if (o.queue !== undefined) json += `,"queue":${JSON.stringify(o.queue)}`;
    if (o.priority !== undefined) json += `,"priority":${o.priority}`;
    if (o.maxAttempts !== undefined) json += `,"max_attempts":${o.maxAttempts}`;
    if (o.timeoutMs !== undefined) json += `,"timeout_ms":${o.timeoutMs}`;
    if (o.runAt !== undefined) json += `,"run_at":${JSON.stringify(o.runAt)}`;
    if (o.delayMs !== undefined) json += `,"delay_ms":${o.delayMs}`;
    json += '}';
  }
  return json + ']';
}

export async function getJob(db: Queryable, id: string): Promise<JobRow | undefined> {
  const { rows } = await db.query<JobRow>('SELECT * FROM spindle.jobs WHERE id = $1', [id]);
  return rows[0];
}

/** Newest first; `after` is the id of the last row of the previous page. */
export async function listJobs(
  db: Queryable,
  filter: { state?: JobState; type?: string; queue?: string; limit: number; after?: string },
): Promise<JobRow[]> {
  const { rows } = await db.query<JobRow>(
    `SELECT * FROM spindle.jobs
      WHERE ($1::text IS NULL OR state = $1)
        AND ($2::text IS NULL OR type = $2)
        AND ($3::text IS NULL OR queue = $3)
        AND ($4::bigint IS NULL OR id < $4)
      ORDER BY id DESC
      LIMIT $5`,
    [filter.state ?? null, filter.type ?? null, filter.queue ?? null, filter.after ?? null, filter.limit],
  );
  return rows;
}

export async function listAttempts(db: Queryable, jobId: string): Promise<AttemptRow[]> {
  const { rows } = await db.query<AttemptRow>(
    'SELECT * FROM spindle.attempts WHERE job_id = $1 ORDER BY attempt',
    [jobId],
  );
  return rows;
}

// ---- cancel and retry -------------------------------------------------------

/** The result of spindle.cancel(): the state after the call and whether it changed anything. */
export interface CancelResult {
  found: boolean;
  state?: JobState;
  changed?: boolean;
}

export async function cancelJob(db: Queryable, id: string, reason: string | null): Promise<CancelResult> {
  const { rows } = await db.query<{ result: CancelResult }>('SELECT spindle.cancel($1, $2) AS result', [id, reason]);
  return rows[0]!.result;
}

/**
 * Puts a failed, timed-out or cancelled job back in the queue, with one more attempt if it had none left.
 * Returns the row, or undefined when the job is not in one of those states.
 */
export async function retryJob(db: Queryable, id: string): Promise<JobRow | undefined> {
  const { rows } = await db.query<JobRow>(
    `WITH retried AS (
       UPDATE spindle.jobs
          SET state = 'queued', run_at = now(), finished_at = NULL, output = NULL,
              cancel_reason = NULL, cancel_requested_at = NULL, compensation = NULL,
              progress = NULL, progress_message = NULL, progress_data = NULL,
              max_attempts = CASE WHEN attempt >= max_attempts THEN attempt + 1 ELSE max_attempts END
        WHERE id = $1 AND state IN ('failed', 'timed_out', 'cancelled')
        RETURNING *
     )
     SELECT retried.*, pg_notify('spindle_jobs', retried.queue) FROM retried`,
    [id],
  );
  return rows[0];
}

// ---- the runtime: supervisors, claims, outcomes, leases -------------------------
//
// Lock order: a statement that may wait for several job rows locks them first, in id order, in a
// CTE of its own (ORDER BY id FOR UPDATE), then updates them. Two such statements then never wait
// for each other in a circle, as the heartbeat and finishJobs did when each locked rows in the order
// its join produced them. Statements that claim or reap skip locked rows and never wait.

/** The rows of (id, attempt) pairs $2, $3 that worker $1 holds, locked in id order. */
const LOCK_HELD_IN_ORDER = `SELECT j.id FROM spindle.jobs j JOIN unnest($2::bigint[], $3::int[]) AS h(id, attempt)
           ON j.id = h.id AND j.attempt = h.attempt
        WHERE j.worker_id = $1 AND j.state = 'running'
        ORDER BY j.id
        FOR UPDATE OF j`;

/** What a supervisor says of itself when it registers and on every heartbeat. */
export interface SupervisorRecord {
  id: string;
  host: string;
  pid: number;
  version: string;
  /** Empty means every queue. */
  queues: string[];
  types: string[];
  concurrency: number;
  /** Its heartbeat interval: it is dead when unseen for a few of these. */
  heartbeatMs: number;
}

/**
 * Registers a supervisor at start. A row with the same id is an earlier run of this supervisor (a
 * fixed `id`, restarted): it is replaced, and the jobs that run still holds get an expired lease, so
 * the reaper hands them back at its next sweep instead of after the lease.
 */
export async function registerSupervisor(db: Queryable, s: SupervisorRecord): Promise<void> {
  await db.query(
    `WITH registered AS (
       INSERT INTO spindle.supervisors (id, host, pid, version, queues, types, concurrency, heartbeat_ms)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
       ON CONFLICT (id) DO UPDATE
         SET host = EXCLUDED.host, pid = EXCLUDED.pid, version = EXCLUDED.version, queues = EXCLUDED.queues,
             types = EXCLUDED.types, concurrency = EXCLUDED.concurrency, heartbeat_ms = EXCLUDED.heartbeat_ms,
             started_at = now(), last_seen_at = now()
     )
     UPDATE spindle.jobs SET lease_expires_at = now()
      WHERE id IN (SELECT id FROM spindle.jobs WHERE worker_id = $1 AND state = 'running' ORDER BY id FOR UPDATE)
        AND worker_id = $1 AND state = 'running'`,
    [s.id, s.host, s.pid, s.version, s.queues, s.types, s.concurrency, s.heartbeatMs],
  );
}

/** Deregisters a supervisor on a clean stop. */
export async function removeSupervisor(db: Queryable, id: string): Promise<void> {
  await db.query('DELETE FROM spindle.supervisors WHERE id = $1', [id]);
}

/** A registered supervisor, as the Client's supervisors() and `spindle supervisors` show it. */
export interface SupervisorRow {
  id: string;
  host: string;
  pid: number;
  version: string;
  queues: string[];
  types: string[];
  concurrency: number;
  heartbeat_ms: number;
  started_at: Date;
  last_seen_at: Date;
  /** Jobs it holds now. */
  running: number;
  /** Milliseconds since it started, and since it was last seen, by the database's clock. */
  up_ms: number;
  last_seen_ms: number;
  /** Seen within `deadAfterBeats` of its heartbeat intervals (a dead one is listed until the leader removes it). */
  live: boolean;
}

/** Every registered supervisor, oldest first, with the jobs it holds. */
export async function listSupervisors(db: Queryable, deadAfterBeats: number): Promise<SupervisorRow[]> {
  const { rows } = await db.query<SupervisorRow>(
    `SELECT s.*, (SELECT count(*)::int FROM spindle.jobs j WHERE j.worker_id = s.id AND j.state = 'running') AS running,
            (extract(epoch FROM now() - s.started_at) * 1000)::float8 AS up_ms,
            (extract(epoch FROM now() - s.last_seen_at) * 1000)::float8 AS last_seen_ms,
            s.last_seen_at >= now() - $1 * s.heartbeat_ms * interval '1 millisecond' AS live
       FROM spindle.supervisors s ORDER BY s.started_at`,
    [deadAfterBeats],
  );
  return rows;
}

/** What a claim needs to know of one job type it serves. */
export interface ClaimType {
  type: string;
  /** The worker module's maxAttempts, for jobs enqueued without one. */
  maxAttempts: number;
}

/** What a claim returns of each job: only what running it needs (parsing every column costs). */
export interface ClaimedJob {
  id: string;
  type: string;
  input: unknown;
  attempt: number;
  max_attempts: number;
  timeout_ms: number | null;
  /** From run_at to the claim, by the database's clock. */
  wait_ms: number;
}

/**
 * Settings of the connections that claim (and extend leases and write progress). No sorts and no
 * bitmap scans: with statistics that lag a burst of enqueues (a new table, autovacuum not round yet)
 * the planner would read every queued job and sort them (100 ms a claim at 200k queued) instead of
 * walking jobs_claim_idx in order and stopping after the batch. Everything else sent on these
 * connections finds rows by primary key or by holder, so loses nothing by it. Commits are synchronous,
 * as everywhere: a claim is durable before its handler starts, so a server crash can never hand out
 * the same attempt number twice.
 */
export const CLAIM_CONNECTION_OPTIONS = '-c enable_sort=off -c enable_bitmapscan=off';

/** The claim (see claimJobs); one JSON array, not a row per job: one JSON.parse, not pg's parser per column. */
export const CLAIM_SQL = `WITH picked AS (
    SELECT id FROM spindle.jobs
     WHERE state = 'queued' AND run_at <= now()
       AND type = ANY($1::text[])
       AND (cardinality($2::text[]) = 0 OR queue = ANY($2::text[]))
     ORDER BY priority DESC, run_at, id
     LIMIT $3
     FOR UPDATE SKIP LOCKED
  ), claimed AS (
    UPDATE spindle.jobs j
       SET state = 'running', attempt = j.attempt + 1, worker_id = $4, started_at = now(),
           lease_expires_at = now() + $5 * interval '1 millisecond',
           max_attempts = coalesce(j.max_attempts,
             (SELECT d.max_attempts FROM unnest($1::text[], $6::int[]) AS d(type, max_attempts) WHERE d.type = j.type), 3),
           progress = NULL, progress_message = NULL, progress_data = NULL
      FROM picked
     WHERE j.id = picked.id
     RETURNING j.id, j.type, j.input, j.attempt, j.max_attempts, j.timeout_ms, j.priority, j.run_at,
               greatest(0, extract(epoch FROM now() - j.run_at) * 1000)::float8 AS wait_ms
  )
  SELECT coalesce(json_agg(json_build_object(
           'id', id::text, 'type', type, 'input', input, 'attempt', attempt, 'max_attempts', max_attempts,
           'timeout_ms', timeout_ms, 'wait_ms', wait_ms)
         ORDER BY priority DESC, run_at, id), '[]') AS jobs
    FROM claimed`;

/**
 * Claims up to `limit` runnable jobs of the given types, highest priority first, and leases them.
 * SKIP LOCKED lets many supervisors claim at once without waiting on each other.
 */
export async function claimJobs(
  db: Queryable,
  claim: { workerId: string; queues: string[]; types: ClaimType[]; limit: number; leaseMs: number },
): Promise<ClaimedJob[]> {
  const { rows } = await db.query<{ jobs: ClaimedJob[] }>({
    name: 'spindle.claim',
    text: CLAIM_SQL,
    values: [
      claim.types.map((t) => t.type),
      claim.queues,
      claim.limit,
      claim.workerId,
      claim.leaseMs,
      claim.types.map((t) => t.maxAttempts),
    ],
  });
  return rows[0]!.jobs;
}

/**
 * Gives back claimed jobs this supervisor will not run soon (it claimed more of a slow type than its
 * threads can start): they are queued again as if never claimed, and other supervisors are woken.
 */
export async function releaseJobs(db: Queryable, workerId: string, jobs: { id: string; attempt: number }[]): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `WITH locked AS MATERIALIZED (
       ${LOCK_HELD_IN_ORDER}
     ), released AS (
       UPDATE spindle.jobs j
          SET state = 'queued', attempt = j.attempt - 1, worker_id = NULL, started_at = NULL, lease_expires_at = NULL
         FROM locked
        WHERE j.id = locked.id AND j.worker_id = $1 AND j.state = 'running'
        RETURNING j.queue
     ), woken AS (
       SELECT pg_notify('spindle_jobs', queue) FROM (SELECT DISTINCT queue FROM released) q
     )
     SELECT (SELECT count(*) FROM released)::int AS n, (SELECT count(*) FROM woken) AS w`,
    [workerId, jobs.map((j) => j.id), jobs.map((j) => j.attempt)],
  );
  return rows[0]!.n;
}

/** One finished attempt, as the supervisor writes it. */
export interface Finish {
  id: string;
  attempt: number;
  outcome: string;
  /** The job's next state: 'queued' retries it after `delayMs`. */
  nextState: JobState;
  /** The handler's result as JSON text (see toJson in outcome.ts: checked before it gets here). */
  outputJson?: string;
  error?: unknown;
  delayMs?: number;
  logs?: string | null;
  /** The last progress the handler reported, if it reported any: the outcome's write carries it. */
  progress?: FinalProgress;
}

/** A finished attempt's last progress report. */
export interface FinalProgress {
  percent: number;
  message: string | null;
  data: unknown;
}

/**
 * The batch as one JSON array for jsonb_to_recordset: one JSON.stringify per small field and the
 * output spliced in as it is, instead of ten arrays whose every element pg would escape in turn.
 */
function finishesJson(finishes: Finish[]): string {
  let json = '[';
  for (let i = 0; i < finishes.length; i++) {
    const f = finishes[i]!;
    if (i > 0) json += ',';
    json +=
      `{"id":${JSON.stringify(f.id)},"attempt":${f.attempt},"outcome":${JSON.stringify(f.outcome)},` +
      `"next_state":${JSON.stringify(f.nextState)},"output":${f.outputJson ?? 'null'},` +
      `"error":${f.error == null ? 'null' : JSON.stringify(f.error)},"delay_ms":${f.delayMs ?? 0},` +
      `"logs":${f.logs == null ? 'null' : JSON.stringify(f.logs)}` +
      (f.progress === undefined ? '}' : `,"progress":${JSON.stringify(f.progress)}}`);
  }
  return json + ']';
}

/** What finishJobs wrote. */
export interface FinishedJobs {
  /** The ids written. */
  ids: string[];
  /** Jobs to retry that ended cancelled instead (a cancel came while their attempt ended), with its reason. */
  cancelled: { id: string; reason: string | null }[];
}

/**
 * Records many finished attempts in one statement, fenced on (id, attempt, worker, running):
 * a row whose claim was lost matches nothing and is left alone.
 * A succeeded attempt gets no attempt_log row: the job row is its record (see the attempts view).
 */
export async function finishJobs(db: Queryable, workerId: string, finishes: Finish[]): Promise<FinishedJobs> {
  const { rows } = await db.query<FinishedJobs>({
    name: 'spindle.finish',
    text: `WITH d AS (
       SELECT * FROM jsonb_to_recordset($2::jsonb)
         AS d(id bigint, attempt int, outcome text, next_state text, output jsonb, error jsonb, delay_ms bigint, logs text, progress jsonb)
     ), locked AS MATERIALIZED (
       SELECT j.id FROM spindle.jobs j JOIN d ON j.id = d.id AND j.attempt = d.attempt
        WHERE j.worker_id = $1 AND j.state = 'running'
        ORDER BY j.id
        FOR UPDATE OF j
     ), done AS (
       UPDATE spindle.jobs j
          -- A retry of a job whose cancel was requested (it came too late to stop this attempt) ends it cancelled.
          SET state = CASE WHEN d.next_state = 'queued' AND j.cancel_requested_at IS NOT NULL THEN 'cancelled' ELSE d.next_state END,
              output = d.output,
              error = d.error,
              lease_expires_at = NULL,
              run_at = CASE WHEN d.next_state = 'queued' THEN now() + d.delay_ms * interval '1 millisecond' ELSE j.run_at END,
              finished_at = CASE WHEN d.next_state = 'queued' AND j.cancel_requested_at IS NULL THEN NULL ELSE now() END,
              -- The last report, which the progress writer may not have written yet (it drops what it holds of a finished job).
              progress = CASE WHEN d.next_state = 'succeeded' THEN 100 ELSE coalesce((d.progress->>'percent')::real, j.progress) END,
              progress_message = CASE WHEN d.progress IS NULL THEN j.progress_message ELSE d.progress->>'message' END,
              progress_data = CASE WHEN d.progress IS NULL THEN j.progress_data ELSE d.progress->'data' END,
              -- A shutdown does not use up an attempt.
              max_attempts = CASE WHEN d.outcome = 'interrupted' THEN j.max_attempts + 1 ELSE j.max_attempts END,
              logs = d.logs
         FROM d JOIN locked ON locked.id = d.id
        WHERE j.id = d.id AND j.attempt = d.attempt AND j.worker_id = $1 AND j.state = 'running'
        RETURNING j.id, j.attempt, j.started_at, j.queue, j.state, d.outcome, d.error, d.logs, d.delay_ms, d.next_state, j.cancel_reason
     ), recorded AS (
       INSERT INTO spindle.attempt_log (job_id, attempt, worker_id, outcome, error, logs, started_at)
       SELECT id, attempt, $1, outcome, error, logs, started_at FROM done WHERE outcome <> 'succeeded'
     ), woken AS (
       SELECT pg_notify('spindle_jobs', queue) FROM (SELECT DISTINCT queue FROM done WHERE state = 'queued' AND delay_ms = 0) q
     ), told AS (
       -- A NOTIFY payload holds under 8000 bytes: ids go in groups of 300.
       SELECT pg_notify('spindle_finished', string_agg(id::text, ','))
         FROM (SELECT id, row_number() OVER () / 300 AS g FROM done WHERE state <> 'queued') f
        GROUP BY g
     )
     -- One JSON array of ids, not a row per job (one JSON.parse instead of pg's parser per row).
     SELECT coalesce((SELECT json_agg(id::text) FROM done), '[]') AS ids,
            coalesce((SELECT json_agg(json_build_object('id', id::text, 'reason', cancel_reason)) FROM done
                       WHERE state = 'cancelled' AND next_state <> 'cancelled'), '[]') AS cancelled,
            (SELECT count(*) FROM woken) w, (SELECT count(*) FROM told) t`,
    values: [workerId, finishesJson(finishes)],
  });
  return rows[0]!;
}

/**
 * Of the given finishes, the ids of those recorded as this worker wrote them: after a write whose
 * reply was lost (the connection dropped), this tells whether it was applied before a retry matched
 * nothing. (A reaped attempt is recorded too, but as `lost`: that one was not ours.)
 */
export async function recordedAttempts(
  db: Queryable,
  workerId: string,
  finishes: Pick<Finish, 'id' | 'attempt' | 'outcome'>[],
): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    `SELECT a.job_id::text AS id
       FROM spindle.attempts a
       JOIN unnest($2::bigint[], $3::int[], $4::text[]) AS f(id, attempt, outcome)
         ON a.job_id = f.id AND a.attempt = f.attempt AND a.outcome = f.outcome
      WHERE a.worker_id = $1`,
    [workerId, finishes.map((f) => f.id), finishes.map((f) => f.attempt), finishes.map((f) => f.outcome)],
  );
  return rows.map((r) => r.id);
}

/** A job this supervisor still holds, as the heartbeat returns it. */
export interface HeldJob {
  id: string;
  attempt: number;
  cancel_requested: boolean;
  cancel_reason: string | null;
}

/**
 * Marks a supervisor seen (registering it again if a sweep had removed it). Its own statement, apart
 * from the leases: it touches one row, so no lock on a job can delay or undo it.
 */
export async function markSupervisorSeen(db: Queryable, s: SupervisorRecord): Promise<void> {
  await db.query({
    name: 'spindle.seen',
    text: `INSERT INTO spindle.supervisors (id, host, pid, version, queues, types, concurrency, heartbeat_ms)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (id) DO UPDATE SET last_seen_at = now()`,
    values: [s.id, s.host, s.pid, s.version, s.queues, s.types, s.concurrency, s.heartbeatMs],
  });
}

/**
 * Extends the lease of every job this supervisor holds (fenced on attempt). Returns the jobs still
 * held, with any cancel request; one missing has been taken away.
 */
export async function extendLeases(
  db: Queryable,
  lease: { workerId: string; leaseMs: number; ids: string[]; attempts: number[] },
): Promise<HeldJob[]> {
  const { rows } = await db.query<HeldJob>({
    name: 'spindle.lease',
    text: `WITH locked AS MATERIALIZED (
       ${LOCK_HELD_IN_ORDER}
     )
     UPDATE spindle.jobs j
        SET lease_expires_at = now() + $4 * interval '1 millisecond'
       FROM locked
      WHERE j.id = locked.id AND j.worker_id = $1 AND j.state = 'running'
      RETURNING j.id::text, j.attempt, j.cancel_requested_at IS NOT NULL AS cancel_requested, j.cancel_reason`,
    values: [lease.workerId, lease.ids, lease.attempts, lease.leaseMs],
  });
  return rows;
}

/** Running jobs of this supervisor with a cancel requested, for a sweep after a missed NOTIFY. */
export async function cancelRequests(db: Queryable, workerId: string): Promise<HeldJob[]> {
  const { rows } = await db.query<HeldJob>(
    `SELECT id::text, attempt, true AS cancel_requested, cancel_reason FROM spindle.jobs
      WHERE worker_id = $1 AND state = 'running' AND cancel_requested_at IS NOT NULL`,
    [workerId],
  );
  return rows;
}

// ---- the reaper (leader only) ------------------------------------------------
//
// A job is taken back when its lease expired: a supervisor whose heartbeat fails for a while (a
// pause, a lost connection, a slow server) keeps its jobs as long as it renews their leases in time.
// A supervisor unseen for `deadAfterBeats` of its own heartbeat intervals is removed from the list
// of the living (no more unknown-type grace, leadership, listing), and its jobs come back as their
// leases end. After a restart of the server nobody could heartbeat while it was down, so every
// supervisor looks dead and every lease may have expired: for as long again after the server
// started, nothing is taken back, so the live supervisors come back first.

/**
 * Removes supervisors unseen for `deadAfterBeats` of their heartbeats (never `selfId`: the leader
 * that sweeps is alive, however late its own heartbeat). Returns their ids.
 */
export async function removeDeadSupervisors(
  db: Queryable,
  sweep: { deadAfterBeats: number; selfId: string },
): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    `DELETE FROM spindle.supervisors
      WHERE last_seen_at < now() - $1 * heartbeat_ms * interval '1 millisecond'
        AND id <> $2
        AND pg_postmaster_start_time() < now() - $1 * heartbeat_ms * interval '1 millisecond'
      RETURNING id`,
    [sweep.deadAfterBeats, sweep.selfId],
  );
  return rows.map((r) => r.id);
}

/** A job taken back from a supervisor that lost it. */
export interface ReapedJob {
  id: string;
  attempt: number;
  type: string;
  worker_id: string | null;
  /** The job's state now: 'queued' (a retry), 'failed' (no attempts left) or 'cancelled'. */
  state: JobState;
  /** True when its supervisor was gone too (unseen for a few heartbeats); false when only the lease had expired. */
  orphaned: boolean;
}

/**
 * Takes back running jobs whose lease expired: the attempt is recorded `lost`, and the job goes back
 * to the queue after a backoff, or fails when no attempts are left (or ends `cancelled` when a cancel
 * was requested). While its holder is registered, an expired lease counts only once the server has
 * been up for `deadAfterBeats` of the holder's heartbeats.
 */
export async function reapLostJobs(
  db: Queryable,
  reap: { limit: number; deadAfterBeats: number; backoff: BackoffOptions; backoffByType: Record<string, BackoffOptions> },
): Promise<ReapedJob[]> {
  // A type's own backoff where this supervisor knows the type, else the supervisor's.
  const base = `coalesce(($5::jsonb -> j.type ->> 'baseMs')::float8, $2::float8)`;
  const max = `coalesce(($5::jsonb -> j.type ->> 'maxMs')::float8, $3::float8)`;
  const { rows } = await db.query<ReapedJob>(
    `WITH lost AS (
       SELECT j.id, s.id IS NULL AS orphaned
         FROM spindle.jobs j LEFT JOIN spindle.supervisors s ON s.id = j.worker_id
        WHERE j.state = 'running' AND j.lease_expires_at < now()
          AND (s.id IS NULL OR pg_postmaster_start_time() < now() - $4 * s.heartbeat_ms * interval '1 millisecond')
        ORDER BY j.lease_expires_at
        LIMIT $1
        FOR UPDATE OF j SKIP LOCKED
     ), reaped AS (
       UPDATE spindle.jobs j
          SET state = CASE WHEN j.cancel_requested_at IS NOT NULL THEN 'cancelled'
                           WHEN j.attempt >= j.max_attempts THEN 'failed'
                           ELSE 'queued' END,
              error = jsonb_build_object('name', 'LostError', 'outcome', 'lost', 'message',
                CASE WHEN lost.orphaned
                     THEN format('supervisor %s stopped heartbeating while running attempt %s', j.worker_id, j.attempt)
                     ELSE format('the lease of attempt %s (supervisor %s) expired', j.attempt, j.worker_id) END),
              run_at = now() + ${backoffMsSql('j.attempt', base, max)} * interval '1 millisecond',
              finished_at = CASE WHEN j.cancel_requested_at IS NOT NULL OR j.attempt >= j.max_attempts THEN now() END,
              lease_expires_at = NULL
         FROM lost
        WHERE j.id = lost.id AND j.state = 'running'
        RETURNING j.id, j.attempt, j.type, j.worker_id, j.state, j.started_at, j.error, j.queue, lost.orphaned
     ), recorded AS (
       INSERT INTO spindle.attempt_log (job_id, attempt, worker_id, outcome, error, started_at)
       SELECT id, attempt, worker_id, 'lost', error, started_at FROM reaped
       ON CONFLICT DO NOTHING
     ), woken AS (
       SELECT pg_notify('spindle_jobs', queue) FROM (SELECT DISTINCT queue FROM reaped WHERE state = 'queued') q
     ), told AS (
       SELECT pg_notify('spindle_finished', string_agg(id::text, ','))
         FROM (SELECT id, row_number() OVER () / 300 AS g FROM reaped WHERE state <> 'queued') f
        GROUP BY g
     )
     SELECT id::text, attempt, type, worker_id, state, orphaned
       FROM reaped, (SELECT count(*) FROM woken) w, (SELECT count(*) FROM told) t`,
    [reap.limit, reap.backoff.baseMs, reap.backoff.maxMs, reap.deadAfterBeats, JSON.stringify(reap.backoffByType)],
  );
  return rows;
}

/**
 * Fails queued jobs of types no live supervisor serves, with the error `unknown job type "X"`, once
 * the job has waited `graceMs` and every live supervisor has been up for `graceMs`: a rolling deploy
 * (new code enqueues a new type while the supervisors that serve it are starting) fails nothing.
 * Returns the ids failed.
 */
export async function failUnknownTypes(db: Queryable, graceMs: number, limit: number): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    `WITH RECURSIVE queued_types AS (
       -- The distinct types of queued jobs, one index probe each (not one visit per queued job).
       (SELECT type FROM spindle.jobs WHERE state = 'queued' ORDER BY type LIMIT 1)
       UNION ALL
       SELECT (SELECT j.type FROM spindle.jobs j WHERE j.state = 'queued' AND j.type > t.type ORDER BY j.type LIMIT 1)
         FROM queued_types t WHERE t.type IS NOT NULL
     ), unknown_types AS (
       SELECT type FROM queued_types t
        WHERE type IS NOT NULL AND NOT EXISTS (SELECT 1 FROM spindle.supervisors s WHERE t.type = ANY(s.types))
     ), unknown AS (
       SELECT id FROM spindle.jobs j
        WHERE state = 'queued'
          AND j.type IN (SELECT type FROM unknown_types)
          AND greatest(j.run_at, j.created_at) < now() - $1 * interval '1 millisecond'
          AND EXISTS (SELECT 1 FROM spindle.supervisors)
          AND NOT EXISTS (SELECT 1 FROM spindle.supervisors s WHERE s.started_at > now() - $1 * interval '1 millisecond')
        LIMIT $2
        FOR UPDATE SKIP LOCKED
     ), failed AS (
       UPDATE spindle.jobs j
          SET state = 'failed', finished_at = now(),
              error = jsonb_build_object('name', 'UnknownJobTypeError', 'message', format('unknown job type "%s"', j.type))
         FROM unknown WHERE j.id = unknown.id AND j.state = 'queued'
        RETURNING j.id
     )
     SELECT id::text, pg_notify('spindle_finished', id::text) FROM failed`,
    [graceMs, limit],
  );
  return rows.map((r) => r.id);
}

/** Deletes up to `limit` jobs in `state` that finished more than `olderThanMs` ago, oldest first. */
export async function deleteFinishedJobs(
  db: Queryable,
  state: JobState,
  olderThanMs: number,
  limit: number,
): Promise<number> {
  // The outer conditions are checked again on the row deleted: a job retried meanwhile is kept.
  const { rowCount } = await db.query(
    `DELETE FROM spindle.jobs
      WHERE id IN (
              SELECT id FROM spindle.jobs
               WHERE state = $1 AND finished_at < now() - $2 * interval '1 millisecond'
               ORDER BY finished_at
               LIMIT $3
               FOR UPDATE SKIP LOCKED)
        AND state = $1 AND finished_at < now() - $2 * interval '1 millisecond'`,
    [state, olderThanMs, limit],
  );
  return rowCount ?? 0;
}

// ---- leader election -----------------------------------------------------------

/** The leader lock: advisory lock (SPINDLE_LOCK_SPACE, 1), two-key form so pg_locks shows it plainly. */
const LOCK_SPACE = 0x5350;
const LEADER_KEY = 1;
const ELECTOR_PREFIX = 'spindle:elector:';
/** PostgreSQL keeps this many bytes of an application_name. */
const MAX_APPLICATION_NAME_BYTES = 63;

/**
 * The application_name of a supervisor's elector connection: how a candidate finds which supervisor
 * holds the leader lock. An id too long to fit is replaced by a digest that endStaleLeader() computes too.
 */
export function electorApplicationName(supervisorId: string): string {
  const name = ELECTOR_PREFIX + supervisorId;
  if (Buffer.byteLength(name) <= MAX_APPLICATION_NAME_BYTES) return name;
  return `${ELECTOR_PREFIX}#${createHash('sha256').update(supervisorId, 'utf8').digest('hex').slice(0, 16)}`;
}

/** electorApplicationName() in SQL, of `s.id`. */
const ELECTOR_NAME_SQL = `CASE WHEN octet_length('${ELECTOR_PREFIX}' || s.id) <= ${MAX_APPLICATION_NAME_BYTES}
  THEN '${ELECTOR_PREFIX}' || s.id
  ELSE '${ELECTOR_PREFIX}#' || left(encode(sha256(convert_to(s.id, 'UTF8')), 'hex'), 16) END`;

/** Tries to take the leader lock on this session; true if it is now held by this session. */
export async function tryLeaderLock(db: Queryable): Promise<boolean> {
  const { rows } = await db.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS ok', [LOCK_SPACE, LEADER_KEY]);
  return rows[0]!.ok;
}

/** True while this session holds the leader lock: the check a leader makes on every tick. */
export async function holdsLeaderLock(db: Queryable): Promise<boolean> {
  const { rows } = await db.query<{ held: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
                      AND classid = $1 AND objid = $2 AND objsubid = 2 AND granted) AS held`,
    [LOCK_SPACE, LEADER_KEY],
  );
  return rows[0]!.held;
}

/**
 * Ends the session of a leader whose supervisor is unseen for `deadAfterBeats` of its heartbeats
 * (paused, or its process wedged): its lock goes with the session, so another supervisor can lead.
 * Only this database's lock counts (advisory locks are per database). Returns the application
 * names' suffixes (supervisor ids) ended.
 */
export async function endStaleLeader(db: Queryable, deadAfterBeats: number): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    `SELECT substr(a.application_name, ${ELECTOR_PREFIX.length + 1}) AS id, pg_terminate_backend(a.pid) AS ended
       FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 2 AND l.granted
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND a.pid <> pg_backend_pid()
        AND a.application_name LIKE '${ELECTOR_PREFIX}%'
        AND NOT EXISTS (
          SELECT 1 FROM spindle.supervisors s
           WHERE a.application_name = ${ELECTOR_NAME_SQL}
             AND s.last_seen_at >= now() - $3 * s.heartbeat_ms * interval '1 millisecond')`,
    [LOCK_SPACE, LEADER_KEY, deadAfterBeats],
  );
  return rows.map((r) => r.id);
}

/** Ends every LISTEN of this connection (before it goes back to a pool). */
export async function unlistenAll(db: Queryable): Promise<void> {
  await db.query('UNLISTEN *');
}

/** Runs a notification channel subscription on a dedicated connection. */
export async function listen(db: Queryable, channels: readonly string[]): Promise<void> {
  for (const channel of channels) await db.query(`LISTEN ${channel}`);
}

// ---- progress ---------------------------------------------------------------------

/** The latest progress of one running attempt. */
export interface ProgressUpdate {
  id: string;
  attempt: number;
  percent: number;
  message: string | null;
  data: unknown;
  logs: string | null;
}

/**
 * Writes the latest progress of many jobs in one statement, fenced on (id, attempt, worker, running),
 * and tells watchers with one NOTIFY per 300 jobs. Returns how many rows were written.
 */
export async function writeProgress(db: Queryable, workerId: string, updates: ProgressUpdate[]): Promise<number> {
  const { rows } = await db.query<{ n: number }>({
    name: 'spindle.progress',
    text: `WITH locked AS MATERIALIZED (
       ${LOCK_HELD_IN_ORDER}
     ), written AS (
       UPDATE spindle.jobs j
          SET progress = u.percent, progress_message = u.message, progress_data = u.data,
              logs = coalesce(u.logs, j.logs)
         FROM unnest($2::bigint[], $3::int[], $4::real[], $5::text[], $6::jsonb[], $7::text[])
           AS u(id, attempt, percent, message, data, logs)
         JOIN locked ON locked.id = u.id
        WHERE j.id = u.id AND j.attempt = u.attempt AND j.worker_id = $1 AND j.state = 'running'
        RETURNING j.id
     ), told AS (
       SELECT pg_notify('spindle_progress', string_agg(id::text, ','))
         FROM (SELECT id, row_number() OVER () / 300 AS g FROM written) w
        GROUP BY g
     )
     SELECT (SELECT count(*) FROM written)::int AS n, (SELECT count(*) FROM told) AS t`,
    values: [
      workerId,
      updates.map((u) => u.id),
      updates.map((u) => u.attempt),
      updates.map((u) => u.percent),
      updates.map((u) => u.message),
      updates.map((u) => (u.data === undefined ? null : JSON.stringify(u.data))),
      updates.map((u) => u.logs),
    ],
  });
  return rows[0]!.n;
}

/** Records what a module's compensate() did after a cancel, fenced on the cancelled attempt. */
export async function recordCompensation(
  db: Queryable,
  workerId: string,
  c: { id: string; attempt: number; compensation: unknown },
): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE spindle.jobs SET compensation = $4
      WHERE id = $1 AND attempt = $2 AND worker_id = $3 AND state = 'cancelled'`,
    [c.id, c.attempt, workerId, JSON.stringify(c.compensation)],
  );
  return rowCount === 1;
}

// ---- operations: metrics and the dashboard ------------------------------------

/** How many jobs each queue holds in each state, in one grouped statement. */
export interface QueueStateCount {
  queue: string;
  state: JobState;
  count: number;
}

/**
 * Counts jobs by queue and state: one statement, for the metrics sampler and the dashboard (never
 * one per type or per scrape). It reads every row, so callers run it every few seconds at most.
 */
export async function countJobsByQueueAndState(db: Queryable): Promise<QueueStateCount[]> {
  const { rows } = await db.query<{ queue: string; state: JobState; count: string }>(
    `SELECT queue, state, count(*) AS count FROM spindle.jobs GROUP BY queue, state ORDER BY queue, state`,
  );
  return rows.map((r) => ({ queue: r.queue, state: r.state, count: Number(r.count) }));
}

// ---- workflows ---------------------------------------------------------------------
//
// A run is resumed by the one supervisor that holds its claim (claimed_by, claim_seq, lease). Every
// write of a resume first locks the run row where the claim is still ours (lockWorkflowClaim), in
// the same transaction as the write: a resume whose claim was taken writes nothing.

/**
 * Runs `body` in a transaction on one connection of `pool`: COMMIT when it resolves, ROLLBACK when
 * it throws (the error is rethrown). A connection whose ROLLBACK failed is discarded.
 */
export async function inTransaction<T>(pool: pg.Pool, body: (db: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    const result = await body(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch((err: Error) => {
      broken = err;
    });
    throw error;
  } finally {
    client.release(broken);
  }
}

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
  compensation_state: 'succeeded' | 'failed' | null;
  compensation_attempts: number;
  compensation_error: unknown;
  started_at: Date;
  finished_at: Date | null;
}

/** The claim a resume holds; its writes are fenced on it. */
export interface WorkflowClaim {
  runId: string;
  workerId: string;
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
  run: { id: string; name: string; inputJson: string },
): Promise<{ row: WorkflowRunRow; created: boolean }> {
  // A run deleted between the conflict and the read (retention) lets the next try insert.
  for (let tries = 0; ; tries++) {
    const { rows } = await db.query<WorkflowRunRow>(
      `WITH ins AS (
         INSERT INTO spindle.workflow_runs (id, name, input, wake_at) VALUES ($1, $2, $3::jsonb, now())
         ON CONFLICT (id) DO NOTHING
         RETURNING *
       ), told AS (SELECT pg_notify('spindle_workflows', id) FROM ins)
       SELECT ins.* FROM ins, (SELECT count(*) FROM told) t`,
      [run.id, run.name, run.inputJson],
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

/** Newest first. */
export async function listWorkflowRuns(
  db: Queryable,
  filter: { state?: string; name?: string; limit: number },
): Promise<WorkflowRunRow[]> {
  const { rows } = await db.query<WorkflowRunRow>(
    `SELECT * FROM spindle.workflow_runs
      WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR name = $2)
      ORDER BY created_at DESC, id LIMIT $3`,
    [filter.state ?? null, filter.name ?? null, filter.limit],
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
 * ends, whatever its supervisor's heartbeat says). Leases them to `workerId`.
 * Returns the rows and the database's clock.
 */
export async function claimWorkflowRuns(
  db: Queryable,
  c: { workerId: string; limit: number; leaseMs: number; exclude: string[] },
): Promise<(WorkflowRunRow & { db_now: Date })[]> {
  const { rows } = await db.query<WorkflowRunRow & { db_now: Date }>(
    `WITH picked AS (
       SELECT r.id FROM spindle.workflow_runs r
        WHERE r.state IN ${ACTIVE_RUN_STATES}
          AND NOT (r.id = ANY($4::text[]))
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
    [c.workerId, c.limit, c.leaseMs, c.exclude],
  );
  return rows;
}

/** Extends the leases of the runs this supervisor is resuming; returns the ids still held. */
export async function extendWorkflowLeases(
  db: Queryable,
  workerId: string,
  claims: { runId: string; claimSeq: number }[],
  leaseMs: number,
): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    `UPDATE spindle.workflow_runs r SET lease_expires_at = now() + $2 * interval '1 millisecond'
       FROM unnest($3::text[], $4::int[]) AS c(id, seq)
      WHERE r.id = c.id AND r.claim_seq = c.seq AND r.claimed_by = $1
      RETURNING r.id`,
    [workerId, leaseMs, claims.map((c) => c.runId), claims.map((c) => c.claimSeq)],
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
    [claim.runId, claim.workerId, claim.claimSeq],
  );
  const row = rows[0];
  return row ? { cancelRequested: row.cancel_requested, dbNow: row.db_now } : undefined;
}

/** Records the version of the module that runs a run for the first time. */
export async function setWorkflowVersion(db: Queryable, claim: WorkflowClaim, version: string): Promise<void> {
  await db.query(
    'UPDATE spindle.workflow_runs SET version = $4 WHERE id = $1 AND claimed_by = $2 AND claim_seq = $3 AND version IS NULL',
    [claim.runId, claim.workerId, claim.claimSeq, version],
  );
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
}

/**
 * Writes a step (under a lock taken by lockWorkflowClaim) and adds its bytes to the run's state
 * size and step count. Returns the run's state size after the write.
 */
export async function writeWorkflowStep(db: Queryable, runId: string, s: StepWrite): Promise<number> {
  const { rows } = await db.query<{ state_bytes: string }>(
    `WITH up AS (
       INSERT INTO spindle.workflow_steps AS st
              (run_id, seq, name, kind, state, result, error, job_id, until, has_compensation, started_at, finished_at)
       VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9, $10, least(coalesce($11::timestamptz, now()), now()),
               CASE WHEN $5 = 'waiting' THEN NULL ELSE now() END)
       ON CONFLICT (run_id, seq) DO UPDATE
         SET state = EXCLUDED.state, result = EXCLUDED.result, error = EXCLUDED.error,
             job_id = coalesce(EXCLUDED.job_id, st.job_id), until = coalesce(EXCLUDED.until, st.until),
             has_compensation = EXCLUDED.has_compensation, finished_at = EXCLUDED.finished_at
       RETURNING (xmax = 0) AS inserted
     )
     UPDATE spindle.workflow_runs r
        SET step_count = r.step_count + (SELECT count(*) FROM up WHERE inserted),
            state_bytes = r.state_bytes + coalesce(octet_length($6::text), 0) + coalesce(octet_length($7::text), 0),
            updated_at = now()
      WHERE r.id = $1
      RETURNING r.state_bytes`,
    [
      runId,
      s.seq,
      s.name,
      s.kind,
      s.state,
      s.resultJson,
      s.errorJson,
      s.jobId ?? null,
      s.until ?? null,
      s.hasCompensation ?? false,
      s.startedAt ?? null,
    ],
  );
  return Number(rows[0]?.state_bytes ?? 0);
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
  const { rowCount } = await db.query(
    `UPDATE spindle.workflow_runs r
        SET state = $4, waiting_job = $6, waiting_event = $7, claimed_by = NULL, lease_expires_at = NULL,
            updated_at = now(),
            wake_at = CASE
              WHEN $6::bigint IS NOT NULL AND EXISTS (SELECT 1 FROM spindle.jobs j WHERE j.id = $6 AND j.state IN ${FINAL_JOB_STATES}) THEN now()
              WHEN $7::text IS NOT NULL AND EXISTS (SELECT 1 FROM spindle.workflow_events e
                    WHERE e.run_id = r.id AND e.name = $7 AND e.consumed_at IS NULL) THEN now()
              WHEN r.cancel_requested_at IS NOT NULL THEN now()
              ELSE $5::timestamptz END
      WHERE id = $1 AND claimed_by = $2 AND claim_seq = $3`,
    [claim.runId, claim.workerId, claim.claimSeq, wait.state, wait.wakeAt, wait.jobId ?? null, wait.event ?? null],
  );
  return rowCount === 1;
}

/** Gives up a claim without changing the run, to be resumed again at `wakeAt` (after an infrastructure error). */
export async function releaseWorkflowRun(db: Queryable, claim: WorkflowClaim, retryInMs: number): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE spindle.workflow_runs
        SET claimed_by = NULL, lease_expires_at = NULL, wake_at = now() + $4 * interval '1 millisecond', updated_at = now()
      WHERE id = $1 AND claimed_by = $2 AND claim_seq = $3`,
    [claim.runId, claim.workerId, claim.claimSeq, retryInMs],
  );
  return rowCount === 1;
}

/** Ends a run (fenced): succeeded, failed, cancelled or compensation_failed. Notifies waiters. */
export async function finishWorkflowRun(
  db: Queryable,
  claim: WorkflowClaim,
  end: { state: string; outputJson: string | null; errorJson: string | null },
): Promise<boolean> {
  const { rows } = await db.query(
    `WITH done AS (
       UPDATE spindle.workflow_runs
          SET state = $4, output = $5::jsonb, error = $6::jsonb, finished_at = now(), updated_at = now(),
              claimed_by = NULL, lease_expires_at = NULL, wake_at = NULL, waiting_job = NULL, waiting_event = NULL
        WHERE id = $1 AND claimed_by = $2 AND claim_seq = $3
        RETURNING id
     )
     SELECT id, pg_notify('spindle_workflow_finished', id) FROM done`,
    [claim.runId, claim.workerId, claim.claimSeq, end.state, end.outputJson, end.errorJson],
  );
  return rows.length === 1;
}

/** Blocks a run (fenced) with the reason: no module of its version can resume it. */
export async function blockWorkflowRun(db: Queryable, claim: WorkflowClaim, reason: string): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE spindle.workflow_runs
        SET state = 'blocked', blocked_reason = $4, claimed_by = NULL, lease_expires_at = NULL, updated_at = now()
      WHERE id = $1 AND claimed_by = $2 AND claim_seq = $3`,
    [claim.runId, claim.workerId, claim.claimSeq, reason],
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

// ---- cron ---------------------------------------------------------------------------

/** The latest tick fired of each schedule. */
export async function lastCronTicks(db: Queryable, schedules: string[]): Promise<Map<string, Date>> {
  const { rows } = await db.query<{ schedule: string; tick_at: Date }>(
    `SELECT schedule, max(tick_at) AS tick_at FROM spindle.cron_ticks WHERE schedule = ANY($1::text[]) GROUP BY schedule`,
    [schedules],
  );
  return new Map(rows.map((r) => [r.schedule, r.tick_at]));
}

/**
 * Fires one tick of a job schedule: a cron_ticks row and the job (key `cron:<schedule>:<tick>`), in
 * one statement. A tick fired already (by this or any supervisor) inserts nothing; returns the job
 * id, or undefined then.
 */
export async function fireCronJob(
  db: Queryable,
  t: { schedule: string; tickAt: Date; type: string; inputJson: string },
): Promise<string | undefined> {
  const { rows } = await db.query<{ id: string }>(
    `WITH tick AS (
       INSERT INTO spindle.cron_ticks (schedule, tick_at) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING schedule, tick_at
     ), job AS (
       SELECT j.id FROM tick CROSS JOIN LATERAL spindle.enqueue_job($3, $4::jsonb,
         jsonb_build_object('key', 'cron:' || $1 || ':' || to_char($2::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))) AS j
     )
     SELECT id::text FROM job`,
    [t.schedule, t.tickAt, t.type, t.inputJson],
  );
  return rows[0]?.id;
}

/**
 * Fires one tick of a workflow schedule: a cron_ticks row and the run (id `cron:<name>:<tick>`), in
 * one statement; undefined when the tick was fired already.
 */
export async function fireCronWorkflow(
  db: Queryable,
  t: { schedule: string; tickAt: Date; name: string; runId: string; inputJson: string },
): Promise<string | undefined> {
  const { rows } = await db.query<{ id: string }>(
    `WITH tick AS (
       INSERT INTO spindle.cron_ticks (schedule, tick_at, run_id) VALUES ($1, $2, $4) ON CONFLICT DO NOTHING RETURNING run_id
     ), run AS (
       INSERT INTO spindle.workflow_runs (id, name, input, wake_at)
       SELECT run_id, $3, $5::jsonb, now() FROM tick
       ON CONFLICT (id) DO NOTHING
       RETURNING id
     )
     SELECT id, pg_notify('spindle_workflows', id) FROM run`,
    [t.schedule, t.tickAt, t.name, t.runId, t.inputJson],
  );
  return rows[0]?.id;
}
