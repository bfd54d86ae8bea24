/** Cron: the ticks fired, each at most once. */
import type { Queryable } from './queryable.ts';

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

/**
 * Deletes up to `limit` ticks fired more than `olderThanMs` ago, keeping each schedule's newest (the
 * next tick counts from it); returns how many.
 */
export async function deleteOldCronTicks(db: Queryable, olderThanMs: number, limit: number): Promise<number> {
  const { rowCount } = await db.query(
    `DELETE FROM spindle.cron_ticks t
      WHERE (t.schedule, t.tick_at) IN (
              SELECT o.schedule, o.tick_at FROM spindle.cron_ticks o
               WHERE o.created_at < now() - $1 * interval '1 millisecond'
                 AND o.tick_at < (SELECT max(n.tick_at) FROM spindle.cron_ticks n WHERE n.schedule = o.schedule)
               LIMIT $2)`,
    [olderThanMs, limit],
  );
  return rowCount ?? 0;
}
