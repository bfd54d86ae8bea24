/**
 * Scenario 6b: throughput with 1, 2 and 4 supervisor processes on one database.
 * Each process (bench/scale-supervisor.ts, `node --import tsx`) runs one
 * supervisor with CONCURRENCY thread(s); nothing but PostgreSQL coordinates them.
 * Per run: the schema is reset, the processes start, then batches of CPU jobs
 * (a fixed 20 ms of work each, bench/workers/progress-work.ts without progress)
 * and of no-op jobs (workers/noop.ts, as in scenario 1) are each enqueued in one
 * call and timed from that call's return to the last `spindle_finished` NOTIFY
 * (see Batch for their order). Process counts take turns (1, 2, 4, 1, ...).
 *
 * One thread per process: every process added brings one thread, so 1 -> 2
 * processes asks whether a second supervisor adds capacity while a core is free,
 * and 2 processes x 1 thread has the thread count of the single supervisor with
 * 2 threads of scenario 1 (the price of splitting one supervisor in two).
 * 4 processes put 4 threads, 4 supervisor main threads and PostgreSQL on the
 * cores: on a 2-core machine that measures contention, not scale.
 */
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { createClient, type Client } from '../../src/client.ts';
import { migrate } from '../../src/db/migrate.ts';
import { settle } from '../database.ts';
import { spawnSupervisor, stopSupervisor, type SupervisorProcess } from '../supervisor-process.ts';
import { median } from '../stats.ts';
import { FinishCounter } from '../systems/finish-counter.ts';
import { followFinished } from '../systems/spindle-finished.ts';
import { dropSchema } from '../systems/postgres.ts';
import { wallClockMs } from '../work.ts';
import { measureIterationsPerMs } from '../workers/progress-work.ts';
import type { Metrics, StandaloneScenario } from './types.ts';

/** The job types every process serves. */
const SCALE_TYPES = { noop: 'bench-noop', fixed: 'bench-fixed' } as const;
const WORKERS: Record<string, string> = {
  [SCALE_TYPES.noop]: fileURLToPath(new URL('../../workers/noop.ts', import.meta.url)),
  [SCALE_TYPES.fixed]: fileURLToPath(new URL('../workers/progress-work.ts', import.meta.url)),
};
/** Supervisor processes per configuration. */
export const SCALE_PROCESSES = [1, 2, 4] as const;
/** Threads per supervisor process (see the file comment). */
export const SCALE_CONCURRENCY = 1;
const RUNS = 3;
const NOOP_JOBS = { full: 20_000, quick: 5_000 };
const CPU_JOBS = { full: 400, quick: 120 };
/** CPU time of one CPU job on a free core, ms. */
const CPU_JOB_MS = 20;
/** Loop iterations per chunk of a CPU job (it never reports progress). */
const CHUNK_ITERATIONS = 10_000;
const WARMUP_NOOP = 500;
const WARMUP_CPU_PER_PROCESS = 4;
const DRAIN_TIMEOUT_MS = 180_000;

/** One measured configuration: `processes` supervisors, each batch. */
interface RunFigures {
  cpuPerSecond: number;
  noopPerSecond: number;
  /** The CPU batch again, right after the no-op batch (see BATCHES). */
  mixedPerSecond: number;
  /** Of each measured batch, the share of its jobs the busiest process ran (1 / processes when even). */
  cpuBusiestShare: number;
  noopBusiestShare: number;
  mixedBusiestShare: number;
  startMs: number;
}

/**
 * The batches of a run, in order. `cpu` follows a CPU warm-up only: each supervisor's
 * adaptive prefetch is sized for 20 ms jobs. `mixed` is the same CPU batch right after
 * the no-op batch, when each supervisor's prefetch is sized for sub-millisecond jobs:
 * it shows how evenly the processes share work when the job mix changes.
 */
type Batch = 'warm' | 'cpu' | 'noop' | 'mixed';

/** What a run needs to know. */
interface RunPlan {
  processes: number;
  quick: boolean;
  /** Chunks of CHUNK_ITERATIONS in one CPU job. */
  chunks: number;
}

async function measureOnce(databaseUrl: string, { processes, quick, chunks }: RunPlan): Promise<RunFigures> {
  await dropSchema(databaseUrl, 'spindle');
  await migrate(databaseUrl);
  await settle(databaseUrl);
  const finished = new FinishCounter();
  const listener = new pg.Client({ connectionString: databaseUrl });
  await listener.connect();
  const stopFollowing = await followFinished(listener, finished);
  const client: Client = createClient({ connectionString: databaseUrl });
  const children: SupervisorProcess[] = [];
  try {
    const startAt = performance.now();
    const started = await Promise.allSettled(
      Array.from({ length: processes }, () => spawnSupervisor({ databaseUrl, concurrency: SCALE_CONCURRENCY, workers: WORKERS })),
    );
    for (const s of started) if (s.status === 'fulfilled') children.push(s.value);
    const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
    const startMs = performance.now() - startAt;

    let total = 0;
    /** Enqueues `count` jobs in one call; jobs/s from that call's return to the last one finished. */
    const drain = async (batch: Batch, type: string, count: number): Promise<number> => {
      const input = (seq: number) =>
        type === SCALE_TYPES.fixed ? { seq, batch, chunks, chunkIterations: CHUNK_ITERATIONS, report: false } : { seq, batch };
      await client.enqueueMany(Array.from({ length: count }, (_, i) => ({ type, input: input(i) })));
      const visible = wallClockMs();
      total += count;
      const doneAt = await finished.waitFor(total, DRAIN_TIMEOUT_MS);
      return count / ((doneAt - visible) / 1000);
    };
    const noopJobs = quick ? NOOP_JOBS.quick : NOOP_JOBS.full;
    const cpuJobs = quick ? CPU_JOBS.quick : CPU_JOBS.full;
    // Warm-up of threads, connections and JIT in every process, CPU jobs first (see Batch).
    await drain('warm', SCALE_TYPES.fixed, WARMUP_CPU_PER_PROCESS * processes);
    const cpuPerSecond = await drain('cpu', SCALE_TYPES.fixed, cpuJobs);
    await drain('warm', SCALE_TYPES.noop, WARMUP_NOOP);
    const noopPerSecond = await drain('noop', SCALE_TYPES.noop, noopJobs);
    const mixedPerSecond = await drain('mixed', SCALE_TYPES.fixed, cpuJobs);

    const { rows } = await listener.query<{ batch: Batch; n: number }>(
      `SELECT batch, max(n)::int AS n FROM (
         SELECT input->>'batch' AS batch, worker_id, count(*) AS n FROM spindle.jobs
          WHERE state = 'succeeded' GROUP BY 1, 2) per
        GROUP BY batch`,
    );
    const busiest = (batch: Batch, jobs: number) => (rows.find((r) => r.batch === batch)?.n ?? Number.NaN) / jobs;
    const { rows: states } = await listener.query<{ state: string; n: number }>(
      `SELECT state, count(*)::int AS n FROM spindle.jobs WHERE state <> 'succeeded' GROUP BY state`,
    );
    if (states.length > 0) {
      throw new Error(`jobs not succeeded after the drains: ${states.map((r) => `${r.n} ${r.state}`).join(', ')}`);
    }
    return {
      cpuPerSecond,
      noopPerSecond,
      mixedPerSecond,
      cpuBusiestShare: busiest('cpu', cpuJobs),
      noopBusiestShare: busiest('noop', noopJobs),
      mixedBusiestShare: busiest('mixed', cpuJobs),
      startMs,
    };
  } finally {
    stopFollowing();
    await Promise.all(children.map(stopSupervisor));
    await client.close();
    await listener.end();
  }
}

/** Scenario 6b of issue 8. */
export const scaleOut: StandaloneScenario = {
  kind: 'standalone',
  id: 'scale',
  issueNumber: '6b',
  title: 'Throughput with 1, 2 and 4 supervisor processes',
  system: 'spindle',
  metrics: SCALE_PROCESSES.flatMap((n) => [
    { key: `cpu${n}`, label: `${n} x CPU jobs/s`, better: 'higher' as const, digits: 1 },
    { key: `noop${n}`, label: `${n} x no-op jobs/s`, better: 'higher' as const, digits: 0 },
  ]),
  size: (quick) =>
    `${SCALE_PROCESSES.join(', ')} supervisor processes x ${SCALE_CONCURRENCY} thread on one database; per run, each batch enqueued in one call: ` +
    `${WARMUP_CPU_PER_PROCESS} CPU jobs per process (warm-up), ${quick ? CPU_JOBS.quick : CPU_JOBS.full} CPU jobs of a fixed ${CPU_JOB_MS} ms of work, ` +
    `${WARMUP_NOOP} no-op jobs (warm-up), ${(quick ? NOOP_JOBS.quick : NOOP_JOBS.full).toLocaleString('en-US')} no-op jobs, ` +
    `then the CPU batch again ("after no-op"); ${RUNS} runs per process count, in turns, medians`,
  async unavailable() {
    return undefined;
  },
  async run({ databaseUrl, quick, log }): Promise<Metrics> {
    const loadBefore = loadavg()[0]!;
    // A fixed amount of work, not a loop that runs for a fixed time: with more threads than cores a
    // timed loop ends on the clock with less work done, and more processes would look faster.
    const perMs = median([0, 1, 2].map(() => measureIterationsPerMs(100)));
    const chunks = Math.max(1, Math.round((perMs * CPU_JOB_MS) / CHUNK_ITERATIONS));
    log(`CPU job: ${chunks} chunks of ${CHUNK_ITERATIONS.toLocaleString('en-US')} iterations (${Math.round(perMs).toLocaleString('en-US')} iterations per ms of CPU here)`);
    const figures = new Map<number, RunFigures[]>(SCALE_PROCESSES.map((n) => [n, []]));
    const percent = (share: number) => `${(share * 100).toFixed(0)}%`;
    for (let run = 1; run <= RUNS; run++) {
      for (const n of SCALE_PROCESSES) {
        const f = await measureOnce(databaseUrl, { processes: n, quick, chunks });
        figures.get(n)!.push(f);
        log(
          `run ${run}/${RUNS}  ${n} process${n > 1 ? 'es' : '  '}  CPU ${f.cpuPerSecond.toFixed(1)} jobs/s (busiest process ${percent(f.cpuBusiestShare)}), ` +
            `no-op ${Math.round(f.noopPerSecond).toLocaleString('en-US')} jobs/s (${percent(f.noopBusiestShare)}), ` +
            `CPU after no-op ${f.mixedPerSecond.toFixed(1)} jobs/s (${percent(f.mixedBusiestShare)}); started in ${(f.startMs / 1000).toFixed(1)} s`,
        );
      }
    }
    const metrics: Metrics = { concurrencyPerProcess: SCALE_CONCURRENCY, runs: RUNS, cpuJobMs: CPU_JOB_MS, loadBefore };
    for (const [n, list] of figures) {
      for (const key of ['cpuPerSecond', 'noopPerSecond', 'mixedPerSecond', 'cpuBusiestShare', 'noopBusiestShare', 'mixedBusiestShare', 'startMs'] as const) {
        const name = key.replace('PerSecond', '');
        metrics[`${name}${n}`] = median(list.map((f) => f[key]));
      }
      // The spread too: on a shared machine one run can be far from the others.
      for (const key of ['cpuPerSecond', 'noopPerSecond', 'mixedPerSecond'] as const) {
        const name = key.replace('PerSecond', '');
        metrics[`${name}Min${n}`] = Math.min(...list.map((f) => f[key]));
        metrics[`${name}Max${n}`] = Math.max(...list.map((f) => f[key]));
      }
      metrics[`mixedBusiestShareMax${n}`] = Math.max(...list.map((f) => f.mixedBusiestShare));
    }
    metrics.loadAfter = loadavg()[0]!;
    return metrics;
  },
};
