/** Helpers of the operations tests (metrics, HTTP API, dashboard). */
import type { ActorSnapshot } from '../../src/actors/kernel.ts';
import type { RuntimeEvents } from '../../src/actors/supervisor.ts';
import type { SupervisorHandle } from '../../src/start.ts';

/** The state of the supervisor's child actor `name` (e.g. 'http', 'metrics'). */
export function actorState<T>(handle: SupervisorHandle, name: string): T {
  const child = handle.snapshot().actors.children.find((c: ActorSnapshot) => c.name === name);
  if (!child) throw new Error(`no actor "${name}" under the supervisor`);
  return child.state as T;
}

/** Resolves with the first event `name` of the supervisor that `match` accepts. */
export function nextEvent<E extends keyof EventsOf>(
  handle: SupervisorHandle,
  name: E,
  match: (e: EventsOf[E]) => boolean,
  timeoutMs = 15_000,
): Promise<EventsOf[E]> {
  const events = handle.supervisor.events;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      events.off(name, on as never);
      reject(new Error(`no ${String(name)} event within ${timeoutMs} ms`));
    }, timeoutMs);
    const on = (e: EventsOf[E]) => {
      if (!match(e)) return;
      clearTimeout(timer);
      events.off(name, on as never);
      resolve(e);
    };
    events.on(name, on as never);
  });
}

type EventsOf = { [K in keyof RuntimeEvents]: RuntimeEvents[K][0] };
