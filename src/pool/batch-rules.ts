/**
 * Which jobs may share a thread hop, by the run time each job type has shown on a thread: pure
 * rules, no I/O. The pool records each run (policy/run-times.ts); a lane asks these rules when it groups jobs into a
 * batch or feeds one to a running batch.
 */
import type { RunTimes } from '../policy/run-times.ts';
import type { JobRun } from './job-run.ts';

/** Runs of a type measured before its average counts: an unknown type is never batched. */
const BATCH_MIN_SAMPLES = 3;
/**
 * A waiting job is fed to a busy thread's batch only behind a job whose type
 * averages under this (ms): the round trip it saves is worth it for short
 * jobs, and a job fed behind a long one could wait long.
 */
const FEED_BELOW_MS = 50;

/** What the rules read of a job. */
export type BatchCandidate = Pick<JobRun, 'type' | 'mode' | 'batchable'>;

/** The batching rules of one pool, and the run times they read. */
export class BatchRules {
  readonly #runTimes: RunTimes;
  readonly #batchBelowMs: number;
  readonly #maxBatchJobs: number;

  /** `batchBelowMs`, `maxBatchJobs`: see WorkerPoolOptions. */
  constructor(runTimes: RunTimes, batchBelowMs: number, maxBatchJobs: number) {
    this.#runTimes = runTimes;
    this.#batchBelowMs = batchBelowMs;
    this.#maxBatchJobs = maxBatchJobs;
  }

  /** The run's expected time (ms) if it may share a batch, else undefined. */
  batchCost(run: BatchCandidate): number | undefined {
    if (run.mode !== 'run' || !run.batchable) return undefined;
    const known = this.#runTimes.known(run.type);
    if (known === undefined || known.samples < BATCH_MIN_SAMPLES || known.averageMs >= this.#batchBelowMs) return undefined;
    return known.averageMs;
  }

  /** Its type is measured short enough (FEED_BELOW_MS) for a waiting job to be fed behind it. */
  feedsBehind(run: BatchCandidate): boolean {
    if (run.mode !== 'run' || !run.batchable || this.#maxBatchJobs < 2) return false;
    const known = this.#runTimes.known(run.type);
    return known !== undefined && known.samples >= BATCH_MIN_SAMPLES && known.averageMs < FEED_BELOW_MS;
  }
}
