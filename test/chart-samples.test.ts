/** The charts' ring of time buckets (src/ops/chart-samples.ts): pure, so times are given. */
import { describe, expect, it } from 'vitest';
import { ChartSamples } from '../src/ops/chart-samples.ts';

describe('ChartSamples', () => {
  it('counts outcomes and run times per bucket, the bucket still filling included, empty buckets as empty points', () => {
    const c = new ChartSamples({ bucketMs: 10_000, keep: 6 });
    c.finished('resize', 'succeeded', 5, 100_000);
    c.finished('resize', 'failed', 7, 101_000);
    c.finished('mail', 'succeeded', 1, 125_000);
    c.depth({ queued: 4, running: 1 }, 126_000);
    const points = c.points(40_000, 129_999);
    expect(points.map((p) => p.at)).toEqual([90_000, 100_000, 110_000, 120_000]);
    expect(points[0]).toEqual({ at: 90_000, finished: {}, depth: null, runTimeMs: {} });
    expect(points[1]!.finished).toEqual({ succeeded: 1, failed: 1 });
    expect(points[1]!.runTimeMs).toEqual({ resize: { p50: 5, p99: 7, count: 2 } });
    expect(points[2]!.finished).toEqual({});
    expect(points[3]).toMatchObject({ finished: { succeeded: 1 }, depth: { queued: 4, running: 1 } });
  });

  it('reads p50 and p99 by nearest rank, and keeps a bounded sample of run times per bucket', () => {
    const c = new ChartSamples({ bucketMs: 1_000, keep: 10, maxRunTimes: 100 });
    for (let ms = 1; ms <= 100; ms++) c.finished('t', 'succeeded', ms, 5_000);
    expect(c.points(1_000, 5_500)[0]!.runTimeMs.t).toEqual({ p50: 50, p99: 99, count: 100 });
    for (let i = 0; i < 10_000; i++) c.finished('t', 'succeeded', 1_000, 5_600);
    const after = c.points(1_000, 5_700)[0]!.runTimeMs.t!;
    expect(after.count).toBe(10_100);
    // Nearly all of a uniform sample of the 10,100 are the later 1,000 ms runs.
    expect(after.p50).toBe(1_000);
  });

  it('keeps `keep` buckets: an older one is dropped, and a window is never longer than the ring', () => {
    const c = new ChartSamples({ bucketMs: 1_000, keep: 3 });
    c.finished('t', 'succeeded', 1, 0);
    c.finished('t', 'succeeded', 1, 3_000);
    expect(c.points(60_000, 3_000).map((p) => [p.at, p.finished.succeeded ?? 0])).toEqual([
      [1_000, 0],
      [2_000, 0],
      [3_000, 1],
    ]);
  });
});
