/**
 * A spindle worker module for the latency scenario: returns when its handler
 * started, so enqueue-to-start is measured where the work begins (on the thread).
 */
import { doWork, type BenchJob, type WorkResult } from '../work.ts';

/** Returns `{ seq, startedAt }` at once. */
export default async function stamp(input: BenchJob): Promise<WorkResult> {
  return doWork('stamp', input);
}
