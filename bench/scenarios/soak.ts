/**
 * Scenario 11 (issue 25): sustained load. One supervisor in a process of its own (so its memory
 * and event-loop lag are its own), 2 threads; this process enqueues. First the capacity: a batch
 * of the mix drained as fast as it goes. Then `--soak-minutes` (default 10) at a steady rate of half
 * that, in small enqueueMany calls every TICK_MS: 90% short jobs (one progress call), 8% CPU jobs
 * of 5-15 ms (a progress call a millisecond), 1.5% that fail (retried once, then failed) and 0.5%
 * that run past a 20 ms timeout. Per minute: jobs finished per second, enqueue-to-start p50/p99 of
 * the jobs enqueued that minute that returned, and the supervisor's RSS, heap and event-loop lag.
 * At the end, every job enqueued must be in the table in the state its kind makes: none lost.
 *
 * Run only with --soak (never in --quick): it takes its minutes plus about one.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { createClient, type JobSpec } from '../../src/client.ts';
import { migrate } from '../../src/db/migrate.ts';
import { settle } from '../database.ts';
import { percentile, seededRandom } from '../stats.ts';
import { askStats, spawnSupervisor, stopSupervisor } from '../supervisor-process.ts';
import { dropSchema, queryNumber } from '../systems/postgres.ts';
import { wallClockMs } from '../work.ts';
import type { SoakInput } from '../workers/soak-work.ts';
import type { Metrics, StandaloneScenario } from './types.ts';

const TYPE = 'bench-soak';
const WORKERS = { [TYPE]: fileURLToPath(new URL('../workers/soak-work.ts', import.meta.url)) };
const THREADS = 2;
/** The default length; `--soak-minutes=N` changes it. */
export const SOAK_MINUTES = 10;
/** Jobs in the capacity batch. */
const CAPACITY_JOBS = 5_000;
/** The steady rate, as a share of the capacity. */
const LOAD_SHARE = 0.5;
const TICK_MS = 50;
const MINUTE_MS = 60_000;
/** How long the jobs still queued at the end may take to finish. */
const DRAIN_TIMEOUT_MS = 120_000;
/** Goal: the last minute within this share of the second, on p99 latency and RSS. */
const DRIFT_LIMIT = 0.1;

/** The mix, by cumulative share. */
const MIX: readonly [SoakInput['kind'], number][] = [
  ['short', 0.9],
  ['cpu', 0.98],
  ['fail', 0.995],
  ['timeout', 1],
];
const FINAL_STATE: Record<SoakInput['kind'], string> = { short: 'succeeded', cpu: 'succeeded', fail: 'failed', timeout: 'timed_out' };

function makeJob(random: () => number): JobSpec & { input: SoakInput } {
  const pick = random();
  const kind = MIX.find(([, upTo]) => pick < upTo)![0];
  const input: SoakInput = { kind, enqueuedAt: wallClockMs(), ...(kind === 'cpu' ? { ms: 5 + Math.floor(random() * 11) } : {}) };
  if (kind === 'fail') return { type: TYPE, input, options: { maxAttempts: 2 } };
  if (kind === 'timeout') return { type: TYPE, input, options: { maxAttempts: 1, timeoutMs: 20 } };
  return { type: TYPE, input, options: { maxAttempts: 1 } };
}

/** Jobs in a final state now. */
function finishedCount(db: pg.Client): Promise<number> {
  return queryNumber(db, `SELECT count(*) AS n FROM spindle.jobs WHERE state IN ('succeeded', 'failed', 'timed_out', 'cancelled')`);
}

async function waitForFinished(db: pg.Client, total: number, timeoutMs: number): Promise<number> {
  const deadline = wallClockMs() + timeoutMs;
  for (;;) {
    const n = await finishedCount(db);
    if (n >= total) return wallClockMs();
    if (wallClockMs() > deadline) throw new Error(`${total - n} of ${total} jobs not finished after ${timeoutMs / 1000} s`);
    await sleep(100);
  }
}

/** The per-minute figures this scenario reports, `m<N>` suffixed (minute N, from 1). */
const PER_MINUTE = ['jobsPerSecond', 'p50Ms', 'p99Ms', 'rssMb', 'heapMb', 'lagP99Ms', 'lagMaxMs'] as const;

/** Scenario 11 of issue 25. */
export const soak: StandaloneScenario = {
  kind: 'standalone',
  id: 'soak',
  issueNumber: '11',
  title: 'Sustained load',
  system: 'spindle',
  optIn: 'soak',
  metrics: [
    { key: 'p99Drift', label: 'p99 last/second minute', better: 'lower', digits: 2 },
    { key: 'rssDrift', label: 'RSS last/second minute', better: 'lower', digits: 2 },
    { key: 'lost', label: 'jobs lost', better: 'lower', digits: 0 },
  ],
  size: (_quick, soakMinutes) =>
    `${soakMinutes ?? SOAK_MINUTES} minutes at ${LOAD_SHARE * 100}% of the capacity measured first (${CAPACITY_JOBS.toLocaleString('en-US')} jobs of the mix drained at once), ` +
    `one supervisor process with ${THREADS} threads; 90% short jobs with a progress call, 8% CPU jobs of 5-15 ms with a progress call a millisecond, ` +
    '1.5% failing (2 attempts), 0.5% past a 20 ms timeout',
  async unavailable() {
    return undefined;
  },
  async run({ databaseUrl, log, soakMinutes }): Promise<Metrics> {
    const minutes = soakMinutes ?? SOAK_MINUTES;
    await dropSchema(databaseUrl, 'spindle');
    await migrate(databaseUrl);
    await settle(databaseUrl);
    const db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    const client = createClient({ connectionString: databaseUrl });
    const supervisor = await spawnSupervisor({ databaseUrl, workers: WORKERS, concurrency: THREADS });
    const random = seededRandom(25_011);
    const expected = new Map<string, number>();
    let enqueued = 0;
    const enqueue = async (count: number) => {
      if (count <= 0) return;
      const jobs = Array.from({ length: count }, () => makeJob(random));
      for (const job of jobs) expected.set(FINAL_STATE[job.input.kind], (expected.get(FINAL_STATE[job.input.kind]) ?? 0) + 1);
      await client.enqueueMany(jobs);
      enqueued += count;
    };
    try {
      // Capacity: the whole batch at once, drained as fast as it goes.
      const capacityStart = wallClockMs();
      await enqueue(CAPACITY_JOBS);
      const capacityEnd = await waitForFinished(db, enqueued, DRAIN_TIMEOUT_MS);
      const capacity = CAPACITY_JOBS / ((capacityEnd - capacityStart) / 1000);
      const rate = capacity * LOAD_SHARE;
      log(`capacity ${capacity.toFixed(0)} jobs/s of the mix; soaking ${minutes} min at ${rate.toFixed(0)} jobs/s`);
      await askStats(supervisor);

      const dbStart = Number((await db.query<{ t: string }>(`SELECT extract(epoch FROM clock_timestamp()) * 1000 AS t`)).rows[0]!.t);
      const start = wallClockMs();
      const firstSeq = enqueued;
      const lastCapacityId = await queryNumber(db, `SELECT coalesce(max(id), 0) AS n FROM spindle.jobs`);
      const perMinute: Metrics[] = [];
      for (let minute = 1; minute <= minutes; minute++) {
        const minuteEnd = start + minute * MINUTE_MS;
        while (wallClockMs() < minuteEnd) {
          const due = Math.floor(((wallClockMs() - start) / 1000) * rate) - (enqueued - firstSeq);
          await enqueue(due);
          const next = Math.min(minuteEnd, wallClockMs() + TICK_MS);
          await sleep(Math.max(0, next - wallClockMs()));
        }
        const stats = await askStats(supervisor);
        perMinute.push({
          rssMb: stats.rssBytes / 2 ** 20,
          heapMb: stats.heapUsedBytes / 2 ** 20,
          lagP99Ms: stats.lagP99Ms,
          lagMaxMs: stats.lagMaxMs,
          enqueued: enqueued - firstSeq,
        });
        log(`minute ${minute}: ${enqueued - firstSeq} enqueued so far, RSS ${(stats.rssBytes / 2 ** 20).toFixed(0)} MB, event-loop lag p99 ${stats.lagP99Ms.toFixed(1)} ms`);
      }
      await waitForFinished(db, enqueued, DRAIN_TIMEOUT_MS);

      // Per minute, from the table: finishes by the server's clock, latency by the enqueue's minute.
      const { rows } = await db.query<{ minute: number; finished: string }>(
        `SELECT floor((extract(epoch FROM finished_at) * 1000 - $1) / ${MINUTE_MS})::int + 1 AS minute, count(*) AS finished
           FROM spindle.jobs WHERE id > $2 AND finished_at IS NOT NULL GROUP BY 1`,
        [dbStart, lastCapacityId],
      );
      const { rows: starts } = await db.query<{ enqueued_at: number; started_at: number }>(
        `SELECT (input->>'enqueuedAt')::float8 AS enqueued_at, (output->>'startedAt')::float8 AS started_at
           FROM spindle.jobs WHERE id > $1 AND state = 'succeeded'`,
        [lastCapacityId],
      );
      const latencyByMinute = new Map<number, number[]>();
      for (const r of starts) {
        const m = Math.floor((r.enqueued_at - start) / MINUTE_MS) + 1;
        if (m < 1 || m > minutes) continue;
        let list = latencyByMinute.get(m);
        if (!list) latencyByMinute.set(m, (list = []));
        list.push(r.started_at - r.enqueued_at);
      }
      const metrics: Metrics = { capacity, rate, minutes };
      for (let m = 1; m <= minutes; m++) {
        const figures = perMinute[m - 1]!;
        const finished = Number(rows.find((r) => r.minute === m)?.finished ?? 0);
        const latencies = latencyByMinute.get(m) ?? [];
        Object.assign(figures, { jobsPerSecond: finished / 60, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) });
        for (const key of PER_MINUTE) metrics[`${key}_m${m}`] = figures[key]!;
      }

      // Lost: every job enqueued must be in the table, in the state its kind leads to.
      const { rows: states } = await db.query<{ state: string; n: string }>(`SELECT state, count(*) AS n FROM spindle.jobs GROUP BY state`);
      const inTable = new Map(states.map((r) => [r.state, Number(r.n)]));
      // A job in another state than its kind leads to shows as one state short and another over.
      let misplaced = 0;
      for (const [state, n] of inTable) misplaced += Math.max(0, n - (expected.get(state) ?? 0));
      const rowsInTable = [...inTable.values()].reduce((a, b) => a + b, 0);
      metrics.enqueued = enqueued;
      metrics.rowsInTable = rowsInTable;
      metrics.lost = enqueued - rowsInTable;
      metrics.misplaced = misplaced;
      for (const [state, n] of inTable) metrics[`state_${state}`] = n;
      const second = Math.min(2, minutes);
      metrics.p99Drift = metrics[`p99Ms_m${minutes}`]! / metrics[`p99Ms_m${second}`]!;
      metrics.rssDrift = metrics[`rssMb_m${minutes}`]! / metrics[`rssMb_m${second}`]!;
      metrics.driftLimit = DRIFT_LIMIT;
      log(`jobs: ${enqueued} enqueued, ${rowsInTable} in the table (${metrics.lost} lost), ${misplaced} in another state than their kind leads to`);
      return metrics;
    } finally {
      await stopSupervisor(supervisor);
      await client.close();
      await db.end();
    }
  },
};
