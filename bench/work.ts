/**
 * The work every system runs, in one place: the same no-op, the same CPU loop
 * (`spinFor` from workers/spin.ts) and the same start stamp, whether a handler
 * runs on a main thread, a Piscina thread, a BullMQ sandbox or a spindle thread.
 */
import { spinFor } from '../workers/spin.ts';

/** What a benchmark job does: nothing, a fixed CPU loop, or record when it started. */
export type WorkKind = 'noop' | 'spin' | 'stamp';

/** The input of every benchmark job. */
export interface BenchJob {
  /** The job's number within its run, 0-based; stamps are keyed by it. */
  seq: number;
  /** For `spin`: milliseconds of CPU loop. */
  ms?: number;
}

/** What a benchmark job returns. */
export interface WorkResult {
  seq: number;
  /** When the handler started, by wallClockMs(). */
  startedAt: number;
}

/**
 * Wall-clock milliseconds with sub-millisecond resolution. Comparable across the
 * threads of one process (each thread's timeOrigin is its own, the sum is not).
 */
export function wallClockMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Runs one benchmark job on the calling thread. */
export function doWork(kind: WorkKind, job: BenchJob): WorkResult {
  const startedAt = wallClockMs();
  if (kind === 'spin') spinFor(job.ms ?? 20);
  return { seq: job.seq, startedAt };
}
