/**
 * The check of issue 19 as a script: three supervisor processes at a 250 ms heartbeat drain 5,000
 * jobs of ~10 ms, ten times, each run on a fresh database with the side-effect ledger of
 * test/fixtures/locking-workers. Per run it reports the drain's duration, deadlocks (the database's
 * pg_stat_database counter, and the server log's "deadlock detected" lines when the log is on this
 * machine), attempts the reaper took back (`lost`), and jobs run twice (a second execution that no
 * retryable failure asked for, by the ledger). Exit code 1 if any of those is non-zero in any run.
 *
 *   node --import tsx bench/stress-locks.ts [--runs 10] [--jobs 5000] [--heartbeat-ms 250]
 *        [--lease-ms 1000] [--job-ms 10] [--supervisors 3] [--concurrency 2] [--cancels 0]
 *
 * Database: BENCH_DATABASE_URL's or DATABASE_URL's server, else spindle's embedded PostgreSQL in a
 * temp dir (see bench/database.ts); each run creates a database of its own there and drops it. The
 * deadlock counter and log_lock_waits need a superuser.
 */
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createClient, type CancelOutcome } from '../src/client.ts';
import { migrate } from '../src/db/migrate.ts';
import {
  deadlockCounter,
  deadlockLogLines,
  findServerLog,
  isLeaderLine,
  LEDGER_DDL,
  LEDGERED,
  lockLogSince,
  logOffset,
  readRunRecord,
  settledDeadlockCounter,
  SupervisorProcess,
  waitUntilAllFinal,
  withClient,
  type ServerLog,
} from '../test/fixtures/locking-workers/harness.ts';
import { openDatabase } from './database.ts';

const USAGE = `Usage: node --import tsx bench/stress-locks.ts [options]

  --runs N            drains (default 10)
  --jobs N            jobs per drain (default 5000)
  --supervisors N     supervisor processes (default 3)
  --concurrency N     threads per supervisor (default 2)
  --heartbeat-ms N    heartbeat interval (default 250)
  --lease-ms N        lease (default 1000: four heartbeats)
  --job-ms N          each job's work, in sleeps with progress between (default 10)
  --cancels N         jobs cancelled during each drain, as they start (default 0)
  --help`;

interface Options {
  runs: number;
  jobs: number;
  supervisors: number;
  concurrency: number;
  heartbeatMs: number;
  leaseMs: number;
  jobMs: number;
  cancels: number;
}

/** What one drain found. */
interface RunResult {
  run: number;
  drainMs: number;
  deadlocks: number;
  /** Null when the server log could not be read. */
  deadlockLines: number | null;
  lockWaitLines: number | null;
  /** Broken statements (40P01) in the supervisors' own logs. */
  deadlockErrors: number;
  lostAttempts: number;
  /** Distinct jobs with an execution no retryable failure asked for, or one attempt executed twice. */
  ranTwice: number;
  reaped: number;
  lostClaims: number;
  unfinished: number;
  heartbeatFailures: number;
  removedAsUnseen: number;
  byState: Record<string, number>;
}

const BOOT_TIMEOUT_MS = 60_000;

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '10' },
      jobs: { type: 'string', default: '5000' },
      supervisors: { type: 'string', default: '3' },
      concurrency: { type: 'string', default: '2' },
      'heartbeat-ms': { type: 'string', default: '250' },
      'lease-ms': { type: 'string', default: '1000' },
      'job-ms': { type: 'string', default: '10' },
      cancels: { type: 'string', default: '0' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const int = (name: keyof typeof values, min: number): number => {
    const n = Number(values[name]);
    if (!Number.isInteger(n) || n < min) {
      console.error(`--${name} must be an integer >= ${min}, got ${String(values[name])}\n\n${USAGE}`);
      process.exit(2);
    }
    return n;
  };
  return {
    runs: int('runs', 1),
    jobs: int('jobs', 1),
    supervisors: int('supervisors', 1),
    concurrency: int('concurrency', 1),
    heartbeatMs: int('heartbeat-ms', 10),
    leaseMs: int('lease-ms', 11),
    jobMs: int('job-ms', 1),
    cancels: int('cancels', 0),
  };
}

/** The same server, another database. */
function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

async function drain(o: Options, serverUrl: string, run: number, serverLog: ServerLog | undefined): Promise<RunResult> {
  const name = `spindle_stress_${randomBytes(5).toString('hex')}`;
  await withClient(serverUrl, (c) => c.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`));
  const url = withDatabase(serverUrl, name);
  const supervisors: SupervisorProcess[] = [];
  const client = createClient({ connectionString: url, maxConnections: 4 });
  let clientClosed = false;
  try {
    await migrate(url);
    await withClient(url, async (c) => {
      // Before the supervisors connect: a database's settings apply to sessions started after them.
      await c.query(`ALTER DATABASE ${pg.escapeIdentifier(name)} SET log_lock_waits = on`);
      await c.query(LEDGER_DDL);
    });
    const offset = serverLog ? logOffset(serverLog) : 0;
    const deadlocksBefore = await deadlockCounter(url);

    for (let i = 0; i < o.supervisors; i++) {
      supervisors.push(
        new SupervisorProcess(
          {
            databaseUrl: url,
            workers: { ledgered: LEDGERED },
            concurrency: o.concurrency,
            heartbeatMs: o.heartbeatMs,
            leaseMs: o.leaseMs,
            reaperIntervalMs: o.heartbeatMs,
            progressFlushMs: 50,
            backoff: { baseMs: 10, maxMs: 100 },
            shutdownTimeoutMs: 5_000,
            logLevel: 'warn',
            socket: false,
          },
          { SPINDLE_LEDGER_URL: url },
        ),
      );
    }
    await Promise.all(supervisors.map((p) => p.ready(BOOT_TIMEOUT_MS)));
    await Promise.any(supervisors.map((p) => p.waitFor(isLeaderLine, BOOT_TIMEOUT_MS, 'leadership')));

    // Cancels, if asked for, hit jobs as they start: their rows are held and locked by the holder's actors.
    const cancels: Promise<CancelOutcome>[] = [];
    if (o.cancels > 0) {
      const every = Math.max(1, Math.floor(o.jobs / o.cancels));
      let starts = 0;
      for (const p of supervisors) {
        p.onLine((line) => {
          if (line.event !== 'job:started') return;
          if (++starts % every !== 0 || cancels.length >= o.cancels) return;
          const done = client.cancel(String(line.id), 'stress');
          done.catch(() => {}); // settled below
          cancels.push(done);
        });
      }
    }

    const started = performance.now();
    await client.enqueueMany(Array.from({ length: o.jobs }, (_, i) => ({ type: 'ledgered', input: { ms: o.jobMs, failFirst: i % 50 === 7 } })));
    await waitUntilAllFinal(url, Math.max(120_000, o.jobs * 100));
    const drainMs = performance.now() - started;
    await Promise.allSettled(cancels);
    await Promise.all(supervisors.map((p) => p.stop()));

    const record = await withClient(url, (c) => readRunRecord(c, new Map(supervisors.map((p) => [p.id, p.pid]))));
    await client.close();
    clientClosed = true;
    const deadlocks = (await settledDeadlockCounter(url)) - deadlocksBefore;
    const lockLog = serverLog ? lockLogSince(serverLog, offset, name) : undefined;
    const msgs = supervisors.flatMap((p) => p.all((l) => l.msg !== undefined).map((l) => String(l.msg)));
    const events = (event: string) => supervisors.reduce((n, p) => n + p.all((l) => l.event === event).length, 0);
    const twice = new Set([...record.ranTwice, ...record.duplicateAttempts, ...record.unrecorded, ...record.wrongProcess].map((r) => r.job_id));
    return {
      run,
      drainMs,
      deadlocks,
      deadlockLines: lockLog ? lockLog.deadlocks.length : null,
      lockWaitLines: lockLog ? lockLog.lockWaits.length : null,
      deadlockErrors: supervisors.reduce((n, p) => n + deadlockLogLines(p).length, 0),
      lostAttempts: record.lostAttempts.length,
      ranTwice: twice.size,
      reaped: events('job:reaped'),
      lostClaims: events('claim:lost'),
      unfinished: record.unfinished,
      heartbeatFailures: msgs.filter((m) => m === 'heartbeat failed').length,
      removedAsUnseen: msgs.filter((m) => m === 'removed supervisors that stopped heartbeating').length,
      byState: record.byState,
    };
  } finally {
    for (const p of supervisors) {
      p.signal('SIGKILL');
      await p.exited;
    }
    if (!clientClosed) await client.close();
    await withClient(serverUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`));
  }
}

/** The counts that must be zero. */
function failures(r: RunResult): string[] {
  const bad: string[] = [];
  if (r.deadlocks) bad.push(`${r.deadlocks} deadlocks`);
  if (r.deadlockLines) bad.push(`${r.deadlockLines} deadlock lines in the server log`);
  if (r.deadlockErrors) bad.push(`${r.deadlockErrors} deadlock errors in supervisor logs`);
  if (r.lostAttempts) bad.push(`${r.lostAttempts} lost attempts`);
  if (r.ranTwice) bad.push(`${r.ranTwice} jobs run twice`);
  if (r.reaped) bad.push(`${r.reaped} reaped`);
  if (r.lostClaims) bad.push(`${r.lostClaims} lost claims`);
  if (r.unfinished) bad.push(`${r.unfinished} unfinished`);
  return bad;
}

function line(r: RunResult): string {
  const cells = [
    `run ${String(r.run).padStart(2)}`,
    `${(r.drainMs / 1000).toFixed(1).padStart(5)} s`,
    `deadlocks ${r.deadlocks} (log ${r.deadlockLines ?? 'n/a'}, supervisor errors ${r.deadlockErrors})`,
    `lost ${r.lostAttempts}`,
    `run twice ${r.ranTwice}`,
    `reaped ${r.reaped}`,
    `lost claims ${r.lostClaims}`,
    `lock waits logged ${r.lockWaitLines ?? 'n/a'}`,
    `heartbeat failures ${r.heartbeatFailures}`,
    `removed as unseen ${r.removedAsUnseen}`,
    JSON.stringify(r.byState),
  ];
  const bad = failures(r);
  return `${cells.join(' | ')}${bad.length ? `  <-- ${bad.join(', ')}` : ''}`;
}

async function main(): Promise<number> {
  const o = parseOptions();
  const database = await openDatabase();
  try {
    const found = await findServerLog(database.url);
    const serverLog = 'log' in found ? found.log : undefined;
    console.log(
      `stress-locks: ${o.runs} runs, ${o.supervisors} supervisors x ${o.concurrency} threads, ${o.jobs} jobs of ~${o.jobMs} ms, ` +
        `heartbeat ${o.heartbeatMs} ms, lease ${o.leaseMs} ms, ${o.cancels} cancels per run`,
    );
    console.log(`database: ${database.source}, PostgreSQL ${database.server.version}`);
    console.log(
      `server log: ${serverLog ? `${serverLog.path}${serverLog.byDatabase ? '' : ' (lines do not name their database: every deadlock line counts)'}` : `not read (${'reason' in found ? found.reason : ''})`}`,
    );
    console.log(`load average before: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    const results: RunResult[] = [];
    for (let run = 1; run <= o.runs; run++) {
      const r = await drain(o, database.url, run, serverLog);
      results.push(r);
      console.log(line(r));
    }
    const bad = results.filter((r) => failures(r).length > 0);
    const sum = (f: (r: RunResult) => number) => results.reduce((n, r) => n + f(r), 0);
    console.log(
      `total: deadlocks ${sum((r) => r.deadlocks)}, deadlock log lines ${serverLog ? sum((r) => r.deadlockLines ?? 0) : 'n/a'}, ` +
        `lost attempts ${sum((r) => r.lostAttempts)}, jobs run twice ${sum((r) => r.ranTwice)}; ` +
        `load average after: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`,
    );
    console.log(bad.length ? `FAIL: ${bad.length} of ${results.length} runs` : `OK: ${results.length} runs`);
    return bad.length ? 1 : 0;
  } finally {
    await database.close();
  }
}

// Exit explicitly: an embedded server's handles must not keep the process alive, and the code must stick.
main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
