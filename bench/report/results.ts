/**
 * The results of a benchmark run, as written to bench/results/latest.json, and
 * the figures derived from them (medians, spindle's ratios, the goals of issue 8)
 * that the console table, BENCHMARKS.md and the chart all show.
 */
import type { ServerInfo } from '../database.ts';
import type { MachineInfo } from '../machine.ts';
import type { Metric, Metrics, Network } from '../scenarios/types.ts';
import { STARTUP_GOALS } from '../startup/figures.ts';
import { median } from '../stats.ts';
import type { SystemInfo } from '../systems/types.ts';

/** The system every ratio is about. */
export const SUBJECT = 'spindle';
/** The system CPU throughput is compared with. */
export const LIMIT_SYSTEM = 'piscina';

/** One run of one system in one scenario. */
export interface SystemRun {
  run: number;
  ok: boolean;
  metrics?: Metrics;
  /** Jobs the system's store still held as not done after stop(). */
  unfinished?: number;
  error?: string;
}

/** A system's runs in a scenario and their medians. */
export interface SystemOutcome {
  runs: SystemRun[];
  /** Median of each metric over the successful runs. */
  median: Metrics;
}

/** A system scenario: every system's runs. */
export interface SystemScenarioResult {
  kind: 'system';
  id: string;
  issueNumber: string;
  title: string;
  short: string;
  size: string;
  metrics: Metric[];
  /** Absent in results written before the network hop: local. */
  network?: Network;
  systems: Record<string, SystemOutcome>;
}

/** A standalone scenario: one result, or why there is none. */
export interface StandaloneScenarioResult {
  kind: 'standalone';
  id: string;
  issueNumber: string;
  title: string;
  size: string;
  system: string;
  metrics: Metric[];
  result?: Metrics;
  error?: string;
  skipped?: string;
}

/** A scenario not written yet. */
export interface PendingScenarioResult {
  kind: 'pending';
  id: string;
  issueNumber: string;
  title: string;
  waitingFor: string;
}

/** The run a scenario's figures were carried over from (`--merge`). */
export interface EarlierRun {
  generatedAt: string;
  command: string;
}

/** One scenario's part of the results; `from` when its figures come from an earlier run (`--merge`). */
export type ScenarioResult = (SystemScenarioResult | StandaloneScenarioResult | PendingScenarioResult) & { from?: EarlierRun };

/** A system as the results describe it; `skipped` says why it did not run. */
export interface SystemEntry extends SystemInfo {
  skipped?: string;
}

/** How the delay proxy was set for the scenarios one hop away. */
export interface HopInfo {
  /** SELECT 1 medians straight to the server and through the proxy, ms. */
  directP50Ms: number;
  hopP50Ms: number;
  /** The hold per direction, ms. */
  holdMs: number;
}

/** Everything latest.json holds. */
export interface Results {
  generatedAt: string;
  command: string;
  quick: boolean;
  runs: number;
  threads: number;
  durationSeconds: number;
  machine: MachineInfo;
  /** The 1-minute load average when the run ended (absent in results written before it was kept). */
  loadAtEnd?: number;
  database: { source: string } & ServerInfo;
  /** The network hop's calibration, when a scenario ran behind it. */
  hop?: HopInfo;
  systems: SystemEntry[];
  scenarios: ScenarioResult[];
}

/** The median of each metric that every successful run reported. */
export function medianMetrics(runs: readonly SystemRun[]): Metrics {
  const ok = runs.filter((r) => r.ok && r.metrics).map((r) => r.metrics!);
  if (ok.length === 0) return {};
  const keys = Object.keys(ok[0]!).filter((k) => ok.every((m) => typeof m[k] === 'number'));
  return Object.fromEntries(keys.map((k) => [k, median(ok.map((m) => m[k]!))]));
}

/** The systems that ran (not skipped), in order. */
export function ranSystems(results: Results): SystemEntry[] {
  return results.systems.filter((s) => !s.skipped);
}

/** A system scenario's median for one system and metric, if measured. */
export function medianOf(scenario: SystemScenarioResult, system: string, key: string): number | undefined {
  const value = scenario.systems[system]?.median[key];
  return value === undefined || !Number.isFinite(value) ? undefined : value;
}

/** How many times better `subject` is than `peer` on a metric (> 1: subject better). */
export function advantage(subject: number, peer: number, metric: Metric): number {
  return metric.better === 'higher' ? subject / peer : peer / subject;
}

/** The system scenarios of the results, by id. */
export function systemScenarioById(results: Results, id: string): SystemScenarioResult | undefined {
  const s = results.scenarios.find((x) => x.id === id);
  return s?.kind === 'system' ? s : undefined;
}

/** One goal of issue 8 with what was measured. */
export interface Goal {
  goal: string;
  /** What was measured, for people. */
  measured: string;
  /** undefined: not measured in this run. */
  met: boolean | undefined;
}

function fixed(value: number, digits: number): string {
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** The goals of issue 8, each with the figure measured beside it. */
export function goals(results: Results): Goal[] {
  const list: Goal[] = [];
  const notMeasured = (goal: string, why: string): Goal => ({ goal, measured: `not measured (${why})`, met: undefined });

  const noop = systemScenarioById(results, 'noop');
  {
    const goal = 'No-op throughput at least 1.5x graphile-worker tuned';
    const s = noop && medianOf(noop, SUBJECT, 'jobsPerSecond');
    const p = noop && medianOf(noop, 'graphile-worker-tuned', 'jobsPerSecond');
    list.push(
      s !== undefined && p !== undefined
        ? { goal, measured: `${fixed(s, 0)} vs ${fixed(p, 0)} jobs/s = ${fixed(s / p, 2)}x`, met: s / p >= 1.5 }
        : notMeasured(goal, s === undefined ? 'spindle did not run' : 'graphile-worker tuned did not run'),
    );
  }

  const cpu = systemScenarioById(results, 'cpu');
  {
    const goal = `CPU throughput at least 0.95x bare Piscina (${results.threads} threads)`;
    const s = cpu && medianOf(cpu, SUBJECT, 'jobsPerSecond');
    const p = cpu && medianOf(cpu, LIMIT_SYSTEM, 'jobsPerSecond');
    list.push(
      s !== undefined && p !== undefined
        ? { goal, measured: `${fixed(s, 1)} vs ${fixed(p, 1)} jobs/s = ${fixed(s / p, 2)}x`, met: s / p >= 0.95 }
        : notMeasured(goal, s === undefined ? 'spindle did not run' : 'bare Piscina did not run'),
    );
  }

  const latency = systemScenarioById(results, 'latency');
  for (const [key, label, limit] of [
    ['p50Ms', 'p50', 2],
    ['p99Ms', 'p99', 10],
  ] as const) {
    const goal = `Enqueue-to-start latency ${label} under ${limit} ms`;
    const s = latency && medianOf(latency, SUBJECT, key);
    list.push(s !== undefined ? { goal, measured: `${fixed(s, 2)} ms`, met: s < limit } : notMeasured(goal, 'spindle did not run'));
  }

  const claim = results.scenarios.find((x) => x.id === 'claim');
  {
    const goal = 'Claim time flat from 10k to 1M queued rows (read here as 1M/10k at most 1.5)';
    const r = claim?.kind === 'standalone' ? claim.result : undefined;
    list.push(
      r && r.claim10kMs !== undefined && r.claim1MMs !== undefined && r.ratio !== undefined
        ? {
            goal,
            measured: `${fixed(r.claim10kMs, 2)} ms -> ${fixed(r.claim1MMs, 2)} ms = ${fixed(r.ratio, 2)}x`,
            met: r.ratio <= 1.5,
          }
        : notMeasured(goal, claim?.kind === 'standalone' ? (claim.skipped ?? claim.error ?? 'not run') : 'not selected'),
    );
  }

  list.push(...spindleOnlyGoals(results));
  list.push(...startupGoals(results));
  list.push(workflowsGoal(results));
  list.push(...flowGoals(results));
  return list;
}

/** How the goals of issue 23 begin (scenario 9), for the report's explanations. */
export const FLOW_GOAL_PREFIX = 'Flow control (issue 23)';

/**
 * The goals of issue 23 (scenario 9), read on the claim at 10k and 1M queued rows (at most 1.5x):
 * claim_limited with a global limit, the keyed claims over 10,000 keys, and the plain claim of jobs without limits
 * queued behind a limited type's backlog ("jobs without limits pay nothing").
 */
function flowGoals(results: Results): Goal[] {
  const got = standaloneResult(results, 'limits');
  const read = (goal: string, keys: string[]): Goal => {
    if ('why' in got) return { goal, measured: `not measured (${got.why})`, met: undefined };
    const r = got.result;
    const pairs = keys.map((k) => [k, r[`${k}_10000`], r[`${k}_1000000`]] as const);
    if (pairs.some(([, a, b]) => a === undefined || b === undefined)) return { goal, measured: 'not measured (no figures)', met: undefined };
    return {
      goal,
      measured: pairs.map(([k, a, b]) => `${keys.length > 1 ? `${k} ` : ''}${fixed(a!, 2)} ms -> ${fixed(b!, 2)} ms = ${fixed(b! / a!, 2)}x`).join('; '),
      met: pairs.every(([, a, b]) => b! / a! <= 1.5),
    };
  };
  return [
    // The issue's goal: with a global limit, flat in depth, with 10,000 distinct keys among the rows.
    read(`${FLOW_GOAL_PREFIX}: claim_limited with a global limit flat from 10k to 1M queued rows over 10,000 keys (1M/10k at most 1.5)`, ['global']),
    // Ours beside it: the keyed claims themselves (one index probe per key visited).
    read(`${FLOW_GOAL_PREFIX}: claim_limited of keyed scopes flat from 10k to 1M queued rows over 10,000 keys (keyConcurrency 1, fair) (1M/10k at most 1.5)`, [
      'keyed',
      'fair',
    ]),
    read(`${FLOW_GOAL_PREFIX}: jobs without limits pay nothing: their plain claim flat from 10k to 1M queued rows of a limited type ahead of them (1M/10k at most 1.5)`, [
      'plainBehind',
    ]),
  ];
}

/** How the goals of issue 20 begin (scenario 7), for the report's explanations. */
export const STARTUP_GOAL_PREFIX = 'Start fast (issue 20)';

/** The goals of issue 20 (scenario 7): from the startSupervisor() call to the first job finished. */
function startupGoals(results: Results): Goal[] {
  const got = standaloneResult(results, 'startup');
  return STARTUP_GOALS.map(({ variant, language, limitMs }): Goal => {
    const goal = `${STARTUP_GOAL_PREFIX}: startSupervisor() to the first job finished at most ${limitMs} ms, a ${language} worker module`;
    if ('why' in got) return { goal, measured: `not measured (${got.why})`, met: undefined };
    const r = got.result;
    const median = r[`${variant}Written`];
    if (median === undefined) return { goal, measured: 'not measured (no run succeeded)', met: undefined };
    return {
      goal,
      measured: `${fixed(median, 0)} ms (median of ${r[`${variant}Runs`]} runs, p90 ${fixed(r[`${variant}WrittenP90`]!, 0)}; ${r.threads} threads)`,
      met: median <= limitMs,
    };
  });
}

/** The goal of issue 22 (scenario 8): 3-step workflows, one process, beside DBOS Transact. */
function workflowsGoal(results: Results): Goal {
  const goal = 'Workflows (issue 22): 3-step runs/s with one supervisor process at least 1.5x DBOS Transact';
  const got = standaloneResult(results, 'workflows');
  if ('why' in got) return { goal, measured: `not measured (${got.why})`, met: undefined };
  const ours = got.result.spindle1_3;
  const theirs = got.result.dbos_3;
  if (ours === undefined || theirs === undefined) return { goal, measured: 'not measured (no run succeeded)', met: undefined };
  return { goal, measured: `${fixed(ours, 0)} vs ${fixed(theirs, 0)} runs/s = ${fixed(ours / theirs, 2)}x`, met: ours / theirs >= 1.5 };
}

/** The standalone scenario `id`'s figures, or why there are none. */
export function standaloneResult(results: Results, id: string): { result: Metrics } | { why: string } {
  const s = results.scenarios.find((x) => x.id === id);
  if (s?.kind !== 'standalone') return { why: 'not selected' };
  if (s.result) return { result: s.result };
  return { why: s.skipped ?? (s.error ? `failed: ${s.error.split('\n')[0]}` : 'not run') };
}

/** The goals of issues 6 (progress, scenario 4) and 5 (cancel and timeout, scenario 5). */
function spindleOnlyGoals(results: Results): Goal[] {
  const list: Goal[] = [];
  const notMeasured = (goal: string, why: string): Goal => ({ goal, measured: `not measured (${why})`, met: undefined });

  const progress = standaloneResult(results, 'progress');
  {
    const goal = 'Progress (issue 6): a CPU job calling ctx.progress 100,000 times a second at most 5% slower (ratio <= 1.05; read on the thread\'s CPU time)';
    if ('why' in progress) list.push(notMeasured(goal, progress.why));
    else {
      const r = progress.result;
      const cpu = Number.isFinite(r.cpuRatio) ? r.cpuRatio! : undefined;
      const wall = r.wallRatio!;
      list.push({
        goal,
        measured:
          `CPU time ${cpu === undefined ? 'not readable here' : `${fixed(cpu, 3)}x`}, wall time ${fixed(wall, 3)}x ` +
          `(medians of ${r.pairs} pairs)`,
        met: (cpu ?? wall) <= 1.05,
      });
    }
  }
  {
    const goal = 'Progress (issue 6): progress statements per job at most (duration / progressFlushMs) + 2';
    if ('why' in progress) list.push(notMeasured(goal, progress.why));
    else {
      const r = progress.result;
      list.push({
        goal,
        measured:
          `${fixed(r.statementsPerJob!, 0)} per job (max ${fixed(r.statementsMax!, 0)}) for ${fixed(r.callsPerJob!, 0)} calls; ` +
          `bound ${fixed(r.statementBound!, 1)}; ${fixed(r.jobsOverBound!, 0)} of ${r.pairs} jobs over it`,
        met: r.jobsOverBound === 0,
      });
    }
  }

  const cancel = standaloneResult(results, 'cancel');
  {
    const goal = 'Cancel (issue 5): cancel-to-final p99 under 100 ms';
    if ('why' in cancel) list.push(notMeasured(goal, cancel.why));
    else {
      const r = cancel.result;
      list.push({ goal, measured: `p50 ${fixed(r.cancelP50!, 1)} ms, p99 ${fixed(r.cancelP99!, 1)} ms (${r.cancels} cancels)`, met: r.cancelP99! < 100 });
    }
  }
  for (const [key, label] of [
    ['cooperative', 'a handler that returns at its signal'],
    ['endless', 'an endless loop'],
  ] as const) {
    const grace = 'why' in cancel ? undefined : cancel.result.abortGraceMs;
    const goal = `Timeout (issue 5): overshoot p99 under abortGraceMs + 100 ms${grace === undefined ? '' : ` (${fixed(grace + 100, 0)} ms)`}, ${label}`;
    if ('why' in cancel) list.push(notMeasured(goal, cancel.why));
    else {
      const r = cancel.result;
      const p99 = r[`${key}P99`]!;
      list.push({ goal, measured: `p50 ${fixed(r[`${key}P50`]!, 1)} ms, p99 ${fixed(p99, 1)} ms (${r.overshoots} jobs)`, met: p99 < grace! + 100 });
    }
  }
  return list;
}
