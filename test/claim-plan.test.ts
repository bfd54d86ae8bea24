/**
 * The claim walks jobs_claim_idx in order and stops after its batch, even before the table has
 * statistics: a burst of enqueues into a new table (autovacuum not round yet) must not turn every
 * claim into a read and sort of the whole queue.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLAIM_CONNECTION_OPTIONS, CLAIM_SQL } from '../src/db/claims.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';

const QUEUED = 50_000;
const PARAMS = [['resize'], [], 100, 'planner-test', 30_000, [3]];

interface PlanNode {
  'Node Type': string;
  'Index Name'?: string;
  'Subplan Name'?: string;
  Plans?: PlanNode[];
}

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
  // No statistics, and none gathered while the test runs: the state right after a burst.
  await db.pool.query('ALTER TABLE spindle.jobs SET (autovacuum_enabled = false)');
  await db.pool.query(
    `INSERT INTO spindle.jobs (type, input, priority) SELECT 'resize', '{}', i % 3 FROM generate_series(1, $1) AS i`,
    [QUEUED],
  );
});

afterAll(async () => {
  await db?.drop();
});

/**
 * How the claim picks its jobs (the `picked` CTE: the read of the queue) on a connection opened with
 * `options`, as a flat list of nodes. Only that part: PostgreSQL 16+ sorts the claimed batch for the
 * ordered json_agg, which costs nothing that grows with the queue. `generic`: the plan a prepared
 * statement settles on after its first executions (claimJobs prepares the claim).
 */
async function claimPlan(options: string | undefined, generic = false): Promise<PlanNode[]> {
  const client = new pg.Client({ connectionString: db.url, options });
  await client.connect();
  try {
    let explain = `EXPLAIN (FORMAT JSON) ${CLAIM_SQL}`;
    let params: unknown[] = PARAMS;
    if (generic) {
      await client.query('SET plan_cache_mode = force_generic_plan');
      await client.query(`PREPARE claim_under_test AS ${CLAIM_SQL}`);
      explain = `EXPLAIN (FORMAT JSON) EXECUTE claim_under_test('{resize}', '{}', 100, 'planner-test', 30000, '{3}')`;
      params = [];
    }
    const { rows } = await client.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(explain, params);
    const all: PlanNode[] = [];
    const walk = (node: PlanNode, into: PlanNode[]) => {
      into.push(node);
      for (const child of node.Plans ?? []) walk(child, into);
    };
    walk(rows[0]!['QUERY PLAN'][0].Plan, all);
    const picked = all.find((node) => node['Subplan Name'] === 'CTE picked');
    if (picked === undefined) throw new Error(`no CTE picked in the plan: ${JSON.stringify(rows[0])}`);
    const nodes: PlanNode[] = [];
    walk(picked, nodes);
    return nodes;
  } finally {
    await client.end();
  }
}

describe('the claim plan', () => {
  it('walks the claim index in order, with no sort, on the claim connections', async () => {
    const nodes = await claimPlan(CLAIM_CONNECTION_OPTIONS);
    expect(nodes).toContainEqual(expect.objectContaining({ 'Node Type': 'Index Scan', 'Index Name': 'jobs_claim_idx' }));
    expect(nodes.map((n) => n['Node Type'])).not.toContain('Sort');
  });

  it('keeps to the claim index in the generic plan of the prepared claim', async () => {
    const nodes = await claimPlan(CLAIM_CONNECTION_OPTIONS, true);
    expect(nodes).toContainEqual(expect.objectContaining({ 'Node Type': 'Index Scan', 'Index Name': 'jobs_claim_idx' }));
    expect(nodes.map((n) => n['Node Type'])).not.toContain('Sort');
  });

  it('would read and sort the queue with default settings (what the options are for)', async () => {
    const nodes = await claimPlan(undefined);
    expect(nodes.map((n) => n['Node Type'])).toContain('Sort');
  });
});
