/**
 * Scenario 3: enqueue-to-start latency on an idle worker. Single enqueues, one
 * at a time, 10 to 30 ms apart (a seeded schedule, the same for every system
 * in a run): far below any system's capacity, so each job finds its worker
 * idle. Enqueue time is taken just before the enqueue call; start time in the
 * handler, on whatever thread runs it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { distribution, percentile, seededRandom } from '../stats.ts';
import { wallClockMs } from '../work.ts';
import type { RunningSystem } from '../systems/types.ts';
import type { Metrics, SystemScenario } from './types.ts';

/** Measured enqueues (the floor scenario takes as many samples of each of its calls). */
export const SAMPLES = { full: 500, quick: 200 };
export const WARMUP = 10;
/** The gap between one enqueue and the next (the floor scenario paces its calls alike). */
export const GAP_MIN_MS = 10;
export const GAP_MAX_MS = 30;
/** The seed of run `run`'s schedule. */
export const scheduleSeed = (run: number): number => 8_000 + run;

/** Scenario 3 of issue 8. */
export const latency: SystemScenario = {
  kind: 'system',
  id: 'latency',
  issueNumber: '3',
  title: 'Enqueue-to-start latency',
  short: 'latency',
  work: 'stamp',
  metrics: [
    { key: 'p50Ms', label: 'p50 ms', better: 'lower', digits: 2 },
    { key: 'p99Ms', label: 'p99 ms', better: 'lower', digits: 2 },
  ],
  size: (quick) =>
    `${quick ? SAMPLES.quick : SAMPLES.full} single enqueues, ${GAP_MIN_MS}-${GAP_MAX_MS} ms apart (after ${WARMUP} warm-up jobs)`,
  timeoutMs: (quick) => (quick ? 120_000 : 240_000),
  measure: (system, { quick, run }) => measureLatency(system, quick ? SAMPLES.quick : SAMPLES.full, run),
};

/** `samples` single enqueues on run `run`'s schedule after WARMUP warm-up jobs: enqueue-to-start p50, p99 and more. */
export async function measureLatency(system: RunningSystem, samples: number, run: number): Promise<Metrics> {
  for (let i = 0; i < WARMUP; i++) {
    await system.enqueueOne({ seq: -1 - i });
    await system.waitForFinished(i + 1, 30_000);
  }
  const random = seededRandom(scheduleSeed(run));
  const enqueuedAt = new Map<number, number>();
  let next = wallClockMs();
  for (let seq = 0; seq < samples; seq++) {
    next += GAP_MIN_MS + random() * (GAP_MAX_MS - GAP_MIN_MS);
    const wait = next - wallClockMs();
    if (wait > 0.5) await sleep(wait);
    const at = wallClockMs();
    await system.enqueueOne({ seq });
    enqueuedAt.set(seq, at);
  }
  await system.waitForFinished(WARMUP + samples, 60_000);
  const startedAt = await system.startTimes();
  const latencies: number[] = [];
  for (const [seq, at] of enqueuedAt) {
    const started = startedAt.get(seq);
    if (started !== undefined) latencies.push(started - at);
  }
  if (latencies.length < samples) throw new Error(`only ${latencies.length} of ${samples} jobs reported a start time`);
  const d = distribution(latencies);
  return { p50Ms: d.p50, p99Ms: d.p99, meanMs: d.mean, maxMs: d.max, samples: d.samples, jobsRun: WARMUP + samples, ...(await split(system, enqueuedAt, startedAt)) };
}

/**
 * Enqueue-to-start split where the claim comes back (systems that report it): before, the
 * enqueue's INSERT with its commit and NOTIFY and the claim statement; after, the hop to a thread.
 */
async function split(
  system: { claimTimes?(): Promise<Map<number, number>> },
  enqueuedAt: Map<number, number>,
  startedAt: Map<number, number>,
): Promise<Record<string, number>> {
  if (system.claimTimes === undefined) return {};
  const claimedAt = await system.claimTimes();
  const toClaim: number[] = [];
  const hop: number[] = [];
  for (const [seq, at] of enqueuedAt) {
    const claimed = claimedAt.get(seq);
    const started = startedAt.get(seq);
    if (claimed === undefined || started === undefined) continue;
    toClaim.push(claimed - at);
    hop.push(started - claimed);
  }
  if (toClaim.length === 0) return {};
  return {
    toClaimP50Ms: percentile(toClaim, 50),
    toClaimP99Ms: percentile(toClaim, 99),
    hopP50Ms: percentile(hop, 50),
    hopP99Ms: percentile(hop, 99),
  };
}
