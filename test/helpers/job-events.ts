/** Waits on the job events of a supervisor that several jobs raise. */
import type { RuntimeEvents } from '../../src/runtime-events.ts';
import type { SupervisorHandle } from '../../src/start.ts';

type Started = RuntimeEvents['job:started'][0];

/**
 * Resolves with the first `n` job:started events from now on that `match` accepts (call it before
 * enqueueing the jobs, which may start before the enqueue's promise settles).
 */
export function startedJobs(handle: SupervisorHandle, n: number, match: (e: Started) => boolean): Promise<Started[]> {
  const events = handle.supervisor.events;
  const seen: Started[] = [];
  return new Promise((resolve) => {
    const on = (e: Started) => {
      if (!match(e)) return;
      seen.push(e);
      if (seen.length < n) return;
      events.off('job:started', on);
      resolve(seen);
    };
    events.on('job:started', on);
  });
}
