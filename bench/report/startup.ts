/**
 * The report of scenario 7 (issue 20, time to the first job): the results beside graphile-worker's
 * and pg-boss's, where startSupervisor()'s time goes (the traced runs), what the CLI adds, the
 * import of the package and its dependencies, and why a goal was missed. Written from the figures
 * of the run only.
 */
import type { Metrics } from '../scenarios/types.ts';
import { CLI_PHASES, LIBRARY_PHASES, type Phase } from '../startup/breakdown.ts';
import { STARTUP_GOALS, STARTUP_IMPORTS, STARTUP_ROWS, STARTUP_THREAD_COSTS } from '../startup/figures.ts';
import { formatNumber, type Grid } from './grid.ts';
import { standaloneResult, type Results } from './results.ts';

/** A section of the report: a title, lines before its table, the table, lines after. */
export interface StartupSection {
  title: string;
  before: string[];
  grid?: Grid;
  after: string[];
}

const n0 = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? '-' : formatNumber(v, 0));
const n1 = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? '-' : formatNumber(v, 1));

/** The figures of scenario 7, or why there are none. */
export function startupResult(results: Results): { result: Metrics } | { why: string } {
  return standaloneResult(results, 'startup');
}

function resultsGrid(r: Metrics): Grid {
  const rows = STARTUP_ROWS.filter(({ id }) => r[`${id}Written`] !== undefined).map(({ id, label }) => {
    const cli = id.startsWith('cli');
    return [
      label,
      n0(r[`${id}Written`]),
      n0(r[`${id}WrittenP90`]),
      `${n0(r[`${id}WrittenMin`])}-${n0(r[`${id}WrittenMax`])}`,
      cli ? '-' : n0(r[`${id}Handled`]),
      n0(r[`${id}Returned`]),
      cli ? '(in the total)' : n0(r[`${id}Import`]),
      n0(r[`${id}FromSpawn`]),
      `${n0(r[`${id}Runs`])}${r[`${id}Failed`] ? ` (${n0(r[`${id}Failed`])} failed)` : ''}`,
    ];
  });
  return {
    headers: [
      'started with',
      'to the first job finished: median ms',
      'p90',
      'min-max',
      'handler done (runtime saw it)',
      'start call returned',
      'import, before the call',
      'from spawning the process',
      'runs',
    ],
    rows,
    right: [false, true, true, true, true, true, true, true, true],
  };
}

/** A phase's from-to in the median run, and its median and p90 length over the traced runs. */
function phaseCells(r: Metrics, variant: string, phase: Phase): string[] {
  const start = r[`${variant}_${phase.id}_start`];
  const end = r[`${variant}_${phase.id}_end`];
  const fromTo = start === undefined || end === undefined ? '-' : `${n0(start)} to ${n0(end)}`;
  return [fromTo, n1(r[`${variant}_${phase.id}_ms`]), n1(r[`${variant}_${phase.id}_p90`])];
}

const BREAKDOWN_HEADERS = ['JavaScript: from-to (median run)', 'ms (median)', 'p90', 'TypeScript: from-to (median run)', 'ms (median)', 'p90'];

/** The library phases seen in either language, in the order they began in `variant`'s median run (those it did not see last). */
function byStart(r: Metrics, variant: string): Phase[] {
  const start = (p: Phase) => r[`${variant}_${p.id}_start`] ?? Infinity;
  const seen = (p: Phase) => r[`libJsTraced_${p.id}_ms`] !== undefined || r[`libTsTraced_${p.id}_ms`] !== undefined;
  return LIBRARY_PHASES.filter(seen).sort((a, b) => start(a) - start(b));
}

/** The breakdown of startSupervisor() for JavaScript and TypeScript modules side by side. */
function breakdownGrid(r: Metrics): Grid {
  const mark = (variant: string, name: string) => n0(r[`${variant}_mark_${name}`]);
  const importCells = (variant: string) => [
    `${mark(variant, 'importStart')} to ${mark(variant, 'importEnd')}`,
    n1(r[`${variant}Import`]),
    n1(r[`${variant}ImportP90`]),
  ];
  const rows: string[][] = [
    ['import of dist/index.js, before the call', ...importCells('libJsTraced'), ...importCells('libTsTraced')],
    ...byStart(r, 'libJsTraced').map((phase) => [`${phase.beside ? '(beside) ' : ''}${phase.label}`, ...phaseCells(r, 'libJsTraced', phase), ...phaseCells(r, 'libTsTraced', phase)]),
    ['startSupervisor() resolved', mark('libJsTraced', 'returned'), '', '', mark('libTsTraced', 'returned'), '', ''],
    ['the job written (NOTIFY received)', mark('libJsTraced', 'written'), '', '', mark('libTsTraced', 'written'), '', ''],
  ];
  return {
    headers: ['phase (ms from the startSupervisor() call)', ...BREAKDOWN_HEADERS],
    rows,
    right: [false, true, true, true, true, true, true],
  };
}

function cliGrid(r: Metrics): Grid {
  return {
    headers: ['phase (ms from the spawn)', ...BREAKDOWN_HEADERS],
    rows: CLI_PHASES.map((phase) => [phase.label, ...phaseCells(r, 'cliJsTraced', phase), ...phaseCells(r, 'cliTsTraced', phase)]),
    right: [false, true, true, true, true, true, true],
  };
}

function cpuGrid(r: Metrics): Grid {
  return {
    headers: ['started with', 'wall ms (median)', 'CPU, every thread of the process, ms', 'main thread on a core, ms', 'main thread runnable, waiting for a core, ms'],
    rows: STARTUP_ROWS.filter(({ id }) => r[`${id}CpuProcess`] !== undefined).map(({ id, label }) => [
      `${label}${id.startsWith('cli') ? ' (from the spawn)' : ''}`,
      n0(r[`${id}Written`]),
      n0(r[`${id}CpuProcess`]),
      n0(r[`${id}CpuMain`]),
      n0(r[`${id}CpuMainWait`]),
    ]),
    right: [false, true, true, true, true],
  };
}

/** What the CPU figures say about spindle against the peers, for people. */
function cpuLine(r: Metrics): string {
  const others = (id: string) => (r[`${id}CpuMain`] === undefined ? undefined : r[`${id}CpuProcess`]! - r[`${id}CpuMain`]!);
  const peers = [
    r.graphileCpuProcess === undefined ? undefined : `graphile-worker: ${n0(r.graphileCpuProcess)} ms of CPU in ${n0(r.graphileWritten)} ms`,
    r.pgBossCpuProcess === undefined ? undefined : `pg-boss: ${n0(r.pgBossCpuProcess)} in ${n0(r.pgBossWritten)} ms`,
  ].filter((s): s is string => s !== undefined);
  return (
    `From the call, spindle (JavaScript module) spent ${n0(r.libJsCpuProcess)} ms of CPU in ${n0(r.libJsWritten)} ms, ${n0(others('libJs'))} ms of it outside its main thread: ` +
    `${n0(r.libJsTraced_mark_jobThreads)} pool threads each start a Node environment and load spindle\'s thread code before the first job runs` +
    (peers.length ? ` (${peers.join('; ')})` : '') +
    `. On busy cores that CPU is also wall time: the main thread waited ${n0(r.libJsCpuMainWait)} ms for a core.`
  );
}

function importGrid(r: Metrics): Grid {
  const empty = r.import_emptyMs;
  return {
    headers: ['alone, in a fresh process', 'ms (median)'],
    rows: [
      ['an empty module (the ESM loader itself)', n1(empty)],
      ...STARTUP_IMPORTS.filter(({ key }) => r[`import_${key}Ms`] !== undefined).map(({ key, label }) => [label, n1(r[`import_${key}Ms`])]),
      ...STARTUP_THREAD_COSTS.filter(({ key }) => r[key] !== undefined).map(({ key, label }) => [label, n1(r[key])]),
    ],
    right: [false, true],
  };
}

/** The longest phases of the first job's way (not the side work), for sentences: `label (12 ms)`. */
function longestPhases(r: Metrics, variant: string, count: number): string {
  return LIBRARY_PHASES.filter((p) => !p.beside && p.id !== 'threads' && r[`${variant}_${p.id}_ms`] !== undefined)
    .sort((a, b) => r[`${variant}_${b.id}_ms`]! - r[`${variant}_${a.id}_ms`]!)
    .slice(0, count)
    .map((p) => `${p.label} (${n0(r[`${variant}_${p.id}_ms`])} ms)`)
    .join('; ');
}

/** `a` and `b` overlapped in the median run of `variant`. */
function overlapped(r: Metrics, variant: string, a: [string, string], b: [string, string]): boolean | undefined {
  const aStart = r[`${variant}_${a[0]}_start`];
  const aEnd = r[`${variant}_${a[1]}_end`];
  const bStart = r[`${variant}_${b[0]}_start`];
  const bEnd = r[`${variant}_${b[1]}_end`];
  if (aStart === undefined || aEnd === undefined || bStart === undefined || bEnd === undefined) return undefined;
  return aStart < bEnd && bStart < aEnd;
}

/** Sentences on what ran one after another and what side by side, and what waits for what, from the traced figures. */
function overlapLines(r: Metrics): string[] {
  const ms = (variant: string, id: string) => r[`${variant}_${id}_ms`];
  const at = (variant: string, id: string, edge: 'start' | 'end') => r[`${variant}_${id}_${edge}`];
  const out: string[] = [];
  const js = 'libJsTraced';
  const ts = 'libTsTraced';
  const database = ['poolConnect', 'migrateQueries', 'warm'].reduce((sum, id) => sum + (ms(js, id) ?? 0), 0);
  const probe = ['scan', 'probeModule'].reduce((sum, id) => sum + (ms(js, id) ?? 0), 0);
  const sideBySide = overlapped(r, js, ['poolConnect', 'warm'], ['scan', 'probeModule']);
  out.push(
    `**The database and the module probe ${sideBySide ? 'ran side by side' : 'ran one after the other'}** (the median JavaScript run): ` +
      `the database ${n0(database)} ms (5 connections, the migrate check on one of them, then the first claim and outcome run for no rows), ` +
      `the probe ${n0(probe)} ms (${n0(ms(ts, 'probeModule'))} ms of it importing the TypeScript module, in the TypeScript runs)` +
      (sideBySide ? '.' : ': neither needs the other.'),
  );
  out.push(
    `**Threads.** The first pool thread starts alone at ${n0(at(js, 'threads', 'start'))} ms (JavaScript) / ${n0(at(ts, 'threads', 'start'))} ms (TypeScript), ` +
      `ready ${n0(ms(js, 'threads'))} / ${n0(ms(ts, 'threads'))} ms later, and runs the probe, which imports the worker module there ` +
      `(${n0(ms(js, 'probeModule'))} / ${n0(ms(ts, 'probeModule'))} ms, from the probe's start on that thread); ` +
      `the first job then waits ${n0(ms(js, 'dispatch'))} / ${n0(ms(ts, 'dispatch'))} ms from its claim to its handler. ` +
      `The other ${n0((r.libJsTraced_mark_jobThreads ?? 1) - 1)} start once the supervisor has started (at ${n0(at(js, 'otherThreads', 'start'))} / ${n0(at(ts, 'otherThreads', 'start'))} ms).`,
  );
  const ahead = r.libTsTraced_mark_moduleLoadedAhead;
  out.push(
    ahead === undefined
      ? `**The worker module is imported again, on another thread, when its first job arrives**: ${n0(ms(js, 'moduleLoad'))} ms for JavaScript, ${n0(ms(ts, 'moduleLoad'))} ms for TypeScript ` +
          `(a thread that loads a TypeScript module registers tsx on this Node; measured apart, registering tsx in a fresh thread takes ${n0(r.thread_tsxRegisterMs)} ms ` +
          `and the module's import through it ${n0(r.thread_tsImportMs)} ms).`
      : `**The first job ran on the thread that probed, with its module loaded** (TypeScript: its top level ran at ${n0(ahead)} ms, before the job was claimed); ` +
          `measured apart, registering tsx in a fresh thread takes ${n0(r.thread_tsxRegisterMs)} ms and the module's import through it ${n0(r.thread_tsImportMs)} ms.`,
  );
  out.push(
    `**After the probe.** The supervisor registers beside its module limits, reads the limited scopes and starts its actors (${n0(ms(js, 'register'))} ms, to the first claim; ` +
      `the debug server's directories, socket checks and listen() ${n0(ms(js, 'debugSocket'))} ms of it), then claims (${n0(ms(js, 'claim'))} ms) on a connection that has run the claim before; ` +
      `the listener (${n0(ms(js, 'listener'))} ms) and the elector (${n0(ms(js, 'elector'))} ms) connect meanwhile; ` +
      `${n0(r.libJsTraced_mark_sweepsBeforeClaim)} other statements of the main pool were sent before the first claim was answered (the median run). ` +
      `The handler ran ${n0(ms(js, 'dispatch'))} ms after the claim was answered; its outcome was written and its NOTIFY seen ${n0(ms(js, 'write'))} ms after it returned` +
      (ms(js, 'outcome') === undefined ? '' : ` (${n0(ms(js, 'outcome'))} ms of it back to the main thread)`) +
      '.',
  );
  const loaded = STARTUP_IMPORTS.filter((d) => r[`import_distIndexLoads_${d.key}`] === 1);
  out.push(
    `**Before the call**: importing the package took ${n0(r.libJsImport)} ms (median of the plain runs; ${n0(r.import_distIndexMs)} ms alone in a fresh process)` +
      (loaded.length
        ? `, and it loads ${loaded.map((d) => `${d.label} (${n0(r[`import_${d.key}Ms`])} ms alone)`).join(', ')} at once, whatever the options`
        : '') +
      '.',
  );
  return out;
}

/** The sections of scenario 7, when it was selected. */
export function startupSections(results: Results): StartupSection[] {
  const title = 'Time to the first job (scenario 7; issue 20)';
  const scenario = results.scenarios.find((s) => s.id === 'startup');
  if (!scenario) return [];
  const got = startupResult(results);
  const before = scenario.kind === 'standalone' ? [`${scenario.size}.`] : [];
  if ('why' in got) return [{ title, before, after: [`Not measured: ${got.why}.`] }];
  const r = got.result;
  const sections: StartupSection[] = [];
  const goalLine = STARTUP_GOALS.map(
    (g) => `${g.language} ${n0(r[`${g.variant}Written`])} ms (goal ${g.limitMs} ms: ${r[`${g.variant}Written`]! <= g.limitMs ? 'met' : 'NOT met'})`,
  ).join(', ');
  sections.push({
    title,
    before,
    grid: resultsGrid(r),
    after: [
      `"Finished" is the job's outcome written: for spindle its \`spindle_finished\` NOTIFY at a connection that listened before the start (the child's own for startSupervisor(), this harness's for \`spindle start\`); ` +
        "for graphile-worker and pg-boss the answer to the statement that records the job done (the row deleted; state 'completed'). " +
        '"Handler done" is when the runtime saw the handler return (spindle: the job:finished event on the main thread). ' +
        'Library rows count from the start call, in a process that has already imported the package (the import column); `spindle start` rows count from the spawn, so they include node\'s own start, the import and the CLI.',
      `Goals (issue 20, from startSupervisor() to the first job finished, ${n0(r.threads)} threads): ${goalLine}.`,
      `Measured: dist/ as built ${new Date(r.builtAt!).toISOString().replace('T', ' ').slice(0, 16)} UTC` +
        (r.srcNewerThanDist ? ` (${n0(r.srcNewerThanDist)} files of src/ were newer: \`npm run build\` measures them)` : ', no file of src/ newer') +
        `; Node ${results.machine.node}.`,
      `Noise: ${n0(r.rounds)} runs of each variant in turns; load average (1 min) ${formatNumber(r.loadMin!, 2)} to ${formatNumber(r.loadMax!, 2)} during the rounds on ${results.machine.cores} cores ` +
        `(${formatNumber(r.loadBefore!, 2)} before, ${formatNumber(r.loadAfter!, 2)} after). Node's own start (spawn to the child's first line) took ${n0(r.libJsBoot)} ms median, ${n0(r.libJsBootMin)}-${n0(r.libJsBootMax)}.`,
    ],
  });
  sections.push({
    title: 'Where startSupervisor()\'s time goes (scenario 7, traced runs)',
    before: [
      `${n0(r.libJsTracedRuns)} traced runs per language, in ms from the call, separate from the runs above, whose processes carry no instrumentation (traced totals, medians: ` +
        `${n0(r.libJsTracedWritten)} ms JavaScript, ${n0(r.libTsTracedWritten)} ms TypeScript). "From-to" is the timeline of one run, the one with the median total; ` +
        '"ms" and "p90" are the phase\'s length over all traced runs. ' +
        'Seen from outside spindle\'s code (bench/startup/trace.mjs): pg connections and queries, net sockets and servers, worker threads and their first messages, the supervisor\'s runtime events, and times the worker module takes in its job thread. ' +
        'Rows are in the order they began in the median JavaScript run: spans that overlap ran side by side; between two spans is work no traced event marks ' +
        '(JavaScript on the main thread, or a wait for a core). "(beside)": work the first job never waits for directly.',
    ],
    grid: breakdownGrid(r),
    after: overlapLines(r),
  });
  if (r.libJsCpuProcess !== undefined) {
    sections.push({
      title: 'CPU while starting (scenario 7)',
      before: [
        'From the start call (`spindle start`: the spawn) to the first job written, medians of the runs above: the CPU time of the whole process (process.cpuUsage(); ' +
          'for `spindle start`, /proc/PID/stat read by this harness, in 10 ms ticks), and of its main thread alone with the time it was runnable but waiting for a core (Linux schedstat). ' +
          'CPU above the wall time means threads ran at once; wall time well above the main thread\'s CPU means it waited: for the database, for other threads, or for a core.',
      ],
      grid: cpuGrid(r),
      after: [cpuLine(r)],
    });
  }
  if (r.cliJsTraced_nodeStart_ms !== undefined) {
    sections.push({
      title: 'What `spindle start` adds (scenario 7, traced runs)',
      before: [
        `\`node dist/cli/bin.js start --workers workers --concurrency ${n0(r.threads)}\` in an app folder, DATABASE_URL set; ${n0(r.cliJsTracedRuns)} traced runs (a preload that records sockets and threads, and loads no package), read as the table above. ` +
          `The library's path, from the first PostgreSQL connection on, is broken down above.`,
      ],
      grid: cliGrid(r),
      after: [],
    });
  }
  if (r.import_emptyMs !== undefined) {
    sections.push({
      title: 'Import of the package, its dependencies, a thread (scenario 7)',
      before: [
        'Each module imported alone in a fresh node process (bare names from spindle\'s own node_modules, their CommonJS entry), medians. ' +
          'A dependency\'s figure includes its own dependencies and the ESM loader\'s start (the empty module\'s line), so the figures overlap and do not add up to the package\'s. ' +
          'The last rows are a worker thread\'s costs before a job runs, in a process of their own: its start, and the import of the worker module in it, JavaScript, or TypeScript after registering tsx as spindle\'s pool threads do on this Node.',
      ],
      grid: importGrid(r),
      after: [],
    });
  }
  return sections;
}

/** Why a startup goal was missed, from the breakdown: appended to its line in "Where spindle falls short". */
export function startupShortfall(results: Results, variant: 'libJs' | 'libTs'): string {
  const got = startupResult(results);
  if ('why' in got) return '';
  const r = got.result;
  const traced = `${variant}Traced`;
  const peers = [
    r.graphileWritten === undefined ? undefined : `graphile-worker ${n0(r.graphileWritten)} ms`,
    r.pgBossWritten === undefined ? undefined : `pg-boss ${n0(r.pgBossWritten)} ms`,
  ].filter((s): s is string => s !== undefined);
  return (
    ` p90 ${n0(r[`${variant}WrittenP90`])} ms over ${n0(r[`${variant}Runs`])} runs` +
    (peers.length ? `; from their start call to their first job written, ${peers.join(', ')} on the same machine` : '') +
    `. The longest phases on the first job's way (traced runs): ${longestPhases(r, traced, 4)}. ` +
    `Importing the package before the call took ${n0(r[`${variant}Import`])} ms more.`
  );
}
