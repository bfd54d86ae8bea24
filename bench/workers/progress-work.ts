/**
 * A spindle worker module for scenario 4 (the cost of ctx.progress), also the
 * fixed-work CPU job of scenario 6b (with `report: false`): a fixed amount
 * of CPU work, cut into chunks, with or without a ctx.progress() call after each
 * chunk. Both variants run the very same loop (the call sits behind a flag), so the
 * only difference between them is the call. The amount of work is fixed (iterations,
 * not time): a loop that runs for a fixed time would hide any slowdown.
 *
 * It reports its own wall time and, on Linux, the CPU time of its thread
 * (/proc/thread-self/schedstat, in ns): on a machine shared with other work, CPU
 * time is the cost of the handler without the time it waited for a core.
 */
import { readFileSync } from 'node:fs';
import type { JobContext } from '../../src/context.ts';

/** Input: `calibrateMs` sizes the work (runs that long, by the clock); otherwise the fixed work. */
export type ProgressWorkInput =
  | { calibrateMs: number }
  | {
      /** Chunks of work; one ctx.progress() call after each when `report`. */
      chunks: number;
      /** Loop iterations per chunk. */
      chunkIterations: number;
      report: boolean;
    };

/** Output of a measured run. */
export interface ProgressWorkOutput {
  /** Wall time of the work, ms. */
  runMs: number;
  /** CPU time of this thread during the work, ms; -1 where the OS does not tell. */
  cpuMs: number;
  /** ctx.progress() calls made. */
  calls: number;
  /** Loop iterations per millisecond (calibration only). */
  iterationsPerMs?: number;
  /** Keeps the loop from being optimised away. */
  checksum: number;
}

/** Iterations between clock reads while calibrating. */
const CALIBRATION_STEP = 10_000;

/** CPU time of the calling thread in ms, or -1 when /proc/thread-self/schedstat cannot be read. */
export function threadCpuMs(): number {
  try {
    const first = readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0];
    const ns = Number(first);
    return Number.isFinite(ns) ? ns / 1e6 : -1;
  } catch {
    return -1;
  }
}

/** One chunk of the work: `n` rounds of an integer mix, from state `x`. */
function mix(x: number, n: number): number {
  for (let i = 0; i < n; i++) x = (Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + i) | 0;
  return x;
}

/**
 * Loop iterations of the work per millisecond of this thread's CPU time, measured for about `ms`
 * (per millisecond of wall time where the OS does not tell CPU time). For sizing fixed-work jobs
 * on a busy machine: wall time would count the time the thread waited for a core.
 */
export function measureIterationsPerMs(ms: number): number {
  let x = 1;
  x = mix(x, CALIBRATION_STEP * 10); // compile first
  const cpuStart = threadCpuMs();
  const start = performance.now();
  let iterations = 0;
  while (performance.now() - start < ms) {
    x = mix(x, CALIBRATION_STEP);
    iterations += CALIBRATION_STEP;
  }
  const wallMs = performance.now() - start;
  const cpuMs = threadCpuMs() - cpuStart;
  if (x === 0.5) throw new Error('unreachable: keeps the loop alive');
  return iterations / (cpuStart >= 0 && cpuMs > 0 ? cpuMs : wallMs);
}

/** Runs the work described by `input` (see ProgressWorkInput). */
export default async function progressWork(input: ProgressWorkInput, ctx: JobContext): Promise<ProgressWorkOutput> {
  if ('calibrateMs' in input) {
    const start = performance.now();
    let x = 0x9e3779b9 | 0;
    let iterations = 0;
    while (performance.now() - start < input.calibrateMs) {
      x = mix(x, CALIBRATION_STEP);
      iterations += CALIBRATION_STEP;
    }
    const runMs = performance.now() - start;
    return { runMs, cpuMs: -1, calls: 0, iterationsPerMs: iterations / runMs, checksum: x };
  }
  const { chunks, chunkIterations, report } = input;
  const cpuStart = threadCpuMs();
  const start = performance.now();
  let x = 0x9e3779b9 | 0;
  let calls = 0;
  for (let c = 0; c < chunks; c++) {
    x = mix(x, chunkIterations);
    if (report) {
      ctx.progress(((c + 1) / chunks) * 100, 'working');
      calls++;
    }
  }
  const runMs = performance.now() - start;
  const cpuEnd = threadCpuMs();
  return { runMs, cpuMs: cpuStart < 0 || cpuEnd < 0 ? -1 : cpuEnd - cpuStart, calls, checksum: x };
}
