/**
 * graphile-worker, in two configurations: its defaults, and tuned for
 * throughput as its performance page recommends (a local queue and batched
 * completion). Handlers run on the main thread: that is how it runs tasks.
 *
 * 0.17.3 is the newest release that supports Node 20 (0.18 needs Node >= 22.18).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { doWork, type BenchJob, type WorkKind } from '../work.ts';
import { FinishCounter, pollUntil } from './finish-counter.ts';
import { importPeer, peerMissing, peerVersion } from './packages.ts';
import { dropSchema, queryNumber, withConnection } from './postgres.ts';
import type { RunningSystem, StartOptions, SystemAdapter } from './types.ts';

const PACKAGE = 'graphile-worker';
const SCHEMA = 'graphile_worker';

/** The part of graphile-worker's API used here (see packages.ts for why it is declared). */
interface GraphileLogger {
  readonly _brand?: 'graphile-logger';
}
type Task = (payload: unknown) => Promise<void>;
interface RunOptions {
  connectionString: string;
  logger: GraphileLogger;
  noHandleSignals: boolean;
  taskList: Record<string, Task>;
  concurrency?: number;
  maxPoolSize?: number;
  preset?: { worker: { localQueue?: { size: number }; completeJobBatchDelay?: number; failJobBatchDelay?: number } };
}
interface WorkerUtils {
  addJobs(specs: { identifier: string; payload: unknown }[]): Promise<unknown>;
  addJob(identifier: string, payload: unknown): Promise<unknown>;
  withPgClient<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T>;
  release(): Promise<void>;
}
interface GraphileWorker {
  Logger: new (factory: () => () => void) => GraphileLogger;
  run(options: RunOptions): Promise<{ stop(): Promise<void> }>;
  runMigrations(options: { connectionString: string; logger: GraphileLogger }): Promise<void>;
  makeWorkerUtils(options: { connectionString: string; logger: GraphileLogger }): Promise<WorkerUtils>;
}

type Config = Pick<RunOptions, 'concurrency' | 'maxPoolSize' | 'preset'>;

/** The task name of each kind of work. */
const TASK: Record<WorkKind, string> = { noop: 'bench_noop', spin: 'bench_spin', stamp: 'bench_stamp' };

/**
 * Its defaults, but for concurrency: the default (1 job at a time) would not be
 * a fair reading of "defaults", so concurrency is 10, its default pool size.
 */
const DEFAULTS: Config = { concurrency: 10 };

/** worker.graphile.org/docs/performance: the configuration behind its published figures. */
const TUNED: Config = {
  concurrency: 24,
  maxPoolSize: 25,
  preset: { worker: { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 } },
};

async function load(): Promise<{ lib: GraphileWorker; logger: GraphileLogger }> {
  const lib = await importPeer<GraphileWorker>(PACKAGE, 'run');
  return { lib, logger: new lib.Logger(() => () => {}) };
}

function adapter(name: string, title: string, settings: string, config: Config): SystemAdapter {
  return {
    info: {
      name,
      title,
      version: `graphile-worker ${peerVersion(PACKAGE)}`,
      store: 'PostgreSQL',
      handlers: 'main thread',
      settings,
      finishedWhen: 'its row is gone from the jobs table (the table is polled once every task function has returned)',
    },
    async unavailable() {
      return peerMissing(PACKAGE);
    },
    async reset(databaseUrl) {
      const { lib, logger } = await load();
      await dropSchema(databaseUrl, SCHEMA);
      await lib.runMigrations({ connectionString: databaseUrl, logger });
    },
    start: (options) => start(options, config),
  };
}

async function start(options: StartOptions, config: Config): Promise<RunningSystem> {
  const { lib, logger } = await load();
  const finished = new FinishCounter();
  const stamps = new Map<number, number>();
  const task =
    (kind: WorkKind): Task =>
    async (payload) => {
      const result = doWork(kind, payload as BenchJob);
      if (options.holdMs) await sleep(options.holdMs);
      if (kind === 'stamp') stamps.set(result.seq, result.startedAt);
      finished.add();
    };
  const runner = await lib.run({
    ...config,
    connectionString: options.databaseUrl,
    logger,
    noHandleSignals: true,
    taskList: { [TASK.noop]: task('noop'), [TASK.spin]: task('spin'), [TASK.stamp]: task('stamp') },
  });
  const utils = await lib.makeWorkerUtils({ connectionString: options.databaseUrl, logger });
  const identifier = TASK[options.kind];
  let enqueued = 0;
  // Completed jobs are deleted (in batches, in the tuned config): done = enqueued - rows left.
  const doneInTable = () =>
    utils.withPgClient((c) => queryNumber(c, `SELECT count(*) AS n FROM ${SCHEMA}._private_jobs`)).then((left) => enqueued - left);
  return {
    enqueueIsAtomic: true,
    async enqueueBatch(jobs) {
      await utils.addJobs(jobs.map((payload) => ({ identifier, payload })));
      enqueued += jobs.length;
    },
    async enqueueOne(job) {
      await utils.addJob(identifier, job);
      enqueued += 1;
    },
    async waitForFinished(total, timeoutMs) {
      await finished.waitFor(total, timeoutMs);
      return pollUntil(async () => (await doneInTable()) >= total, timeoutMs);
    },
    async startTimes() {
      return new Map(stamps);
    },
    async unfinished() {
      // Completed jobs are deleted; whatever is left was not done.
      return withConnection(options.databaseUrl, (c) => queryNumber(c, `SELECT count(*) AS n FROM ${SCHEMA}._private_jobs`));
    },
    async stop() {
      await runner.stop();
      await utils.release();
    },
  };
}

/** graphile-worker with its defaults (concurrency 10). */
export const graphileWorker = adapter(
  'graphile-worker',
  'graphile-worker',
  'defaults (LISTEN/NOTIFY, pollInterval 2000 ms, maxPoolSize 10, no local queue, no batching), concurrency 10',
  DEFAULTS,
);

/** graphile-worker tuned for throughput per its docs. */
export const graphileWorkerTuned = adapter(
  'graphile-worker-tuned',
  'graphile-worker tuned',
  'concurrency 24, maxPoolSize 25, localQueue.size 500, completeJobBatchDelay 0, failJobBatchDelay 0 (its performance page)',
  TUNED,
);
