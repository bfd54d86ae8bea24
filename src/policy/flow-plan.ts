/**
 * Which limited claims a supervisor makes, beside its plain claim: pure rules, no I/O. A type or
 * queue with flow-control limits (or paused) is claimed only by spindle.claim_limited, one call per
 * scope, and only for threads that are idle now: a limited job claimed ahead of a free thread would
 * hold a slot (and a start inside a rate window) while it waits in this supervisor.
 */
import type { ClaimType } from '../db/claims.ts';
import type { ActiveScopes } from '../db/limits.ts';
import type { LimitScope } from '../limits.ts';
import type { ClaimPlan } from './claim-plan.ts';

/**
 * How many limited jobs to claim now: the idle threads; with none idle (prefetched jobs of other
 * types fill them), one, while none claimed under a limit waits here yet: a limited type beside a
 * busy unlimited one must not starve, and one job waiting about a prefetch's worth of work (see
 * claim-plan.ts) holds a slot only that long.
 */
export function limitedRoom(concurrency: number, held: Iterable<{ wakesOthers: boolean; startedAt: number | null }>): number {
  let count = 0;
  let limitedWaiting = false;
  for (const job of held) {
    count++;
    if (job.wakesOthers && job.startedAt === null) limitedWaiting = true;
  }
  if (count < concurrency) return concurrency - count;
  return limitedWaiting ? 0 : 1;
}

/** One call of claim_limited. */
export interface LimitedCall {
  scope: LimitScope;
  /** The types it may take (a type's call: that type; a queue's: the unlimited types served). */
  types: ClaimType[];
  want: number;
}

/** The plain claim's types (those of no limited scope) and the limited calls, in order. */
export interface FlowPlan {
  unlimited: ClaimType[];
  perSupervisor: ClaimPlan['limited'];
  calls: LimitedCall[];
}

/**
 * Splits a claim plan: types of a limited scope leave the plain statements and get a call each; each
 * limited queue this supervisor serves gets one for the other types. `idle`: threads with nothing to run.
 */
export function planFlow(plan: ClaimPlan, active: ActiveScopes, queues: readonly string[], idle: number): FlowPlan {
  const flow: FlowPlan = { unlimited: [], perSupervisor: [], calls: [] };
  const queueTypes: ClaimType[] = [];
  for (const type of plan.unlimited) {
    if (active.types.has(type.type)) flow.calls.push({ scope: { kind: 'type', name: type.type }, types: [type], want: idle });
    else {
      flow.unlimited.push(type);
      queueTypes.push(type);
    }
  }
  for (const entry of plan.limited) {
    const { type } = entry;
    if (active.types.has(type.type)) {
      flow.calls.push({ scope: { kind: 'type', name: type.type }, types: [type], want: Math.min(idle, entry.free) });
    } else {
      flow.perSupervisor.push(entry);
      queueTypes.push(type);
    }
  }
  if (queueTypes.length > 0) {
    for (const queue of active.queues) {
      if (queues.length === 0 || queues.includes(queue)) {
        flow.calls.push({ scope: { kind: 'queue', name: queue }, types: queueTypes, want: idle });
      }
    }
  }
  return flow;
}
