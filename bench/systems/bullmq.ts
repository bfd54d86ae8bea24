/**
 * BullMQ 6 on its PostgreSQL backend (`createPostgresBackend`, new in 6.x), so
 * it shares the PostgreSQL every other system uses; no Redis is involved.
 * No-op and latency jobs run in an in-process processor; CPU jobs run in its
 * sandboxed processors on worker threads (`useWorkerThreads`), one per slot.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { fileURLToPath } from 'node:url';
import { doWork, type BenchJob, type WorkKind, type WorkResult } from '../work.ts';
import { FinishCounter } from './finish-counter.ts';
import { importPeer, peerMissing, peerVersion } from './packages.ts';
import { dropSchema, queryNumber, withConnection } from './postgres.ts';
import type { RunningSystem, StartOptions, SystemAdapter } from './types.ts';

const PACKAGE = 'bullmq';
const SCHEMA = 'bullmq';
const QUEUE = 'bench';
// A .mjs entry that registers tsx in the sandbox thread, then loads bullmq-processor.ts.
const PROCESSOR_FILE = fileURLToPath(new URL('../threads/bullmq-processor.mjs', import.meta.url));

/** Concurrency of the in-process processor (no-op and latency jobs). */
const IN_PROCESS_CONCURRENCY = 10;

/** The part of BullMQ's API used here (see packages.ts for why it is declared). */
interface Job {
  name: WorkKind;
  data: BenchJob;
}
interface Connection {
  connection: { connectionString: string; schema: string };
}
interface Queue {
  addBulk(jobs: { name: WorkKind; data: BenchJob }[]): Promise<unknown>;
  add(name: WorkKind, data: BenchJob): Promise<unknown>;
  on(event: 'error', listener: (error: Error) => void): unknown;
  waitUntilReady(): Promise<unknown>;
  close(): Promise<void>;
}
interface Worker {
  on(event: 'completed', listener: (job: Job, result: WorkResult) => void): unknown;
  on(event: 'failed', listener: (job: Job | undefined, error: Error) => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
  waitUntilReady(): Promise<unknown>;
  close(): Promise<void>;
}
interface BullMQ {
  createPostgresBackend: unknown;
  runMigrations(client: pg.ClientBase, schema: string): Promise<number>;
  withBackend(factory: unknown): {
    Queue: new (name: string, options: Connection) => Queue;
    Worker: new (
      name: string,
      processor: string | ((job: Job) => Promise<WorkResult>),
      options: Connection & { concurrency: number; useWorkerThreads: boolean },
    ) => Worker;
  };
}

/** The BullMQ adapter. */
export const bullmq: SystemAdapter = {
  info: {
    name: 'bullmq',
    title: 'BullMQ (PostgreSQL)',
    version: `bullmq ${peerVersion(PACKAGE)}`,
    store: 'PostgreSQL',
    handlers: 'main thread (no-op, latency); worker threads (CPU)',
    settings: `PostgreSQL backend (createPostgresBackend, schema "${SCHEMA}"); in-process processor with concurrency ${IN_PROCESS_CONCURRENCY} for no-op and latency; sandboxed processor with useWorkerThreads and concurrency = the run's thread count (2) for CPU; jobs kept on completion (its default)`,
    finishedWhen: "Worker 'completed' event (after the completion is written)",
  },
  async unavailable() {
    return peerMissing(PACKAGE);
  },
  async reset(databaseUrl) {
    const lib = await importPeer<BullMQ>(PACKAGE, 'withBackend');
    await dropSchema(databaseUrl, SCHEMA);
    await withConnection(databaseUrl, async (client) => {
      await lib.runMigrations(client, SCHEMA);
    });
  },
  async start(options: StartOptions): Promise<RunningSystem> {
    const lib = await importPeer<BullMQ>(PACKAGE, 'withBackend');
    // Bound to the PostgreSQL backend without changing BullMQ's process-wide default.
    const { Queue, Worker } = lib.withBackend(lib.createPostgresBackend);
    const connection = { connectionString: options.databaseUrl, schema: SCHEMA };
    const queue = new Queue(QUEUE, { connection });
    const onThreads = options.kind === 'spin';
    const inProcess = async (job: Job): Promise<WorkResult> => {
      const result = doWork(job.name, job.data);
      if (options.holdMs) await sleep(options.holdMs);
      return result;
    };
    const worker = new Worker(QUEUE, onThreads ? PROCESSOR_FILE : inProcess, {
      connection,
      concurrency: onThreads ? options.threads : IN_PROCESS_CONCURRENCY,
      useWorkerThreads: onThreads,
    });
    const finished = new FinishCounter();
    const stamps = new Map<number, number>();
    worker.on('completed', (_job, result) => {
      if (options.kind === 'stamp') stamps.set(result.seq, result.startedAt);
      finished.add();
    });
    worker.on('failed', (_job, error) => finished.fail(error));
    // An unhandled 'error' event would end the process; a failed run shows up as missing jobs.
    worker.on('error', () => {});
    queue.on('error', () => {});
    await queue.waitUntilReady();
    await worker.waitUntilReady();
    return {
      enqueueIsAtomic: true,
      async enqueueBatch(jobs) {
        await queue.addBulk(jobs.map((data) => ({ name: options.kind, data })));
      },
      async enqueueOne(job) {
        await queue.add(options.kind, job);
      },
      waitForFinished: (total, timeoutMs) => finished.waitFor(total, timeoutMs),
      async startTimes() {
        return new Map(stamps);
      },
      async unfinished() {
        return withConnection(options.databaseUrl, (c) =>
          queryNumber(c, `SELECT count(*) AS n FROM ${SCHEMA}.job WHERE state <> 'completed'`),
        );
      },
      async stop() {
        await worker.close();
        await queue.close();
      },
    };
  },
};
