/** Scenario 2: CPU throughput. The same ~20 ms spinFor loop everywhere; the limit is bare Piscina. */
import { describeWarmup, measureThroughput, type Warmup } from './throughput.ts';
import type { SystemScenario } from './types.ts';

const JOBS = { full: 400, quick: 200 };
const SPIN_MS = 20;
const WARMUP: Warmup = { batch: 10, jobs: 10, ms: 0 };

/** Scenario 2 of issue 8. */
export const cpuThroughput: SystemScenario = {
  kind: 'system',
  id: 'cpu',
  issueNumber: '2',
  title: `CPU throughput (${SPIN_MS} ms loop)`,
  short: 'CPU',
  work: 'spin',
  metrics: [{ key: 'jobsPerSecond', label: 'jobs/s', better: 'higher', digits: 1 }],
  size: (quick) => `${quick ? JOBS.quick : JOBS.full} jobs of a ${SPIN_MS} ms spinFor loop (${describeWarmup(WARMUP)})`,
  timeoutMs: (quick) => (quick ? 120_000 : 240_000),
  measure: (system, { quick, databaseUrl }) =>
    measureThroughput(system, { warmup: WARMUP, jobs: quick ? JOBS.quick : JOBS.full, ms: SPIN_MS, timeoutMs: 180_000 }, databaseUrl),
};
