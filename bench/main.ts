/**
 * `npm run bench`: every selected scenario against every selected system on
 * one PostgreSQL, runs in turns, medians, spindle's ratios; writes
 * bench/results/latest.json, bench/results/chart.svg and BENCHMARKS.md.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { openDatabase, type BenchDatabase } from './database.ts';
import { runIsolated, type RunSpec } from './isolate.ts';
import { machineInfo } from './machine.ts';
import { openNetworkHop, type NetworkHop } from './network-hop.ts';
import { chartSvg } from './report/chart.ts';
import { consoleSummary } from './report/console.ts';
import { formatNumber } from './report/grid.ts';
import { benchmarksMarkdown } from './report/markdown.ts';
import {
  medianMetrics,
  type Results,
  type ScenarioResult,
  type SystemEntry,
  type SystemRun,
  type SystemScenarioResult,
} from './report/results.ts';
import { SCENARIOS } from './scenarios/index.ts';
import { SOAK_MINUTES } from './scenarios/soak.ts';
import type { Metrics, Scenario, StandaloneScenario, SystemScenario } from './scenarios/types.ts';
import { SYSTEMS } from './systems/index.ts';
import type { SystemAdapter } from './systems/types.ts';
import { wallClockMs } from './work.ts';

/** Runs per system and scenario: medians need at least three. */
const MIN_RUNS = 3;
/** Threads for every system that runs handlers on threads (issue 8: the same count for all). */
const THREADS = 2;

const RESULTS_DIR = new URL('./results/', import.meta.url);
const BENCHMARKS_MD = new URL('../BENCHMARKS.md', import.meta.url);

const USAGE = `Usage: npm run bench -- [options]

  --quick              smaller sizes (the soak is never part of it)
  --only=a,b           scenarios: ${SCENARIOS.filter((s) => s.kind !== 'pending')
    .map((s) => s.id)
    .join(', ')}
  --soak               the sustained-load scenario (soak), alone or with --only's; not with --quick
  --soak-minutes=N     its length (default ${SOAK_MINUTES}); implies --soak
  --systems=a,b        systems: ${SYSTEMS.map((s) => s.info.name).join(', ')}
  --runs=N             runs per system and scenario (default and minimum ${MIN_RUNS})
  --fresh              with --only or --soak: drop the other scenarios' figures (by default they
                       are kept from bench/results/latest.json, each marked with its run)
  --report-only        rewrite BENCHMARKS.md and the chart from bench/results/latest.json
  --help

Peers (graphile-worker, pg-boss, BullMQ) are installed apart: npm run bench:install.

Database: BENCH_DATABASE_URL as given; else DATABASE_URL's server with a database of its
own ("spindle_bench"); else spindle's embedded PostgreSQL in a temp dir.`;

interface Options {
  reportOnly: boolean;
  merge: boolean;
  quick: boolean;
  soakMinutes: number | undefined;
  scenarios: Scenario[];
  systems: SystemAdapter[];
  runs: number;
}

function pick<T>(list: readonly T[], names: string | undefined, nameOf: (item: T) => string, what: string): T[] {
  if (names === undefined) return [...list];
  const wanted = names.split(',').map((n) => n.trim()).filter(Boolean);
  for (const name of wanted) {
    if (!list.some((item) => nameOf(item) === name)) {
      throw new Error(`unknown ${what} ${JSON.stringify(name)}; known: ${list.map(nameOf).join(', ')}`);
    }
  }
  return list.filter((item) => wanted.includes(nameOf(item)));
}

function parseOptions(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      systems: { type: 'string' },
      runs: { type: 'string' },
      'report-only': { type: 'boolean', default: false },
      fresh: { type: 'boolean', default: false },
      soak: { type: 'boolean', default: false },
      'soak-minutes': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) return undefined;
  const runs = values.runs === undefined ? MIN_RUNS : Number(values.runs);
  if (!Number.isInteger(runs) || runs < MIN_RUNS) throw new Error(`--runs must be an integer of at least ${MIN_RUNS}`);
  const soakMinutes = values['soak-minutes'] === undefined ? undefined : Number(values['soak-minutes']);
  if (soakMinutes !== undefined && !(Number.isInteger(soakMinutes) && soakMinutes >= 1)) {
    throw new Error(`--soak-minutes must be a whole number of minutes, at least 1; got ${JSON.stringify(values['soak-minutes'])}`);
  }
  const soak = (values.soak ?? false) || soakMinutes !== undefined;
  if (soak && values.quick) throw new Error('--soak cannot be combined with --quick: the soak has no quick size');
  const optedIn = (s: Scenario) => s.kind === 'standalone' && s.optIn === 'soak';
  // Without --only: every scenario but the opt-in ones, or with --soak the soak alone.
  const chosen =
    values.only !== undefined
      ? pick(SCENARIOS, values.only, (s) => s.id, 'scenario')
      : SCENARIOS.filter((s) => (soak ? optedIn(s) : !optedIn(s)));
  const partial = values.only !== undefined || soak;
  return {
    reportOnly: values['report-only'] ?? false,
    merge: partial && !(values.fresh ?? false),
    quick: values.quick ?? false,
    soakMinutes,
    // Pending scenarios always come along: the output lists what is still to be written.
    scenarios: SCENARIOS.filter((s) => s.kind === 'pending' || chosen.includes(s) || (soak && optedIn(s))),
    systems: pick(SYSTEMS, values.systems, (s) => s.info.name, 'system'),
    runs,
  };
}

function log(line: string): void {
  process.stdout.write(`${line}\n`);
}

function describeRun(scenario: SystemScenario, metrics: Metrics): string {
  return scenario.metrics
    .filter((m) => metrics[m.key] !== undefined)
    .map((m) => `${formatNumber(metrics[m.key]!, m.digits)} ${m.label}`)
    .join(', ');
}

/** The delay proxy for scenarios one hop away: started by the first of them, closed at the end. */
class HopHolder {
  private hop: NetworkHop | undefined;

  constructor(private readonly databaseUrl: string) {}

  async open(): Promise<NetworkHop> {
    this.hop ??= await openNetworkHop(this.databaseUrl, (line) => log(`  ${line}`));
    return this.hop;
  }

  info(): Results['hop'] {
    const h = this.hop;
    return h && { directP50Ms: h.directP50Ms, hopP50Ms: h.hopP50Ms, holdMs: h.holdMs };
  }

  async close(): Promise<void> {
    await this.hop?.proxy.close();
  }
}

async function runSystemScenario(
  scenario: SystemScenario,
  systems: SystemAdapter[],
  options: Options,
  db: BenchDatabase,
  hops: HopHolder,
): Promise<SystemScenarioResult> {
  log(`\n# ${scenario.issueNumber}. ${scenario.title}: ${scenario.size(options.quick)}`);
  const hop = scenario.network === 'hop' ? await hops.open() : undefined;
  const runs = new Map<string, SystemRun[]>(systems.map((s) => [s.info.name, []]));
  for (let run = 1; run <= options.runs; run++) {
    for (const system of systems) {
      const spec: RunSpec = {
        system: system.info.name,
        scenario: scenario.id,
        run,
        quick: options.quick,
        threads: THREADS,
        databaseUrl: hop?.url ?? db.url,
      };
      const countsBefore = hop?.proxy.counts();
      const outcome = await runIsolated(spec, scenario.timeoutMs(options.quick));
      if (hop && outcome.ok && outcome.metrics.jobsRun) {
        // Setup and warm-up included: what a job costs in round trips, connections and polling shared out.
        const exchanges = hop.proxy.counts().exchanges - countsBefore!.exchanges;
        outcome.metrics.roundTripsPerJob = exchanges / outcome.metrics.jobsRun;
      }
      const label = `  run ${run}/${options.runs}  ${system.info.title.padEnd(22)}`;
      let entry: SystemRun;
      if (!outcome.ok) entry = { run, ok: false, error: outcome.error.slice(0, 2_000) };
      else if (outcome.unfinished > 0) {
        entry = { run, ok: false, metrics: outcome.metrics, unfinished: outcome.unfinished, error: `${outcome.unfinished} jobs unfinished after stop()` };
      } else entry = { run, ok: true, metrics: outcome.metrics, unfinished: 0 };
      runs.get(system.info.name)!.push(entry);
      log(entry.ok ? `${label} ${describeRun(scenario, entry.metrics!)}` : `${label} FAILED: ${entry.error!.split('\n')[0]}`);
    }
  }
  return {
    kind: 'system',
    id: scenario.id,
    issueNumber: scenario.issueNumber,
    title: scenario.title,
    short: scenario.short,
    size: scenario.size(options.quick),
    metrics: scenario.metrics,
    ...(scenario.network === 'hop' ? { network: 'hop' as const } : {}),
    systems: Object.fromEntries([...runs].map(([name, list]) => [name, { runs: list, median: medianMetrics(list) }])),
  };
}

async function runStandalone(scenario: StandaloneScenario, options: Options, db: BenchDatabase): Promise<ScenarioResult> {
  const base = {
    kind: 'standalone' as const,
    id: scenario.id,
    issueNumber: scenario.issueNumber,
    title: scenario.title,
    size: scenario.size(options.quick, options.soakMinutes),
    system: scenario.system,
    metrics: scenario.metrics,
  };
  log(`\n# ${scenario.issueNumber}. ${scenario.title} (${scenario.system}): ${base.size}`);
  if (!options.systems.some((s) => s.info.name === scenario.system)) {
    log(`  skipped: ${scenario.system} is not among --systems`);
    return { ...base, skipped: `${scenario.system} not selected` };
  }
  const why = await scenario.unavailable();
  if (why) {
    log(`  skipped: ${why}`);
    return { ...base, skipped: why };
  }
  try {
    const started = wallClockMs();
    const result = await scenario.run({
      databaseUrl: db.url,
      quick: options.quick,
      soakMinutes: options.soakMinutes,
      log: (line) => log(`  ${line}`),
    });
    log(`  took ${Math.round((wallClockMs() - started) / 1000)} s`);
    return { ...base, result };
  } catch (error) {
    const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
    log(`  FAILED: ${message.split('\n')[0]}`);
    return { ...base, error: message.slice(0, 2_000) };
  }
}

/** Runs the benchmark with command-line arguments `argv`; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  let options: Options | undefined;
  try {
    options = parseOptions(argv);
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  if (!options) {
    log(USAGE);
    return 0;
  }
  if (options.reportOnly) {
    const results = JSON.parse(await readFile(new URL('latest.json', RESULTS_DIR), 'utf8')) as Results;
    log(consoleSummary(results));
    await writeReports(results, false);
    return 0;
  }
  const started = wallClockMs();
  const machine = machineInfo();

  const entries: SystemEntry[] = [];
  const runnable: SystemAdapter[] = [];
  for (const system of options.systems) {
    const skipped = await system.unavailable();
    entries.push(skipped ? { ...system.info, skipped } : { ...system.info });
    if (skipped) log(`skipping ${system.info.name}: ${skipped}`);
    else runnable.push(system);
  }

  const db = await openDatabase();
  const stop = () => {
    db.close().finally(() => process.exit(130));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  log(`database: PostgreSQL ${db.server.version}, ${db.source}`);
  log(`machine: ${machine.cores} cores, ${machine.cpuModel}, load average ${machine.loadAtStart} at start`);
  log(`systems: ${runnable.map((s) => s.info.name).join(', ') || '(none)'}; ${options.runs} runs each, in turns${options.quick ? '; --quick sizes' : ''}`);

  const scenarios: ScenarioResult[] = [];
  const hops = new HopHolder(db.url);
  try {
    for (const scenario of options.scenarios) {
      if (scenario.kind === 'system') {
        if (runnable.length > 0) scenarios.push(await runSystemScenario(scenario, runnable, options, db, hops));
      } else if (scenario.kind === 'standalone') {
        scenarios.push(await runStandalone(scenario, options, db));
      } else {
        scenarios.push({ kind: 'pending', id: scenario.id, issueNumber: scenario.issueNumber, title: scenario.title, waitingFor: scenario.waitingFor });
      }
    }
  } finally {
    await hops.close();
    await db.close();
  }

  const results: Results = {
    generatedAt: new Date().toISOString(),
    command: ['npm run bench', ...(argv.length > 0 ? ['--', ...argv] : [])].join(' '),
    quick: options.quick,
    runs: options.runs,
    threads: THREADS,
    durationSeconds: (wallClockMs() - started) / 1000,
    machine,
    loadAtEnd: Math.round(loadavg()[0]! * 100) / 100,
    database: { source: db.source, ...db.server },
    ...(hops.info() ? { hop: hops.info() } : {}),
    systems: entries,
    scenarios,
  };
  if (options.merge) await mergeEarlier(results);
  log(consoleSummary(results));

  await writeReports(results, true);
  return 0;
}

/**
 * Adds to `results` the scenarios of bench/results/latest.json that this run did not run (in the
 * registry's order), each marked with the run it comes from, and the systems they name.
 */
async function mergeEarlier(results: Results): Promise<void> {
  let earlier: Results;
  try {
    earlier = JSON.parse(await readFile(new URL('latest.json', RESULTS_DIR), 'utf8')) as Results;
  } catch {
    log('kept figures: no bench/results/latest.json to merge with');
    return;
  }
  const ran = new Set(results.scenarios.filter((s) => s.kind !== 'pending').map((s) => s.id));
  const kept = earlier.scenarios
    .filter((s) => s.kind !== 'pending' && !ran.has(s.id))
    .map((s) => ({ ...s, from: s.from ?? { generatedAt: earlier.generatedAt, command: earlier.command } }));
  const order = (id: string) => {
    const at = SCENARIOS.findIndex((s) => s.id === id);
    return at < 0 ? SCENARIOS.length : at;
  };
  results.scenarios = [...results.scenarios, ...kept].sort((a, b) => order(a.id) - order(b.id));
  for (const system of earlier.systems) {
    if (!results.systems.some((s) => s.name === system.name)) results.systems.push(system);
  }
  results.hop ??= earlier.hop;
  log(`kept figures of ${kept.map((s) => s.id).join(', ') || 'nothing'} from bench/results/latest.json`);
}

/** Writes the chart and BENCHMARKS.md, and latest.json when `withJson`. */
async function writeReports(results: Results, withJson: boolean): Promise<void> {
  await mkdir(RESULTS_DIR, { recursive: true });
  if (withJson) await writeFile(new URL('latest.json', RESULTS_DIR), `${JSON.stringify(results, null, 2)}\n`);
  await writeFile(new URL('chart.svg', RESULTS_DIR), chartSvg(results));
  await writeFile(BENCHMARKS_MD, benchmarksMarkdown(results));
  log(`wrote ${withJson ? 'bench/results/latest.json, ' : ''}bench/results/chart.svg, BENCHMARKS.md`);
}
