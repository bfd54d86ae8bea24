/** The scenario registry, in the order of issue 8, then later issues' (7: issue 20; 8: issue 22; 9: issue 23; 10-13: issue 25). */
import { claimTime } from './claim-time.ts';
import { cancelTimeoutLatency } from './cancel-timeout.ts';
import { cpuThroughput } from './cpu-throughput.ts';
import { roundTripFloor } from './floor.ts';
import { cpuThroughputHop, latencyHop, noopThroughputHop } from './hop.ts';
import { flowLimits } from './limits.ts';
import { latency } from './latency.ts';
import { memory } from './memory.ts';
import { noopThroughput } from './noop-throughput.ts';
import { shortBehindLong } from './priority.ts';
import { progressCost } from './progress-cost.ts';
import { scaleOut } from './scale-out.ts';
import { soak } from './soak.ts';
import { startup } from './startup.ts';
import { workflows } from './workflows.ts';
import type { Scenario, SystemScenario } from './types.ts';

/** Every scenario, run (or listed, when pending) in this order. */
export const SCENARIOS: readonly Scenario[] = [
  noopThroughput,
  cpuThroughput,
  latency,
  roundTripFloor,
  progressCost,
  cancelTimeoutLatency,
  claimTime,
  scaleOut,
  startup,
  workflows,
  flowLimits,
  noopThroughputHop,
  cpuThroughputHop,
  latencyHop,
  memory,
  shortBehindLong,
  soak,
];

/** The scenario called `id`, or undefined. */
export function findScenario(id: string): Scenario | undefined {
  return SCENARIOS.find((s) => s.id === id);
}

/** The system scenario called `id`; throws when there is none (the child process asks by id). */
export function systemScenario(id: string): SystemScenario {
  const scenario = findScenario(id);
  if (scenario?.kind !== 'system') throw new Error(`no system scenario called ${JSON.stringify(id)}`);
  return scenario;
}
