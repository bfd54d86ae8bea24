/** Progress reports of running jobs, written in batches, fenced like outcomes. */
import { lockHeldInOrder } from './locking.ts';
import type { HasLog } from '../logger.ts';
import type { Queryable } from './queryable.ts';

/** The latest progress of one running attempt. */
export interface ProgressUpdate {
  id: string;
  attempt: number;
  percent: number;
  message: string | null;
  data: unknown;
  logs: string | null;
  /** Whose log lines a problem with the write goes to (the job's, with its type and trace); not written. */
  about?: HasLog;
}

const PROGRESS_PAIRS = `unnest($2::bigint[], $3::int[], $4::real[], $5::text[], $6::jsonb[], $7::text[])
  AS u(id, attempt, percent, message, data, logs)`;

/**
 * Writes the latest progress of many jobs in one statement, fenced on (id, attempt, worker, running),
 * and tells watchers with one NOTIFY per 300 jobs. Returns how many rows were written.
 */
export async function writeProgress(db: Queryable, supervisorId: string, updates: ProgressUpdate[]): Promise<number> {
  const { rows } = await db.query<{ n: number }>({
    name: 'spindle.progress',
    text: `WITH locked AS MATERIALIZED (
       ${lockHeldInOrder(PROGRESS_PAIRS, ['percent', 'message', 'data', 'logs'])}
     ), written AS (
       -- The fence again (see LEASE_SQL in leases.ts).
       UPDATE spindle.jobs j
          SET progress = locked.percent, progress_message = locked.message, progress_data = locked.data,
              logs = coalesce(locked.logs, j.logs)
         FROM locked
        WHERE j.id = locked.id AND j.worker_id = $1 AND j.state = 'running'
        RETURNING j.id
     ), told AS (
       SELECT pg_notify('spindle_progress', string_agg(id::text, ','))
         FROM (SELECT id, row_number() OVER () / 300 AS g FROM written) w
        GROUP BY g
     )
     SELECT (SELECT count(*) FROM written)::int AS n, (SELECT count(*) FROM told) AS t`,
    values: [
      supervisorId,
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
