/** `spindle supervisors`, and who would run a job: the warnings of `enqueue` and `start-workflow`. */
import { DEAD_AFTER_HEARTBEATS } from '../actors/heartbeat.ts';
import type { Client } from '../client.ts';
import { listSupervisors, type SupervisorRow } from '../db/queries.ts';
import { parse } from './args.ts';
import { withClient } from './connect.ts';
import { clip, duration, print, table } from './format.ts';

export async function supervisorsCommand(args: string[]): Promise<number> {
  const { values } = parse('supervisors', args);
  return withClient(values, async (client) => {
    const rows = await listSupervisors(client.pool);
    print(values.json, rows, () =>
      rows.length
        ? table(
            ['ID', 'HOST', 'PID', 'RUNNING', 'THREADS', 'QUEUES', 'TYPES', 'UP', 'LAST SEEN'],
            rows.map((s) => [
              s.id,
              s.host,
              s.pid,
              s.running,
              s.concurrency,
              s.queues.length ? s.queues.join(',') : '*',
              clip(s.types.join(','), 40),
              // By the database's clock, like the reaper: this machine's clock may be off.
              duration(s.up_ms),
              `${duration(s.last_seen_ms)} ago${isLive(s) ? '' : ' (dead)'}`,
            ]),
          )
        : 'no supervisors running',
    );
    return 0;
  });
}

/** Whether a supervisor still heartbeats: one unseen for a few of its intervals is dead, though listed until the leader removes it. */
function isLive(s: SupervisorRow): boolean {
  return s.last_seen_ms <= DEAD_AFTER_HEARTBEATS * s.heartbeat_ms;
}

/** The supervisors that heartbeat. */
export async function liveSupervisors(client: Client): Promise<SupervisorRow[]> {
  return (await listSupervisors(client.pool)).filter(isLive);
}

/** Says so when no live supervisor would run a job of `type` on `queue`; undefined when one would. */
export function noServerWarning(live: SupervisorRow[], type: string, queue: string): string | undefined {
  if (live.length === 0) return `no supervisor is running: the job waits until one that serves "${type}" starts ('spindle start')`;
  const ofType = live.filter((s) => s.types.includes(type));
  if (ofType.length === 0) {
    return (
      `no live supervisor serves "${type}" (they serve ${list(live.flatMap((s) => s.types))}); ` +
      'unless one that serves it starts, the leader fails the job as an unknown type (after 60 s by default)'
    );
  }
  if (!ofType.some((s) => s.queues.length === 0 || s.queues.includes(queue))) {
    return `no live supervisor serves "${type}" on queue "${queue}": those that serve "${type}" serve the queues ${list(ofType.flatMap((s) => s.queues))}`;
  }
  return undefined;
}

/** `a, b and 3 more`, or `nothing`. */
function list(names: string[]): string {
  const unique = [...new Set(names)].sort();
  if (unique.length === 0) return 'nothing';
  const shown = unique.slice(0, 12).map((n) => `"${n}"`);
  return unique.length > shown.length ? `${shown.join(', ')} and ${unique.length - shown.length} more` : shown.join(', ');
}
