/**
 * The statements that lock the rows a supervisor holds (the heartbeat's lease, its outcomes) stay
 * linear in the rows held and never read the whole table: 2,000 running jobs (a supervisor's
 * prefetch of short jobs) among 20,000 others, in a table the planner has no statistics for, on a
 * claim connection (sorts off), with the plan made for these values and with the generic plan a
 * prepared statement may switch to. A join of the held pairs with the table became a nested loop of
 * every row against every pair (1.3 s of the server's CPU for one beat); a fence left out of the
 * outcome's update made it scan the table for a batch of one. Counted in rows, not in time.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLAIM_CONNECTION_OPTIONS } from '../src/db/claims.ts';
import { LEASE_SQL } from '../src/db/leases.ts';
import { FINISH_SQL } from '../src/db/outcomes.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';

const HELD = 2_000;
const OTHERS = 20_000;

interface PlanNode {
  'Node Type': string;
  'Actual Rows'?: number;
  'Actual Loops'?: number;
  'Rows Removed by Filter'?: number;
  'Rows Removed by Join Filter'?: number;
  Plans?: PlanNode[];
}

/** Rows the plan read for nothing, over all loops: thrown away by filters, or read by a scan of the whole table. */
function rowsWasted(node: PlanNode): number {
  const loops = node['Actual Loops'] ?? 1;
  const scanned = node['Node Type'] === 'Seq Scan' ? (node['Actual Rows'] ?? 0) : 0;
  const own = ((node['Rows Removed by Filter'] ?? 0) + (node['Rows Removed by Join Filter'] ?? 0) + scanned) * loops;
  return own + (node.Plans ?? []).reduce((sum, child) => sum + rowsWasted(child), 0);
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
  await db.pool.query(`INSERT INTO spindle.jobs (type, input) SELECT 'queued', 'null' FROM generate_series(1, $1)`, [OTHERS]);
  const { rows } = await db.pool.query<{ id: string; attempt: number }>(`SELECT id::text, attempt FROM spindle.jobs WHERE worker_id = 'w1' ORDER BY id`);
  held = { ids: rows.map((r) => r.id), attempts: rows.map((r) => r.attempt) };
  claimer = new pg.Client({ connectionString: db.url, options: CLAIM_CONNECTION_OPTIONS });
  await claimer.connect();
});

afterAll(async () => {
  await claimer?.end();
  await db?.drop();
});

const PLANS = ['custom', 'generic'] as const;

/** The plan of `sql` run with `values` (rolled back), as planned for them or as a generic plan. */
async function explain(sql: string, types: string[], values: unknown[], plan: (typeof PLANS)[number]): Promise<PlanNode> {
  await claimer.query('BEGIN');
  try {
    await claimer.query(`SET LOCAL plan_cache_mode = ${plan === 'generic' ? 'force_generic_plan' : 'force_custom_plan'}`);
    await claimer.query(`PREPARE held_rows (${types.join(', ')}) AS ${sql}`);
    const literals = values.map((v) => pg.Client.prototype.escapeLiteral(typeof v === 'string' ? v : JSON.stringify(v).replace(/^\[/, '{').replace(/\]$/, '}')));
    const { rows } = await claimer.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(`EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE held_rows (${literals.join(', ')})`);
    return rows[0]!['QUERY PLAN'][0].Plan;
  } finally {
    await claimer.query('ROLLBACK');
    await claimer.query('DEALLOCATE ALL');
  }
}

const finishes = (count: number) =>
  JSON.stringify(
    held.ids.slice(0, count).map((id, i) => ({
      id: Number(id),
      attempt: held.attempts[i],
      outcome: 'succeeded',
      next_state: 'succeeded',
      output: null,
      error: null,
      delay_ms: 0,
      logs: null,
    })),
  );

describe.each(PLANS)('statements on the rows a supervisor holds (%s plan)', (plan) => {
  it("the heartbeat's lease of 2,000 held jobs reads each about once", async () => {
    const node = await explain(LEASE_SQL, ['text', 'bigint[]', 'int[]', 'int'], ['w1', held.ids, held.attempts, 30_000], plan);
    expect(rowsWasted(node)).toBeLessThan(4 * HELD);
  });

  it('the outcomes of 2,000 held jobs are written reading each about once', async () => {
    const node = await explain(FINISH_SQL, ['text', 'jsonb'], ['w1', finishes(HELD)], plan);
    expect(rowsWasted(node)).toBeLessThan(4 * HELD);
  });

  it('the outcome of one job does not read the table', async () => {
    const node = await explain(FINISH_SQL, ['text', 'jsonb'], ['w1', finishes(1)], plan);
    expect(rowsWasted(node)).toBeLessThan(4 * HELD);
  });
});
