/**
 * Scenario 4 (issue 6, "Measured"): the cost of ctx.progress. One fixed CPU job
 * (bench/workers/progress-work.ts: a fixed number of loop iterations, sized to
 * about TARGET_MS), run through spindle without progress and with a
 * ctx.progress() call every 10 µs of work (100,000 calls per second of work).
 * Pairs run in ABBA order on a supervisor with one thread, so the two variants
 * never share the CPU with each other and drift hits both alike.
 *
 * Reported: the median over pairs of (with / without) for the thread's CPU time
 * (Linux /proc/thread-self/schedstat) and for the handler's wall time, and the
 * progress statements the progress actor wrote per job against the bound of
 * issue 6: (duration / progressFlushMs) + 2.
 */
import { loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { ActorSnapshot } from '../../src/actors/snapshot.ts';
import { createClient } from '../../src/client.ts';
import { migrate } from '../../src/db/migrate.ts';
import { startSupervisor, type SupervisorHandle } from '../../src/start.ts';
import { median } from '../stats.ts';
import { dropSchema } from '../systems/postgres.ts';
import type { ProgressWorkInput, ProgressWorkOutput } from '../workers/progress-work.ts';
import type { Metrics, StandaloneScenario } from './types.ts';

const TYPE = 'bench-progress';
const WORKER = fileURLToPath(new URL('../workers/progress-work.ts', import.meta.url));
/** Work per job, ms (without progress). */
const TARGET_MS = { full: 500, quick: 300 };
/** Measured pairs (one job without progress, one with). */
const PAIRS = { full: 30, quick: 16 };
/** Progress calls per second of work (issue 6). */
const CALLS_PER_SECOND = 100_000;
/** The goal of issue 6: at most 5% slower. */
export const PROGRESS_GOAL_RATIO = 1.05;
/** spindle's default, set explicitly so the bound is computed from the figure in use. */
const FLUSH_MS = 200;
const JOB_TIMEOUT_MS = 60_000;

interface Run {
  output: ProgressWorkOutput;
  /** The supervisor's job:finished `ms` (thread start to finish). */
  durationMs: number;
  /** Progress statements written while the job ran (with progress only). */
  statements: number;
  /** Progress reports that reached the progress actor. */
  reports: number;
}

function progressState(handle: SupervisorHandle): { statements: number; reports: number } {
  const find = (node: ActorSnapshot): ActorSnapshot | undefined =>
    node.name === 'progress' ? node : node.children.map(find).find((n) => n !== undefined);
  const state = find(handle.snapshot().actors as ActorSnapshot)?.state as { statements?: number; reports?: number } | undefined;
  if (state?.statements === undefined || state.reports === undefined) throw new Error('no progress actor in the supervisor snapshot');
  return { statements: state.statements, reports: state.reports };
}

/** Scenario 4 of issue 8. */
export const progressCost: StandaloneScenario = {
  kind: 'standalone',
  id: 'progress',
  issueNumber: '4',
  title: 'Cost of ctx.progress',
  system: 'spindle',
  metrics: [
    { key: 'cpuRatio', label: 'CPU time with / without', better: 'lower', digits: 3 },
    { key: 'wallRatio', label: 'wall time with / without', better: 'lower', digits: 3 },
    { key: 'statementsMax', label: 'progress statements per job (max)', better: 'lower', digits: 0 },
    { key: 'statementBound', label: 'bound (duration / flush + 2)', better: 'lower', digits: 1 },
  ],
  size: (quick) => {
    const pairs = quick ? PAIRS.quick : PAIRS.full;
    const ms = quick ? TARGET_MS.quick : TARGET_MS.full;
    return (
      `${pairs} pairs (ABBA order) of a fixed ~${ms} ms CPU job, without and with ctx.progress() every 10 µs of work ` +
      `(${CALLS_PER_SECOND.toLocaleString('en-US')} calls per second of work); one supervisor, 1 thread, progressFlushMs ${FLUSH_MS}`
    );
  },
  async unavailable() {
    return undefined;
  },
  async run({ databaseUrl, quick, log }): Promise<Metrics> {
    const pairs = quick ? PAIRS.quick : PAIRS.full;
    const targetMs = quick ? TARGET_MS.quick : TARGET_MS.full;
    const loadBefore = loadavg()[0]!;
    await dropSchema(databaseUrl, 'spindle');
    await migrate(databaseUrl);
    const client = createClient({ connectionString: databaseUrl });
    const handle = await startSupervisor({
      databaseUrl,
      workers: { [TYPE]: WORKER },
      concurrency: 1,
      progressFlushMs: FLUSH_MS,
      logLevel: 'silent',
      socket: false,
    });
    const durations = new Map<string, number>();
    handle.supervisor.events.on('job:finished', (e) => durations.set(e.id, e.ms));
    const runJob = async (input: ProgressWorkInput): Promise<Run> => {
      const before = progressState(handle);
      const job = await client.enqueue(TYPE, input, { maxAttempts: 1 });
      const done = await client.waitFor<ProgressWorkInput, ProgressWorkOutput>(job.id, { timeoutMs: JOB_TIMEOUT_MS });
      if (done.state !== 'succeeded' || !done.output) throw new Error(`job ${job.id} ended ${done.state}: ${JSON.stringify(done.error)}`);
      // A flush tick already in the progress actor's mailbox when the job finished still writes it.
      if ('report' in input && input.report) await sleep(50);
      const after = progressState(handle);
      return {
        output: done.output,
        durationMs: durations.get(job.id) ?? Number.NaN,
        statements: after.statements - before.statements,
        reports: after.reports - before.reports,
      };
    };
    try {
      // Size the work: iterations per ms on a spindle thread (the first run warms the thread up).
      await runJob({ calibrateMs: 100 });
      const calibration = await runJob({ calibrateMs: 300 });
      const size = (perMs: number): { chunks: number; chunkIterations: number } => {
        const chunkIterations = Math.max(1, Math.round((perMs * 1000) / CALLS_PER_SECOND));
        return { chunks: Math.round((perMs * targetMs) / chunkIterations), chunkIterations };
      };
      let { chunks, chunkIterations } = size(calibration.output.iterationsPerMs!);
      // The job's own loop runs at its own speed: size again from one run of it, then warm both paths up.
      // Sized on the thread's CPU time where it can be read: wall time counts the waits for a core.
      for (let i = 0; i < 2; i++) {
        const sizing = await runJob({ chunks, chunkIterations, report: false });
        const ms = sizing.output.cpuMs > 0 ? sizing.output.cpuMs : sizing.output.runMs;
        ({ chunks, chunkIterations } = size((chunks * chunkIterations) / ms));
      }
      const without: ProgressWorkInput = { chunks, chunkIterations, report: false };
      const withProgress: ProgressWorkInput = { chunks, chunkIterations, report: true };
      await runJob(withProgress);
      await runJob(without);
      log(`sized: ${chunks.toLocaleString('en-US')} chunks of ${chunkIterations.toLocaleString('en-US')} loop iterations (10 µs each)`);

      const cpuRatios: number[] = [];
      const wallRatios: number[] = [];
      const e2eRatios: number[] = [];
      const plain: Run[] = [];
      const reporting: Run[] = [];
      for (let i = 0; i < pairs; i++) {
        let a: Run;
        let b: Run;
        if (i % 2 === 0) {
          a = await runJob(without);
          b = await runJob(withProgress);
        } else {
          b = await runJob(withProgress);
          a = await runJob(without);
        }
        plain.push(a);
        reporting.push(b);
        wallRatios.push(b.output.runMs / a.output.runMs);
        e2eRatios.push(b.durationMs / a.durationMs);
        if (a.output.cpuMs > 0 && b.output.cpuMs > 0) cpuRatios.push(b.output.cpuMs / a.output.cpuMs);
      }
      // The bound of issue 6 for each job, from its own duration.
      const bounds = reporting.map((r) => r.durationMs / FLUSH_MS + 2);
      const overBound = reporting.filter((r, i) => r.statements > bounds[i]!).length;
      const withoutMs = median(plain.map((r) => r.output.runMs));
      const withoutCpuMs = median(plain.map((r) => r.output.cpuMs));
      const metrics: Metrics = {
        cpuRatio: cpuRatios.length === pairs ? median(cpuRatios) : Number.NaN,
        wallRatio: median(wallRatios),
        endToEndRatio: median(e2eRatios),
        worstWallRatio: Math.max(...wallRatios),
        withoutMs,
        withMs: median(reporting.map((r) => r.output.runMs)),
        withoutCpuMs,
        withCpuMs: median(reporting.map((r) => r.output.cpuMs)),
        callsPerJob: reporting[0]!.output.calls,
        // Per second of the work itself: of CPU time where it can be read.
        callsPerSecond: reporting[0]!.output.calls / ((withoutCpuMs > 0 ? withoutCpuMs : withoutMs) / 1000),
        reportsPerJob: median(reporting.map((r) => r.reports)),
        statementsPerJob: median(reporting.map((r) => r.statements)),
        statementsMax: Math.max(...reporting.map((r) => r.statements)),
        statementBound: median(bounds),
        statementBoundMin: Math.min(...bounds),
        jobsOverBound: overBound,
        statementsWithoutProgress: Math.max(...plain.map((r) => r.statements)),
        progressFlushMs: FLUSH_MS,
        pairs,
        loadBefore,
        loadAfter: loadavg()[0]!,
      };
      log(
        `without ${withoutMs.toFixed(1)} ms, with ${metrics.withMs!.toFixed(1)} ms of wall time; ` +
          `CPU time with / without ${metrics.cpuRatio!.toFixed(3)}, wall ${metrics.wallRatio!.toFixed(3)} (goal <= ${PROGRESS_GOAL_RATIO})`,
      );
      log(
        `${metrics.callsPerJob!.toLocaleString('en-US')} calls per job -> ${metrics.reportsPerJob} progress messages -> ` +
          `${metrics.statementsPerJob} statements (max ${metrics.statementsMax}; bound ${metrics.statementBound!.toFixed(1)}; ${overBound} jobs over it)`,
      );
      return metrics;
    } finally {
      await handle.stop();
      await client.close();
    }
  },
};
