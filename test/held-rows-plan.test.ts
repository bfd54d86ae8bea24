/**
 * The statements that lock the rows a supervisor holds (the heartbeat's lease, its outcomes) stay
 * linear in the rows held: 2,000 running jobs (a supervisor's prefetch of short jobs) in a table the
 * planner has no statistics for, on a claim connection (sorts off), where a join of the held pairs
 * with the table became a nested loop of every row against every pair (1.3 s of the server's CPU
 * for one beat). Counted in rows each plan node threw away, not in time.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLAIM_CONNECTION_OPTIONS } from '../src/db/claims.ts';
import { LEASE_SQL } from '../src/db/leases.ts';
import { FINISH_SQL } from '../src/db/outcomes.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';

const HELD = 2_000;

interface PlanNode {
  'Node Type': string;
  'Actual Loops'?: number;
  'Rows Removed by Filter'?: number;
  'Rows Removed by Join Filter'?: number;
  Plans?: PlanNode[];
}

/** Rows every node of the plan read and threw away, over all its loops. */
function rowsThrownAway(node: PlanNode): number {
  const loops = node['Actual Loops'] ?? 1;
  const own = ((node['Rows Removed by Filter'] ?? 0) + (node['Rows Removed by Join Filter'] ?? 0)) * loops;
  return own + (node.Plans ?? []).reduce((sum, child) => sum + rowsThrownAway(child), 0);
}

let db: TestDatabase;
let claimer: pg.Client;
let held: { ids: string[]; attempts: number[] };

beforeAll(async () => {
  db = await createTestDatabase();
  // No statistics: autovacuum must not analyze the table while the test runs.
  await db.pool.query('ALTER TABLE spindle.jobs SET (autovacuum_enabled = false)');
  await db.pool.query(
    `INSERT INTO spindle.jobs (type, input, state, worker_id, attempt, started_at, lease_expires_at)
     SELECT 'held', 'null', 'running', 'w1', 1, now(), now() + interval '1 minute' FROM generate_series(1, $1)`,
    [HELD],
  );
  await db.pool.query(`INSERT INTO spindle.jobs (type, input) SELECT 'queued', 'null' FROM generate_series(1, 20000)`);
  const { rows } = await db.pool.query<{ id: string; attempt: number }>(`SELECT id::text, attempt FROM spindle.jobs WHERE worker_id = 'w1'`);
  held = { ids: rows.map((r) => r.id), attempts: rows.map((r) => r.attempt) };
  claimer = new pg.Client({ connectionString: db.url, options: CLAIM_CONNECTION_OPTIONS });
  await claimer.connect();
});

afterAll(async () => {
  await claimer?.end();
  await db?.drop();
});

async function explain(sql: string, values: unknown[]): Promise<PlanNode> {
  await claimer.query('BEGIN');
  try {
    const { rows } = await claimer.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(`EXPLAIN (ANALYZE, FORMAT JSON) ${sql}`, values);
    return rows[0]!['QUERY PLAN'][0].Plan;
  } finally {
    await claimer.query('ROLLBACK');
  }
}

describe('statements on the rows a supervisor holds', () => {
  it("the heartbeat's lease of 2,000 held jobs reads each about once", async () => {
    const plan = await explain(LEASE_SQL, ['w1', held.ids, held.attempts, 30_000]);
    expect(rowsThrownAway(plan)).toBeLessThan(4 * HELD);
  });

  it('the outcomes of 2,000 held jobs are written reading each about once', async () => {
    const finishes = held.ids.map((id, i) => ({
      id,
      attempt: held.attempts[i],
      outcome: 'succeeded',
      next_state: 'succeeded',
      output: null,
      error: null,
      delay_ms: 0,
      logs: null,
    }));
    const plan = await explain(FINISH_SQL, ['w1', JSON.stringify(finishes)]);
    expect(rowsThrownAway(plan)).toBeLessThan(4 * HELD);
  });
});
