/** The one lock order of statements that lock several job rows (see lockHeldInOrder). */

// Lock order: a statement that may wait for several job rows locks them first, in id order, in a
// CTE of its own, then updates them. Two such statements then never wait for each other in a
// circle, as the heartbeat and finishJobs did when each locked rows in the order its join produced
// them. Statements that claim or reap skip locked rows and never wait.
//
// The pairs are sorted, then each row is looked up and locked on its own (jobs_running_idx is
// (worker_id, id)): linear in the rows held whatever the planner estimates. A join of the pairs with
// the jobs table, ordered by id, was not: on the claim connections (sorts off) and with statistics
// that had not seen the running rows yet, it became a nested loop of every held row against every
// pair, 1.3 s of the server's CPU for a beat of a supervisor holding 2,000 prefetched jobs.

/**
 * The ids of the rows of `pairs` (a row source with columns id bigint and attempt int) that worker
 * $1 holds, locked in id order; `extra` names more columns of `pairs` to carry along.
 */
export function lockHeldInOrder(pairs: string, extra: string[] = []): string {
  const carried = extra.map((c) => `, h.${c}`).join('');
  return `SELECT l.id${carried} FROM (SELECT * FROM ${pairs} ORDER BY id) h
         CROSS JOIN LATERAL (
           SELECT j.id FROM spindle.jobs j
            WHERE j.id = h.id AND j.attempt = h.attempt AND j.worker_id = $1 AND j.state = 'running'
              FOR UPDATE OF j) l`;
}

/** The rows of (id, attempt) pairs $2, $3 that worker $1 holds, locked in id order. */
export const LOCK_HELD_IN_ORDER = lockHeldInOrder('unnest($2::bigint[], $3::int[]) AS p(id, attempt)');
