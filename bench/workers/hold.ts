/** A spindle worker module for the memory scenario (issue 25): stays in flight for `ms`, doing nothing. */
import { setTimeout as sleep } from 'node:timers/promises';

/** Waits `input.ms` milliseconds, then returns. */
export default async function hold(input: { ms: number }): Promise<{ held: number }> {
  await sleep(input.ms);
  return { held: input.ms };
}
