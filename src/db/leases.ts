/** The leases a supervisor holds: extended by the heartbeat; the cancels asked of its jobs. */
import { LOCK_HELD_IN_ORDER } from './locking.ts';
import type { Queryable } from './queryable.ts';

/** A job this supervisor still holds, as the heartbeat returns it. */
export interface HeldJob {
  id: string;
  attempt: number;
  cancel_requested: boolean;
  cancel_reason: string | null;
}

/** The heartbeat's statement (see extendLeases): $1 supervisor, $2 ids, $3 attempts, $4 lease ms. */
export const LEASE_SQL = `WITH locked AS MATERIALIZED (
       ${LOCK_HELD_IN_ORDER}
     )
     -- The fence again (it held when each row was locked): with it the planner finds this worker's
     -- rows by jobs_running_idx; by id alone it would read the whole table when it guesses that cheaper.
     UPDATE spindle.jobs j
        SET lease_expires_at = now() + $4 * interval '1 millisecond'
       FROM locked
      WHERE j.id = locked.id AND j.worker_id = $1 AND j.state = 'running'
      RETURNING j.id::text, j.attempt, j.cancel_requested_at IS NOT NULL AS cancel_requested, j.cancel_reason`;

/**
 * Extends the lease of every job this supervisor holds (fenced on attempt). Returns the jobs still
 * held, with any cancel request; one missing has been taken away.
 */
export async function extendLeases(
  db: Queryable,
  lease: { supervisorId: string; leaseMs: number; ids: string[]; attempts: number[] },
): Promise<HeldJob[]> {
  const { rows } = await db.query<HeldJob>({
    name: 'spindle.lease',
    text: LEASE_SQL,
    values: [lease.supervisorId, lease.ids, lease.attempts, lease.leaseMs],
  });
  return rows;
}

/** Running jobs of this supervisor with a cancel requested, for a sweep after a missed NOTIFY. */
export async function cancelRequests(db: Queryable, supervisorId: string): Promise<HeldJob[]> {
  const { rows } = await db.query<HeldJob>(
    `SELECT id::text, attempt, true AS cancel_requested, cancel_reason FROM spindle.jobs
      WHERE worker_id = $1 AND state = 'running' AND cancel_requested_at IS NOT NULL`,
    [supervisorId],
  );
  return rows;
}
