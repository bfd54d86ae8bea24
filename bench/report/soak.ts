/**
 * The report of scenario 11 (issue 25, sustained load): a row per minute, and what the run
 * says about drift and lost jobs. Written from the figures of the run.
 */
import { formatNumber, type Grid } from './grid.ts';
import { standaloneResult, type Results } from './results.ts';
import type { StartupSection } from './startup.ts';

const COLUMNS = [
  ['jobsPerSecond', 'jobs/s finished', 0],
  ['p50Ms', 'start p50 ms', 2],
  ['p99Ms', 'start p99 ms', 2],
  ['rssMb', 'RSS MB', 1],
  ['heapMb', 'heap MB', 1],
  ['lagP99Ms', 'loop lag p99 ms', 1],
  ['lagMaxMs', 'loop lag max ms', 1],
] as const;

/** The section of scenario 11, or none when it was not run. */
export function soakSections(results: Results): StartupSection[] {
  const title = 'Sustained load (scenario 11; issue 25)';
  const scenario = results.scenarios.find((s) => s.id === 'soak');
  if (!scenario) return [];
  const before = scenario.kind === 'standalone' ? [`${scenario.size}.`] : [];
  const got = standaloneResult(results, 'soak');
  if ('why' in got) return [{ title, before, after: [`Not measured: ${got.why}.`] }];
  const r = got.result;
  const minutes = r.minutes!;
  const cell = (v: number | undefined, digits: number) => (v === undefined || !Number.isFinite(v) ? '-' : formatNumber(v, digits));
  const grid: Grid = {
    headers: ['minute', ...COLUMNS.map(([, label]) => label)],
    rows: Array.from({ length: minutes }, (_, i) => [String(i + 1), ...COLUMNS.map(([key, , digits]) => cell(r[`${key}_m${i + 1}`], digits))]),
    right: [true, ...COLUMNS.map(() => true)],
  };
  const states = Object.keys(r)
    .filter((k) => k.startsWith('state_'))
    .map((k) => `${formatNumber(r[k]!, 0)} ${k.slice('state_'.length)}`)
    .join(', ');
  return [
    {
      title,
      before: [
        ...before,
        `Capacity measured first: ${formatNumber(r.capacity!, 0)} jobs/s of the mix; the soak enqueued at ${formatNumber(r.rate!, 0)} jobs/s.`,
      ],
      grid,
      after: [
        `Last minute against the second: p99 ${formatNumber(r.p99Drift!, 2)}x, RSS ${formatNumber(r.rssDrift!, 2)}x (goal: within ${formatNumber(r.driftLimit! * 100, 0)}%). ` +
          `Jobs: ${formatNumber(r.enqueued!, 0)} enqueued (capacity batch included), ${formatNumber(r.rowsInTable!, 0)} in the table (${states}); ` +
          `${formatNumber(r.lost!, 0)} lost, ${formatNumber(r.misplaced!, 0)} in another state than their kind leads to.`,
        'Latency is from just before the enqueueMany call that carried a job to its handler\'s first line, for the jobs that returned, by the minute they were enqueued in; ' +
          'jobs/s by the minute they finished in (the server\'s clock). RSS, heap and event-loop lag are the supervisor process\'s, read at the end of each minute (lag: since the minute before).',
      ],
    },
  ];
}
