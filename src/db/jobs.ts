/** Jobs as the Client sees them: enqueue, read, list, cancel, retry, and counts by queue and state. */
import type { AttemptRow, JobRow, JobState } from '../job.ts';
import type { CheckedEnqueueOptions } from '../validate.ts';
import type { Queryable } from './queryable.ts';

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
 * order of their keys (dedupe, then throttle, then debounce keys; a spec has one at most): two calls
 * whose keys overlap then wait for each other's keys in one order, not in a circle.
 */
export async function enqueueJobs(db: Queryable, specs: CheckedJobSpec[]): Promise<JobRow[]> {
  const { rows } = await db.query<JobRow>(
    `SELECT j.*
       FROM (SELECT * FROM unnest($1::text[], $2::jsonb[], $3::jsonb[]) WITH ORDINALITY AS s(type, input, opts, n)
              ORDER BY s.opts ->> 'key', s.opts -> 'throttle' ->> 'key', s.opts -> 'debounce' ->> 'key', s.n) s
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
 * 1.8 s. (A job with a key, a throttle or a debounce needs enqueue_job's answer, row by row.)
 */
export async function insertJobs(db: Queryable, specs: CheckedJobSpec[]): Promise<JobRow[]> {
  const { rows } = await db.query<JobRow>(
    `WITH ins AS (
       INSERT INTO spindle.jobs (type, queue, priority, input, max_attempts, timeout_ms, concurrency_key, trace_context, run_at)
       -- jsonb_to_recordset reads an input of JSON null as SQL NULL: it is stored as JSON null, as enqueue does.
       SELECT type, coalesce(queue, 'default'), coalesce(priority, 0), coalesce(input, 'null'), max_attempts, timeout_ms, concurrency_key, trace_context,
              coalesce(run_at, now() + delay_ms * interval '1 millisecond', now())
         FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS (type text, input jsonb, queue text, priority int,
                max_attempts int, timeout_ms int, concurrency_key text, trace_context text, run_at timestamptz, delay_ms bigint))
              WITH ORDINALITY AS s(type, input, queue, priority, max_attempts, timeout_ms, concurrency_key, trace_context, run_at, delay_ms, n)
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
    if (o.concurrencyKey !== undefined) json += `,"concurrency_key":${JSON.stringify(o.concurrencyKey)}`;
    if (o.traceparent !== undefined) json += `,"trace_context":"${o.traceparent}"`;
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
