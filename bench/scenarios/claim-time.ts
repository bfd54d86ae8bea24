/**
 * Scenario 6a: how long spindle's claim statement takes with 10,000 and with
 * 1,000,000 queued rows. Rows are inserted directly (generate_series) after
 * spindle's migrations; each claim (limit 10) runs in a transaction that is
 * rolled back, so every one of them sees the same queue. Goal: flat.
 */
import pg from 'pg';
import { migrate } from '../../src/db/migrate.ts';
import { claimJobs } from '../../src/db/claims.ts';
import { median } from '../stats.ts';
import { dropSchema } from '../systems/postgres.ts';
import { wallClockMs } from '../work.ts';
import type { Metrics, StandaloneScenario } from './types.ts';

const SMALL = 10_000;
const LARGE = 1_000_000;
const CLAIMS = 20;
const WARMUP_CLAIMS = 3;
const LIMIT = 10;
const TYPE = 'bench-noop';

async function insertRows(client: pg.Client, from: number, to: number): Promise<number> {
  const start = wallClockMs();
  await client.query(
    `INSERT INTO spindle.jobs (type, input) SELECT $1, jsonb_build_object('seq', g) FROM generate_series($2::int, $3::int) AS g`,
    [TYPE, from, to],
  );
  await client.query('ANALYZE spindle.jobs');
  return wallClockMs() - start;
}

/** The median time of CLAIMS claims of LIMIT jobs, each rolled back. */
async function timeClaims(client: pg.Client): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < WARMUP_CLAIMS + CLAIMS; i++) {
    await client.query('BEGIN');
    try {
      const start = wallClockMs();
      const rows = await claimJobs(client, {
        supervisorId: 'bench-claim',
        queues: [],
        types: [{ type: TYPE, maxAttempts: 3 }],
        limit: LIMIT,
        leaseMs: 30_000,
      });
      const elapsed = wallClockMs() - start;
      if (rows.length !== LIMIT) throw new Error(`the claim returned ${rows.length} rows, expected ${LIMIT}`);
      if (i >= WARMUP_CLAIMS) times.push(elapsed);
    } finally {
      await client.query('ROLLBACK');
    }
  }
  return median(times);
}

/** Scenario 6a of issue 8. */
export const claimTime: StandaloneScenario = {
  kind: 'standalone',
  id: 'claim',
  issueNumber: '6a',
  title: 'Claim time vs queue depth',
  system: 'spindle',
  metrics: [
    { key: 'claim10kMs', label: '10k rows ms', better: 'lower', digits: 2 },
    { key: 'claim1MMs', label: '1M rows ms', better: 'lower', digits: 2 },
    { key: 'ratio', label: '1M / 10k', better: 'lower', digits: 2 },
  ],
  size: () => `claimJobs(limit ${LIMIT}) with ${SMALL.toLocaleString('en-US')} and ${LARGE.toLocaleString('en-US')} queued rows, median of ${CLAIMS}, each rolled back`,
  async unavailable() {
    return undefined;
  },
  async run({ databaseUrl, log }): Promise<Metrics> {
    await dropSchema(databaseUrl, 'spindle');
    await migrate(databaseUrl);
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    try {
      const insertSmallMs = await insertRows(client, 1, SMALL);
      const claim10kMs = await timeClaims(client);
      log(`claim with ${SMALL.toLocaleString('en-US')} queued: ${claim10kMs.toFixed(2)} ms; inserting up to ${LARGE.toLocaleString('en-US')} rows`);
      const insertLargeMs = await insertRows(client, SMALL + 1, LARGE);
      const claim1MMs = await timeClaims(client);
      log(`claim with ${LARGE.toLocaleString('en-US')} queued: ${claim1MMs.toFixed(2)} ms`);
      return { claim10kMs, claim1MMs, ratio: claim1MMs / claim10kMs, insertSmallMs, insertLargeMs };
    } finally {
      await client.end();
      // A million rows are not worth keeping between runs.
      await dropSchema(databaseUrl, 'spindle');
    }
  },
};
