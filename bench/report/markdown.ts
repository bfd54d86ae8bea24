/** BENCHMARKS.md at the repository root, written from the results of a run. */
import { goalMark, noRatiosReason, runProblems } from './console.ts';
import { formatNumber, gridToMarkdown, mediansGrid, ratiosGrid, type Grid } from './grid.ts';
import { goals, type Results } from './results.ts';
import { hopSections } from './hop.ts';
import { shortfalls, spindleOnlyMarkdown } from './spindle-only.ts';

function systemsGrid(results: Results): Grid {
  return {
    headers: ['system', 'version', 'jobs in', 'handlers run on', 'settings', 'a job counts as finished at'],
    rows: results.systems.map((s) => [
      s.title,
      s.version,
      s.store,
      s.handlers,
      s.skipped ? `not run: ${s.skipped}` : s.settings,
      s.finishedWhen,
    ]),
    right: [false, false, false, false, false, false],
  };
}

function goalsGrid(results: Results): Grid {
  return {
    headers: ['goal', 'measured', ''],
    rows: goals(results).map((g) => [g.goal, g.measured, goalMark(g.met).replace(/^\[ (.*) \]$/, '$1')]),
    right: [false, false, false],
  };
}

function shortfallLines(results: Results): string[] {
  const list = shortfalls(results);
  if (list.length === 0) return ['Nowhere in this run: every goal measured was met.', ''];
  return [...list.map((line) => `- ${line}`), ''];
}

/** Which scenarios' figures come from earlier runs (a run of some scenarios keeps the others'), by run. */
function keptLines(results: Results): string[] {
  const byRun = new Map<string, string[]>();
  for (const s of results.scenarios) {
    if (!s.from) continue;
    const run = `\`${s.from.command}\` on ${s.from.generatedAt.replace('T', ' ').slice(0, 16)} UTC`;
    byRun.set(run, [...(byRun.get(run) ?? []), `${s.issueNumber} (${s.id})`]);
  }
  if (byRun.size === 0) return [];
  return [
    `Carried over from earlier runs (a run of some scenarios keeps the others' figures): ${[...byRun].map(([run, ids]) => `scenarios ${ids.join(', ')} from ${run}`).join('; ')}.`,
    '',
  ];
}

/** The whole of BENCHMARKS.md. */
export function benchmarksMarkdown(results: Results): string {
  const m = results.machine;
  const db = results.database;
  const out: string[] = [];
  out.push(
    '# Benchmarks',
    '',
    `Written by \`${results.command}\` on ${results.generatedAt.replace('T', ' ').slice(0, 16)} UTC` +
      `${results.quick ? ' with `--quick` (smaller sizes)' : ''}; medians of ${results.runs} runs per system. ` +
      'Rerun it to replace this file; the raw figures are in [bench/results/latest.json](bench/results/latest.json).',
    '',
    ...keptLines(results),
    '![spindle and its peers](bench/results/chart.svg)',
    '',
    '## Machine',
    '',
    `- CPU: ${m.cpuModel}, ${m.cores} cores; memory ${m.memoryGiB} GiB; ${m.os}`,
    `- Node ${m.node}`,
    `- Load average (1 min) when the run started: ${m.loadAtStart}` +
      `${results.loadAtEnd === undefined ? '' : `; when it ended: ${results.loadAtEnd}`}` +
      `${Math.max(m.loadAtStart, results.loadAtEnd ?? 0) > m.cores / 4 ? ' (other work was running on the machine: expect noise)' : ''}`,
    `- The whole run took ${Math.round(results.durationSeconds)} s`,
    `- PostgreSQL ${db.version}: ${db.source}`,
    `- PostgreSQL settings: ${Object.entries(db.settings)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
    `- Threads for systems that run handlers on threads: ${results.threads}`,
    '',
    '## Goals',
    '',
    'Issue 8\'s goals as issue 25 restates them, and those of issues 6 (progress) and 5 (cancel and timeout) that scenarios 4 and 5 measure, of issue 20 (time to the first job) that scenario 7 measures, of issue 23 (flow control) that scenario 9 measures, and of issue 25 (the database one hop away, scenarios 10a-10c; sustained load, scenario 11).',
    '',
    gridToMarkdown(goalsGrid(results)),
    '',
    '## Where spindle falls short',
    '',
    ...shortfallLines(results),
    `## Results (medians of ${results.runs} runs)`,
    '',
    gridToMarkdown(mediansGrid(results)),
    '',
  );
  const ratios = ratiosGrid(results);
  out.push('### spindle against each peer', '');
  if (ratios) out.push('Above 1x, spindle is better (more jobs/s, or less latency).', '', gridToMarkdown(ratios), '');
  else out.push(`No ratios in this run: ${noRatiosReason(results)}.`, '');
  for (const section of hopSections(results)) {
    out.push(`### ${section.title}`, '');
    if (section.before.length) out.push(section.before.join(' '), '');
    if (section.grid) out.push(gridToMarkdown(section.grid), '');
    for (const line of section.after) out.push(line, '');
  }
  const claim = results.scenarios.find((s) => s.id === 'claim');
  if (claim?.kind === 'standalone') {
    out.push(`### ${claim.title} (scenario ${claim.issueNumber}, spindle)`, '', `${claim.size}.`, '');
    if (claim.result) {
      const r = claim.result;
      out.push(
        `| queued rows | claim (median) |`,
        `|---:|---:|`,
        `| 10,000 | ${formatNumber(r.claim10kMs!, 2)} ms |`,
        `| 1,000,000 | ${formatNumber(r.claim1MMs!, 2)} ms |`,
        '',
        `Ratio ${formatNumber(r.ratio!, 2)}x. Inserting the rows took ${formatNumber(r.insertSmallMs! / 1000, 1)} s and ${formatNumber(r.insertLargeMs! / 1000, 1)} s.`,
        '',
      );
    } else out.push(claim.skipped ? `Not run: ${claim.skipped}.` : `Failed: ${claim.error?.split('\n')[0]}`, '');
  }
  out.push(...spindleOnlyMarkdown(results));
  out.push('## Systems and settings', '', gridToMarkdown(systemsGrid(results)), '');
  out.push(
    'BullMQ runs on its PostgreSQL backend (`createPostgresBackend`, part of BullMQ 6), on the same PostgreSQL as every other system; Redis is not used. ' +
      'graphile-worker 0.18 and pg-boss 11/12 need Node 22, so the newest releases that support Node 20 are measured.',
    '',
    '## How to run',
    '',
    '```sh',
    'npm run bench:install        # once: the peers, into bench/node_modules (never into spindle\'s own install)',
    'npm run bench                # every scenario but the soak, every system, 3 runs each (--quick: smaller sizes)',
    'npm run bench -- --only=noop,latency --systems=spindle,graphile-worker-tuned',
    'npm run bench -- --soak      # the sustained load, 10 minutes (--soak-minutes=N); not part of a plain run nor of --quick',
    '```',
    '',
    'It uses `BENCH_DATABASE_URL` as given; else a database of its own (`spindle_bench`) on `DATABASE_URL`\'s server; else spindle\'s embedded PostgreSQL in a temp dir. ' +
      'A peer that is not installed is skipped and said so. `--report-only` rewrites this file and the chart from bench/results/latest.json. ' +
      'A run of some scenarios (`--only`, `--soak`) keeps the figures of the others from bench/results/latest.json, each marked with the run it comes from (`--fresh`: drop them).',
    '',
    '## Method',
    '',
  );
  for (const s of results.scenarios) {
    if (s.kind === 'pending') continue;
    out.push(`- **${s.issueNumber}. ${s.title}**: ${s.size}.`);
  }
  out.push(
    '- Every run is a fresh Node process (`bench/child.ts`) for one system and one scenario. Before it starts, the system\'s schema is dropped and recreated and PostgreSQL is checkpointed. ' +
      `Runs take turns: run 1 of every system, then run 2 of every system, and so on (${results.runs} each).`,
    '- Throughput: the system is started and warmed up, then the batch is enqueued in one atomic call (`addJobs`, `insert`, `addBulk`, `enqueueMany`); ' +
      'the clock runs from the moment that call returns (no job of the batch could start before) to the moment the last job counts as finished (see the table above). ' +
      'Bare Piscina has no enqueue: its clock starts before the tasks are submitted.',
    '- CPU per job (no-op): over the same span, the CPU time of the system\'s process, all its threads (`process.cpuUsage()`: main thread, job threads, the garbage collector\'s helpers), ' +
      'and of the PostgreSQL server: the postmaster and every process it started, read from /proc (Linux, a server on this machine; `n/a` elsewhere), so it includes whatever else the server did meanwhile. ' +
      'Divided by the jobs drained. Process and server share the cores: their sum bounds the jobs per second.',
    '- Latency: single enqueues, one at a time, 10 to 30 ms apart on a seeded schedule shared by all systems; enqueue time is taken just before the enqueue call, start time in the handler on the thread that runs it (`performance.timeOrigin + performance.now()`). For spindle the figure is also split where the claim comes back (the job:claimed event of its supervisor, main thread).',
    '- The database one hop away (10a-10c): every system\'s connections go through a delay proxy on loopback (bench/delay-proxy.ts, node:net) that holds each chunk of bytes for a fixed time in each direction, ' +
      'calibrated at the start of the run (bench/network-hop.ts) so that an idle `SELECT 1` costs about 1 ms more through it than straight to the server; a clock thread (Atomics.wait) times the holds, as Node\'s timers fire on whole milliseconds. ' +
      'BullMQ here keeps its jobs in PostgreSQL, so it pays the hop like the others; bare Piscina has no database and is the floor. DBOS Transact is measured only with workflows (scenario 8), not here. ' +
      'Round trips per job are the client-to-server turns the proxy saw on all of a system\'s connections during the run (setup and warm-up included), divided by the jobs the run ran.',
    '- A run fails when a job is missing or the store still holds unfinished jobs after a graceful stop; failed runs are listed below and left out of the medians.',
    '',
  );
  const pending = results.scenarios.filter((s) => s.kind === 'pending');
  if (pending.length > 0) {
    out.push('## Not measured yet', '');
    for (const p of pending) out.push(`- **${p.issueNumber}. ${p.title}**: waits for ${p.waitingFor}.`);
    out.push('');
  }
  const problems = runProblems(results);
  if (problems.length > 0) {
    out.push('## Problems in this run', '');
    for (const p of problems) out.push(`- ${p}`);
    out.push('');
  }
  return out.join('\n');
}
