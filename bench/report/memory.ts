/** The report of scenario 12 (issue 25, memory): RSS idle and per job in flight, spindle beside its peers. */
import { formatNumber, type Grid } from './grid.ts';
import { ranSystems, standaloneResult, type Results } from './results.ts';
import type { StartupSection } from './startup.ts';

/** The section of scenario 12, or none when it was not selected. */
export function memorySections(results: Results): StartupSection[] {
  const title = 'Memory (scenario 12; issue 25)';
  const scenario = results.scenarios.find((s) => s.id === 'memory');
  if (!scenario) return [];
  const before = scenario.kind === 'standalone' ? [`${scenario.size}.`] : [];
  const got = standaloneResult(results, 'memory');
  if ('why' in got) return [{ title, before, after: [`Not measured: ${got.why}.`] }];
  const r = got.result;
  const titleOf = (name: string) => results.systems.find((s) => s.name === name)?.title ?? name;
  const rows: [string, string][] = [
    ['spindle2', 'spindle, 2 threads (compiled, plain Node)'],
    ['spindle8', 'spindle, 8 threads (compiled, plain Node)'],
    ...ranSystems(results)
      .filter((s) => s.name !== 'spindle' && r[`${s.name}Idle`] !== undefined)
      .map((s): [string, string] => [s.name, `${titleOf(s.name)} (under tsx)`]),
  ];
  const n1 = (v: number | undefined) => (v === undefined ? '-' : formatNumber(v, 1));
  const grid: Grid = {
    headers: ['process (with the client that enqueues)', 'before the system MB', 'idle MB', 'added by the system MB', 'jobs in flight', 'with them MB', 'per job in flight MB'],
    rows: rows
      .filter(([key]) => r[`${key}Idle`] !== undefined)
      .map(([key, label]) => [
        label,
        n1(r[`${key}Base`]),
        n1(r[`${key}Idle`]),
        n1(r[`${key}Added`]),
        formatNumber(r[`${key}InFlight`] ?? 0, 0),
        n1(r[`${key}Busy`]),
        n1(r[`${key}PerJob`]),
      ]),
    right: [false, true, true, true, true, true, true],
  };
  const perThread =
    r.spindle2Idle !== undefined && r.spindle8Idle !== undefined ? (r.spindle8Idle - r.spindle2Idle) / 6 : undefined;
  return [
    {
      title,
      before,
      grid,
      after: [
        'spindle runs each job on a worker thread of its own, each thread a V8 isolate with its own heap: threads, not jobs, are what its memory grows with' +
          (perThread === undefined ? '' : ` (${n1(perThread)} MB a thread, from 2 to 8)`) +
          '; a peer running handlers on its main thread holds a job in flight as a promise. RSS is the process\'s resident memory (process.memoryUsage().rss), ' +
          '"before the system" the same process before it imported the system (plain Node for spindle, Node with tsx for the peers). ' +
          'Under tsx, as the other scenarios run it, a spindle supervisor\'s threads load tsx as well: about 160 MB with 2 threads and 335 MB with 8 (measured 2026-12-03).',
      ],
    },
  ];
}
