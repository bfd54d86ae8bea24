/**
 * The claim rules as pure functions (src/policy/claim-plan.ts): how many jobs a supervisor holds,
 * how many of each type, and what it gives back. No database, no threads.
 */
import { describe, expect, it } from 'vitest';
import { holdLimit, keepWithinBudget, MAX_PREFETCH, planClaim, wantsClaim } from '../src/policy/claim-plan.ts';
import { RunTimes, UNKNOWN_RUN_MS } from '../src/policy/run-times.ts';

const ADAPTIVE = { concurrency: 2, prefetch: undefined };

/** Run times in which every job so far took `ms` (all types, and `types` each). */
function trained(ms: number, types: string[] = []): RunTimes {
  const times = new RunTimes();
  for (let i = 0; i < 60; i++) for (const type of ['any', ...types]) times.record(type, ms);
  return times;
}

describe('claim policy', () => {
  it('holds the threads plus about 50 ms of work: hundreds of short jobs, one per thread of long ones', () => {
    expect(holdLimit(ADAPTIVE, 1)).toBe(2 + 100);
    expect(holdLimit(ADAPTIVE, 1_000)).toBe(2 + 2);
    expect(holdLimit(ADAPTIVE, 0)).toBe(2 + MAX_PREFETCH);
    expect(holdLimit({ concurrency: 2, prefetch: 7 }, 1)).toBe(9);
  });

  it('averages run times per type, starting pessimistic', () => {
    const times = new RunTimes();
    expect(times.all).toBe(UNKNOWN_RUN_MS);
    expect(times.of('new')).toBe(UNKNOWN_RUN_MS);
    times.record('a', 10);
    expect(times.of('a')).toBe(10);
    expect(times.all).toBeCloseTo(UNKNOWN_RUN_MS * 0.8 + 10 * 0.2);
    times.record('a', 20);
    expect(times.of('a')).toBeCloseTo(10 * 0.8 + 20 * 0.2);
  });

  it('plans one statement for the unlimited types and one per limited type, leaving out a type at its budget', () => {
    const times = trained(1, ['fast', 'slow-ish', 'capped', 'full']);
    times.record('slow', 10_000);
    const plan = planClaim(
      ADAPTIVE,
      times,
      [
        { type: 'fast', maxAttempts: 3, concurrency: undefined },
        { type: 'slow', maxAttempts: 5, concurrency: undefined },
        { type: 'capped', maxAttempts: 3, concurrency: 4 },
        { type: 'full', maxAttempts: 3, concurrency: 1 },
      ],
      new Map([
        ['slow', 4],
        ['capped', 1],
        ['full', 1],
      ]),
    );
    expect(plan).toEqual({
      free: holdLimit(ADAPTIVE, times.all) - 6,
      unlimited: [{ type: 'fast', maxAttempts: 3 }],
      limited: [{ type: { type: 'capped', maxAttempts: 3 }, free: 3 }],
      atBudget: true,
    });
  });

  it('keeps what a type may hold and gives back the rest', () => {
    const times = trained(1);
    times.record('slow', 10_000);
    const held = new Map([['slow', 3]]);
    const claimed = [{ type: 'slow', id: 1 }, { type: 'slow', id: 2 }, { type: 'fast', id: 3 }];
    const { kept, excess } = keepWithinBudget(ADAPTIVE, times, claimed, held);
    // 'slow' may hold 4 (2 threads + 2): one more fits.
    expect(kept.map((j) => j.id)).toEqual([1, 3]);
    expect(excess.map((j) => j.id)).toEqual([2]);
    expect(held.get('slow')).toBe(4);
  });

  it('claims again when a thread is idle or half the slots are free', () => {
    const times = trained(1_000);
    expect(holdLimit(ADAPTIVE, times.all)).toBe(4);
    expect(wantsClaim(ADAPTIVE, times, 1)).toBe(true);
    expect(wantsClaim(ADAPTIVE, times, 2)).toBe(true);
    expect(wantsClaim(ADAPTIVE, times, 3)).toBe(false);
  });
});
