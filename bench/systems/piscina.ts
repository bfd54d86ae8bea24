/**
 * Bare Piscina: the same work on the same number of threads, with no database
 * and no queue. Not a job system: the limit a job system on threads can reach.
 */
import { Piscina } from 'piscina';
import type { PiscinaTask } from '../threads/piscina-task.ts';
import type { BenchJob, WorkResult } from '../work.ts';
import { FinishCounter } from './finish-counter.ts';
import { ownDependencyVersion } from './packages.ts';
import type { RunningSystem, StartOptions, SystemAdapter } from './types.ts';

const TASK_FILE = new URL('../threads/piscina-task.ts', import.meta.url).href;
const VERSION = ownDependencyVersion('piscina');

/** The bare-Piscina adapter. */
export const piscina: SystemAdapter = {
  info: {
    name: 'piscina',
    title: 'bare Piscina',
    version: `piscina ${VERSION}`,
    store: 'none',
    handlers: 'worker threads',
    settings: 'minThreads = maxThreads = the run\'s thread count (2); every task submitted at once; no database',
    finishedWhen: 'pool.run() resolved',
  },
  async unavailable() {
    return undefined;
  },
  async reset() {},
  async start(options: StartOptions): Promise<RunningSystem> {
    const pool = new Piscina<PiscinaTask, WorkResult>({
      filename: TASK_FILE,
      minThreads: options.threads,
      maxThreads: options.threads,
      // Every task of a throughput run is submitted at once: let them all wait in the queue.
      maxQueue: Number.POSITIVE_INFINITY,
    });
    // Without a listener, an error thrown later in a thread would crash the process.
    pool.on('error', () => {});
    const finished = new FinishCounter();
    const stamps = new Map<number, number>();
    const submit = (job: BenchJob): void => {
      pool.run({ kind: options.kind, job }).then(
        (result) => {
          if (options.kind === 'stamp') stamps.set(result.seq, result.startedAt);
          finished.add();
        },
        (error: unknown) => finished.fail(error),
      );
    };
    return {
      enqueueIsAtomic: false,
      async enqueueBatch(jobs) {
        for (const job of jobs) submit(job);
      },
      async enqueueOne(job) {
        submit(job);
      },
      waitForFinished: (total, timeoutMs) => finished.waitFor(total, timeoutMs),
      async startTimes() {
        return new Map(stamps);
      },
      async unfinished() {
        return pool.queueSize;
      },
      async stop() {
        await pool.destroy();
      },
    };
  },
};
