/**
 * Scenario 9 (issue 23, "Cost"): what flow control costs.
 *
 * Part 1, the claim: one call of spindle.claim_limited (migration 0012) for a type with a
 * global limit, with a per-key limit of 1 over 10,000 concurrency keys, and fair (round-robin by
 * key), beside the plain claim of the same queue (src/db/claims.ts), at 10,000, 100,000 and
 * 1,000,000 queued rows. The rows go straight into spindle.jobs (INSERT ... SELECT generate_series,
 * keys `key-00000` to `key-09999` in turn, so a key has 1, 10 and 100 jobs at the three depths), on a
 * connection with the claim connections' settings (CLAIM_CONNECTION_OPTIONS). 20 jobs of the type are
 * running (claimed and committed first: a global limit of 100 has room; keys 1 to 20 are busy, and the
 * round-robin of keyed claims resumes after key 20, where the claim of those 20 left it). Each timed
 * call claims 10 jobs in a transaction that is rolled back, so every call sees the same queue; the
 * variants take turns in rounds, and each figure is the median of its calls.
 *
 * Two more rows put the limited jobs and other jobs in each other's way: the plain claim of a type
 * without limits whose 1,000 jobs were enqueued after the limited type's backlog (the limited jobs
 * come first in the claim order and the plain claim may not take them), and claim_limited of a
 * limited type whose 1,000 jobs come after a backlog of an unlimited type. Goal (issue 23): flat.
 *
 * Part 2, throughput: one supervisor process (bench/scale-supervisor.ts, THREADS threads) drains
 * no-op jobs of one type, unlimited, with a global limit equal to its threads, with a global limit
 * that never binds, and with a per-key limit of 1 over KEYED_KEYS keys (limits set with
 * Client.setLimits before the supervisor starts); configurations take turns, medians of RUNS.
 */
import type { ChildProcess } from 'node:child_process';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { createClient, type Client } from '../../src/client.ts';
import { CLAIM_BY_TYPE_SQL, CLAIM_CONNECTION_OPTIONS, CLAIM_SQL } from '../../src/db/claims.ts';
import { clearOperatorLimits, setOperatorLimits } from '../../src/db/limits.ts';
import { migrate } from '../../src/db/migrate.ts';
import type { FlowLimitsUpdate } from '../../src/limits.ts';
import { settle } from '../database.ts';
import { forkTsx } from '../isolate.ts';
import type { ScaleChildMessage, ScaleChildSpec } from '../scale-supervisor.ts';
import { median, percentile } from '../stats.ts';
import { FinishCounter } from '../systems/finish-counter.ts';
import { dropSchema } from '../systems/postgres.ts';
import { followFinished } from '../systems/spindle-finished.ts';
import { wallClockMs } from '../work.ts';
import type { Metrics, StandaloneScenario } from './types.ts';

/** Queued rows of the limited type at which the claim is timed. */
export const LIMIT_DEPTHS = [10_000, 100_000, 1_000_000] as const;
/** Distinct concurrency keys among them. */
export const LIMIT_KEYS = 10_000;
const TYPE = 'bench-flow';
/** The other type of the "in each other's way" rows: 1,000 jobs enqueued after the backlog. */
const TAIL_TYPE = 'bench-tail';
const TAIL_JOBS = 1_000;
/** Jobs of TYPE running while the claims are timed. */
const RUNNING = 20;
/** The key the round-robin of keyed claims starts after: the last of the running jobs' keys. */
const CURSOR = `key-${String(RUNNING).padStart(5, '0')}`;
/** Jobs each timed call asks for. */
const WANT = 10;
const GLOBAL_LIMIT = 100;
/** Timed calls per variant and depth; they run in rounds of ROUND, the variants in turn. */
const CALLS = { full: 200, quick: 60 };
const ROUND = 10;
const WARMUP_CALLS = 3;

/** The variants of part 1: how the claim is made, and the limits in force while it is. */
interface ClaimVariant {
  key: string;
  label: string;
  /** Limits set on TYPE and on TAIL_TYPE (none: cleared). */
  flow?: FlowLimitsUpdate;
  tail?: FlowLimitsUpdate;
  /** Which call is timed: the plain claim or claim_limited, and of which type. */
  call: 'plain' | 'limited';
  type: string;
}

export const CLAIM_VARIANTS: readonly ClaimVariant[] = [
  { key: 'plain', label: 'plain claim, no limits (as scenario 6a)', call: 'plain', type: TYPE },
  { key: 'global', label: `claim_limited, globalConcurrency ${GLOBAL_LIMIT}`, flow: { globalConcurrency: GLOBAL_LIMIT }, call: 'limited', type: TYPE },
  { key: 'keyed', label: `claim_limited, keyConcurrency 1 over ${LIMIT_KEYS.toLocaleString('en-US')} keys`, flow: { keyConcurrency: 1 }, call: 'limited', type: TYPE },
  { key: 'fair', label: `claim_limited, fair over ${LIMIT_KEYS.toLocaleString('en-US')} keys`, flow: { fair: true }, call: 'limited', type: TYPE },
  {
    key: 'plainBehind',
    label: `plain claim (type by type, as while a scope is limited) of an unlimited type whose ${TAIL_JOBS.toLocaleString('en-US')} jobs come after the limited type's backlog`,
    flow: { globalConcurrency: GLOBAL_LIMIT },
    call: 'plain',
    type: TAIL_TYPE,
  },
  {
    key: 'limitedBehind',
    label: `claim_limited (globalConcurrency ${GLOBAL_LIMIT}) of a type whose ${TAIL_JOBS.toLocaleString('en-US')} jobs come after an unlimited type's backlog`,
    tail: { globalConcurrency: GLOBAL_LIMIT },
    call: 'limited',
    type: TAIL_TYPE,
  },
];

/** Part 2's configurations. */
const THREADS = 2;
const KEYED_KEYS = 100;
interface ThroughputConfig {
  key: string;
  label: string;
  limits?: FlowLimitsUpdate;
  keyed?: boolean;
}
export const THROUGHPUT_CONFIGS: readonly ThroughputConfig[] = [
  { key: 'none', label: 'no limits' },
  { key: 'global', label: `globalConcurrency ${THREADS} (= its threads)`, limits: { globalConcurrency: THREADS } },
  { key: 'loose', label: 'globalConcurrency 1000 (never reached)', limits: { globalConcurrency: 1_000 } },
  { key: 'keyed', label: `keyConcurrency 1 over ${KEYED_KEYS} keys`, limits: { keyConcurrency: 1 }, keyed: true },
];
const THROUGHPUT_JOBS = { full: 10_000, quick: 3_000 };
const WARMUP_JOBS = 500;
const RUNS = 3;
const NOOP = fileURLToPath(new URL('../../workers/noop.ts', import.meta.url));
const SUPERVISOR = fileURLToPath(new URL('../scale-supervisor.ts', import.meta.url));
const READY_TIMEOUT_MS = 60_000;
const DRAIN_TIMEOUT_MS = 300_000;

const fmt = (n: number) => n.toLocaleString('en-US');

/** Sets (or clears, when undefined) the operator's limits of a type. */
async function setLimits(db: pg.Client, type: string, limits: FlowLimitsUpdate | undefined): Promise<void> {
  await clearOperatorLimits(db, { kind: 'type', name: type });
  if (limits) await setOperatorLimits(db, { kind: 'type', name: type }, limits);
}

/** Inserts TYPE's jobs `from` to `to` (1-based), an hour old, keys in turn; ms taken (with ANALYZE). */
async function insertRows(db: pg.Client, from: number, to: number): Promise<number> {
  const start = wallClockMs();
  await db.query(
    `INSERT INTO spindle.jobs (type, input, concurrency_key, run_at)
     SELECT $1, jsonb_build_object('seq', g), 'key-' || lpad((g % $4)::text, 5, '0'), now() - interval '1 hour'
       FROM generate_series($2::int, $3::int) AS g`,
    [TYPE, from, to, LIMIT_KEYS],
  );
  await db.query('ANALYZE spindle.jobs');
  return wallClockMs() - start;
}

/** One timed call of `variant`, rolled back: ms, and how many jobs it claimed. */
async function timedCall(db: pg.Client, variant: ClaimVariant): Promise<{ ms: number; claimed: number }> {
  await db.query('BEGIN');
  try {
    const start = wallClockMs();
    let claimed: number;
    if (variant.call === 'plain') {
      // As a supervisor claims: type by type while some scope is limited or paused (supervisor.ts).
      const byType = variant.flow !== undefined || variant.tail !== undefined;
      const { rows } = await db.query<{ jobs: unknown[] }>({
        name: byType ? 'bench.claim_by_type' : 'bench.claim',
        text: byType ? CLAIM_BY_TYPE_SQL : CLAIM_SQL,
        values: [[variant.type], [], WANT, 'bench-claim', 30_000, [3]],
      });
      claimed = rows[0]!.jobs.length;
    } else {
      const { rows } = await db.query<{ r: { jobs: unknown[] } }>({
        name: 'bench.claim_limited',
        text: `SELECT spindle.claim_limited('type', $1, ARRAY[$1], '{}', ARRAY[3], $2, 'bench-claim', 30000) AS r`,
        values: [variant.type, WANT],
      });
      claimed = rows[0]!.r.jobs.length;
    }
    return { ms: wallClockMs() - start, claimed };
  } finally {
    await db.query('ROLLBACK');
  }
}

/** Part 1 at the depth now in the table: every variant's median and p90 (ms), in rounds. */
async function timeVariants(db: pg.Client, calls: number, depth: number, metrics: Metrics, log: (line: string) => void): Promise<void> {
  const times = new Map<string, number[]>(CLAIM_VARIANTS.map((v) => [v.key, []]));
  for (let done = 0; done < calls; done += ROUND) {
    for (const variant of CLAIM_VARIANTS) {
      await setLimits(db, TYPE, variant.flow);
      await setLimits(db, TAIL_TYPE, variant.tail);
      // Where a supervisor that claimed the running jobs' keys left the round-robin (the calls roll back, so it stays).
      await db.query(`UPDATE spindle.limits SET key_cursor = $2 WHERE kind = 'type' AND name = $1`, [TYPE, CURSOR]);
      const list = times.get(variant.key)!;
      for (let i = 0; i < ROUND + (done === 0 ? WARMUP_CALLS : 0); i++) {
        const { ms, claimed } = await timedCall(db, variant);
        if (claimed !== WANT) throw new Error(`${variant.label}: a call claimed ${claimed} jobs, expected ${WANT}`);
        if (done > 0 || i >= WARMUP_CALLS) list.push(ms);
      }
    }
  }
  const parts: string[] = [];
  for (const variant of CLAIM_VARIANTS) {
    const list = times.get(variant.key)!;
    metrics[`${variant.key}_${depth}`] = median(list);
    metrics[`${variant.key}P90_${depth}`] = percentile(list, 90);
    parts.push(`${variant.key} ${median(list).toFixed(2)}`);
  }
  log(`${fmt(depth)} queued: ${parts.join(', ')} ms (medians of ${calls})`);
}

async function measureClaims(databaseUrl: string, quick: boolean, metrics: Metrics, log: (line: string) => void): Promise<void> {
  await dropSchema(databaseUrl, 'spindle');
  await migrate(databaseUrl);
  const db = new pg.Client({ connectionString: databaseUrl, options: CLAIM_CONNECTION_OPTIONS });
  await db.connect();
  try {
    let inserted = 0;
    for (const depth of LIMIT_DEPTHS) {
      const ms = await insertRows(db, inserted + 1, depth);
      metrics[`insertMs_${depth}`] = ms;
      if (inserted === 0) {
        // The other type's jobs, enqueued after the backlog; then RUNNING of the backlog start.
        await db.query(
          `INSERT INTO spindle.jobs (type, input) SELECT $1, jsonb_build_object('seq', g) FROM generate_series(1, $2::int) AS g`,
          [TAIL_TYPE, TAIL_JOBS],
        );
        await db.query({ text: CLAIM_SQL, values: [[TYPE], [], RUNNING, 'bench-running', 3_600_000, [3]] });
      }
      inserted = depth;
      log(`${fmt(depth)} queued rows of ${TYPE} (inserted in ${(ms / 1000).toFixed(1)} s)`);
      await settle(databaseUrl);
      await timeVariants(db, quick ? CALLS.quick : CALLS.full, depth, metrics, log);
    }
  } finally {
    await db.end();
    // A million rows are not worth keeping between runs.
    await dropSchema(databaseUrl, 'spindle');
  }
}

function waitForChild<T>(child: ChildProcess, tail: () => string, accept: (message: T) => boolean, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${what} did not come within ${READY_TIMEOUT_MS} ms\n${tail()}`));
    }, READY_TIMEOUT_MS);
    child.on('message', (message: T) => {
      if (!accept(message)) return;
      clearTimeout(timer);
      resolve(message);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the supervisor process exited (${signal ?? `code ${code}`}) before ${what}\n${tail()}`));
    });
  });
}

/** Part 2, one run: jobs/s of one supervisor draining `jobs` no-op jobs under `config`. */
async function measureThroughput(databaseUrl: string, config: ThroughputConfig, jobs: number): Promise<number> {
  await dropSchema(databaseUrl, 'spindle');
  await migrate(databaseUrl);
  await settle(databaseUrl);
  const client: Client = createClient({ connectionString: databaseUrl });
  const listener = new pg.Client({ connectionString: databaseUrl });
  await listener.connect();
  const finished = new FinishCounter();
  const stopFollowing = await followFinished(listener, finished);
  let child: ChildProcess | undefined;
  try {
    if (config.limits) await client.setLimits(TYPE, config.limits);
    const spec: ScaleChildSpec = { databaseUrl, concurrency: THREADS, workers: { [TYPE]: NOOP } };
    const forked = forkTsx(SUPERVISOR, spec);
    child = forked.child;
    const message = await waitForChild<ScaleChildMessage>(child, forked.tail, (m) => m.type !== 'stopped', 'ready');
    if (message.type === 'error') throw new Error(`the supervisor failed to start: ${message.error}`);
    let total = 0;
    const drain = async (count: number): Promise<number> => {
      await client.enqueueMany(
        Array.from({ length: count }, (_, i) => ({
          type: TYPE,
          input: { seq: total + i },
          ...(config.keyed ? { options: { concurrencyKey: `key-${(total + i) % KEYED_KEYS}` } } : {}),
        })),
      );
      const visible = wallClockMs();
      total += count;
      const doneAt = await finished.waitFor(total, DRAIN_TIMEOUT_MS);
      return count / ((doneAt - visible) / 1000);
    };
    await drain(WARMUP_JOBS);
    return await drain(jobs);
  } finally {
    stopFollowing();
    if (child && child.exitCode === null) {
      const exited = new Promise((resolve) => child!.once('exit', resolve));
      if (child.connected) child.send({ type: 'stop' });
      else child.kill('SIGTERM');
      await exited;
    }
    await client.close();
    await listener.end();
  }
}

/** Scenario 9 (issue 23). */
export const flowLimits: StandaloneScenario = {
  kind: 'standalone',
  id: 'limits',
  issueNumber: '9 (issue 23)',
  title: 'Cost of flow control',
  system: 'spindle',
  metrics: [
    ...LIMIT_DEPTHS.flatMap((d) =>
      CLAIM_VARIANTS.slice(0, 4).map((v) => ({ key: `${v.key}_${d}`, label: `${v.key} claim ms, ${fmt(d)} queued`, better: 'lower' as const, digits: 2 })),
    ),
    ...THROUGHPUT_CONFIGS.map((c) => ({ key: `jobsPerSecond_${c.key}`, label: `${c.label}, jobs/s`, better: 'higher' as const, digits: 0 })),
  ],
  size: (quick) =>
    `claims of ${WANT} jobs (each rolled back) with ${LIMIT_DEPTHS.map(fmt).join(', ')} queued rows over ${fmt(LIMIT_KEYS)} keys (the round-robin resuming after the keys of the ${RUNNING} running jobs), ` +
    `${quick ? CALLS.quick : CALLS.full} calls per variant and depth in rounds of ${ROUND}, medians; then one supervisor process with ${THREADS} threads draining ` +
    `${fmt(quick ? THROUGHPUT_JOBS.quick : THROUGHPUT_JOBS.full)} no-op jobs (after ${WARMUP_JOBS} to warm up) under ${THROUGHPUT_CONFIGS.length} configurations, ${RUNS} runs each, in turns, medians`,
  async unavailable() {
    return undefined;
  },
  async run({ databaseUrl, quick, log }): Promise<Metrics> {
    const metrics: Metrics = { loadBefore: loadavg()[0]!, want: WANT, running: RUNNING, globalLimit: GLOBAL_LIMIT, threads: THREADS, runs: RUNS };
    await measureClaims(databaseUrl, quick, metrics, log);
    const jobs = quick ? THROUGHPUT_JOBS.quick : THROUGHPUT_JOBS.full;
    const rates = new Map<string, number[]>(THROUGHPUT_CONFIGS.map((c) => [c.key, []]));
    for (let run = 1; run <= RUNS; run++) {
      for (const config of THROUGHPUT_CONFIGS) {
        const rate = await measureThroughput(databaseUrl, config, jobs);
        rates.get(config.key)!.push(rate);
        log(`run ${run}/${RUNS}  ${config.label.padEnd(36)} ${fmt(Math.round(rate))} jobs/s`);
      }
    }
    for (const [key, list] of rates) {
      metrics[`jobsPerSecond_${key}`] = median(list);
      metrics[`jobsPerSecondMin_${key}`] = Math.min(...list);
      metrics[`jobsPerSecondMax_${key}`] = Math.max(...list);
    }
    metrics.loadAfter = loadavg()[0]!;
    return metrics;
  },
};
