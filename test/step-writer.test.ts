/**
 * The supervisor's StepWriter against PostgreSQL: the step writes of many runs made at once go in a
 * few statements, each fenced on its own run's claim; a run's writes land in the order made; a write
 * the database refuses fails only its run; a write whose claim was taken writes nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { claimWorkflowRuns, insertWorkflowRun, type StepWrite, type WorkflowClaim } from '../src/db/workflows.ts';
import type { Queryable } from '../src/db/queryable.ts';
import { StepWriter } from '../src/workflows/step-writer.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';

let db: TestDatabase;
let statements = 0;
/** The test database's pool, counting the statements sent through it. */
let counted: Queryable;

beforeAll(async () => {
  db = await createTestDatabase();
  const query = (config: { text: string; values?: unknown[] }) => {
    statements++;
    return db.pool.query(config);
  };
  counted = { query } as unknown as Queryable;
});

afterAll(async () => {
  await db?.drop();
});

/** Starts `n` runs of a fresh name and claims them for supervisor `sup`. */
async function claimedRuns(name: string, n: number, sup = 'sup-1'): Promise<WorkflowClaim[]> {
  for (let i = 0; i < n; i++) await insertWorkflowRun(db.pool, { id: `${name}-${i}`, name, inputJson: 'null' });
  const rows = await claimWorkflowRuns(db.pool, { supervisorId: sup, limit: n, leaseMs: 60_000, exclude: [], servable: [{ name, version: 'v1' }], any: false });
  expect(rows).toHaveLength(n);
  return rows.map((r) => ({ runId: r.id, supervisorId: sup, claimSeq: r.claim_seq })).sort((a, b) => (a.runId < b.runId ? -1 : 1));
}

function step(seq: number, result: unknown, state: StepWrite['state'] = 'succeeded'): StepWrite {
  return { seq, name: `s${seq}`, kind: 'step', state, resultJson: state === 'waiting' ? null : JSON.stringify(result), errorJson: null, doneSeq: seq };
}

describe('StepWriter', () => {
  it('writes the steps of 50 runs made at once in a few statements, each on its own run', async () => {
    const claims = await claimedRuns('many', 50);
    const writer = new StepWriter(counted);
    statements = 0;
    const written = await Promise.all(claims.map((claim) => writer.write({ claim, version: 'v1', step: step(1, { run: claim.runId }) })));
    expect(statements).toBeLessThanOrEqual(3);
    expect(written.every((w) => w !== undefined && !w.cancelRequested)).toBe(true);
    const { rows } = await db.pool.query(
      `SELECT r.id, r.version, r.step_count, r.state_bytes, s.result FROM spindle.workflow_runs r
         JOIN spindle.workflow_steps s ON s.run_id = r.id WHERE r.name = 'many' ORDER BY r.id`,
    );
    expect(rows).toHaveLength(50);
    for (const row of rows) {
      expect(row).toMatchObject({ version: 'v1', step_count: 1, result: { run: row.id } });
      expect(Number(row.state_bytes)).toBe(Buffer.byteLength(JSON.stringify({ run: row.id })));
    }
  });

  it("lands a step's writes in the order made (a waiting step that ends is left ended), two steps of a run side by side", async () => {
    const [claim] = await claimedRuns('order', 1);
    const writer = new StepWriter(counted);
    const writes = [step(1, null, 'waiting'), step(1, 'done'), step(2, null, 'waiting'), step(2, 'also done')];
    await Promise.all(writes.map((s) => writer.write({ claim: claim!, version: 'v1', step: s })));
    const { rows } = await db.pool.query(`SELECT seq, state, result FROM spindle.workflow_steps WHERE run_id = $1 ORDER BY seq`, [claim!.runId]);
    expect(rows).toEqual([
      { seq: 1, state: 'succeeded', result: 'done' },
      { seq: 2, state: 'succeeded', result: 'also done' },
    ]);
    const run = await db.pool.query(`SELECT step_count, state_bytes FROM spindle.workflow_runs WHERE id = $1`, [claim!.runId]);
    expect(run.rows[0]).toEqual({ step_count: 2, state_bytes: String('"done""also done"'.length) });
  });

  it('fails only the write the database refuses; the others of its statement are written', async () => {
    const claims = await claimedRuns('refused', 6);
    const writer = new StepWriter(counted);
    // jsonb refuses the NUL escape: the text is valid JSON that PostgreSQL cannot store.
    const bad: StepWrite = { ...step(1, null), resultJson: '"a\\u0000b"' };
    const results = await Promise.allSettled(claims.map((claim, i) => writer.write({ claim, version: 'v1', step: i === 3 ? bad : step(1, i) })));
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect(String((results[3] as PromiseRejectedResult).reason)).toMatch(/unsupported Unicode escape sequence|\\u0000/);
    const { rows } = await db.pool.query(`SELECT run_id FROM spindle.workflow_steps WHERE run_id LIKE 'refused-%' ORDER BY run_id`);
    expect(rows.map((r) => r.run_id)).toEqual(claims.filter((_, i) => i !== 3).map((c) => c.runId));
  });

  it('writes nothing for a run whose claim was taken, and says so; the other runs are written', async () => {
    const [kept, taken] = await claimedRuns('taken', 2);
    await db.pool.query(`UPDATE spindle.workflow_runs SET claimed_by = 'sup-2', claim_seq = claim_seq + 1 WHERE id = $1`, [taken!.runId]);
    const writer = new StepWriter(counted);
    const [a, b] = await Promise.all([kept, taken].map((claim) => writer.write({ claim: claim!, version: 'v1', step: step(1, 'x') })));
    expect(a).toEqual({ stateBytes: 3, cancelRequested: false });
    expect(b).toBeUndefined();
    const { rows } = await db.pool.query(`SELECT run_id FROM spindle.workflow_steps WHERE run_id LIKE 'taken-%'`);
    expect(rows.map((r) => r.run_id)).toEqual([kept!.runId]);
  });

  it('tells a write that a cancel was asked for its run', async () => {
    const [claim] = await claimedRuns('cancel', 1);
    await db.pool.query(`UPDATE spindle.workflow_runs SET cancel_requested_at = now() WHERE id = $1`, [claim!.runId]);
    const written = await new StepWriter(counted).write({ claim: claim!, version: 'v1', step: step(1, 1) });
    expect(written).toEqual({ stateBytes: 1, cancelRequested: true });
  });
});
