/**
 * The report of scenario 9 (issue 23): the claim of limited types at three queue depths beside the
 * plain claim, and one supervisor's no-op throughput with and without limits. Written from the
 * figures of the run.
 */
import { CLAIM_VARIANTS, LIMIT_DEPTHS, THROUGHPUT_CONFIGS } from '../scenarios/limits.ts';
import { formatNumber, formatRatio, type Grid } from './grid.ts';
import { standaloneResult, type Results } from './results.ts';
import type { StartupSection } from './startup.ts';

const n0 = (v: number) => formatNumber(v, 0);
const n2 = (v: number) => formatNumber(v, 2);

/** The goal of issue 23 read here: claim_limited at 1M queued rows at most 1.5x its time at 10k. */
export const FLOW_FLAT_RATIO = 1.5;
/** The variants the goal is read on: the limited claims of the type with the backlog. */
export const FLOW_GOAL_VARIANTS = ['global', 'keyed', 'fair'] as const;

/** The sections of scenario 9, or none when it was not selected. */
export function limitsSections(results: Results): StartupSection[] {
  const scenario = results.scenarios.find((s) => s.id === 'limits');
  if (!scenario) return [];
  const claimTitle = 'Cost of flow control: the claim vs queue depth (scenario 9; issue 23)';
  const runTitle = 'Cost of flow control: one supervisor\'s no-op throughput with limits (scenario 9; issue 23)';
  const before = scenario.kind === 'standalone' ? [`${scenario.size}.`] : [];
  const got = standaloneResult(results, 'limits');
  if ('why' in got) return [{ title: claimTitle, before, after: [`Not measured: ${got.why}.`] }];
  const r = got.result;
  const last = LIMIT_DEPTHS[LIMIT_DEPTHS.length - 1]!;
  const first = LIMIT_DEPTHS[0]!;
  const claims: Grid = {
    headers: ['claim of 10 jobs (median ms, p90 in brackets)', ...LIMIT_DEPTHS.map((d) => `${n0(d)} queued`), `${n0(last)} / ${n0(first)}`],
    rows: CLAIM_VARIANTS.map((v) => [
      v.label,
      ...LIMIT_DEPTHS.map((d) => {
        const m = r[`${v.key}_${d}`];
        const p = r[`${v.key}P90_${d}`];
        return m === undefined ? '-' : `${n2(m)} (${p === undefined ? '-' : n2(p)})`;
      }),
      r[`${v.key}_${last}`] === undefined ? '-' : formatRatio(r[`${v.key}_${last}`]! / r[`${v.key}_${first}`]!),
    ]),
    right: [false, ...LIMIT_DEPTHS.map(() => true), true],
  };
  const inserts = LIMIT_DEPTHS.map((d) => r[`insertMs_${d}`]).filter((v): v is number => v !== undefined);
  const claimAfter = [
    `Inserting the rows took ${inserts.map((ms) => `${formatNumber(ms / 1000, 1)} s`).join(', ')} (each step up to the next depth, with ANALYZE). ` +
      `Load average (1 min) ${n2(r.loadBefore!)} before the scenario.`,
  ];
  const none = r.jobsPerSecond_none;
  const runs: Grid = {
    headers: ['one supervisor, no-op jobs', 'jobs/s (runs from-to)', 'vs no limits'],
    rows: THROUGHPUT_CONFIGS.map((c) => {
      const m = r[`jobsPerSecond_${c.key}`];
      const min = r[`jobsPerSecondMin_${c.key}`];
      const max = r[`jobsPerSecondMax_${c.key}`];
      return [
        c.label,
        m === undefined ? '-' : min === undefined || max === undefined ? n0(m) : `${n0(m)} (${n0(min)}-${n0(max)})`,
        m === undefined || none === undefined || c.key === 'none' ? '-' : formatRatio(m / none),
      ];
    }),
    right: [false, true, true],
  };
  const runAfter = [
    'A limited type is claimed only for threads that are idle (src/policy/flow-plan.ts): no batch ahead, so a freed thread costs one call of ' +
      'claim_limited with its own commit, where the plain claim takes a batch ahead; for short jobs that call is the bound. ' +
      `Load average (1 min) ${n2(r.loadAfter!)} after the scenario.`,
  ];
  return [
    { title: claimTitle, before, grid: claims, after: claimAfter },
    { title: runTitle, before: [], grid: runs, after: runAfter },
  ];
}
