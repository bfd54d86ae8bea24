/** An attempt's outcome written, fenced by its attempt number; a cancelled job's compensation. */
import type { JobState } from '../job.ts';
import type { HasLog } from '../logger.ts';
import { lockHeldInOrder } from './locking.ts';
import type { Queryable } from './queryable.ts';

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
  /** A job of a flow-control limit: its end frees a slot, so the supervisors of its queue are woken. */
  wakes?: boolean;
  /** Whose log lines a problem with the write goes to (the job's, with its type and trace); not written. */
  about?: HasLog;
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
      (f.wakes ? ',"wakes":true' : '') +
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

/** The outcome statement (see finishJobs): $1 supervisor, $2 the finishes as one JSON array. */
export const FINISH_SQL = `WITH d AS (
       SELECT * FROM jsonb_to_recordset($2::jsonb)
         AS d(id bigint, attempt int, outcome text, next_state text, output jsonb, error jsonb, delay_ms bigint, logs text, progress jsonb, wakes boolean)
     ), locked AS MATERIALIZED (
       ${lockHeldInOrder('d')}
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
        -- The fence again (see LEASE_SQL in leases.ts).
        WHERE j.id = d.id AND j.attempt = d.attempt AND j.worker_id = $1 AND j.state = 'running'
        RETURNING j.id, j.attempt, j.started_at, j.queue, j.state, d.outcome, d.error, d.logs, d.delay_ms, d.next_state, j.cancel_reason, d.wakes
     ), recorded AS (
       INSERT INTO spindle.attempt_log (job_id, attempt, worker_id, outcome, error, logs, started_at)
       SELECT id, attempt, $1, outcome, error, logs, started_at FROM done WHERE outcome <> 'succeeded'
     ), woken AS (
       SELECT pg_notify('spindle_jobs', queue) FROM (SELECT DISTINCT queue FROM done WHERE (state = 'queued' AND delay_ms = 0) OR wakes) q
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
            (SELECT count(*) FROM woken) w, (SELECT count(*) FROM told) t`;

/**
 * Records many finished attempts in one statement, fenced on (id, attempt, worker, running):
 * a row whose claim was lost matches nothing and is left alone.
 * A succeeded attempt gets no attempt_log row: the job row is its record (see the attempts view).
 */
export async function finishJobs(db: Queryable, supervisorId: string, finishes: Finish[]): Promise<FinishedJobs> {
  const { rows } = await db.query<FinishedJobs>({
    name: 'spindle.finish',
    text: FINISH_SQL,
    values: [supervisorId, finishesJson(finishes)],
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
  supervisorId: string,
  finishes: Pick<Finish, 'id' | 'attempt' | 'outcome'>[],
): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    `SELECT a.job_id::text AS id
       FROM spindle.attempts a
       JOIN unnest($2::bigint[], $3::int[], $4::text[]) AS f(id, attempt, outcome)
         ON a.job_id = f.id AND a.attempt = f.attempt AND a.outcome = f.outcome
      WHERE a.worker_id = $1`,
    [supervisorId, finishes.map((f) => f.id), finishes.map((f) => f.attempt), finishes.map((f) => f.outcome)],
  );
  return rows.map((r) => r.id);
}

/** Records what a module's compensate() did after a cancel, fenced on the cancelled attempt. */
export async function recordCompensation(
  db: Queryable,
  supervisorId: string,
  c: { id: string; attempt: number; compensation: unknown },
): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE spindle.jobs SET compensation = $4
      WHERE id = $1 AND attempt = $2 AND worker_id = $3 AND state = 'cancelled'`,
    [c.id, c.attempt, supervisorId, JSON.stringify(c.compensation)],
  );
  return rowCount === 1;
}
