/**
 * The report of scenario 8 (issue 22): workflow runs per second, spindle with 1 and 2 supervisor
 * processes beside DBOS Transact, each as a median with the range of its runs, and the ratios.
 * Written from the figures of the run.
 */
import { formatNumber, formatRatio, type Grid } from './grid.ts';
import { standaloneResult, type Results } from './results.ts';
import type { StartupSection } from './startup.ts';

const STEPS = [3, 20] as const;
const CONFIGS = [
  ['spindle1', 'spindle, 1 supervisor process'],
  ['spindle2', 'spindle, 2 supervisor processes'],
  ['dbos', 'DBOS Transact, 1 process'],
] as const;

/** The section of scenario 8, or none when it was not selected. */
export function workflowsSections(results: Results): StartupSection[] {
  const title = 'Durable workflows beside DBOS Transact (scenario 8; issue 22)';
  const scenario = results.scenarios.find((s) => s.id === 'workflows');
  if (!scenario) return [];
  const before = scenario.kind === 'standalone' ? [`${scenario.size}.`] : [];
  const got = standaloneResult(results, 'workflows');
  if ('why' in got) return [{ title, before, after: [`Not measured: ${got.why}.`] }];
  const r = got.result;
  const cell = (config: string, steps: number) => {
    const median = r[`${config}_${steps}`];
    if (median === undefined) return '-';
    const min = r[`${config}Min_${steps}`];
    const max = r[`${config}Max_${steps}`];
    const n0 = (v: number) => formatNumber(v, 0);
    return min === undefined || max === undefined ? n0(median) : `${n0(median)} (${n0(min)}-${n0(max)})`;
  };
  const ratio = (config: string, steps: number) => {
    const ours = r[`${config}_${steps}`];
    const theirs = r[`dbos_${steps}`];
    return ours === undefined || theirs === undefined || config === 'dbos' ? '-' : formatRatio(ours / theirs);
  };
  const grid: Grid = {
    headers: ['', ...STEPS.flatMap((s) => [`${s} steps: runs/s (runs from-to)`, 'vs DBOS'])],
    rows: CONFIGS.map(([config, label]) => [label, ...STEPS.flatMap((s) => [cell(config, s), ratio(config, s)])]),
    right: [false, ...STEPS.flatMap(() => [true, true])],
  };
  const after = [
    'A workflow body runs on its supervisor\'s main thread. Step writes of all the runs a supervisor resumes go through one ' +
      'StepWriter: the writes that arrive while a statement is under way share the next one (one commit for many steps, each ' +
      'fenced on its run\'s claim). Two supervisor processes on 2 cores share the cores with each other and PostgreSQL. ' +
      `Load average (1 min) ${formatNumber(r.loadBefore!, 2)} before, ${formatNumber(r.loadAfter!, 2)} after.`,
  ];
  return [{ title, before, grid, after }];
}
