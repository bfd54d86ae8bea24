/**
 * Scenario 12 (issue 25): memory. The RSS of an idle spindle supervisor process with 2 and with 8
 * threads, and what each job in flight adds (as many jobs as threads, each waiting HOLD_MS, read
 * while they wait); beside graphile-worker's and BullMQ's processes, each with its own concurrency
 * of jobs in flight on its main thread, and a bare Node process with tsx loaded as the floor.
 * Each reading is a fresh process; the median of RUNS, taken in turns.
 *
 * spindle's process is the supervisor alone (bench/scale-supervisor.ts); a peer's also holds the
 * client that enqueues (its adapter, bench/memory-child.ts): a connection pool's worth more.
 */
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { createClient } from '../../src/client.ts';
import { migrate } from '../../src/db/migrate.ts';
import { forkTsx } from '../isolate.ts';
import type { MemoryChildAnswer, MemoryChildSpec } from '../memory-child.ts';
import { median } from '../stats.ts';
import { askStats, spawnSupervisor, stopSupervisor } from '../supervisor-process.ts';
import { findSystem } from '../systems/index.ts';
import { dropSchema, queryNumber } from '../systems/postgres.ts';
import type { Metrics, StandaloneScenario } from './types.ts';

const TYPE = 'bench-hold';
const WORKERS = { [TYPE]: fileURLToPath(new URL('../workers/hold.ts', import.meta.url)) };
const CHILD = fileURLToPath(new URL('../memory-child.ts', import.meta.url));
/** spindle's thread counts measured. */
export const MEMORY_THREADS = [2, 8] as const;
/** Peers measured, with the jobs they keep in flight (their concurrency in the other scenarios). */
export const MEMORY_PEERS = [
  ['graphile-worker', 10],
  ['graphile-worker-tuned', 24],
  ['bullmq', 10],
] as const;
const RUNS = 3;
const SETTLE_MS = 3_000;
/** How long a peer's job waits (the peer's stop waits for it). */
const HOLD_MS = 8_000;
/** How long a spindle job waits at most: it returns at the supervisor's stop (bench/workers/hold.ts). */
const SPINDLE_HOLD_MS = 60_000;
const START_MS = 2_000;
const CHILD_TIMEOUT_MS = 90_000;

const mb = (bytes: number) => bytes / 2 ** 20;

/** One spindle supervisor process: idle RSS, then RSS with `threads` jobs in flight (MB). */
async function spindleOnce(databaseUrl: string, threads: number): Promise<{ idle: number; busy: number }> {
  await dropSchema(databaseUrl, 'spindle');
  await migrate(databaseUrl);
  const child = await spawnSupervisor({ databaseUrl, workers: WORKERS, concurrency: threads });
  const client = createClient({ connectionString: databaseUrl });
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    await sleep(SETTLE_MS);
    const idle = (await askStats(child)).rssBytes;
    await client.enqueueMany(Array.from({ length: threads }, () => ({ type: TYPE, input: { ms: SPINDLE_HOLD_MS } })));
    const deadline = Date.now() + SPINDLE_HOLD_MS / 2;
    while ((await queryNumber(db, `SELECT count(*) AS n FROM spindle.jobs WHERE state = 'running'`)) < threads) {
      if (Date.now() > deadline) throw new Error(`fewer than ${threads} jobs running after ${SPINDLE_HOLD_MS / 2} ms`);
      await sleep(50);
    }
    await sleep(START_MS / 2);
    const stats = await askStats(child);
    if (stats.inFlight < threads) throw new Error(`${stats.inFlight} of ${threads} jobs in flight at the reading`);
    return { idle: mb(idle), busy: mb(stats.rssBytes) };
  } finally {
    await stopSupervisor(child);
    await client.close();
    await db.end();
  }
}

/** One peer process (or a bare one, `none`): idle RSS and RSS with `inFlight` jobs in flight (MB). */
function peerOnce(spec: MemoryChildSpec): Promise<{ idle: number; busy: number }> {
  return new Promise((resolve, reject) => {
    const { child, tail } = forkTsx(CHILD, spec);
    let answer: MemoryChildAnswer | undefined;
    const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_TIMEOUT_MS);
    child.on('message', (message) => {
      answer = message as MemoryChildAnswer;
    });
    child.on('exit', () => {
      clearTimeout(timer);
      if (answer && 'idleRssBytes' in answer) resolve({ idle: mb(answer.idleRssBytes), busy: mb(answer.busyRssBytes) });
      else reject(new Error(`${spec.system}: ${answer && 'error' in answer ? answer.error : `no answer\n${tail()}`}`));
    });
  });
}

/** Scenario 12 of issue 25. */
export const memory: StandaloneScenario = {
  kind: 'standalone',
  id: 'memory',
  issueNumber: '12',
  title: 'Memory',
  system: 'spindle',
  metrics: [
    { key: 'spindle2Idle', label: 'idle RSS MB, 2 threads', better: 'lower', digits: 1 },
    { key: 'spindle8Idle', label: 'idle RSS MB, 8 threads', better: 'lower', digits: 1 },
  ],
  size: () =>
    `RSS of one process ${SETTLE_MS / 1000} s after start, then ${START_MS / 1000} s after enough jobs to fill it (each waiting) were enqueued; ` +
    `spindle with ${MEMORY_THREADS.join(' and ')} threads, ${MEMORY_PEERS.map(([name, n]) => `${name} with ${n} jobs in flight`).join(', ')}; a bare Node process with tsx; median of ${RUNS}, in turns`,
  async unavailable() {
    return undefined;
  },
  async run({ databaseUrl, log }): Promise<Metrics> {
    const readings = new Map<string, { idle: number[]; busy: number[]; inFlight: number }>();
    const add = (key: string, inFlight: number, r: { idle: number; busy: number }) => {
      const entry = readings.get(key) ?? { idle: [], busy: [], inFlight };
      entry.idle.push(r.idle);
      entry.busy.push(r.busy);
      readings.set(key, entry);
      log(`${key}: idle ${r.idle.toFixed(1)} MB, ${inFlight} in flight ${r.busy.toFixed(1)} MB`);
    };
    const peers: (readonly [string, number])[] = [];
    for (const [name, inFlight] of MEMORY_PEERS) {
      const why = await findSystem(name)?.unavailable();
      if (why) log(`${name} skipped: ${why}`);
      else peers.push([name, inFlight]);
    }
    const base = { databaseUrl, threads: 2, holdMs: HOLD_MS, settleMs: SETTLE_MS, startMs: START_MS };
    for (let run = 1; run <= RUNS; run++) {
      for (const threads of MEMORY_THREADS) add(`spindle${threads}`, threads, await spindleOnce(databaseUrl, threads));
      for (const [name, inFlight] of peers) add(name, inFlight, await peerOnce({ ...base, system: name, inFlight }));
      add('none', 0, await peerOnce({ ...base, system: 'none', inFlight: 0 }));
    }
    const metrics: Metrics = {};
    for (const [key, r] of readings) {
      const idle = median(r.idle);
      const busy = median(r.busy);
      metrics[`${key}Idle`] = idle;
      metrics[`${key}Busy`] = busy;
      metrics[`${key}InFlight`] = r.inFlight;
      // Per run, then the median: idle and busy readings of one process belong together.
      if (r.inFlight > 0) metrics[`${key}PerJob`] = median(r.busy.map((b, i) => (b - r.idle[i]!) / r.inFlight));
    }
    return metrics;
  },
};
