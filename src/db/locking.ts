/** The one lock order of statements that lock several job rows (see LOCK_HELD_IN_ORDER). */

// Lock order: a statement that may wait for several job rows locks them first, in id order, in a
// CTE of its own (ORDER BY id FOR UPDATE), then updates them. Two such statements then never wait
// for each other in a circle, as the heartbeat and finishJobs did when each locked rows in the order
// its join produced them. Statements that claim or reap skip locked rows and never wait.

/** The rows of (id, attempt) pairs $2, $3 that worker $1 holds, locked in id order. */
export const LOCK_HELD_IN_ORDER = `SELECT j.id FROM spindle.jobs j JOIN unnest($2::bigint[], $3::int[]) AS h(id, attempt)
           ON j.id = h.id AND j.attempt = h.attempt
        WHERE j.worker_id = $1 AND j.state = 'running'
        ORDER BY j.id
        FOR UPDATE OF j`;
