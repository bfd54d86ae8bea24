/** Throughput, shared by the no-op and CPU scenarios: drain a batch of queued jobs, jobs per second. */
import { CpuMeter, cpuPerJob, readThreadSplit, threadsPerJob } from '../cpu.ts';
import type { RunningSystem } from '../systems/types.ts';
import { wallClockMs, type BenchJob } from '../work.ts';
import type { Metrics } from './types.ts';

/** One throughput measurement. */
export interface ThroughputPlan {
  /** Jobs run (and waited for) first, so threads, connections and JIT are warm. */
  warmup: Warmup;
  /** Jobs in the measured batch. */
  jobs: number;
  /** For CPU jobs: milliseconds of loop per job. */
  ms?: number;
  /** How long the drain may take. */
  timeoutMs: number;
}

/**
 * Batches of `batch` jobs, each drained before the next, until `jobs` have run or `ms` have passed
 * (at least one batch). A bound in time as well as in jobs: every system gets about the same warm-up
 * however fast it is, and a slow one does not spend minutes on it.
 */
export interface Warmup {
  batch: number;
  jobs: number;
  ms: number;
}

/** The warm-up, in words, for a scenario's size line. */
export function describeWarmup(w: Warmup): string {
  if (w.jobs <= w.batch) return `after ${w.batch.toLocaleString('en-US')} warm-up jobs`;
  return `after up to ${w.jobs.toLocaleString('en-US')} warm-up jobs, ${w.batch.toLocaleString('en-US')} at a time, for at most ${w.ms / 1000} s`;
}

/** Runs the warm-up (see Warmup) with jobs of `loopMs` (CPU jobs) or none (no-op); returns how many jobs it ran. */
async function warmUp(system: RunningSystem, w: Warmup, loopMs: number | undefined, timeoutMs: number): Promise<number> {
  const start = wallClockMs();
  let ran = 0;
  do {
    await system.enqueueBatch(makeJobs(ran, w.batch, loopMs));
    ran += w.batch;
    await system.waitForFinished(ran, timeoutMs);
  } while (ran < w.jobs && wallClockMs() - start < w.ms);
  return ran;
}

function makeJobs(from: number, count: number, ms: number | undefined): BenchJob[] {
  return Array.from({ length: count }, (_, i) => (ms === undefined ? { seq: from + i } : { seq: from + i, ms }));
}

/**
 * Warms the system up, enqueues the batch in one atomic call, and times from the
 * moment the batch is visible to the moment the last of it finished. The enqueue
 * time is reported apart (`enqueueMs`); for a system whose jobs may start during
 * the enqueue call (bare Piscina) the clock starts before the call instead.
 * CPU per job (see cpu.ts) is read over the same span; PostgreSQL's for a system that uses it.
 */
export async function measureThroughput(
  system: RunningSystem,
  plan: ThroughputPlan,
  databaseUrl: string | undefined,
): Promise<Metrics> {
  const meter = await CpuMeter.open(databaseUrl);
  const warmed = await warmUp(system, plan.warmup, plan.ms, plan.timeoutMs);

  const batch = makeJobs(warmed, plan.jobs, plan.ms);
  const before = wallClockMs();
  const cpuBefore = meter.read();
  const threadsBefore = readThreadSplit();
  await system.enqueueBatch(batch);
  const visible = wallClockMs();
  const cpuVisible = meter.read();
  const threadsVisible = readThreadSplit();
  const finishedAt = await system.waitForFinished(warmed + plan.jobs, plan.timeoutMs);
  const cpuFinished = meter.read();
  const threadsFinished = readThreadSplit();
  const drainMs = finishedAt - (system.enqueueIsAtomic ? visible : before);
  return {
    jobsPerSecond: plan.jobs / (drainMs / 1000),
    drainMs,
    enqueueMs: visible - before,
    jobs: plan.jobs,
    jobsRun: warmed + plan.jobs,
    ...cpuPerJob(system.enqueueIsAtomic ? cpuVisible : cpuBefore, cpuFinished, plan.jobs),
    ...threadsPerJob(system.enqueueIsAtomic ? threadsVisible : threadsBefore, threadsFinished, plan.jobs),
  };
}
