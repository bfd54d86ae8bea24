/**
 * A spindle worker module for the memory scenario (issue 25): stays in flight for `ms`, doing
 * nothing, or until its signal fires (the supervisor's stop), so a reading does not wait it out.
 */
import type { JobContext } from '../../src/context.ts';

/** Waits `input.ms` milliseconds or until the signal, then returns. */
export default async function hold(input: { ms: number }, ctx: JobContext): Promise<{ held: number }> {
  const start = performance.now();
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, input.ms);
    ctx.signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
  return { held: performance.now() - start };
}
