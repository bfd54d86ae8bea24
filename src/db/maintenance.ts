/** The leader's sweeps: dead supervisors, expired leases, unknown types, retention. */
import type { BackoffOptions } from '../backoff.ts';
import type { JobState } from '../job.ts';
import { backoffMsSql } from './backoff-sql.ts';
import type { Queryable } from './queryable.ts';

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

/**
 * Deletes up to `limit` jobs in `state` that finished more than `olderThanMs` ago, oldest first; a
 * job whose throttle window is open is kept, since enqueues of its key return it until the window ends.
 */
export async function deleteFinishedJobs(
  db: Queryable,
  state: JobState,
  olderThanMs: number,
  limit: number,
): Promise<number> {
  // The outer conditions are checked again on the row deleted: a job retried meanwhile is kept. A
  // window never comes to hold a job that has finished, so the window is looked for once.
  const { rowCount } = await db.query(
    `DELETE FROM spindle.jobs
      WHERE id IN (
              SELECT id FROM spindle.jobs j
               WHERE state = $1 AND finished_at < now() - $2 * interval '1 millisecond'
                 AND NOT EXISTS (SELECT 1 FROM spindle.throttle_windows w WHERE w.job_id = j.id AND w.ends_at > now())
               ORDER BY finished_at
               LIMIT $3
               FOR UPDATE SKIP LOCKED)
        AND state = $1 AND finished_at < now() - $2 * interval '1 millisecond'`,
    [state, olderThanMs, limit],
  );
  return rowCount ?? 0;
}

/**
 * Deletes up to `limit` throttle windows that have ended, oldest first. An ended window and a missing
 * one mean the same to an enqueue (the next one opens a window), so this is safe at any time; one
 * being reopened is locked, and skipped.
 */
export async function deleteEndedThrottleWindows(db: Queryable, limit: number): Promise<number> {
  const { rowCount } = await db.query(
    `DELETE FROM spindle.throttle_windows
      WHERE key IN (
              SELECT key FROM spindle.throttle_windows
               WHERE ends_at <= now()
               ORDER BY ends_at
               LIMIT $1
               FOR UPDATE SKIP LOCKED)
        AND ends_at <= now()`,
    [limit],
  );
  return rowCount ?? 0;
}
