/**
 * Keeps one core busy for `input.ms` milliseconds. For benchmarks: a job of a
 * known CPU cost, and the same loop (`spinFor`) that the peer systems run, so
 * that only the runtimes differ. The loop does not yield: a benchmark job is
 * short, and a runaway one is stopped by terminating its thread.
 */
import type { JobContext } from '../src/context.ts';
import { PermanentError } from '../src/errors.ts';

/** Milliseconds spun when the input does not say. */
export const DEFAULT_MS = 20;

/** The longest spin accepted, in milliseconds. */
export const MAX_MS = 60_000;

/** Input of `spin`; `{}` spins for DEFAULT_MS. */
export interface SpinInput {
  /** How long to spin, in milliseconds (0 to MAX_MS). */
  ms?: number;
}

/** Output of `spin`. */
export interface SpinOutput {
  /** The milliseconds asked for. */
  ms: number;
  /** Loop iterations run (returned so the loop cannot be optimised away). */
  iterations: number;
}

/** Busy-waits for `ms` milliseconds by performance.now(); returns the iterations run. */
export function spinFor(ms: number): number {
  const start = performance.now();
  let iterations = 0;
  while (performance.now() - start < ms) iterations++;
  return iterations;
}

/** Spins for `input.ms` (default DEFAULT_MS) milliseconds on this thread. */
export default async function spin(input: SpinInput | null | undefined, ctx: JobContext): Promise<SpinOutput> {
  const ms = readMs(input);
  ctx.signal.throwIfAborted();
  return { ms, iterations: spinFor(ms) };
}

/** Checks the input, throwing PermanentError (no retry) with the field's name. */
function readMs(input: SpinInput | null | undefined): number {
  if (input === null || input === undefined) return DEFAULT_MS;
  if (typeof input !== 'object') {
    throw new PermanentError('input must be an object like { "ms": 20 }');
  }
  const ms = input.ms ?? DEFAULT_MS;
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0 || ms > MAX_MS) {
    throw new PermanentError(`input.ms must be a number from 0 to ${MAX_MS} (got ${JSON.stringify(ms)})`);
  }
  return ms;
}
