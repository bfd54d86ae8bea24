/** An attempt's outcome -> the job's next state (src/outcome.ts): pure, no database. */
import { describe, expect, it } from 'vitest';
import { finishFor, type FinishingAttempt } from '../src/outcome.ts';
import type { Outcome } from '../src/pool/pool.ts';

const BACKOFF = { baseMs: 100, maxMs: 1_000 };
const attempt = (n: number, cancelRequested = false): FinishingAttempt => ({ id: '7', attempt: n, maxAttempts: 3, logs: null, cancelRequested });
const failed: Outcome = { kind: 'failed', error: { name: 'Error', message: 'boom' }, permanent: false };
const timedOut: Outcome = { kind: 'timed_out', error: { name: 'TimeoutError', message: 'job timed out after 5 ms' }, terminated: false };
const interrupted: Outcome = { kind: 'interrupted', error: { name: 'AbortError', message: 'job interrupted by shutdown' }, terminated: false };

describe('outcome -> next state', () => {
  it('retries after a backoff while attempts are left, and ends on the last', () => {
    const retry = finishFor(attempt(1), failed, BACKOFF)!;
    expect(retry).toMatchObject({ outcome: 'failed', nextState: 'queued' });
    expect(retry.delayMs).toBeGreaterThanOrEqual(75);
    expect(retry.delayMs).toBeLessThanOrEqual(125);
    expect(finishFor(attempt(3), failed, BACKOFF)).toMatchObject({ outcome: 'failed', nextState: 'failed' });
    expect(finishFor(attempt(3), timedOut, BACKOFF)).toMatchObject({ outcome: 'timed_out', nextState: 'timed_out' });
    expect(finishFor(attempt(1), { ...failed, permanent: true }, BACKOFF)).toMatchObject({ nextState: 'failed' });
  });

  it('lets a cancel asked while the attempt ran beat its retry, and its return to the queue on shutdown', () => {
    expect(finishFor(attempt(1, true), timedOut, BACKOFF)).toMatchObject({ outcome: 'timed_out', nextState: 'cancelled' });
    expect(finishFor(attempt(1, true), failed, BACKOFF)).toMatchObject({ outcome: 'failed', nextState: 'cancelled' });
    expect(finishFor(attempt(1, true), interrupted, BACKOFF)).toMatchObject({ outcome: 'interrupted', nextState: 'cancelled' });
    // A final state stays what it is.
    expect(finishFor(attempt(3, true), failed, BACKOFF)).toMatchObject({ nextState: 'failed' });
  });

  it('writes nothing for a lost claim', () => {
    expect(finishFor(attempt(1), { kind: 'lost', error: { name: 'LostError', message: 'lease lost' }, terminated: false }, BACKOFF)).toBeNull();
  });
});
