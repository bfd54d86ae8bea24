/**
 * pg-boss 10, the newest major that supports Node 20 (11 and 12 need Node >= 22).
 * It has no LISTEN: each worker loop fetches a batch, runs it, and then waits
 * out the rest of its polling interval (0.5 s at least). Handlers run on the
 * main thread.
 */
import { doWork, type BenchJob } from '../work.ts';
import { FinishCounter, pollUntil } from './finish-counter.ts';
import { importPeer, peerMissing, peerVersion } from './packages.ts';
import { dropSchema, queryNumber, withConnection } from './postgres.ts';
import type { RunningSystem, StartOptions, SystemAdapter } from './types.ts';

const PACKAGE = 'pg-boss';
const SCHEMA = 'pgboss';
const QUEUE = 'bench';

/** Worker loops (pg-boss 10 has no concurrency option: each work() call is one loop). */
const LOOPS = 2;
/** Jobs fetched per loop iteration. */
const BATCH_SIZE = 100;
/** Its minimum. */
const POLLING_INTERVAL_SECONDS = 0.5;

/** The part of pg-boss's API used here (see packages.ts for why it is declared). */
interface PgBossJob<T> {
  id: string;
  data: T;
}
interface PgBoss {
  on(event: 'error', listener: (error: Error) => void): unknown;
  start(): Promise<unknown>;
  stop(options: { graceful: boolean; wait: boolean }): Promise<void>;
  createQueue(name: string): Promise<void>;
  work<T>(
    name: string,
    options: { batchSize: number; pollingIntervalSeconds: number },
    handler: (jobs: PgBossJob<T>[]) => Promise<void>,
  ): Promise<string>;
  insert(jobs: { name: string; data: unknown }[]): Promise<void>;
  send(name: string, data: object): Promise<string | null>;
  getDb(): { executeSql(text: string, values: unknown[]): Promise<{ rows: { n?: string }[] }> };
}
type PgBossClass = new (options: { connectionString: string; schema: string; schedule: boolean }) => PgBoss;

async function newBoss(databaseUrl: string): Promise<PgBoss> {
  // module.exports is the class itself: it comes back as the namespace's default.
  const { default: PgBoss } = await importPeer<{ default: PgBossClass }>(PACKAGE, 'default');
  const boss = new PgBoss({ connectionString: databaseUrl, schema: SCHEMA, schedule: false });
  // An unhandled 'error' event would end the process; a failed run shows up as missing jobs.
  boss.on('error', () => {});
  return boss;
}

/** The pg-boss adapter. */
export const pgBoss: SystemAdapter = {
  info: {
    name: 'pg-boss',
    title: 'pg-boss',
    version: `pg-boss ${peerVersion(PACKAGE)}`,
    store: 'PostgreSQL',
    handlers: 'main thread',
    settings: `${LOOPS} work() loops, batchSize ${BATCH_SIZE}, pollingIntervalSeconds ${POLLING_INTERVAL_SECONDS} (its minimum; it has no LISTEN), other options default`,
    finishedWhen:
      "its state is 'completed' (the table is polled once every handler has returned; pg-boss completes a batch without awaiting it)",
  },
  async unavailable() {
    return peerMissing(PACKAGE);
  },
  async reset(databaseUrl) {
    await dropSchema(databaseUrl, SCHEMA);
    // start() creates the schema.
    const boss = await newBoss(databaseUrl);
    await boss.start();
    await boss.createQueue(QUEUE);
    await boss.stop({ graceful: false, wait: true });
  },
  async start(options: StartOptions): Promise<RunningSystem> {
    const boss = await newBoss(options.databaseUrl);
    await boss.start();
    const finished = new FinishCounter();
    const stamps = new Map<number, number>();
    for (let i = 0; i < LOOPS; i++) {
      await boss.work<BenchJob>(
        QUEUE,
        { batchSize: BATCH_SIZE, pollingIntervalSeconds: POLLING_INTERVAL_SECONDS },
        async (jobs) => {
          for (const job of jobs) {
            const result = doWork(options.kind, job.data);
            if (options.kind === 'stamp') stamps.set(result.seq, result.startedAt);
            finished.add();
          }
        },
      );
    }
    return {
      enqueueIsAtomic: true,
      async enqueueBatch(jobs) {
        await boss.insert(jobs.map((data) => ({ name: QUEUE, data })));
      },
      async enqueueOne(job) {
        await boss.send(QUEUE, job);
      },
      async waitForFinished(total, timeoutMs) {
        await finished.waitFor(total, timeoutMs);
        const db = boss.getDb();
        return pollUntil(async () => {
          const { rows } = await db.executeSql(`SELECT count(*) AS n FROM ${SCHEMA}.job WHERE state = 'completed'`, []);
          return Number(rows[0]?.n) >= total;
        }, timeoutMs);
      },
      async startTimes() {
        return new Map(stamps);
      },
      async unfinished() {
        return withConnection(options.databaseUrl, (c) =>
          queryNumber(c, `SELECT count(*) AS n FROM ${SCHEMA}.job WHERE state <> 'completed'`),
        );
      },
      async stop() {
        await boss.stop({ graceful: true, wait: true });
      },
    };
  },
};
