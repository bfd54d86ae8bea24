/**
 * spindle itself: a supervisor in this process (startSupervisor), handlers on
 * its Piscina threads, jobs enqueued with the Client, finishes seen on the
 * `spindle_finished` channel (sent in the transaction that writes the outcome).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { createClient } from '../../src/client.ts';
import { migrate } from '../../src/db/migrate.ts';
import { startSupervisor } from '../../src/start.ts';
import { wallClockMs, type BenchJob, type WorkKind } from '../work.ts';
import { FinishCounter } from './finish-counter.ts';
import { followFinished } from './spindle-finished.ts';
import { dropSchema, queryNumber, withConnection } from './postgres.ts';
import type { RunningSystem, StartOptions, SystemAdapter } from './types.ts';

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** How often the finished count is also read from the table, in case a notification is missed. */

/** The job type of each kind of work, and the worker module that runs it. */
const TYPE: Record<WorkKind, string> = { noop: 'bench-noop', spin: 'bench-spin', stamp: 'bench-stamp' };
const WORKERS: Record<string, string> = {
  [TYPE.noop]: fileURLToPath(new URL('../../workers/noop.ts', import.meta.url)),
  [TYPE.spin]: fileURLToPath(new URL('../../workers/spin.ts', import.meta.url)),
  [TYPE.stamp]: fileURLToPath(new URL('../workers/stamp.ts', import.meta.url)),
};

/** The spindle adapter. */
export const spindle: SystemAdapter = {
  info: {
    name: 'spindle',
    title: 'spindle',
    version: `spindle ${VERSION}`,
    store: 'PostgreSQL',
    handlers: 'worker threads',
    settings: "startSupervisor({ concurrency: the run's thread count (2) }), other options default; Client.enqueueMany / enqueue",
    finishedWhen: "'spindle_finished' NOTIFY (sent in the transaction that writes the outcome)",
  },
  async unavailable() {
    return undefined;
  },
  async reset(databaseUrl) {
    await dropSchema(databaseUrl, 'spindle');
    await migrate(databaseUrl);
  },
  async start(options: StartOptions): Promise<RunningSystem> {
    const finished = new FinishCounter();
    const listener = new pg.Client({ connectionString: options.databaseUrl });
    await listener.connect();
    const stopFollowing = await followFinished(listener, finished);

    const client = createClient({ connectionString: options.databaseUrl });
    const supervisor = await startSupervisor({
      databaseUrl: options.databaseUrl,
      workers: WORKERS,
      concurrency: options.threads,
      logLevel: 'silent',
      socket: false,
    });
    const type = TYPE[options.kind];
    // Only where latency is measured: a listener on every claim would cost the throughput runs.
    const claimedAt = new Map<string, number>();
    if (options.kind === 'stamp') {
      supervisor.supervisor.events.on('job:claimed', (event) => claimedAt.set(event.id, wallClockMs()));
    }
    const input = (job: BenchJob): BenchJob => (options.kind === 'spin' ? { seq: job.seq, ms: job.ms } : job);
    return {
      enqueueIsAtomic: true,
      async enqueueBatch(jobs) {
        await client.enqueueMany(jobs.map((job) => ({ type, input: input(job) })));
      },
      async enqueueOne(job) {
        await client.enqueue(type, input(job));
      },
      waitForFinished: (total, timeoutMs) => finished.waitFor(total, timeoutMs),
      async startTimes() {
        const { rows } = await listener.query<{ seq: number; started_at: number }>(
          `SELECT (output->>'seq')::int AS seq, (output->>'startedAt')::float8 AS started_at
             FROM spindle.jobs WHERE type = $1 AND state = 'succeeded'`,
          [TYPE.stamp],
        );
        return new Map(rows.map((r) => [r.seq, r.started_at]));
      },
      async claimTimes() {
        const { rows } = await listener.query<{ id: string; seq: number }>(
          `SELECT id::text AS id, (output->>'seq')::int AS seq FROM spindle.jobs WHERE type = $1 AND state = 'succeeded'`,
          [TYPE.stamp],
        );
        const bySeq = new Map<number, number>();
        for (const r of rows) {
          const at = claimedAt.get(r.id);
          if (at !== undefined) bySeq.set(r.seq, at);
        }
        return bySeq;
      },
      async unfinished() {
        return withConnection(options.databaseUrl, (c) =>
          queryNumber(c, `SELECT count(*) AS n FROM spindle.jobs WHERE state <> 'succeeded'`),
        );
      },
      async stop() {
        stopFollowing();
        await supervisor.stop();
        await client.close();
        await listener.end();
      },
    };
  },
};
