/**
 * The database round-trip floor, beside scenario 3 (not a scenario of issue 8):
 * what one idle round trip to the benchmark's PostgreSQL costs at the latency
 * scenario's pacing, so its figures can be read against it. On one connection
 * of its own, calls 10 to 30 ms apart on the latency scenario's seeded schedule
 * (the CPU goes idle between calls, and every wake-up costs), three kinds in
 * turn so drift hits them alike:
 * - `SELECT 1`;
 * - a one-row INSERT into a scratch table, autocommit with synchronous_commit on;
 * - the same INSERT with a pg_notify in the same statement, as every queue
 *   measured here notifies on enqueue (no one listens);
 * - a claim: one UPDATE that takes the oldest unclaimed row with FOR UPDATE
 *   SKIP LOCKED and returns it, autocommit (the least a queue's claim can be).
 * Issue 25's latency floor is the INSERT with its NOTIFY, plus the claim, plus
 * a bare thread hop (bare Piscina's enqueue-to-start in scenario 3).
 * Each call is timed with performance.now() around its `await client.query()`.
 */
import { loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { distribution, seededRandom } from '../stats.ts';
import { dropSchema } from '../systems/postgres.ts';
import { wallClockMs } from '../work.ts';
import { GAP_MAX_MS, GAP_MIN_MS, SAMPLES, scheduleSeed, WARMUP } from './latency.ts';
import type { Metrics, StandaloneScenario } from './types.ts';

/** The scratch schema, dropped before and after. */
const SCHEMA = 'spindle_bench_floor';
const TABLE = `${pg.escapeIdentifier(SCHEMA)}.bench_floor`;

/** The calls measured, in the order they take turns; `key` prefixes their metrics. */
const CALLS = [
  { key: 'select', label: 'SELECT 1', sql: 'SELECT 1', params: false },
  { key: 'insert', label: 'one-row INSERT, commit', sql: `INSERT INTO ${TABLE} (v) VALUES ($1)`, params: true },
  {
    key: 'notify',
    label: 'one-row INSERT + pg_notify, commit',
    sql: `WITH i AS (INSERT INTO ${TABLE} (v) VALUES ($1) RETURNING id) SELECT pg_notify('bench_floor', id::text) FROM i`,
    params: true,
  },
  {
    key: 'claim',
    label: 'claim: UPDATE ... FOR UPDATE SKIP LOCKED, commit',
    sql:
      `UPDATE ${TABLE} SET claimed = true WHERE id = ` +
      `(SELECT id FROM ${TABLE} WHERE NOT claimed ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id`,
    params: false,
  },
] as const;

/** The floor scenario. */
export const roundTripFloor: StandaloneScenario = {
  kind: 'standalone',
  id: 'floor',
  issueNumber: '3a',
  title: 'Database round-trip floor',
  system: 'spindle',
  metrics: [
    { key: 'selectP50Ms', label: 'SELECT 1 p50 ms', better: 'lower', digits: 2 },
    { key: 'selectP99Ms', label: 'SELECT 1 p99 ms', better: 'lower', digits: 2 },
    { key: 'insertP50Ms', label: 'INSERT p50 ms', better: 'lower', digits: 2 },
    { key: 'insertP99Ms', label: 'INSERT p99 ms', better: 'lower', digits: 2 },
    { key: 'notifyP50Ms', label: 'INSERT + NOTIFY p50 ms', better: 'lower', digits: 2 },
    { key: 'notifyP99Ms', label: 'INSERT + NOTIFY p99 ms', better: 'lower', digits: 2 },
    { key: 'claimP50Ms', label: 'claim p50 ms', better: 'lower', digits: 2 },
    { key: 'claimP99Ms', label: 'claim p99 ms', better: 'lower', digits: 2 },
  ],
  size: (quick) =>
    `${quick ? SAMPLES.quick : SAMPLES.full} each of SELECT 1, a one-row INSERT, the INSERT with a pg_notify and a one-row claim (UPDATE ... FOR UPDATE SKIP LOCKED) (autocommit, synchronous_commit on), ` +
    `taking turns on one connection, ${GAP_MIN_MS}-${GAP_MAX_MS} ms apart as in scenario 3 (after ${WARMUP} warm-up calls of each)`,
  async unavailable() {
    return undefined;
  },
  async run({ databaseUrl, quick, log }): Promise<Metrics> {
    const samples = quick ? SAMPLES.quick : SAMPLES.full;
    await dropSchema(databaseUrl, SCHEMA);
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    try {
      await client.query(`SET synchronous_commit = on`);
      await client.query(`CREATE SCHEMA ${pg.escapeIdentifier(SCHEMA)}`);
      await client.query(`CREATE TABLE ${TABLE} (id bigserial PRIMARY KEY, v int, claimed boolean NOT NULL DEFAULT false)`);
      const times = CALLS.map(() => [] as number[]);
      const random = seededRandom(scheduleSeed(1));
      const loadBefore = loadavg()[0]!;
      let next = wallClockMs();
      for (let round = -WARMUP; round < samples; round++) {
        for (let c = 0; c < CALLS.length; c++) {
          next += GAP_MIN_MS + random() * (GAP_MAX_MS - GAP_MIN_MS);
          const wait = next - wallClockMs();
          if (wait > 0.5) await sleep(wait);
          const call = CALLS[c]!;
          const start = performance.now();
          await (call.params ? client.query(call.sql, [round]) : client.query(call.sql));
          const elapsed = performance.now() - start;
          if (round >= 0) times[c]!.push(elapsed);
        }
      }
      const metrics: Metrics = { loadBefore, loadAfter: loadavg()[0]! };
      CALLS.forEach((call, c) => {
        const d = distribution(times[c]!);
        Object.assign(metrics, {
          [`${call.key}P50Ms`]: d.p50,
          [`${call.key}P99Ms`]: d.p99,
          [`${call.key}MeanMs`]: d.mean,
          [`${call.key}MaxMs`]: d.max,
          [`${call.key}Samples`]: d.samples,
        });
        log(`${call.label}: p50 ${d.p50.toFixed(2)} ms, p99 ${d.p99.toFixed(2)} ms, max ${d.max.toFixed(2)} ms (n=${d.samples})`);
      });
      return metrics;
    } finally {
      await client.end();
      await dropSchema(databaseUrl, SCHEMA);
    }
  },
};
