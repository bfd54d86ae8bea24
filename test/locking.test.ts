/**
 * Lock order under contention (issue 19): every statement of spindle's that may wait for several job
 * rows locks them in id order, so no two of them wait for each other in a circle. Three supervisors
 * in child processes, each at a 50 ms heartbeat, drain thousands of short jobs that report progress
 * and log at every step, while the test cancels a few hundred of them: the heartbeat, the completer,
 * the progress actor and cancel wait for the same rows at once, and the leader's reaper (which skips
 * locked rows) sweeps them every 50 ms.
 *
 * A deadlock is looked for in three places: the database's own counter (pg_stat_database.deadlocks,
 * read once every session has flushed its statistics), the server log (with log_lock_waits on for
 * the database, when the log is on this machine), and the supervisors' logs (a statement broken with
 * SQLSTATE 40P01). A false death is a job taken back from a live supervisor: the lease (3 s, 60
 * heartbeats) is long enough that a loaded machine's hiccups do not end it, so any attempt recorded
 * `lost`, any reaped job and any second run of a job not asked for by a retryable failure is one.
 * Every execution is also written to a ledger outside spindle (test/fixtures/locking-workers), so a
 * second run spindle does not know about is seen too.
 */
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createClient, type CancelOutcome, type Client } from '../src/client.ts';
import type { SupervisorOptions } from '../src/config.ts';
import {
  databaseName,
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
  type Line,
} from './fixtures/locking-workers/harness.ts';
import type { LedgeredInput } from './fixtures/locking-workers/ledgered.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';

const SUPERVISORS = 3;
const HEARTBEAT_MS = 50;
/** 60 heartbeats: a live supervisor renews it many times over, however loaded the machine. */
const LEASE_MS = 3_000;
/** The reaper sweeps as often as the heartbeats come: it gets every chance to take a job back. */
const REAPER_INTERVAL_MS = 50;
const PROGRESS_FLUSH_MS = 20;
const JOBS = 2_000;
/** Of every this many job starts, one is cancelled as it starts and one job is cancelled at random. */
const CANCEL_EVERY = 10;
const BOOT_TIMEOUT_MS = 30_000;
const DRAIN_TIMEOUT_MS = 240_000;

/** 5-20 ms of work each; every 20th fails its first attempt, so retries join the mix. */
function jobInputs(): LedgeredInput[] {
  return Array.from({ length: JOBS }, (_, i) => ({ ms: 5 + Math.floor(Math.random() * 16), failFirst: i % 20 === 7 }));
}

function supervisorOptions(databaseUrl: string): SupervisorOptions {
  return {
    databaseUrl,
    workers: { ledgered: LEDGERED },
    concurrency: 2,
    heartbeatMs: HEARTBEAT_MS,
    leaseMs: LEASE_MS,
    reaperIntervalMs: REAPER_INTERVAL_MS,
    progressFlushMs: PROGRESS_FLUSH_MS,
    pollMs: 1_000,
    backoff: { baseMs: 10, maxMs: 50 },
    shutdownTimeoutMs: 5_000,
    unknownTypeGraceMs: 60_000,
    logLevel: 'warn',
    socket: false,
  };
}

const events = (processes: SupervisorProcess[], name: string): Line[] =>
  processes.flatMap((p) => p.all((l) => l.event === name).map((l) => ({ ...l, supervisor: p.id })));

describe('lock order under contention', () => {
  let db: TestDatabase;
  let client: Client;
  let clientClosed = false;
  const processes: SupervisorProcess[] = [];

  beforeEach(async () => {
    db = await createTestDatabase();
    client = createClient({ connectionString: db.url, maxConnections: 4 });
    clientClosed = false;
  });

  afterEach(async () => {
    // Even when the test failed: no supervisor outlives it.
    for (const p of processes.splice(0)) {
      p.signal('SIGKILL');
      await p.exited;
    }
    if (!clientClosed) await client.close();
    await db.drop();
  });

  it('three supervisors at a 50 ms heartbeat, with cancels, drain thousands of jobs with no deadlock and no false death', async () => {
    const name = databaseName(db.url);
    // Before any supervisor connects: a database's settings apply to the sessions started after them.
    await db.pool.query(`ALTER DATABASE ${pg.escapeIdentifier(name)} SET log_lock_waits = on`);
    await db.pool.query(LEDGER_DDL);
    const fresh = await withClient(db.url, (c) => c.query<{ log_lock_waits: string }>('SHOW log_lock_waits'));
    expect(fresh.rows[0]!.log_lock_waits).toBe('on');

    const found = await findServerLog(db.url);
    const serverLog = 'log' in found ? found.log : undefined;
    const offset = serverLog ? logOffset(serverLog) : 0;
    const deadlocksBefore = await deadlockCounter(db.url);

    // Phase durations, for the summary line only (nothing asserts on time).
    const phases: Record<string, number> = {};
    let mark = performance.now();
    const phase = (label: string) => {
      const now = performance.now();
      phases[label] = Math.round(now - mark);
      mark = now;
    };
    const env = { SPINDLE_LEDGER_URL: db.url };
    const supervisors = await Promise.all(
      Array.from({ length: SUPERVISORS }, () => {
        const p = new SupervisorProcess(supervisorOptions(db.url), env);
        processes.push(p);
        return p.ready(BOOT_TIMEOUT_MS);
      }),
    );
    // The reaper runs on the leader: the drain starts once there is one.
    await Promise.any(supervisors.map((p) => p.waitFor(isLeaderLine, BOOT_TIMEOUT_MS, 'leadership')));

    // Cancels ride on the starts: one of the job that just started (its row is held, so the cancel
    // waits in line with the heartbeat, progress and outcome of its holder), one of any job.
    let ids: string[] = [];
    let starts = 0;
    const cancels: Promise<CancelOutcome>[] = [];
    const cancel = (id: string, reason: string) => {
      const done = client.cancel(id, reason);
      // Collected below with allSettled; until then a failure must not count as unhandled.
      done.catch(() => {});
      cancels.push(done);
    };
    for (const p of supervisors) {
      p.onLine((line) => {
        if (line.event !== 'job:started') return;
        starts++;
        if (starts % CANCEL_EVERY === 0) cancel(String(line.id), 'cancelled as it started');
        else if (starts % CANCEL_EVERY === CANCEL_EVERY / 2 && ids.length > 0) {
          cancel(ids[Math.floor(Math.random() * ids.length)]!, 'cancelled at random');
        }
      });
    }
    phase('bootMs');
    const jobs = await client.enqueueMany(jobInputs().map((input) => ({ type: 'ledgered', input })));
    ids = jobs.map((j) => j.id);

    await waitUntilAllFinal(db.url, DRAIN_TIMEOUT_MS);
    phase('drainMs');
    const cancelled = await Promise.allSettled(cancels);
    await Promise.all(supervisors.map((p) => p.stop()));
    phase('stopMs');

    const record = await readRunRecord(db.pool, new Map(supervisors.map((p) => [p.id, p.pid])));
    await client.close();
    clientClosed = true;
    const deadlocks = (await settledDeadlockCounter(db.url)) - deadlocksBefore;
    const lockLog = serverLog ? lockLogSince(serverLog, offset, name) : undefined;
    phase('checkMs');

    const warnings = supervisors.flatMap((p) => p.all((l) => l.msg !== undefined).map((l) => String(l.msg)));
    const count = (msg: string) => warnings.filter((w) => w === msg).length;
    console.log(
      `locking: ${record.jobs} jobs ${JSON.stringify(record.byState)}, attempts ${JSON.stringify(record.attemptsByOutcome)}, ` +
        `${record.executions} executions, ${cancels.length} cancels, deadlocks ${deadlocks}, ` +
        `server log: ${lockLog ? `${lockLog.deadlocks.length} deadlock lines, ${lockLog.lockWaits.length} lock-wait lines (${serverLog!.path}${serverLog!.byDatabase ? '' : ', any database'})` : `not read (${'reason' in found ? found.reason : ''})`}, ` +
        `heartbeat failures ${count('heartbeat failed')}, supervisors removed as unseen ${count('removed supervisors that stopped heartbeating')}, ` +
        `leader changes ${events(supervisors, 'leader:changed').length}, ${JSON.stringify(phases)}`,
    );
    if (lockLog?.lockWaits.length) console.log(lockLog.lockWaits.slice(0, 20).join('\n'));

    // Everything that must be empty or zero, in one object: a failure shows all of it at once.
    expect({
      deadlocks,
      deadlocksInServerLog: lockLog?.deadlocks ?? [],
      deadlocksInSupervisorLogs: supervisors.flatMap(deadlockLogLines),
      lostAttempts: record.lostAttempts,
      reapedEvents: events(supervisors, 'job:reaped'),
      lostClaimEvents: events(supervisors, 'claim:lost'),
      duplicateAttempts: record.duplicateAttempts,
      ranTwice: record.ranTwice,
      unrecordedExecutions: record.unrecorded,
      executionsInTheWrongProcess: record.wrongProcess,
      unfinishedJobs: record.unfinished,
      failedCancels: cancelled.filter((c) => c.status === 'rejected').map((c) => String((c as PromiseRejectedResult).reason)),
      exits: supervisors.map((p) => p.exitStatus),
    }).toEqual({
      deadlocks: 0,
      deadlocksInServerLog: [],
      deadlocksInSupervisorLogs: [],
      lostAttempts: [],
      reapedEvents: [],
      lostClaimEvents: [],
      duplicateAttempts: [],
      ranTwice: [],
      unrecordedExecutions: [],
      executionsInTheWrongProcess: [],
      unfinishedJobs: 0,
      failedCancels: [],
      exits: supervisors.map(() => ({ code: 0, signal: null })),
    });

    // The run did what it is for: every job accounted for, and the paths that lock rows all taken.
    expect(record.jobs).toBe(JOBS);
    expect(record.executions).toBeGreaterThan(JOBS / 2);
    expect(record.retried, 'jobs run again after a retryable failure').toBeGreaterThan(0);
    expect(record.cancelledWhileClaimed, 'cancels that reached a claimed job').toBeGreaterThan(0);
    const outcomes = cancelled.flatMap((c) => (c.status === 'fulfilled' ? [c.value] : []));
    expect(outcomes.filter((o) => o.changed && o.state === 'cancelled').length, 'cancels of queued jobs').toBeGreaterThan(0);
    // Each supervisor ran jobs, so each one's heartbeat, progress and completer took part.
    for (const p of supervisors) expect(p.all((l) => l.event === 'job:finished').length, `jobs finished by ${p.id}`).toBeGreaterThan(0);
  }, 330_000);
});
