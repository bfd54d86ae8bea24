/**
 * Scenario 13 (issue 25): short jobs behind long ones. A supervisor with 2 threads, both busy with
 * 5 s CPU jobs (LONG_JOBS of them queued, more than the threads), while short jobs of a higher
 * priority arrive one every SHORT_GAP_MS: how long each waits from its enqueue to its handler's start.
 * Priority orders the queue, it does not take a thread from a running job, so a short job waits
 * for the first thread to come free. Then what a user can do about it: the same arrivals with the
 * short jobs in a queue of their own, served by a second supervisor process with one thread.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { createClient } from '../../src/client.ts';
import { migrate } from '../../src/db/migrate.ts';
import { distribution } from '../stats.ts';
import { spawnSupervisor, stopSupervisor, type SupervisorProcess } from '../supervisor-process.ts';
import { dropSchema, queryNumber } from '../systems/postgres.ts';
import { wallClockMs } from '../work.ts';
import type { Metrics, StandaloneScenario } from './types.ts';

const LONG = 'bench-spin';
const SHORT = 'bench-stamp';
const WORKERS = {
  [LONG]: fileURLToPath(new URL('../../workers/spin.ts', import.meta.url)),
  [SHORT]: fileURLToPath(new URL('../workers/stamp.ts', import.meta.url)),
};
const THREADS = 2;
const LONG_MS = 5_000;
/** Long jobs queued: twice the threads, so a freed thread has a long job to take as well. */
const LONG_JOBS = 4;
const SHORT_JOBS = 20;
const SHORT_GAP_MS = 200;
const SHORT_PRIORITY = 10;
/** The queue the short jobs get in the second setup. */
const FAST_QUEUE = 'fast';

/** The two setups measured. */
const SETUPS = [
  ['shared', 'one supervisor, 2 threads, every queue; short jobs at priority 10'],
  ['separate', `short jobs in queue "${FAST_QUEUE}" served by a second supervisor process with 1 thread; the first serves "default"`],
] as const;

async function waitForRunning(db: pg.Client, n: number): Promise<void> {
  const deadline = wallClockMs() + 60_000;
  while ((await queryNumber(db, `SELECT count(*) AS n FROM spindle.jobs WHERE state = 'running'`)) < n) {
    if (wallClockMs() > deadline) throw new Error(`fewer than ${n} jobs running after 60 s`);
    await sleep(20);
  }
}

/** One setup: the short jobs' waits, ms. */
async function measure(databaseUrl: string, setup: (typeof SETUPS)[number][0]): Promise<number[]> {
  await dropSchema(databaseUrl, 'spindle');
  await migrate(databaseUrl);
  const supervisors: SupervisorProcess[] = [];
  const longIds: string[] = [];
  const client = createClient({ connectionString: databaseUrl });
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    if (setup === 'shared') supervisors.push(await spawnSupervisor({ databaseUrl, workers: WORKERS, concurrency: THREADS }));
    else {
      supervisors.push(await spawnSupervisor({ databaseUrl, workers: WORKERS, concurrency: THREADS, queues: ['default'] }));
      supervisors.push(await spawnSupervisor({ databaseUrl, workers: WORKERS, concurrency: 1, queues: [FAST_QUEUE] }));
    }
    // A short job first, so each thread has loaded its modules before the clock matters.
    await client.enqueueMany(Array.from({ length: 4 }, (_, i) => ({ type: SHORT, input: { seq: -1 - i }, options: setup === 'separate' ? { queue: FAST_QUEUE } : {} })));
    longIds.push(...(await client.enqueueMany(Array.from({ length: LONG_JOBS }, () => ({ type: LONG, input: { ms: LONG_MS } })))).map((j) => j.id));
    await waitForRunning(db, THREADS);
    const enqueuedAt = new Map<number, number>();
    for (let seq = 0; seq < SHORT_JOBS; seq++) {
      const at = wallClockMs();
      await client.enqueue(SHORT, { seq }, { priority: SHORT_PRIORITY, ...(setup === 'separate' ? { queue: FAST_QUEUE } : {}) });
      enqueuedAt.set(seq, at);
      await sleep(SHORT_GAP_MS);
    }
    const deadline = wallClockMs() + LONG_MS * LONG_JOBS + 30_000;
    for (;;) {
      const done = await queryNumber(db, `SELECT count(*) AS n FROM spindle.jobs WHERE type = $1 AND state = 'succeeded'`, [SHORT]);
      if (done >= SHORT_JOBS + 4) break;
      if (wallClockMs() > deadline) throw new Error(`short jobs unfinished after ${LONG_MS * LONG_JOBS + 30_000} ms`);
      await sleep(50);
    }
    const { rows } = await db.query<{ seq: number; started_at: number }>(
      `SELECT (output->>'seq')::int AS seq, (output->>'startedAt')::float8 AS started_at FROM spindle.jobs WHERE type = $1 AND state = 'succeeded'`,
      [SHORT],
    );
    return rows.filter((r) => r.seq >= 0).map((r) => r.started_at - enqueuedAt.get(r.seq)!);
  } finally {
    // The long jobs are not measured: cancel what is left of them rather than wait it out.
    for (const id of longIds) await client.cancel(id).catch(() => {});
    await Promise.all(supervisors.map((s) => stopSupervisor(s)));
    await client.close();
    await db.end();
  }
}

/** Scenario 13 of issue 25. */
export const shortBehindLong: StandaloneScenario = {
  kind: 'standalone',
  id: 'priority',
  issueNumber: '13',
  title: 'Short jobs behind long ones',
  system: 'spindle',
  metrics: [
    { key: 'sharedP50Ms', label: 'one supervisor: wait p50 ms', better: 'lower', digits: 0 },
    { key: 'separateP50Ms', label: 'a queue of their own: wait p50 ms', better: 'lower', digits: 1 },
  ],
  size: () =>
    `${THREADS} threads busy with ${LONG_JOBS} queued CPU jobs of ${LONG_MS / 1000} s; ${SHORT_JOBS} short jobs at priority ${SHORT_PRIORITY}, one every ${SHORT_GAP_MS} ms from when both threads are busy; ` +
    `setups: ${SETUPS.map(([, text]) => text).join('; then ')}`,
  async unavailable() {
    return undefined;
  },
  async run({ databaseUrl, log }): Promise<Metrics> {
    const metrics: Metrics = {};
    for (const [setup] of SETUPS) {
      const d = distribution(await measure(databaseUrl, setup));
      Object.assign(metrics, { [`${setup}P50Ms`]: d.p50, [`${setup}P99Ms`]: d.p99, [`${setup}MaxMs`]: d.max, [`${setup}Samples`]: d.samples });
      log(`${setup}: wait p50 ${d.p50.toFixed(1)} ms, p99 ${d.p99.toFixed(1)} ms, max ${d.max.toFixed(1)} ms (n=${d.samples})`);
    }
    return metrics;
  },
};
