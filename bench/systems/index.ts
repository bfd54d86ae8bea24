/** Every system the benchmark knows, in the order runs take turns. */
import { bullmq } from './bullmq.ts';
import { graphileWorker, graphileWorkerTuned } from './graphile-worker.ts';
import { pgBoss } from './pg-boss.ts';
import { piscina } from './piscina.ts';
import { spindle } from './spindle.ts';
import type { SystemAdapter } from './types.ts';

/** spindle first, then its peers, then the limit. */
export const SYSTEMS: readonly SystemAdapter[] = [spindle, graphileWorker, graphileWorkerTuned, pgBoss, bullmq, piscina];

/** The system called `name`, or undefined. */
export function findSystem(name: string): SystemAdapter | undefined {
  return SYSTEMS.find((s) => s.info.name === name);
}
