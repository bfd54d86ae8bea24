/**
 * Scenario 7 (issue 20, "Start fast"): the time from starting a job runtime to its first job
 * finished, one job queued before the start, 2 threads (or concurrency 2), local PostgreSQL, the
 * schema already in place (a restart, not a first install). Every start is a fresh Node process:
 *
 * - spindle as a library (startup/spindle-child.mjs): from the startSupervisor() call to the job's
 *   `spindle_finished` NOTIFY, on a connection the child opened before the call; the compiled
 *   package (dist/index.js) as a user imports it, with a JavaScript and a TypeScript worker module;
 * - `spindle start` (dist/cli/bin.js) as a user runs it: from spawning the process to that NOTIFY,
 *   seen by this process;
 * - graphile-worker (run() with a task list) and pg-boss (start(), then work()), in the same kind of
 *   child (startup/peer-child.mjs): from the call to the statement that records the job done.
 *
 * No measured process loads tsx in its main thread: the children are plain JavaScript run by plain
 * node (no execArgv, no NODE_OPTIONS). A TypeScript worker module is loaded by spindle the way a
 * user's is: on its pool threads (the probe's, then the jobs').
 *
 * Traced runs of spindle (startup/trace.mjs: pg connections and queries, sockets, threads, the job's
 * own thread-side times) give the breakdown (startup/breakdown.ts); they run apart from the plain
 * runs, whose figures carry no instrumentation. Variants take turns within each round, after one
 * round of warm-up that is not kept (file cache, tsx's compile cache). The runs themselves are in
 * startup/runs.ts; this file runs the rounds and turns them into figures.
 */
import { loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { percentile } from '../stats.ts';
import { CLI_PHASES, LIBRARY_PHASES } from '../startup/breakdown.ts';
import { STARTUP_IMPORTS, STARTUP_THREAD_COSTS, STARTUP_THREADS, STARTUP_VARIANTS, type StartupVariant } from '../startup/figures.ts';
import { distAge, distMissing, moduleCosts, PG_BOSS_WORK, prepare, release, runVariant, type RunRecord } from '../startup/runs.ts';
import type { Metrics, StandaloneScenario } from './types.ts';

/** Kept rounds (every variant once per round), after one warm-up round. */
const ROUNDS = { full: 15, quick: 5 };
/** Between two runs: the last one's server backends are gone, its process has exited. */
const PAUSE_MS = 100;
/** Rounds of the costs measured apart (imports, a thread). */
const IMPORT_ROUNDS = { full: 7, quick: 3 };

const fmt = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(1));

function describeRecord(r: RunRecord): string {
  const parts = [`written ${fmt(r.written)} ms`];
  if (r.handled !== undefined) parts.push(`handled ${fmt(r.handled)}`);
  if (r.returned !== undefined) parts.push(`returned ${fmt(r.returned)}`);
  if (r.importMs !== undefined) parts.push(`import ${fmt(r.importMs)}`);
  parts.push(`from spawn ${fmt(r.fromSpawn)}`);
  return parts.join(', ');
}

/** Median, p90, min, max of one figure of a variant's runs, as metrics named `${prefix}${Stat}`. */
function summarize(metrics: Metrics, prefix: string, values: number[]): void {
  if (values.length === 0) return;
  metrics[prefix] = percentile(values, 50);
  metrics[`${prefix}P90`] = percentile(values, 90);
  metrics[`${prefix}Min`] = Math.min(...values);
  metrics[`${prefix}Max`] = Math.max(...values);
}

/** Scenario 7 (issue 20). */
export const startup: StandaloneScenario = {
  kind: 'standalone',
  id: 'startup',
  issueNumber: '7',
  title: 'Time to the first job (issue 20)',
  system: 'spindle',
  metrics: [
    { key: 'libJsWritten', label: 'startSupervisor() JS ms', better: 'lower', digits: 0 },
    { key: 'libTsWritten', label: 'startSupervisor() TS ms', better: 'lower', digits: 0 },
    { key: 'cliJsWritten', label: 'spindle start JS ms', better: 'lower', digits: 0 },
    { key: 'cliTsWritten', label: 'spindle start TS ms', better: 'lower', digits: 0 },
    { key: 'graphileWritten', label: 'graphile-worker ms', better: 'lower', digits: 0 },
    { key: 'pgBossWritten', label: 'pg-boss ms', better: 'lower', digits: 0 },
  ],
  size: (quick) =>
    `One job queued, then a fresh process starts the runtime with ${STARTUP_THREADS} threads (graphile-worker: concurrency ${STARTUP_THREADS}; pg-boss: ${PG_BOSS_WORK.loops} work() loops) ` +
    `on a migrated schema, until that job is finished; spindle from its compiled package (dist/), with a JavaScript and a TypeScript worker module, ` +
    `as a library (from the startSupervisor() call) and as \`spindle start\` (from the spawn); ${quick ? ROUNDS.quick : ROUNDS.full} runs of each in turns after one warm-up round, ` +
    'plus as many traced runs of spindle for the breakdown',
  async unavailable() {
    return distMissing();
  },
  async run({ databaseUrl, quick, log }): Promise<Metrics> {
    const loadBefore = loadavg()[0]!;
    const { builtAt, newerSources } = await distAge();
    log(`dist/ built ${new Date(builtAt).toISOString()}${newerSources.length ? `; ${newerSources.length} file(s) of src/ are newer (${newerSources.slice(0, 5).join(', ')}${newerSources.length > 5 ? ', ...' : ''}): run \`npm run build\` to measure them` : ''}`);
    const bench = await prepare(databaseUrl, log);
    const rounds = quick ? ROUNDS.quick : ROUNDS.full;
    const variants = STARTUP_VARIANTS.filter((v) => (v.id === 'graphile' ? bench.graphile : v.id === 'pgBoss' ? bench.pgBoss !== undefined : true));
    const records = new Map<StartupVariant, RunRecord[]>(variants.map((v) => [v.id, []]));
    const failures = new Map<StartupVariant, string[]>(variants.map((v) => [v.id, []]));
    const loads: number[] = [];
    let costs: Metrics = {};
    try {
      for (let round = 0; round <= rounds; round++) {
        loads.push(loadavg()[0]!);
        for (const variant of variants) {
          const name = round === 0 ? 'warm-up' : `run ${round}/${rounds}`;
          try {
            const record = await runVariant(bench, variant.id);
            if (round > 0) records.get(variant.id)!.push(record);
            log(`${name.padEnd(9)} ${variant.label.padEnd(48)} ${describeRecord(record)}`);
          } catch (error) {
            const message = error instanceof Error ? error.message : String(error);
            if (round > 0) failures.get(variant.id)!.push(message);
            log(`${name.padEnd(9)} ${variant.label.padEnd(48)} FAILED: ${message.split('\n')[0]}`);
          }
          await sleep(PAUSE_MS);
        }
      }
      log('costs measured apart, each in a fresh process:');
      costs = await moduleCosts(bench, quick ? IMPORT_ROUNDS.quick : IMPORT_ROUNDS.full);
    } finally {
      await release(bench);
    }
    const metrics: Metrics = { rounds, threads: STARTUP_THREADS, loadBefore, builtAt, srcNewerThanDist: newerSources.length };
    for (const [id, list] of records) {
      metrics[`${id}Runs`] = list.length;
      metrics[`${id}Failed`] = failures.get(id)!.length;
      summarize(metrics, `${id}Written`, list.map((r) => r.written));
      summarize(metrics, `${id}Handled`, list.flatMap((r) => (r.handled === undefined ? [] : [r.handled])));
      summarize(metrics, `${id}Returned`, list.flatMap((r) => (r.returned === undefined ? [] : [r.returned])));
      summarize(metrics, `${id}Import`, list.flatMap((r) => (r.importMs === undefined ? [] : [r.importMs])));
      summarize(metrics, `${id}FromSpawn`, list.map((r) => r.fromSpawn));
      summarize(metrics, `${id}Boot`, list.flatMap((r) => (r.bootMs === undefined ? [] : [r.bootMs])));
      summarize(metrics, `${id}Stop`, list.flatMap((r) => (r.stopMs === undefined ? [] : [r.stopMs])));
      summarize(metrics, `${id}CpuProcess`, list.flatMap((r) => (r.cpu === undefined ? [] : [r.cpu.processMs])));
      summarize(metrics, `${id}CpuMain`, list.flatMap((r) => (r.cpu?.mainMs === undefined ? [] : [r.cpu.mainMs])));
      summarize(metrics, `${id}CpuMainWait`, list.flatMap((r) => (r.cpu?.mainWaitMs === undefined ? [] : [r.cpu.mainWaitMs])));
      // The breakdown: each phase's length, median and p90 over the traced runs that saw it, and its
      // start and end in the run whose total is the median one (one run's timeline is consistent;
      // medians of starts and ends taken apart are not).
      const phases = id.startsWith('cli') ? CLI_PHASES : LIBRARY_PHASES;
      const traced = list.filter((r) => r.phases !== undefined).sort((a, b) => a.written - b.written);
      const typical = traced[Math.floor((traced.length - 1) / 2)];
      for (const phase of phases) {
        const lengths = traced.flatMap((r) => (r.phases![phase.id] ? [r.phases![phase.id]!.end - r.phases![phase.id]!.start] : []));
        if (lengths.length === 0) continue;
        metrics[`${id}_${phase.id}_ms`] = percentile(lengths, 50);
        metrics[`${id}_${phase.id}_p90`] = percentile(lengths, 90);
        const span = typical?.phases![phase.id];
        if (span) {
          metrics[`${id}_${phase.id}_start`] = span.start;
          metrics[`${id}_${phase.id}_end`] = span.end;
        }
      }
      for (const [mark, value] of Object.entries(typical?.marks ?? {})) metrics[`${id}_mark_${mark}`] = value;
    }
    for (const { key, label } of [{ key: 'empty', label: 'an empty module' }, ...STARTUP_IMPORTS]) {
      log(`  import of ${label.padEnd(52)} ${fmt(costs[`import_${key}Ms`])} ms`);
    }
    for (const { key, label } of STARTUP_THREAD_COSTS) log(`  ${label.padEnd(62)} ${fmt(costs[key])} ms`);
    Object.assign(metrics, costs);
    metrics.loadMin = Math.min(...loads);
    metrics.loadMax = Math.max(...loads);
    metrics.loadAfter = loadavg()[0]!;
    const failed = [...failures].filter(([, list]) => list.length > 0);
    if (failed.length > 0) {
      log(`failed runs: ${failed.map(([id, list]) => `${id} ${list.length} (${list[0]!.split('\n')[0]})`).join('; ')}`);
    }
    if (records.get('libJs')!.length === 0) throw new Error(`no run of startSupervisor() succeeded: ${failures.get('libJs')![0] ?? 'none ran'}`);
    return metrics;
  },
};
