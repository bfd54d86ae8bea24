/**
 * Scenario 8 (issue 22): durable workflows beside DBOS Transact. A workflow of no-op steps, 3 and 20
 * of them; spindle with 1 and 2 supervisor processes (bench/scale-supervisor.ts, one thread each:
 * workflow bodies run on the supervisor's main thread), DBOS in a process of its own
 * (bench/dbos-child.ts). Each run: a fresh schema (DBOS: a fresh database), the processes started,
 * then `runs` workflows started one after another with the library's own call and timed from the
 * first start to the last run finished. Configurations take turns (spindle 1, spindle 2, DBOS, ...).
 */
import type { ChildProcess } from 'node:child_process';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { createClient } from '../../src/client.ts';
import { migrate } from '../../src/db/migrate.ts';
import { settle } from '../database.ts';
import type { DbosChildAnswer, DbosChildSpec } from '../dbos-child.ts';
import { forkTsx } from '../isolate.ts';
import type { ScaleChildMessage, ScaleChildSpec } from '../scale-supervisor.ts';
import { median } from '../stats.ts';
import { peerMissing } from '../systems/packages.ts';
import { dropSchema } from '../systems/postgres.ts';
import type { Metrics, StandaloneScenario } from './types.ts';

const SUPERVISOR = fileURLToPath(new URL('../scale-supervisor.ts', import.meta.url));
const DBOS_CHILD = fileURLToPath(new URL('../dbos-child.ts', import.meta.url));
const WORKFLOW = 'bench-steps';
const WORKFLOWS = { [WORKFLOW]: fileURLToPath(new URL('../workflows/steps.ts', import.meta.url)) };
const DBOS_PACKAGE = '@dbos-inc/dbos-sdk';
/** DBOS's own database on the benchmark's server (its system tables). */
const DBOS_DATABASE = 'spindle_bench_dbos';
const RUNS = 3;
/** Workflows per run, by steps per workflow. */
const SIZES = [
  { steps: 3, full: 2_000, quick: 500 },
  { steps: 20, full: 300, quick: 100 },
] as const;
const SPINDLE_PROCESSES = [1, 2] as const;
/** Starts in flight at once for spindle (startWorkflow is one INSERT each). */
const START_BATCH = 50;
const READY_TIMEOUT_MS = 60_000;
const DRAIN_TIMEOUT_MS = 300_000;

type Config = 'spindle1' | 'spindle2' | 'dbos';

function waitFor<T>(child: ChildProcess, tail: () => string, accept: (message: T) => boolean, what: string, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${what} did not come within ${timeoutMs} ms\n${tail()}`));
    }, timeoutMs);
    child.on('message', (message: T) => {
      if (!accept(message)) return;
      clearTimeout(timer);
      resolve(message);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the process exited (${signal ?? `code ${code}`}) before ${what}\n${tail()}`));
    });
  });
}

/** spindle: `processes` supervisors, `runs` workflows of `steps` steps; ms from the first start to the last run finished. */
async function measureSpindle(databaseUrl: string, processes: number, runs: number, steps: number): Promise<number> {
  await dropSchema(databaseUrl, 'spindle');
  await migrate(databaseUrl);
  await settle(databaseUrl);
  const children: ChildProcess[] = [];
  const client = createClient({ connectionString: databaseUrl });
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    const spec: ScaleChildSpec = { databaseUrl, concurrency: 1, workers: {}, workflows: WORKFLOWS };
    await Promise.all(
      Array.from({ length: processes }, async () => {
        const { child, tail } = forkTsx(SUPERVISOR, spec);
        children.push(child);
        const message = await waitFor<ScaleChildMessage>(child, tail, (m) => m.type !== 'stopped', 'ready', READY_TIMEOUT_MS);
        if (message.type === 'error') throw new Error(`a supervisor failed to start: ${message.error}`);
      }),
    );
    const started = performance.now();
    for (let i = 0; i < runs; i += START_BATCH) {
      const batch = Array.from({ length: Math.min(START_BATCH, runs - i) }, () => client.startWorkflow(WORKFLOW, { steps }));
      await Promise.all(batch);
    }
    for (;;) {
      const { rows } = await db.query<{ done: number; bad: number }>(
        `SELECT count(*) FILTER (WHERE state = 'succeeded')::int AS done,
                count(*) FILTER (WHERE state IN ('failed', 'blocked', 'cancelled', 'compensation_failed'))::int AS bad
           FROM spindle.workflow_runs`,
      );
      if (rows[0]!.bad > 0) throw new Error(`${rows[0]!.bad} workflow runs did not succeed`);
      if (rows[0]!.done >= runs) break;
      if (performance.now() - started > DRAIN_TIMEOUT_MS) throw new Error(`runs not done within ${DRAIN_TIMEOUT_MS} ms`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return performance.now() - started;
  } finally {
    for (const child of children) {
      if (child.connected) child.send({ type: 'stop' });
    }
    await Promise.all(children.map((child) => (child.exitCode === null ? new Promise((resolve) => child.once('exit', resolve)) : undefined)));
    await client.close();
    await db.end();
  }
}

/** DBOS: the same, in a fresh database of its own. */
async function measureDbos(databaseUrl: string, runs: number, steps: number): Promise<number> {
  const admin = new pg.Client({ connectionString: databaseUrl });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${DBOS_DATABASE} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${DBOS_DATABASE}`);
  } finally {
    await admin.end();
  }
  const url = new URL(databaseUrl);
  url.pathname = `/${DBOS_DATABASE}`;
  const spec: DbosChildSpec = { databaseUrl: url.href, runs, steps };
  const { child, tail } = forkTsx(DBOS_CHILD, spec);
  const answer = await waitFor<DbosChildAnswer>(child, tail, () => true, 'its answer', DRAIN_TIMEOUT_MS);
  if (!answer.ok) throw new Error(`DBOS failed: ${answer.error}`);
  return answer.ms;
}

/** Scenario 8: workflows, spindle beside DBOS. */
export const workflows: StandaloneScenario = {
  kind: 'standalone',
  id: 'workflows',
  issueNumber: '8 (issue 22)',
  title: 'Durable workflows beside DBOS Transact',
  system: 'spindle',
  metrics: SIZES.flatMap(({ steps }) => [
    { key: `spindle1_${steps}`, label: `spindle 1 process, ${steps} steps, runs/s`, better: 'higher' as const, digits: 0 },
    { key: `spindle2_${steps}`, label: `spindle 2 processes, ${steps} steps, runs/s`, better: 'higher' as const, digits: 0 },
    { key: `dbos_${steps}`, label: `DBOS, ${steps} steps, runs/s`, better: 'higher' as const, digits: 0 },
  ]),
  size: (quick) =>
    SIZES.map((s) => `${(quick ? s.quick : s.full).toLocaleString('en-US')} workflows of ${s.steps} no-op steps`).join(', then ') +
    `; spindle with ${SPINDLE_PROCESSES.join(' and ')} supervisor processes of 1 thread, DBOS Transact in one process; ${RUNS} runs each, in turns, medians`,
  async unavailable() {
    return peerMissing(DBOS_PACKAGE);
  },
  async run({ databaseUrl, quick, log }): Promise<Metrics> {
    const metrics: Metrics = { runs: RUNS, loadBefore: loadavg()[0]! };
    for (const size of SIZES) {
      const runs = quick ? size.quick : size.full;
      const perSecond = new Map<Config, number[]>([['spindle1', []], ['spindle2', []], ['dbos', []]]);
      for (let run = 1; run <= RUNS; run++) {
        for (const config of perSecond.keys()) {
          const ms =
            config === 'dbos'
              ? await measureDbos(databaseUrl, runs, size.steps)
              : await measureSpindle(databaseUrl, config === 'spindle1' ? 1 : 2, runs, size.steps);
          const rate = runs / (ms / 1000);
          perSecond.get(config)!.push(rate);
          log(`run ${run}/${RUNS}  ${size.steps} steps  ${config.padEnd(8)}  ${runs} workflows in ${Math.round(ms)} ms: ${Math.round(rate)} runs/s`);
        }
      }
      for (const [config, rates] of perSecond) {
        metrics[`${config}_${size.steps}`] = median(rates);
        metrics[`${config}Min_${size.steps}`] = Math.min(...rates);
        metrics[`${config}Max_${size.steps}`] = Math.max(...rates);
      }
    }
    metrics.loadAfter = loadavg()[0]!;
    return metrics;
  },
};
