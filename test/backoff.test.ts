/**
 * The backoff rule has one definition in TypeScript (backoffDelay, for outcomes the supervisor
 * writes) and one in SQL (for the jobs the reaper puts back on its own): one table of cases runs
 * against both, and the reaper takes a type's own backoff.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backoffDelay, type BackoffOptions } from '../src/backoff.ts';
import { createClient, type Client } from '../src/client.ts';
import { backoffMsSql } from '../src/db/backoff-sql.ts';
import { claimJobs } from '../src/db/claims.ts';
import { reapLostJobs } from '../src/db/maintenance.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';

let db: TestDatabase;
let client: Client;

beforeAll(async () => {
  db = await createTestDatabase();
  client = createClient({ connectionString: db.url });
});

afterAll(async () => {
  await client.close();
  await db.drop();
});

const OPTIONS: BackoffOptions[] = [
  { baseMs: 1_000, maxMs: 600_000 },
  { baseMs: 100, maxMs: 1_000 },
  { baseMs: 0, maxMs: 0 },
  { baseMs: 5_000, maxMs: 5_000 },
];
const ATTEMPTS = [1, 2, 3, 4, 10, 40, 1_100];
const RANDOMS = [0, 0.25, 0.5, 0.999999];

describe('backoff', () => {
  it('is the same rule in TypeScript and in SQL, and never exceeds maxMs', async () => {
    const cases = OPTIONS.flatMap((o) => ATTEMPTS.flatMap((attempt) => RANDOMS.map((random) => ({ ...o, attempt, random }))));
    const { rows } = await db.pool.query<{ ms: number }>(
      `SELECT round(${backoffMsSql('c.attempt', 'c.base', 'c.max', 'c.random')})::float8 AS ms
         FROM jsonb_to_recordset($1::jsonb) AS c(attempt int, base float8, max float8, random float8, i int)
        ORDER BY c.i`,
      [JSON.stringify(cases.map((c, i) => ({ attempt: c.attempt, base: c.baseMs, max: c.maxMs, random: c.random, i })))],
    );
    const expected = cases.map((c) => backoffDelay(c.attempt, c, () => c.random));
    expect(rows.map((r) => r.ms)).toEqual(expected);
    for (const [i, c] of cases.entries()) expect(expected[i]).toBeLessThanOrEqual(c.maxMs);
  });

  it("puts a job whose lease ended back after its type's own backoff, within its maxMs", async () => {
    const own = await client.enqueue('own-backoff', {}, { maxAttempts: 3 });
    const other = await client.enqueue('default-backoff', {}, { maxAttempts: 3 });
    await claimJobs(db.pool, { supervisorId: 'gone', queues: [], types: [{ type: 'own-backoff', maxAttempts: 3 }, { type: 'default-backoff', maxAttempts: 3 }], limit: 2, leaseMs: 60_000 });
    await db.pool.query(`UPDATE spindle.jobs SET lease_expires_at = now() - interval '1 second' WHERE id IN ($1, $2)`, [own.id, other.id]);
    const reaped = await reapLostJobs(db.pool, {
      limit: 10,
      deadAfterBeats: 3,
      backoff: { baseMs: 1, maxMs: 1 },
      backoffByType: { 'own-backoff': { baseMs: 3_600_000, maxMs: 7_200_000 } },
    });
    expect(reaped.map((j) => j.state).sort()).toEqual(['queued', 'queued']);
    const { rows } = await db.pool.query<{ id: string; wait_ms: number }>(
      `SELECT id::text, extract(epoch FROM run_at - now()) * 1000 AS wait_ms FROM spindle.jobs WHERE id IN ($1, $2)`,
      [own.id, other.id],
    );
    const wait = Object.fromEntries(rows.map((r) => [r.id, Number(r.wait_ms)]));
    // Attempt 1: base * [0.75, 1.25), capped.
    expect(wait[own.id]).toBeGreaterThan(0.75 * 3_600_000 - 60_000);
    expect(wait[own.id]).toBeLessThanOrEqual(1.25 * 3_600_000);
    expect(wait[other.id]).toBeLessThanOrEqual(1);
  });
});
