/**
 * Thread hops per second: how fast the worker pool turns short jobs around, with
 * and without the database. A development aid for the pool (the side-by-side
 * benchmark is `npm run bench`).
 *
 *   node --import tsx bench/hops.ts pool [--jobs N] [--in-flight N] [--threads N] [--runs N]
 *   node --import tsx bench/hops.ts idle [--jobs N] [--threads N]
 *   DATABASE_URL=postgres://... node --import tsx bench/hops.ts e2e [--jobs N] [--threads N] [--runs N] [--prefetch N]
 *
 * `pool` keeps N no-op jobs in flight on a WorkerPool and counts outcomes per
 * second. `idle` runs one job at a time, 5 to 15 ms apart, so each finds a
 * thread idle, and prints the time from pool.run() to the handler's start
 * (p50, p90, p99). `e2e` creates a scratch database beside DATABASE_URL's, enqueues
 * the jobs, starts a supervisor and counts 'job:finished' events until all
 * have finished, then drops the database. HOPS_VERBOSE=1 prints the pool's
 * batch counts and the supervisor's state after each run.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createClient } from '../src/client.ts';
import { WorkerPool } from '../src/pool/pool.ts';
import { startSupervisor } from '../src/start.ts';
import { percentile } from './stats.ts';
import { wallClockMs, type WorkResult } from './work.ts';

const NOOP = fileURLToPath(new URL('../workers/noop.ts', import.meta.url));
const STAMP = fileURLToPath(new URL('./workers/stamp.ts', import.meta.url));
const WARMUP_JOBS = 500;
const WORKERS = fileURLToPath(new URL('../workers', import.meta.url));

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    jobs: { type: 'string' },
    'in-flight': { type: 'string', default: '64' },
    threads: { type: 'string', default: '2' },
    runs: { type: 'string', default: '3' },
    prefetch: { type: 'string' },
  },
});
const mode = positionals[0] ?? 'pool';
const threads = Number(values.threads);
const runs = Number(values.runs);

async function poolRun(pool: WorkerPool, jobs: number, inFlight: number): Promise<number> {
  let next = 0;
  let done = 0;
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const submit = (): void => {
      const id = next++;
      pool
        .run({ mode: 'run', jobId: String(id), type: 'noop', modulePath: NOOP, input: { id }, attempt: 1, maxAttempts: 1 }, {})
        .outcome.then((outcome) => {
          if (outcome.kind !== 'succeeded') throw new Error(`job ${id}: ${outcome.kind}`);
          done += 1;
          if (done === jobs) resolve();
          else if (next < jobs) submit();
        });
    };
    for (let i = 0; i < Math.min(inFlight, jobs); i++) submit();
  });
  return (jobs / (performance.now() - t0)) * 1000;
}

async function poolMode(): Promise<number[]> {
  const jobs = Number(values.jobs ?? 50_000);
  const inFlight = Number(values['in-flight']);
  const pool = new WorkerPool({ maxThreads: threads });
  try {
    await poolRun(pool, 2_000, inFlight); // warm-up: threads, tsx, the module, the run-time average
    const rates: number[] = [];
    for (let i = 0; i < runs; i++) rates.push(await poolRun(pool, jobs, inFlight));
    return rates;
  } finally {
    await pool.close();
  }
}

async function idleMode(): Promise<void> {
  const jobs = Number(values.jobs ?? 800);
  const pool = new WorkerPool({ maxThreads: threads });
  try {
    const delays: number[] = [];
    for (let seq = -20; seq < jobs; seq++) {
      await sleep(5 + Math.random() * 10);
      const at = wallClockMs();
      const outcome = await pool.run({ mode: 'run', jobId: String(seq), type: 'stamp', modulePath: STAMP, input: { seq }, attempt: 1, maxAttempts: 1 }, {})
        .outcome;
      if (outcome.kind !== 'succeeded') throw new Error(`job ${seq}: ${outcome.kind}`);
      if (seq >= 0) delays.push((outcome.output as WorkResult).startedAt - at);
    }
    const at = (p: number): string => percentile(delays, p).toFixed(3);
    console.log(`idle: pool.run() to handler start, ${delays.length} jobs: p50 ${at(50)} ms, p90 ${at(90)} ms, p99 ${at(99)} ms`);
  } finally {
    await pool.close();
  }
}

async function e2eRun(baseUrl: string, jobs: number): Promise<number> {
  const name = `spindle_hops_${process.pid}_${Date.now()}`;
  const admin = new pg.Client({ connectionString: baseUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const url = new URL(baseUrl);
  url.pathname = `/${name}`;
  const databaseUrl = url.href;
  try {
    const handle = await startSupervisor({
      databaseUrl,
      workers: WORKERS,
      concurrency: threads,
      logLevel: 'silent',
      socket: false,
      ...(values.prefetch === undefined ? {} : { prefetch: Number(values.prefetch) }),
    });
    const client = createClient({ connectionString: databaseUrl });
    try {
      // As `npm run bench` does: warm up, then time from the moment the batch is visible to its last finish.
      let finished = 0;
      let target = WARMUP_JOBS;
      let reached: (() => void) | undefined;
      handle.supervisor.events.on('job:finished', () => {
        finished += 1;
        if (finished === target) reached?.();
      });
      const drain = (specs: { type: string; input: unknown }[]): Promise<void> => {
        const done = new Promise<void>((resolve) => (reached = resolve));
        return client.enqueueMany(specs).then(() => done);
      };
      await drain(Array.from({ length: WARMUP_JOBS }, (_, i) => ({ type: 'noop', input: { i } })));
      target += jobs;
      const specs = Array.from({ length: jobs }, (_, i) => ({ type: 'noop', input: { i } }));
      const done = new Promise<void>((resolve) => (reached = resolve));
      await client.enqueueMany(specs);
      const t0 = performance.now();
      const watchdog = setTimeout(() => {
        const snap = handle.snapshot();
        console.error(`stuck at ${finished}/${target}:`, JSON.stringify({ pool: snap.pool, jobs: snap.jobs.slice(0, 5), inFlight: snap.jobs.length }));
      }, 60_000);
      await done;
      clearTimeout(watchdog);
      if (process.env.HOPS_VERBOSE) {
        const snap = handle.snapshot();
        const sup = snap.actors as unknown as { state?: unknown };
        console.error(JSON.stringify({ pool: snap.pool.batches, outcomes: snap.pool.outcomes, supervisor: sup.state }));
      }
      return (jobs / (performance.now() - t0)) * 1000;
    } finally {
      await client.close();
      await handle.stop();
    }
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  }
}

async function e2eMode(): Promise<number[]> {
  const baseUrl = process.env.DATABASE_URL;
  if (baseUrl === undefined) throw new Error('set DATABASE_URL');
  const jobs = Number(values.jobs ?? 20_000);
  const rates: number[] = [];
  for (let i = 0; i < runs; i++) rates.push(await e2eRun(baseUrl, jobs));
  return rates;
}

if (mode === 'idle') {
  await idleMode();
} else {
  const rates = mode === 'e2e' ? await e2eMode() : await poolMode();
  const sorted = [...rates].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
  console.log(`${mode}: ${rates.map((r) => r.toFixed(0)).join(', ')} jobs/s; median ${median.toFixed(0)}`);
}
