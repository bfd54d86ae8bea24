/**
 * Scenarios of issue 8 that measure spindle features still being written.
 * Each becomes a SystemScenario or StandaloneScenario (see types.ts) once its
 * feature lands; until then the output lists them with what they wait for.
 */
import type { PendingScenario } from './types.ts';

/** Scenario 4 of issue 8. */
export const progressCost: PendingScenario = {
  kind: 'pending',
  id: 'progress',
  issueNumber: '4',
  title: 'Cost of ctx.progress',
  waitingFor:
    'the progress path (progress actor, batched UPDATE): time jobs calling ctx.progress() N times against the same jobs without it, and count statements per second (pg_stat_statements or pg_stat_database xact_commit)',
};

/** Scenario 5 of issue 8. */
export const cancelTimeoutLatency: PendingScenario = {
  kind: 'pending',
  id: 'cancel',
  issueNumber: '5',
  title: 'Cancel and timeout latency',
  waitingFor:
    'the termination work (cancel of running jobs, timeouts). bench/termination.ts measures it on its own today (from client.cancel() or the deadline to the final NOTIFY); it can become a StandaloneScenario here',
};

/** Scenario 6b of issue 8. */
export const scaleOut: PendingScenario = {
  kind: 'pending',
  id: 'scale',
  issueNumber: '6b',
  title: 'Throughput with 1, 2 and 4 supervisor processes',
  waitingFor:
    'someone to write it, now that startSupervisor (src/start.ts) is there: spawn 1, 2 and 4 processes that each run one supervisor on the same database (as bench/child.ts runs one system), enqueue the no-op batch, time the drain. On 2 cores it shows contention more than scale',
};
