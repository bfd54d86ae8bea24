/** The report of scenario 13 (issue 25): how long short jobs wait behind long ones, and with a queue of their own. */
import { formatNumber, type Grid } from './grid.ts';
import { standaloneResult, type Results } from './results.ts';
import type { StartupSection } from './startup.ts';

const SETUPS = [
  ['shared', 'one supervisor, 2 threads busy with 5 s jobs; short jobs at a higher priority'],
  ['separate', 'short jobs in a queue of their own, served by a second supervisor process with 1 thread'],
] as const;

/** The section of scenario 13, or none when it was not selected. */
export function prioritySections(results: Results): StartupSection[] {
  const title = 'Short jobs behind long ones (scenario 13; issue 25)';
  const scenario = results.scenarios.find((s) => s.id === 'priority');
  if (!scenario) return [];
  const before = scenario.kind === 'standalone' ? [`${scenario.size}.`] : [];
  const got = standaloneResult(results, 'priority');
  if ('why' in got) return [{ title, before, after: [`Not measured: ${got.why}.`] }];
  const r = got.result;
  const ms = (v: number | undefined) => (v === undefined ? '-' : formatNumber(v, v >= 100 ? 0 : 1));
  const grid: Grid = {
    headers: ['setup', 'wait p50 ms', 'wait p99 ms', 'wait max ms', 'short jobs'],
    rows: SETUPS.filter(([key]) => r[`${key}P50Ms`] !== undefined).map(([key, label]) => [
      label,
      ms(r[`${key}P50Ms`]),
      ms(r[`${key}P99Ms`]),
      ms(r[`${key}MaxMs`]),
      formatNumber(r[`${key}Samples`] ?? 0, 0),
    ]),
    right: [false, true, true, true, true],
  };
  return [
    {
      title,
      before,
      grid,
      after: [
        'Priority orders what is claimed next; it never takes a thread from a running job, so a short job waits for the first thread to come free. ' +
          'Jobs that must not wait behind long ones get a queue of their own (`enqueue(..., { queue })`) and a supervisor that serves only it (`startSupervisor({ queues })`, `spindle start --queues`): ' +
          'its threads are theirs alone.',
      ],
    },
  ];
}
