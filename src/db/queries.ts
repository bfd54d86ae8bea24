/**
 * Every SQL statement of the runtime, one named function each. Nothing outside src/db/ writes SQL.
 */
import type pg from 'pg';
import type { AttemptRow, JobRow, JobState } from '../job.ts';

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

export async function enqueueJob(db: Queryable, type: string, inputJson: string, options: object): Promise<JobRow> {
  const { rows } = await db.query<JobRow>('SELECT * FROM spindle.enqueue_job($1, $2::jsonb, $3::jsonb)', [
    type,
    inputJson,
    JSON.stringify(options),
  ]);
  return rows[0]!;
}

/** Enqueues many jobs in one statement; rows come back in the order given. */
export async function enqueueJobs(
  db: Queryable,
  specs: { type: string; inputJson: string; options: object }[],
): Promise<JobRow[]> {
  const { rows } = await db.query<JobRow>(
    `SELECT j.*
       FROM unnest($1::text[], $2::jsonb[], $3::jsonb[]) WITH ORDINALITY AS s(type, input, opts, n)
      CROSS JOIN LATERAL spindle.enqueue_job(s.type, s.input, s.opts) AS j
      ORDER BY s.n`,
    [specs.map((s) => s.type), specs.map((s) => s.inputJson), specs.map((s) => JSON.stringify(s.options))],
  );
  return rows;
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
