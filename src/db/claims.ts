/** Claiming jobs (SKIP LOCKED, in batches) and giving back the ones a supervisor cannot run. */
import type pg from 'pg';
import { LOCK_HELD_IN_ORDER } from './locking.ts';
import { withSettingsPerStatement } from './pooler.ts';
import type { Queryable } from './queryable.ts';

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
  queue: string;
  input: unknown;
  attempt: number;
  max_attempts: number;
  timeout_ms: number | null;
  /** From run_at to the claim, by the database's clock. */
  wait_ms: number;
  /** The W3C traceparent of the job's enqueue, when it was traced (tracing.ts). */
  trace_context: string | null;
}

/**
 * Settings of the connections that claim (and extend leases and write progress). No sorts and no
 * bitmap scans: with statistics that lag a burst of enqueues (a new table, autovacuum not round yet)
 * the planner would read every queued job and sort them (100 ms a claim at 200k queued) instead of
 * walking jobs_claim_idx in order and stopping after the batch. Everything else sent on these
 * connections finds rows by primary key or by holder, so loses nothing by it. No JIT: a sort the
 * planner must still make (of one batch) is costed so high with sorts off that it would compile
 * the statement, 0.4 s, for a millisecond's work. Commits are synchronous,
 * as everywhere: a claim is durable before its handler starts, so a server crash can never hand out
 * the same attempt number twice.
 */
const CLAIM_SETTINGS = { enable_sort: 'off', enable_bitmapscan: 'off', jit: 'off' } as const;

/** CLAIM_SETTINGS as a connection's startup options, held for the session's life. */
export const CLAIM_CONNECTION_OPTIONS = Object.entries(CLAIM_SETTINGS).map(([name, value]) => `-c ${name}=${value}`).join(' ');

/**
 * CLAIM_SETTINGS for the statement's own (implicit) transaction: through a transaction pooler a
 * session's settings would stay behind on a server session that others share (and PgBouncer refuses
 * startup options), so each claim sets them for itself, in the same round trip (db/pooler.ts).
 */
const CLAIM_SETTINGS_LOCAL = Object.entries(CLAIM_SETTINGS).map(([name, value]) => `SET LOCAL ${name} = ${value}`).join('; ');

/**
 * Where claims run with CLAIM_SETTINGS in force: the pool itself when its sessions carry them
 * (CLAIM_CONNECTION_OPTIONS), else the pool with the settings sent by each claim.
 */
export function claimQueryable(pool: pg.Pool, settingsPerStatement: boolean): Queryable {
  return settingsPerStatement ? withSettingsPerStatement(pool, CLAIM_SETTINGS_LOCAL) : pool;
}

/** Jobs of a limited or paused type or queue are claimed only by spindle.claim_limited (db/limits.ts). */
const HELD = `held AS MATERIALIZED (
    SELECT coalesce(array_agg(name) FILTER (WHERE kind = 'type'), '{}') AS types,
           coalesce(array_agg(name) FILTER (WHERE kind = 'queue'), '{}') AS queues
      FROM spindle.flow_limits WHERE active
  )`;

/** The claimed rows leased, and returned as one JSON array (one JSON.parse, not pg's parser per column). */
const LEASE_PICKED = `claimed AS (
    UPDATE spindle.jobs j
       SET state = 'running', attempt = j.attempt + 1, worker_id = $4, started_at = now(),
           lease_expires_at = now() + $5 * interval '1 millisecond',
           max_attempts = coalesce(j.max_attempts,
             (SELECT d.max_attempts FROM unnest($1::text[], $6::int[]) AS d(type, max_attempts) WHERE d.type = j.type), 3),
           progress = NULL, progress_message = NULL, progress_data = NULL
      FROM picked
     WHERE j.id = picked.id
     RETURNING j.id, j.type, j.queue, j.input, j.attempt, j.max_attempts, j.timeout_ms, j.priority, j.run_at, j.trace_context,
               greatest(0, extract(epoch FROM now() - j.run_at) * 1000)::float8 AS wait_ms
  )
  SELECT coalesce(json_agg(json_build_object(
           'id', id::text, 'type', type, 'queue', queue, 'input', input, 'attempt', attempt, 'max_attempts', max_attempts,
           'timeout_ms', timeout_ms, 'wait_ms', wait_ms, 'trace_context', trace_context)
         ORDER BY priority DESC, run_at, id), '[]') AS jobs
    FROM claimed`;

/** The claim (see claimJobs): one walk of jobs_claim_idx in claim order, stopping after the batch. */
export const CLAIM_SQL = `WITH ${HELD}, picked AS (
    SELECT id FROM spindle.jobs, held
     WHERE state = 'queued' AND run_at <= now()
       AND type = ANY($1::text[]) AND type <> ALL(held.types)
       AND (cardinality($2::text[]) = 0 OR queue = ANY($2::text[])) AND queue <> ALL(held.queues)
     ORDER BY priority DESC, run_at, id
     LIMIT $3
     FOR UPDATE OF jobs SKIP LOCKED
  ), ${LEASE_PICKED}`;

/**
 * The claim type by type, each walking jobs_queued_type_idx, then the best of them: used while some
 * scope is limited or paused, whose backlog may sit at the head of jobs_claim_idx, where one walk
 * would read past every row of it (a third of a second behind 1M) before reaching a job it may take.
 */
export const CLAIM_BY_TYPE_SQL = `WITH ${HELD}, candidates AS (
    SELECT c.id, c.priority, c.run_at
      FROM held, unnest($1::text[]) AS t(type)
     CROSS JOIN LATERAL (
       SELECT j.id, j.priority, j.run_at FROM spindle.jobs j
        WHERE j.state = 'queued' AND j.type = t.type AND j.run_at <= now()
          AND (cardinality($2::text[]) = 0 OR j.queue = ANY($2::text[])) AND j.queue <> ALL(held.queues)
        ORDER BY j.priority DESC, j.run_at, j.id
        LIMIT $3) c
     WHERE t.type <> ALL(held.types)
  ), picked AS (
    -- Locked only now, and only those taken: state and run_at are checked again on the locked row
    -- (a debounced enqueue may have pushed it later since the snapshot).
    SELECT id FROM spindle.jobs
     WHERE id IN (SELECT id FROM candidates ORDER BY priority DESC, run_at, id LIMIT $3) AND state = 'queued' AND run_at <= now()
     FOR UPDATE SKIP LOCKED
  ), ${LEASE_PICKED}`;


/**
 * Claims up to `limit` runnable jobs of the given types, highest priority first, and leases them.
 * SKIP LOCKED lets many supervisors claim at once without waiting on each other. `byType`: walk
 * each type's jobs apart (CLAIM_BY_TYPE_SQL), while some scope is limited or paused.
 */
export async function claimJobs(
  db: Queryable,
  claim: { supervisorId: string; queues: string[]; types: ClaimType[]; limit: number; leaseMs: number; byType?: boolean },
): Promise<ClaimedJob[]> {
  const { rows } = await db.query<{ jobs: ClaimedJob[] }>({
    name: claim.byType ? 'spindle.claim_by_type' : 'spindle.claim',
    text: claim.byType ? CLAIM_BY_TYPE_SQL : CLAIM_SQL,
    values: [
      claim.types.map((t) => t.type),
      claim.queues,
      claim.limit,
      claim.supervisorId,
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
export async function releaseJobs(db: Queryable, supervisorId: string, jobs: { id: string; attempt: number }[]): Promise<number> {
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
    [supervisorId, jobs.map((j) => j.id), jobs.map((j) => j.attempt)],
  );
  return rows[0]!.n;
}
