/**
 * What the debug socket shows, and the events the debug socket and the HTTP API stream: a
 * DebugSource, built from the runtime's parts. The servers read it and never reach into the
 * supervisor.
 */
import type { EventEmitter } from 'eventemitter3';
import type { AnyActor } from '../actors/kernel.ts';
import type { ActorEventBase, ActorEvents } from '../actors/snapshot.ts';
import type { RuntimeEvents } from '../runtime-events.ts';

/** Receives every event of a `DebugSource`. */
export type DebugListener = (event: string, data: unknown) => void;

/** Everything the debug server shows: it knows nothing else about the runtime. */
export interface DebugSource {
  /** The supervisor's id, in the answer to `ping`. */
  readonly id: string;
  /** The `snapshot` op: actors, in-flight jobs, pool, identity. */
  snapshot(): unknown;
  /** The `jobs` op: the jobs in flight. */
  jobs(): unknown;
  /** The `pool` op: threads, utilisation, queue, run times. */
  pool(): unknown;
  /** Calls `listener` for every event until the returned function is called. */
  subscribe(listener: DebugListener): () => void;
}

/** The pieces a DebugSource is made of. */
export interface DebugSourcePieces {
  /** The supervisor's id. */
  id: string;
  /** What the `snapshot` op returns: the in-process `handle.snapshot()`. */
  snapshot(): unknown;
  /** What the `jobs` op returns. */
  jobs(): unknown;
  /** What the `pool` op returns. */
  pool(): unknown;
  /** The root actor: it re-emits the `actor:*` events of the whole tree. */
  root: AnyActor;
  /** The runtime's events (claims, outcomes, progress, lost claims, leadership). */
  events?: EventEmitter<RuntimeEvents>;
}

/** Every actor event, streamed to subscribers. */
const ACTOR_EVENT_NAMES = ['actor:start', 'actor:crash', 'actor:restart', 'actor:fail', 'actor:stop'] as const satisfies readonly (keyof ActorEvents)[];
/** Every runtime event, streamed to subscribers. */
const RUNTIME_EVENT_NAMES = [
  'job:claimed',
  'job:started',
  'job:finished',
  'job:progress',
  'claim:lost',
  'job:reaped',
  'leader:changed',
] as const satisfies readonly (keyof RuntimeEvents)[];
// Compile errors when an event is added to ActorEvents or RuntimeEvents but not to the lists above.
const everyActorEvent: Exclude<keyof ActorEvents, (typeof ACTOR_EVENT_NAMES)[number]> extends never ? true : never = true;
const everyRuntimeEvent: Exclude<keyof RuntimeEvents, (typeof RUNTIME_EVENT_NAMES)[number]> extends never ? true : never = true;
void everyActorEvent;
void everyRuntimeEvent;

/** Builds the DebugSource of a runtime from its parts. */
export function createDebugSource(pieces: DebugSourcePieces): DebugSource {
  const { root, events } = pieces;
  return {
    id: pieces.id,
    snapshot: () => pieces.snapshot(),
    jobs: () => pieces.jobs(),
    pool: () => pieces.pool(),
    subscribe(listener) {
      const offs: (() => void)[] = [];
      for (const name of ACTOR_EVENT_NAMES) {
        const fn = (data: ActorEventBase) => listener(name, data);
        root.on(name, fn);
        offs.push(() => root.off(name, fn));
      }
      if (events) {
        for (const name of RUNTIME_EVENT_NAMES) {
          const fn = (data: object) => listener(name, data);
          events.on(name, fn);
          offs.push(() => events.off(name, fn));
        }
      }
      return () => {
        for (const off of offs.splice(0)) off();
      };
    },
  };
}
