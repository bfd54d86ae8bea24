/**
 * Scenario 12 (issue 25): memory. The RSS of an idle spindle process (supervisor and client) with 2
 * and with 8 threads, and what each job in flight adds (as many jobs as threads, each waiting, read
 * while they wait); beside graphile-worker's and BullMQ's processes, each with its own concurrency
 * of jobs in flight on its main thread. Each reading is a fresh process; medians of RUNS, in turns.
 *
 * spindle runs as a user runs it: the compiled package on plain Node with a JavaScript worker module
 * (bench/memory-spindle.mjs; needs `npm run build`). The peers run through their adapters
 * (bench/memory-child.ts), under tsx. Each process also reads its RSS before it loads the system, so
 * "added" (idle minus that) compares what each system itself costs.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { forkTsx } from '../isolate.ts';
import type { MemoryChildAnswer, MemoryChildSpec } from '../memory-child.ts';
import { median } from '../stats.ts';
import { distMissing } from '../startup/runs.ts';
import { findSystem } from '../systems/index.ts';
import { dropSchema } from '../systems/postgres.ts';
import { migrate } from '../../src/db/migrate.ts';
import type { Metrics, StandaloneScenario } from './types.ts';

const PEER_CHILD = fileURLToPath(new URL('../memory-child.ts', import.meta.url));
const SPINDLE_CHILD = fileURLToPath(new URL('../memory-spindle.mjs', import.meta.url));
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
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
/** How long a spindle job waits at most: it returns at the supervisor's stop (bench/workers/hold.mjs). */
const SPINDLE_HOLD_MS = 60_000;
const START_MS = 1_500;
const CHILD_TIMEOUT_MS = 120_000;

const mb = (bytes: number) => bytes / 2 ** 20;

interface Reading {
  base: number;
  idle: number;
  busy: number;
}

/** Runs one memory child (started by `start`) and reads its answer, in MB. */
function readChild(label: string, child: ReturnType<typeof fork>, tail: () => string): Promise<Reading> {
  return new Promise((resolve, reject) => {
    let answer: MemoryChildAnswer | undefined;
    const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_TIMEOUT_MS);
    child.on('message', (message) => {
      answer = message as MemoryChildAnswer;
    });
    child.on('exit', () => {
      clearTimeout(timer);
      if (answer && 'idleRssBytes' in answer) resolve({ base: mb(answer.baseRssBytes), idle: mb(answer.idleRssBytes), busy: mb(answer.busyRssBytes) });
      else reject(new Error(`${label}: ${answer && 'error' in answer ? answer.error : `no answer\n${tail()}`}`));
    });
  });
}

async function spindleOnce(databaseUrl: string, threads: number): Promise<Reading> {
  await dropSchema(databaseUrl, 'spindle');
  await migrate(databaseUrl);
  const spec = { databaseUrl, threads, holdMs: SPINDLE_HOLD_MS, settleMs: SETTLE_MS, startMs: START_MS };
  let output = '';
  const child = fork(SPINDLE_CHILD, [JSON.stringify(spec)], { cwd: ROOT, execArgv: [], stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  const keep = (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4_000));
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return readChild(`spindle, ${threads} threads`, child, () => output);
}

function peerOnce(spec: MemoryChildSpec): Promise<Reading> {
  const { child, tail } = forkTsx(PEER_CHILD, spec);
  return readChild(spec.system, child, tail);
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
    `RSS of one process ${SETTLE_MS / 1000} s after start, then ${START_MS / 1000} s after as many waiting jobs as it runs at once were in flight; ` +
    `spindle compiled on plain Node with ${MEMORY_THREADS.join(' and ')} threads, ${MEMORY_PEERS.map(([name, n]) => `${name} with ${n} jobs in flight`).join(', ')} under tsx; ` +
    `median of ${RUNS}, in turns`,
  unavailable: distMissing,
  async run({ databaseUrl, log }): Promise<Metrics> {
    const readings = new Map<string, { base: number[]; idle: number[]; busy: number[]; inFlight: number }>();
    const add = (key: string, inFlight: number, r: Reading) => {
      const entry = readings.get(key) ?? { base: [], idle: [], busy: [], inFlight };
      entry.base.push(r.base);
      entry.idle.push(r.idle);
      entry.busy.push(r.busy);
      readings.set(key, entry);
      log(`${key}: before it ${r.base.toFixed(1)} MB, idle ${r.idle.toFixed(1)} MB, ${inFlight} in flight ${r.busy.toFixed(1)} MB`);
    };
    const peers: (readonly [string, number])[] = [];
    for (const [name, inFlight] of MEMORY_PEERS) {
      const why = await findSystem(name)?.unavailable();
      if (why) log(`${name} skipped: ${why}`);
      else peers.push([name, inFlight]);
    }
    for (let run = 1; run <= RUNS; run++) {
      for (const threads of MEMORY_THREADS) add(`spindle${threads}`, threads, await spindleOnce(databaseUrl, threads));
      for (const [name, inFlight] of peers) {
        add(name, inFlight, await peerOnce({ databaseUrl, system: name, threads: 2, inFlight, holdMs: HOLD_MS, settleMs: SETTLE_MS, startMs: START_MS }));
      }
    }
    const metrics: Metrics = {};
    for (const [key, r] of readings) {
      metrics[`${key}Base`] = median(r.base);
      metrics[`${key}Idle`] = median(r.idle);
      metrics[`${key}Added`] = median(r.idle.map((idle, i) => idle - r.base[i]!));
      metrics[`${key}Busy`] = median(r.busy);
      metrics[`${key}InFlight`] = r.inFlight;
      // Per run, then the median: the idle and busy readings of one process belong together.
      metrics[`${key}PerJob`] = median(r.busy.map((busy, i) => (busy - r.idle[i]!) / r.inFlight));
    }
    return metrics;
  },
};
