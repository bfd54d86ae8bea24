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

/** The run a scenario's figures were carried over from (a run of some scenarios, `--only` or `--soak`). */
export interface EarlierRun {
  generatedAt: string;
  command: string;
}

/** One scenario's part of the results; `from` when its figures come from an earlier run (`--only`, `--soak`). */
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
    const goal = `${NOOP_GOAL}, spindle keeping every job's history`;
    const s = noop && medianOf(noop, SUBJECT, 'jobsPerSecond');
    const p = noop && medianOf(noop, 'graphile-worker-tuned', 'jobsPerSecond');
    list.push(
      s !== undefined && p !== undefined
        ? { goal, measured: `${fixed(s, 0)} vs ${fixed(p, 0)} jobs/s = ${fixed(s / p, 2)}x`, met: s / p >= 1.0 }
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
  {
    const goal = LATENCY_P50_GOAL;
    const s = latency && medianOf(latency, SUBJECT, 'p50Ms');
    const floor = latencyFloor(results);
    list.push(
      s === undefined
        ? notMeasured(goal, 'spindle did not run')
        : floor === undefined
          ? notMeasured(goal, 'the floor was not measured: scenario 3a and bare Piscina in scenario 3')
          : {
              goal,
              measured: `${fixed(s, 2)} ms against a floor of ${fixed(floor.total, 2)} ms (${floor.parts}) + 1 = ${fixed(floor.total + 1, 2)} ms`,
              met: s <= floor.total + 1,
            },
    );
  }
  {
    const goal = LATENCY_P99_GOAL;
    const s = latency && medianOf(latency, SUBJECT, 'p99Ms');
    const best = latency && bestPeer(results, latency, 'p99Ms');
    list.push(
      s === undefined || best === undefined
        ? notMeasured(goal, s === undefined ? 'spindle did not run' : 'no PostgreSQL peer ran')
        : { goal, measured: `${fixed(s, 2)} ms against ${best.title}'s ${fixed(best.value, 2)} ms`, met: s <= best.value },
    );
  }
  list.push(...hopGoals(results));

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
  list.push(...soakGoals(results));
  return list;
}

/** The goals of the soak (issue 25, scenario 11): no drift from the second minute to the last, no job lost. */
function soakGoals(results: Results): Goal[] {
  const got = standaloneResult(results, 'soak');
  const prefix = 'Sustained load (issue 25)';
  const drift = (what: string, key: 'p99Drift' | 'rssDrift', perMinute: string, digits: number): Goal => {
    const goal = `${prefix}: ${what} in the last minute within 10% of the second`;
    if ('why' in got) return { goal, measured: `not measured (${got.why})`, met: undefined };
    const r = got.result;
    const m = r.minutes!;
    return {
      goal,
      measured: `${fixed(r[`${perMinute}_m${Math.min(2, m)}`]!, digits)} -> ${fixed(r[`${perMinute}_m${m}`]!, digits)} = ${fixed(r[key]!, 2)}x over ${m} minutes`,
      met: r[key]! <= 1 + r.driftLimit!,
    };
  };
  const lostGoal = `${prefix}: no job lost (every job enqueued in the table, in the state its kind leads to)`;
  return [
    drift('enqueue-to-start p99', 'p99Drift', 'p99Ms', 2),
    drift('the supervisor\'s RSS', 'rssDrift', 'rssMb', 1),
    'why' in got
      ? { goal: lostGoal, measured: `not measured (${got.why})`, met: undefined }
      : {
          goal: lostGoal,
          measured: `${fixed(got.result.enqueued!, 0)} enqueued, ${fixed(got.result.lost!, 0)} lost, ${fixed(got.result.misplaced!, 0)} misplaced`,
          met: got.result.lost === 0 && got.result.misplaced === 0,
        },
  ];
}

/** The no-op throughput goal of issue 25 (issue 8's 1.5x restated), for the report's explanations. */
export const NOOP_GOAL = 'No-op throughput at least 1.0x graphile-worker tuned';
/** Issue 25's latency goals, for the report's explanations. */
export const LATENCY_P50_GOAL = "Enqueue-to-start p50 at most the machine's floor + 1 ms (floor: INSERT with NOTIFY and commit, a claim, a bare thread hop; same run)";
export const LATENCY_P99_GOAL = 'Enqueue-to-start p99 at most the best PostgreSQL peer\'s p99 in the same run';
/** How the goals of the scenarios one hop away begin. */
export const HOP_GOAL_PREFIX = 'Database one hop away (issue 25)';

/**
 * The machine's enqueue-to-start floor (issue 25): the INSERT with its NOTIFY and commit, a claim
 * round trip (both scenario 3a, p50) and a bare thread hop (bare Piscina's p50 in scenario 3).
 */
export function latencyFloor(results: Results): { total: number; parts: string } | undefined {
  const floor = standaloneResult(results, 'floor');
  const latency = systemScenarioById(results, 'latency');
  const hop = latency && medianOf(latency, LIMIT_SYSTEM, 'p50Ms');
  if ('why' in floor || hop === undefined) return undefined;
  const insert = floor.result.notifyP50Ms;
  const claim = floor.result.claimP50Ms;
  if (insert === undefined || claim === undefined) return undefined;
  return {
    total: insert + claim + hop,
    parts: `INSERT + NOTIFY ${fixed(insert, 2)}, claim ${fixed(claim, 2)}, thread hop ${fixed(hop, 2)}`,
  };
}

/** The PostgreSQL peer with the lowest (better: 'lower') median of `key` in `scenario`. */
export function bestPeer(results: Results, scenario: SystemScenarioResult, key: string): { title: string; value: number } | undefined {
  let best: { title: string; value: number } | undefined;
  for (const s of ranSystems(results)) {
    if (s.name === SUBJECT || s.store !== 'PostgreSQL') continue;
    const value = medianOf(scenario, s.name, key);
    if (value !== undefined && (best === undefined || value < best.value)) best = { title: s.title, value };
  }
  return best;
}

/** Issue 25's goals one hop away: spindle ahead of every peer on no-op and CPU throughput and on latency p50. */
function hopGoals(results: Results): Goal[] {
  const checks = [
    ['noop-hop', 'jobsPerSecond', 'no-op throughput', 0],
    ['cpu-hop', 'jobsPerSecond', 'CPU throughput', 1],
    ['latency-hop', 'p50Ms', 'enqueue-to-start p50', 2],
  ] as const;
  const list: Goal[] = [];
  for (const [id, key, what, digits] of checks) {
    const goal = `${HOP_GOAL_PREFIX}: ${what} ahead of every peer`;
    const scenario = systemScenarioById(results, id);
    const ours = scenario && medianOf(scenario, SUBJECT, key);
    if (!scenario || ours === undefined) {
      list.push({ goal, measured: `not measured (${scenario ? 'spindle did not run' : 'not selected'})`, met: undefined });
      continue;
    }
    const metric = scenario.metrics.find((m) => m.key === key)!;
    const peers = ranSystems(results)
      .filter((s) => s.name !== SUBJECT && s.name !== LIMIT_SYSTEM)
      .map((s) => ({ title: s.title, value: medianOf(scenario, s.name, key) }))
      .filter((p): p is { title: string; value: number } => p.value !== undefined);
    if (peers.length === 0) {
      list.push({ goal, measured: 'not measured (no peer ran)', met: undefined });
      continue;
    }
    const ratios = peers.map((p) => ({ ...p, ratio: advantage(ours, p.value, metric) }));
    const closest = ratios.reduce((a, b) => (b.ratio < a.ratio ? b : a));
    list.push({
      goal,
      measured: `${fixed(ours, digits)} ${metric.label}; closest ${closest.title} ${fixed(closest.value, digits)} (${fixed(closest.ratio, 2)}x)`,
      met: ratios.every((r) => r.ratio > 1),
    });
  }
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
