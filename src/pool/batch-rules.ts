/**
 * Which jobs may share a thread hop, by the run time each job type has shown on a thread: pure
 * rules, no I/O. The pool records each run; a lane asks these rules when it groups jobs into a
 * batch or feeds one to a running batch.
 */
import type { JobRun } from './job-run.ts';

/** Runs of a type measured before its average counts: an unknown type is never batched. */
const BATCH_MIN_SAMPLES = 3;
/**
 * A waiting job is fed to a busy thread's batch only behind a job whose type
 * averages under this (ms): the round trip it saves is worth it for short
 * jobs, and a job fed behind a long one could wait long.
 */
const FEED_BELOW_MS = 50;
/** Weight of the newest run in a type's moving average. */
const RUN_TIME_WEIGHT = 0.2;

/** What the rules read of a job. */
export type BatchCandidate = Pick<JobRun, 'type' | 'mode' | 'batchable'>;

/** A job type's recent run time on a thread. */
interface TypeRunTime {
  averageMs: number;
  samples: number;
}

/** The batching rules of one pool, and the run times they read. */
export class BatchRules {
  readonly #byType = new Map<string, TypeRunTime>();
  readonly #batchBelowMs: number;
  readonly #maxBatchJobs: number;

  /** `batchBelowMs`, `maxBatchJobs`: see WorkerPoolOptions. */
  constructor(batchBelowMs: number, maxBatchJobs: number) {
    this.#batchBelowMs = batchBelowMs;
    this.#maxBatchJobs = maxBatchJobs;
  }

  /** A job of `type` ran `ms` on its thread. */
  record(type: string, ms: number): void {
    const known = this.#byType.get(type);
    if (known === undefined) {
      this.#byType.set(type, { averageMs: ms, samples: 1 });
    } else {
      known.averageMs += (ms - known.averageMs) * RUN_TIME_WEIGHT;
      known.samples += 1;
    }
  }

  /** The run's expected time (ms) if it may share a batch, else undefined. */
  batchCost(run: BatchCandidate): number | undefined {
    if (run.mode !== 'run' || !run.batchable) return undefined;
    const known = this.#byType.get(run.type);
    if (known === undefined || known.samples < BATCH_MIN_SAMPLES || known.averageMs >= this.#batchBelowMs) return undefined;
    return known.averageMs;
  }

  /** Its type is measured short enough (FEED_BELOW_MS) for a waiting job to be fed behind it. */
  feedsBehind(run: BatchCandidate): boolean {
    if (run.mode !== 'run' || !run.batchable || this.#maxBatchJobs < 2) return false;
    const known = this.#byType.get(run.type);
    return known !== undefined && known.samples >= BATCH_MIN_SAMPLES && known.averageMs < FEED_BELOW_MS;
  }
}
