/** `spindle supervisors`, and who would run a job: the warnings of `enqueue` and `start-workflow`. */
import type { Client, SupervisorInfo } from '../client.ts';
import { parse } from './args.ts';
import { withClient } from './connect.ts';
import { clip, duration, print, table } from './format.ts';

export async function supervisorsCommand(args: string[]): Promise<number> {
  const { values } = parse('supervisors', args);
  return withClient(values, async (client) => {
    const rows = await client.supervisors();
    print(values.json, rows, () =>
      rows.length
        ? table(
            ['ID', 'ROLE', 'HOST', 'PID', 'RUNNING', 'THREADS', 'QUEUES', 'TYPES', 'UP', 'LAST SEEN'],
            rows.map((s) => [
              s.id,
              s.leader ? 'leader' : '',
              s.host,
              s.pid,
              s.running,
              s.concurrency,
              s.queues.length ? s.queues.join(',') : '*',
              clip(s.types.join(','), 40),
              duration(s.upMs),
              `${duration(s.lastSeenMs)} ago${s.live ? '' : ' (dead)'}`,
            ]),
          )
        : 'no supervisors running',
    );
    return 0;
  });
}

/** The supervisors that heartbeat. */
export async function liveSupervisors(client: Client): Promise<SupervisorInfo[]> {
  return (await client.supervisors()).filter((s) => s.live);
}

/** Says so when no live supervisor would run a job of `type` on `queue`; undefined when one would. */
export function noServerWarning(live: SupervisorInfo[], type: string, queue: string): string | undefined {
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
