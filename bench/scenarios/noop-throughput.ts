/** Scenario 1: no-op throughput. What is left of a job's cost is the runtime's own. */
import { describeWarmup, measureThroughput, type Warmup } from './throughput.ts';
import type { SystemScenario } from './types.ts';

const JOBS = { full: 20_000, quick: 5_000 };
/**
 * A drain of 20,000 no-op jobs lasts about a second: after only a few hundred jobs the JIT has not
 * settled yet (measured here: spindle's process CPU per job 30 to 40 % higher after 500 warm-up jobs
 * than after 5,000, graphile-worker tuned's 10 to 20 %). A server runs warm; so does this.
 */
const WARMUP: Warmup = { batch: 500, jobs: 5_000, ms: 2_000 };

/** Scenario 1 of issue 8. */
export const noopThroughput: SystemScenario = {
  kind: 'system',
  id: 'noop',
  issueNumber: '1',
  title: 'No-op throughput',
  short: 'no-op',
  work: 'noop',
  metrics: [
    { key: 'jobsPerSecond', label: 'jobs/s', better: 'higher', digits: 0 },
    // The batch goes in with each system's own bulk call (bare Piscina: submitting the tasks).
    { key: 'enqueueMs', label: 'enqueue ms', better: 'lower', digits: 0 },
    // What each job cost while draining (bench/cpu.ts): the system's process, all threads; the PostgreSQL server.
    { key: 'cpuUsPerJob', label: 'CPU µs/job', better: 'lower', digits: 0 },
    { key: 'pgCpuUsPerJob', label: 'PG CPU µs/job', better: 'lower', digits: 0 },
  ],
  size: (quick) => `${(quick ? JOBS.quick : JOBS.full).toLocaleString('en-US')} queued no-op jobs drained (${describeWarmup(WARMUP)})`,
  timeoutMs: (quick) => (quick ? 180_000 : 400_000),
  measure: (system, { quick, databaseUrl }) =>
    measureThroughput(system, { warmup: WARMUP, jobs: quick ? JOBS.quick : JOBS.full, timeoutMs: quick ? 150_000 : 360_000 }, databaseUrl),
};
