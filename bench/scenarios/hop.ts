/**
 * Scenarios 10a-10c (issue 25): scenarios 1, 2 and 3 with the database one network hop away, a delay
 * proxy in front of PostgreSQL that makes every round trip about 1 ms dearer (bench/network-hop.ts).
 * What a system pays there is its round trips, and how many of them it waits for one after another:
 * the harness counts them at the proxy (`roundTripsPerJob`: every client-to-server turn of every
 * connection during the run, setup and warm-up included, divided by the jobs the run ran).
 */
import { describeWarmup, measureThroughput, type Warmup } from './throughput.ts';
import { GAP_MAX_MS, GAP_MIN_MS, measureLatency, WARMUP as LATENCY_WARMUP } from './latency.ts';
import type { Metric, SystemScenario } from './types.ts';

const ROUND_TRIPS: Metric = { key: 'roundTripsPerJob', label: 'round trips/job', better: 'lower', digits: 3 };

const NOOP_JOBS = { full: 10_000, quick: 5_000 };
const NOOP_WARMUP: Warmup = { batch: 500, jobs: 5_000, ms: 2_000 };
const CPU_JOBS = { full: 200, quick: 100 };
const CPU_SPIN_MS = 20;
const CPU_WARMUP: Warmup = { batch: 10, jobs: 10, ms: 0 };
const LATENCY_SAMPLES = { full: 300, quick: 100 };

const count = (n: number) => n.toLocaleString('en-US');

/** Scenario 10a: no-op throughput, the database one hop away. */
export const noopThroughputHop: SystemScenario = {
  kind: 'system',
  id: 'noop-hop',
  issueNumber: '10a',
  title: 'No-op throughput, the database one hop away',
  short: 'no-op',
  work: 'noop',
  network: 'hop',
  metrics: [
    { key: 'jobsPerSecond', label: 'jobs/s', better: 'higher', digits: 0 },
    { key: 'cpuUsPerJob', label: 'CPU µs/job', better: 'lower', digits: 0 },
    ROUND_TRIPS,
  ],
  size: (quick) => `${count(quick ? NOOP_JOBS.quick : NOOP_JOBS.full)} queued no-op jobs drained (${describeWarmup(NOOP_WARMUP)})`,
  timeoutMs: (quick) => (quick ? 240_000 : 400_000),
  measure: (system, { quick, databaseUrl }) =>
    measureThroughput(system, { warmup: NOOP_WARMUP, jobs: quick ? NOOP_JOBS.quick : NOOP_JOBS.full, timeoutMs: 300_000 }, databaseUrl),
};

/** Scenario 10b: CPU throughput, the database one hop away. */
export const cpuThroughputHop: SystemScenario = {
  kind: 'system',
  id: 'cpu-hop',
  issueNumber: '10b',
  title: `CPU throughput (${CPU_SPIN_MS} ms loop), the database one hop away`,
  short: 'CPU',
  work: 'spin',
  network: 'hop',
  metrics: [{ key: 'jobsPerSecond', label: 'jobs/s', better: 'higher', digits: 1 }, ROUND_TRIPS],
  size: (quick) => `${quick ? CPU_JOBS.quick : CPU_JOBS.full} jobs of a ${CPU_SPIN_MS} ms spinFor loop (${describeWarmup(CPU_WARMUP)})`,
  timeoutMs: (quick) => (quick ? 120_000 : 240_000),
  measure: (system, { quick, databaseUrl }) =>
    measureThroughput(
      system,
      { warmup: CPU_WARMUP, jobs: quick ? CPU_JOBS.quick : CPU_JOBS.full, ms: CPU_SPIN_MS, timeoutMs: 180_000 },
      databaseUrl,
    ),
};

/** Scenario 10c: enqueue-to-start latency, the database one hop away. */
export const latencyHop: SystemScenario = {
  kind: 'system',
  id: 'latency-hop',
  issueNumber: '10c',
  title: 'Enqueue-to-start latency, the database one hop away',
  short: 'latency',
  work: 'stamp',
  network: 'hop',
  metrics: [
    { key: 'p50Ms', label: 'p50 ms', better: 'lower', digits: 2 },
    { key: 'p99Ms', label: 'p99 ms', better: 'lower', digits: 2 },
    ROUND_TRIPS,
  ],
  size: (quick) =>
    `${quick ? LATENCY_SAMPLES.quick : LATENCY_SAMPLES.full} single enqueues, ${GAP_MIN_MS}-${GAP_MAX_MS} ms apart (after ${LATENCY_WARMUP} warm-up jobs)`,
  timeoutMs: (quick) => (quick ? 120_000 : 240_000),
  measure: (system, { quick, run }) => measureLatency(system, quick ? LATENCY_SAMPLES.quick : LATENCY_SAMPLES.full, run),
};
