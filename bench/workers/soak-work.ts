/**
 * The soak's job (issue 25, scenario 11): one module for the whole mix, so every job goes through
 * the same claims. `short` reports progress once and returns; `cpu` spins with a progress call about
 * every millisecond; `fail` throws (retried once, then failed); `timeout` runs past its timeoutMs
 * and returns at its signal. Jobs that return give their start, for enqueue-to-start latency.
 */
import type { JobContext } from '../../src/context.ts';
import { spinFor } from '../../workers/spin.ts';
import { wallClockMs } from '../work.ts';

/** One soak job. */
export interface SoakInput {
  kind: 'short' | 'cpu' | 'fail' | 'timeout';
  /** When the harness enqueued it, by wallClockMs(). */
  enqueuedAt: number;
  /** For `cpu`: milliseconds of loop. */
  ms?: number;
}

/** What a job that returns gives back. */
export interface SoakOutput {
  startedAt: number;
}

/** A failed attempt comes back soon: the soak wants its retry within the minute. */
export const options = { backoff: { baseMs: 100, maxMs: 1_000 } };

/** Runs one soak job (see the file comment). */
export default async function soak(input: SoakInput, ctx: JobContext): Promise<SoakOutput> {
  const startedAt = wallClockMs();
  switch (input.kind) {
    case 'short':
      ctx.progress(100, 'done');
      return { startedAt };
    case 'cpu': {
      const ms = input.ms ?? 10;
      for (let done = 0; done < ms; done++) {
        spinFor(1);
        ctx.progress((100 * (done + 1)) / ms);
      }
      return { startedAt };
    }
    case 'fail':
      throw new Error(`soak: a failure on purpose (attempt ${ctx.attempt} of ${ctx.maxAttempts})`);
    case 'timeout':
      await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
      return { startedAt };
  }
}
