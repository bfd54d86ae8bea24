/**
 * A fleet on one PostgreSQL (issue 26): fifty supervisor processes of one thread each, through a
 * PgBouncer in transaction pooling mode that this script starts (and stops, whatever happens), beside
 * the same kind of fleet connecting directly. Heavy (it loads every core): not part of `npm run bench`.
 *
 *   npm run fleet                      # DATABASE_URL's server (database spindle_fleet), else an embedded one
 *   npm run fleet -- --supervisors 50 --jobs 20000 --kill 10 --pool-size 10 --direct-supervisors 12
 *   (also --start-wave 5, --heartbeat-ms 1000, --lease-ms 5000, --no-direct, --no-build)
 *
 * Each run: the supervisors start, five at a time (1 s heartbeat, 5 s lease, 500 ms reaper: a killed
 * supervisor's jobs come back in about six seconds); 300 jobs enqueued one at a time, 20 ms apart,
 * measure enqueue-to-start (the handler's own start, from its ledger line, against the job's
 * created_at); then 20,000 jobs of ~5 ms (a wait, not CPU) in one enqueueMany, and once 30% have
 * succeeded, SIGKILL of 10 supervisors, the leader among them. The run passes when every job ended
 * once in `succeeded`, every job's succeeded attempt is in the ledger once and any other ledger line is
 * an attempt recorded `lost` (a killed supervisor's, run to its end before the kill), and, through the
 * pooler, the database's connections never went over one session per supervisor plus the pool.
 * Connections are sampled from pg_stat_activity every 100 ms; RSS from /proc every second.
 *
 * Direct connections: each supervisor holds up to 8 (4 + 2 pooled, LISTEN, leader lock), so the
 * direct fleet is as large as the server's max_connections allows (--direct-supervisors to choose);
 * when that is fewer than --supervisors, the pooled fleet is run again at that size, for a like-for-like
 * comparison. Without DATABASE_URL the embedded server is started with max_connections=600, and both
 * fleets have the full size.
 *
 * Exit code 0 when every run passed, 1 when a check failed, 2 on an error, 130 on Ctrl-C.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { Client } from '../src/client.ts';
import type { StartOptions } from '../src/start.ts';
import { LEADER_SESSION_SQL } from '../src/db/leader.ts';
import { migrate } from '../src/db/migrate.ts';
import { startPgBouncer, type PgBouncer } from '../test/helpers/pgbouncer.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CHILD = fileURLToPath(new URL('./fleet-supervisor.mjs', import.meta.url));
const FLEET_JOB = fileURLToPath(new URL('../test/fixtures/fleet-workers/fleet-job.mjs', import.meta.url));
const DATABASE = 'spindle_fleet';
/** The script's own connections, left out of the fleet's count. */
const OWN = 'spindle-fleet:';
/** A direct supervisor's connections at most: db pool 4, claim pool 2, LISTEN, leader lock. */
const DIRECT_PER_SUPERVISOR = 8;
const LATENCY_JOBS = 300;
const LATENCY_GAP_MS = 20;
const KILL_AT_SHARE = 0.3;

const { values: flags } = parseArgs({
  options: {
    supervisors: { type: 'string', default: '50' },
    jobs: { type: 'string', default: '20000' },
    kill: { type: 'string', default: '10' },
    'job-ms': { type: 'string', default: '5' },
    'pool-size': { type: 'string', default: '10' },
    'direct-supervisors': { type: 'string' },
    'start-wave': { type: 'string', default: '5' },
    'heartbeat-ms': { type: 'string', default: '1000' },
    'lease-ms': { type: 'string', default: '5000' },
    'no-direct': { type: 'boolean', default: false },
    'no-build': { type: 'boolean', default: false },
  },
});
const int = (name: string, text: string | undefined, min: number): number => {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) {
    process.stderr.write(`fleet: --${name} must be an integer >= ${min}, got ${JSON.stringify(text)}\n`);
    process.exit(2);
  }
  return n;
};
const SUPERVISORS = int('supervisors', flags.supervisors, 1);
const JOBS = int('jobs', flags.jobs, 1);
const KILL = int('kill', flags.kill, 0);
const JOB_MS = int('job-ms', flags['job-ms'], 0);
const POOL_SIZE = int('pool-size', flags['pool-size'], 1);
const START_WAVE = int('start-wave', flags['start-wave'], 1);
/**
 * Short leases, so a killed supervisor's jobs come back within seconds, but long enough for fifty
 * processes on two cores: at 250 ms / 1 s, and at 1 s / 3 s beside other loads, live supervisors
 * missed their beats and lost jobs they were running.
 */
const HEARTBEAT_MS = int('heartbeat-ms', flags['heartbeat-ms'], 10);
const LEASE_MS = int('lease-ms', flags['lease-ms'], HEARTBEAT_MS + 1);
const REAPER_MS = 500;
if (KILL >= SUPERVISORS) {
  process.stderr.write(`fleet: --kill (${KILL}) must leave a supervisor alive (--supervisors ${SUPERVISORS})\n`);
  process.exit(2);
}

// ---- what a run is and measures --------------------------------------------------------------

interface RunPlan {
  label: string;
  pooled: boolean;
  supervisors: number;
  kill: number;
}

interface RunResult {
  plan: RunPlan;
  startSeconds: number;
  /** Jobs of the bulk per second, from its enqueue to its last job's end (the kills' recovery included). */
  jobsPerSecond: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  /** Connections to the fleet's database (the script's own left out): most at once, and the bound. */
  connections: { max: number; median: number; bound: number | null };
  /** Every connection of the server at once, others' included. */
  serverConnectionsMax: number;
  kill: { leaderKilled: boolean; heldJobs: number; reapedSeconds: number; recoveredSeconds: number; reruns: number } | null;
  rssMb: { median: number; max: number; total: number };
  failures: string[];
}

// ---- processes, and stopping everything on any way out ----------------------------------------

class FleetMember {
  readonly child: ChildProcess;
  id = '';
  readonly ready: Promise<void>;
  readonly exited: Promise<void>;
  stderr = '';
  peakRssKb = 0;
  killed = false;

  constructor(options: StartOptions, env: NodeJS.ProcessEnv) {
    this.child = spawn(process.execPath, [CHILD, JSON.stringify(options)], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (this.stderr = (this.stderr + chunk).slice(-8_000)));
    this.ready = new Promise((resolve, reject) => {
      createInterface({ input: this.child.stdout! }).on('line', (line) => {
        const message = JSON.parse(line) as { event: string; id: string };
        if (message.event === 'ready') {
          this.id = message.id;
          resolve();
        }
      });
      void this.exited.then(() => reject(new Error(`a supervisor exited before it was ready:\n${this.stderr}`)));
    });
  }

  async sampleRss(): Promise<void> {
    if (this.killed) return;
    const status = await readFile(`/proc/${this.child.pid}/status`, 'utf8').catch(() => '');
    const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
    this.peakRssKb = Math.max(this.peakRssKb, kb);
  }
}

const members = new Set<FleetMember>();
const cleanups: (() => Promise<void>)[] = [];

async function cleanUp(): Promise<void> {
  for (const member of members) member.child.kill('SIGKILL');
  members.clear();
  while (cleanups.length) await cleanups.pop()!().catch(() => {});
}

let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write(`\nfleet: ${signal}, stopping the supervisors and the pooler\n`);
    void cleanUp().finally(() => process.exit(130));
  });
}

// ---- the database ---------------------------------------------------------------------------

interface Server {
  /** A URL of the server (its admin database); the fleet's database is made on it. */
  url: string;
  source: string;
  maxConnections: number;
}

async function openServer(): Promise<Server> {
  const given = process.env.FLEET_DATABASE_URL ?? process.env.DATABASE_URL;
  let url = given;
  let source = `${process.env.FLEET_DATABASE_URL ? 'FLEET_DATABASE_URL' : 'DATABASE_URL'}'s server, database "${DATABASE}"`;
  if (!url) {
    const { startEmbedded } = await import('../src/db/embedded.ts');
    const dir = await mkdtemp(join(tmpdir(), 'spindle-fleet-pg-'));
    // As root PostgreSQL runs as `postgres`, which must traverse the directory (mkdtemp makes it 0700).
    await chmod(dir, 0o755);
    const server = await startEmbedded({ stateDir: dir, postgresFlags: ['-c', 'max_connections=600'] });
    cleanups.push(async () => {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    });
    url = server.url;
    source = `spindle's embedded PostgreSQL (max_connections=600), database "${DATABASE}"`;
  }
  const maxConnections = await withClient(url, async (c) => Number((await c.query<{ max_connections: string }>('SHOW max_connections')).rows[0]!.max_connections));
  return { url, source, maxConnections };
}

function databaseUrl(serverUrl: string, database: string, applicationName?: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  if (applicationName) url.searchParams.set('application_name', applicationName);
  return url.toString();
}

async function withClient<T>(url: string, run: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end();
  }
}

/** A fresh database for a run, migrated. */
async function freshDatabase(server: Server): Promise<string> {
  await withClient(server.url, async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`);
    await c.query(`CREATE DATABASE ${DATABASE}`);
  });
  const url = databaseUrl(server.url, DATABASE);
  await migrate(url);
  return url;
}

// ---- one run -------------------------------------------------------------------------------

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function run(server: Server, plan: RunPlan): Promise<RunResult> {
  const failures: string[] = [];
  const direct = await freshDatabase(server);
  const ledger = join(await mkdtemp(join(tmpdir(), 'spindle-fleet-ledger-')), 'ledger');
  cleanups.push(() => rm(join(ledger, '..'), { recursive: true, force: true }));

  let bouncer: PgBouncer | null = null;
  if (plan.pooled) {
    bouncer = await startPgBouncer({ serverUrl: server.url, poolSize: POOL_SIZE, maxClients: plan.supervisors * 8 + 50 });
    const stop = bouncer.stop;
    cleanups.push(stop);
  }
  const connection = bouncer
    ? { databaseUrl: bouncer.url(DATABASE), sessionDatabaseUrl: direct, pooler: 'transaction' as const }
    : { databaseUrl: direct };

  const sampler = new pg.Pool({ connectionString: databaseUrl(server.url, DATABASE, `${OWN}sampler`), max: 1 });
  const producer = new Client({ connectionString: databaseUrl(server.url, DATABASE, `${OWN}producer`), maxConnections: 2 });
  try {
    // The supervisors, a wave at a time, as a rolling deploy brings them up: all fifty at once on two
    // cores took minutes, and a thread's first import of the job module went past its 10 s limit.
    const startedAt = performance.now();
    const fleet: FleetMember[] = [];
    for (let i = 0; i < plan.supervisors; i++) {
      if (i > 0 && i % START_WAVE === 0) await Promise.all(fleet.slice(-START_WAVE).map((m) => m.ready));
      const member = new FleetMember(
        {
          ...connection,
          id: `fleet-${plan.pooled ? 'p' : 'd'}-${i}`,
          workers: { 'fleet-job': FLEET_JOB },
          concurrency: 1,
          heartbeatMs: HEARTBEAT_MS,
          leaseMs: LEASE_MS,
          reaperIntervalMs: REAPER_MS,
          socket: false,
          logLevel: 'warn',
        },
        { SPINDLE_FLEET_LEDGER: ledger },
      );
      members.add(member);
      fleet.push(member);
    }
    await Promise.all(fleet.map((m) => m.ready));
    const startSeconds = (performance.now() - startedAt) / 1_000;
    log(`  ${plan.supervisors} supervisors up in ${startSeconds.toFixed(1)} s`);

    // Sampling, from now to the end of the run.
    const counts: number[] = [];
    let serverConnectionsMax = 0;
    let sampling = true;
    const connectionsSampled = (async () => {
      while (sampling) {
        const { rows } = await sampler.query<{ fleet: number; server: number }>(
          `SELECT count(*) FILTER (WHERE datname = current_database() AND application_name NOT LIKE '${OWN}%')::int AS fleet,
                  count(*)::int AS server
             FROM pg_stat_activity WHERE backend_type = 'client backend'`,
        );
        counts.push(rows[0]!.fleet);
        serverConnectionsMax = Math.max(serverConnectionsMax, rows[0]!.server);
        await sleep(100);
      }
    })();
    const rssSampled = (async () => {
      while (sampling) {
        await Promise.all(fleet.map((m) => m.sampleRss()));
        await sleep(1_000);
      }
    })();

    try {
      // Enqueue-to-start, on an idle fleet: one job at a time.
      const latencyIds: string[] = [];
      for (let i = 0; i < LATENCY_JOBS; i++) {
        latencyIds.push((await producer.enqueue('fleet-job', { ms: JOB_MS })).id);
        await sleep(LATENCY_GAP_MS);
      }
      await untilSucceeded(sampler, latencyIds.length, 60_000, 'the latency jobs');

      // The bulk, with the kills.
      const bulkFrom = BigInt(latencyIds.at(-1)!) + 1n;
      const bulk = await producer.enqueueMany(Array.from({ length: JOBS }, () => ({ type: 'fleet-job', input: { ms: JOB_MS } })));
      let kill: RunResult['kill'] = null;
      if (plan.kill > 0) {
        await untilSucceeded(sampler, latencyIds.length + Math.floor(JOBS * KILL_AT_SHARE), 300_000, `${KILL_AT_SHARE * 100}% of the jobs`);
        kill = await killSome(plan, fleet, sampler);
      }
      await untilSucceeded(sampler, latencyIds.length + JOBS, 600_000, 'every job');
      sampling = false;
      await Promise.all([connectionsSampled, rssSampled]);

      const { rows: timing } = await sampler.query<{ seconds: number }>(
        `SELECT extract(epoch FROM max(finished_at) - min(created_at))::float8 AS seconds FROM spindle.jobs WHERE id >= $1`,
        [bulkFrom.toString()],
      );
      const jobsPerSecond = bulk.length / timing[0]!.seconds;

      // The ledger and the database, checked against each other.
      const lines = (await readFile(ledger, 'utf8')).trim().split('\n').map((l) => l.split(' '));
      const started = new Map<string, number>();
      const byAttempt = new Map<string, number>();
      for (const [id, attempt, startMs] of lines) {
        const key = `${id}:${attempt}`;
        byAttempt.set(key, (byAttempt.get(key) ?? 0) + 1);
        started.set(key, Number(startMs));
      }
      const { rows: jobs } = await sampler.query<{ id: string; state: string; attempt: number; created_ms: number }>(
        `SELECT id::text, state, attempt, extract(epoch FROM created_at)::float8 * 1000 AS created_ms FROM spindle.jobs`,
      );
      const { rows: others } = await sampler.query<{ job_id: string; attempt: number; outcome: string; worker_id: string }>(
        `SELECT job_id::text, attempt, outcome, worker_id FROM spindle.attempt_log`,
      );
      const notSucceeded = jobs.filter((j) => j.state !== 'succeeded');
      if (jobs.length !== LATENCY_JOBS + JOBS) failures.push(`${jobs.length} jobs in the database, ${LATENCY_JOBS + JOBS} enqueued`);
      if (notSucceeded.length) failures.push(`${notSucceeded.length} jobs did not end in succeeded (first: ${JSON.stringify(notSucceeded[0])})`);
      const missing = jobs.filter((j) => byAttempt.get(`${j.id}:${j.attempt}`) !== 1);
      if (missing.length) failures.push(`${missing.length} jobs' succeeded attempt is not in the ledger exactly once (first: job ${missing[0]!.id})`);
      const twice = [...byAttempt].filter(([, n]) => n > 1);
      if (twice.length) failures.push(`${twice.length} attempts ran to their end twice (first: ${twice[0]![0]})`);
      const killedIds = new Set(fleet.filter((m) => m.killed).map((m) => m.id));
      const lostOfKilled = new Set(others.filter((o) => o.outcome === 'lost' && killedIds.has(o.worker_id)).map((o) => `${o.job_id}:${o.attempt}`));
      const finalAttempt = new Map(jobs.map((j) => [j.id, j.attempt]));
      const extra = [...byAttempt.keys()].filter((key) => finalAttempt.get(key.split(':')[0]!) !== Number(key.split(':')[1]));
      const unexplained = extra.filter((key) => !lostOfKilled.has(key));
      if (unexplained.length) failures.push(`${unexplained.length} ledger lines of attempts that are neither the job's last nor lost by a killed supervisor (first: ${unexplained[0]})`);
      const strayOutcomes = others.filter((o) => !(o.outcome === 'lost' && killedIds.has(o.worker_id)));
      if (strayOutcomes.length) failures.push(`${strayOutcomes.length} attempts other than the killed supervisors' lost ones (first: ${JSON.stringify(strayOutcomes[0])})`);
      if (kill) kill.reruns = extra.length;

      const latencies = latencyIds
        .map((id) => {
          const job = jobs.find((j) => j.id === id);
          return job ? started.get(`${id}:${job.attempt}`)! - job.created_ms : NaN;
        })
        .filter((ms) => Number.isFinite(ms))
        .sort((a, b) => a - b);
      const sortedCounts = [...counts].sort((a, b) => a - b);
      const bound = plan.pooled ? plan.supervisors + POOL_SIZE : null;
      const maxConnections = sortedCounts.at(-1) ?? 0;
      if (bound !== null && maxConnections > bound) failures.push(`${maxConnections} connections to the database at once, over the bound of ${bound}`);
      const rss = fleet.map((m) => m.peakRssKb / 1024).sort((a, b) => a - b);
      return {
        plan,
        startSeconds,
        jobsPerSecond,
        latencyMs: { p50: quantile(latencies, 0.5), p90: quantile(latencies, 0.9), p99: quantile(latencies, 0.99), max: latencies.at(-1) ?? NaN },
        connections: { max: maxConnections, median: quantile(sortedCounts, 0.5), bound },
        serverConnectionsMax,
        kill,
        rssMb: { median: quantile(rss, 0.5), max: rss.at(-1) ?? NaN, total: rss.reduce((a, b) => a + b, 0) },
        failures,
      };
    } finally {
      sampling = false;
      await Promise.all([connectionsSampled, rssSampled]).catch(() => {});
    }
  } finally {
    await stopFleet();
    await producer.close().catch(() => {});
    await sampler.end().catch(() => {});
    if (bouncer) await bouncer.stop();
  }
}

/** SIGKILLs `plan.kill` supervisors, the leader first, then waits for their jobs to be reaped and to succeed. */
async function killSome(plan: RunPlan, fleet: FleetMember[], db: pg.Pool): Promise<NonNullable<RunResult['kill']>> {
  const leaderName = (await db.query<{ application_name: string }>(LEADER_SESSION_SQL)).rows[0]?.application_name ?? '';
  const leader = fleet.find((m) => leaderName === `spindle:elector:${m.id}`);
  const victims = [...(leader ? [leader] : []), ...fleet.filter((m) => m !== leader)].slice(0, plan.kill);
  for (const m of victims) {
    m.killed = true;
    m.child.kill('SIGKILL');
  }
  const killedAt = performance.now();
  await Promise.all(victims.map((m) => m.exited));
  const ids = victims.map((m) => m.id);
  const { rows: held } = await db.query<{ id: string }>(`SELECT id::text FROM spindle.jobs WHERE state = 'running' AND worker_id = ANY($1)`, [ids]);
  const heldIds = held.map((r) => r.id);
  let reapedSeconds = NaN;
  let recoveredSeconds = NaN;
  const deadline = performance.now() + 120_000;
  while (performance.now() < deadline) {
    const { rows } = await db.query<{ still_held: number; not_done: number }>(
      `SELECT count(*) FILTER (WHERE state = 'running' AND worker_id = ANY($2))::int AS still_held,
              count(*) FILTER (WHERE state <> 'succeeded')::int AS not_done
         FROM spindle.jobs WHERE id = ANY($1::bigint[])`,
      [heldIds, ids],
    );
    const now = (performance.now() - killedAt) / 1_000;
    if (rows[0]!.still_held === 0 && Number.isNaN(reapedSeconds)) reapedSeconds = now;
    if (rows[0]!.not_done === 0) {
      recoveredSeconds = now;
      break;
    }
    await sleep(50);
  }
  log(`  killed ${victims.length} (leader among them: ${leader !== undefined}); their ${heldIds.length} jobs reaped after ${reapedSeconds.toFixed(2)} s, all succeeded after ${recoveredSeconds.toFixed(2)} s`);
  return { leaderKilled: leader !== undefined, heldJobs: heldIds.length, reapedSeconds, recoveredSeconds, reruns: 0 };
}

async function untilSucceeded(db: pg.Pool, count: number, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM spindle.jobs WHERE state = 'succeeded'`);
    if (rows[0]!.n >= count) return;
    if (performance.now() > deadline) throw new Error(`${what} did not succeed within ${timeoutMs / 1_000} s (${rows[0]!.n} of ${count})`);
    await sleep(100);
  }
}

/** Stops every live supervisor gracefully (SIGKILL after 20 s). */
async function stopFleet(): Promise<void> {
  const live = [...members];
  for (const m of live) if (!m.killed) m.child.kill('SIGTERM');
  const timer = setTimeout(() => live.forEach((m) => m.child.kill('SIGKILL')), 20_000);
  await Promise.all(live.map((m) => m.exited));
  clearTimeout(timer);
  members.clear();
}

function log(line: string): void {
  process.stdout.write(`${line}\n`);
}

// ---- the runs, and the verdict -------------------------------------------------------------------

function report(results: RunResult[]): void {
  const f = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : '-');
  log('');
  log('| fleet | supervisors | server connections max (median) | bound | jobs/s | enqueue-to-start p50 / p90 / p99 ms | killed: jobs held, reaped, all succeeded | RSS per supervisor median / max MB |');
  log('|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of results) {
    const k = r.kill;
    log(
      `| ${r.plan.label} | ${r.plan.supervisors} | ${r.connections.max} (${r.connections.median}) | ${r.connections.bound ?? '-'} | ${f(r.jobsPerSecond)} | ` +
        `${f(r.latencyMs.p50, 1)} / ${f(r.latencyMs.p90, 1)} / ${f(r.latencyMs.p99, 1)} | ` +
        `${k ? `${r.plan.kill} killed${k.leaderKilled ? ' (leader too)' : ''}: ${k.heldJobs} jobs, ${f(k.reapedSeconds, 2)} s, ${f(k.recoveredSeconds, 2)} s; ${k.reruns} reruns` : '-'} | ` +
        `${f(r.rssMb.median)} / ${f(r.rssMb.max)} |`,
    );
  }
}

/**
 * The supervisors run the compiled package, as an application does (a supervisor from the TypeScript
 * source, through tsx, took five times the CPU to start and 40 MB more): built now, so it is this
 * checkout's code.
 */
async function build(): Promise<void> {
  log('fleet: building dist/ (npm run build)');
  const child = spawn(process.execPath, ['scripts/build.mjs'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`npm run build failed (exit ${code})`);
}

async function main(): Promise<number> {
  if (!flags['no-build']) await build();
  const server = await openServer();
  log(`fleet: ${server.source}; max_connections ${server.maxConnections}; PgBouncer pool ${POOL_SIZE}; ${JOBS} jobs of ${JOB_MS} ms`);
  const { rows } = await withClient(server.url, (c) => c.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'client backend'`));
  const free = server.maxConnections - 3 - rows[0]!.n - 10;
  const directSize = flags['direct-supervisors'] !== undefined
    ? int('direct-supervisors', flags['direct-supervisors'], 1)
    : Math.min(SUPERVISORS, Math.floor(free / DIRECT_PER_SUPERVISOR));
  const scaledKill = (n: number) => Math.min(n - 1, Math.round((KILL * n) / SUPERVISORS));
  const plans: RunPlan[] = [{ label: 'PgBouncer (transaction)', pooled: true, supervisors: SUPERVISORS, kill: KILL }];
  if (!flags['no-direct']) {
    if (directSize < 1) log(`fleet: no room for a direct fleet (${free} connections free)`);
    else {
      if (directSize < SUPERVISORS) {
        log(`fleet: a direct supervisor holds up to ${DIRECT_PER_SUPERVISOR} connections; ${free} are free, so the direct fleet has ${directSize}`);
        plans.push({ label: 'PgBouncer (transaction)', pooled: true, supervisors: directSize, kill: scaledKill(directSize) });
      }
      plans.push({ label: 'direct', pooled: false, supervisors: directSize, kill: scaledKill(directSize) });
    }
  }
  const results: RunResult[] = [];
  for (const plan of plans) {
    log(`run: ${plan.label}, ${plan.supervisors} supervisors, ${plan.kill} killed`);
    results.push(await run(server, plan));
  }
  report(results);
  const failures = results.flatMap((r) => r.failures.map((f) => `${r.plan.label} x${r.plan.supervisors}: ${f}`));
  log('');
  log(`RESULTS ${JSON.stringify(results)}`);
  if (failures.length) {
    log(`FAIL\n${failures.map((f) => `  - ${f}`).join('\n')}`);
    return 1;
  }
  log(`PASS: every job once in succeeded and its ledger once; through PgBouncer at most ${results.filter((r) => r.plan.pooled).map((r) => `${r.connections.max}/${r.connections.bound}`).join(', ')} connections`);
  return 0;
}

let code = 2;
try {
  code = await main();
} catch (error) {
  process.stderr.write(`fleet: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  for (const m of members) if (m.stderr) process.stderr.write(`--- a supervisor's stderr ---\n${m.stderr.slice(-2_000)}\n`);
  code = 2;
} finally {
  await cleanUp();
}
// The embedded server's exit hooks reset process.exitCode: exit explicitly.
process.exit(code);
