/**
 * Crash safety with real processes and real faults: every supervisor runs in a child process
 * (test/fixtures/run-supervisor.ts) so it can be SIGKILLed and SIGSTOPped; the database is cut off
 * with pg_terminate_backend and, for one test, restarted.
 */
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createClient, type Client } from '../src/client.ts';
import type { SupervisorOptions } from '../src/config.ts';
import { migrate } from '../src/db/migrate.ts';
import { startEmbedded, type EmbeddedServer } from '../src/db/embedded.ts';
import type { Job } from '../src/job.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';
import { SupervisorProcess } from './helpers/supervisor-process.ts';

const WORKERS = fileURLToPath(new URL('./fixtures/fault-workers', import.meta.url));
const SLEEP = join(WORKERS, 'sleep.ts');

const HEARTBEAT_MS = 250;
const REAPER_INTERVAL_MS = 200;
/** 4 heartbeats: a supervisor that stops heartbeating keeps its jobs this long. */
const LEASE_MS = 1_000;
/** A supervisor not seen for 3 heartbeats is dead (see heartbeat.ts); its jobs come back with their leases. */
const DEAD_AFTER_MS = 3 * HEARTBEAT_MS;
/** Scheduling, a statement or two, the elector's tick: what the bound allows beyond the design figure. */
const SLACK_MS = 450;
const RECLAIM_BOUND_MS = LEASE_MS + REAPER_INTERVAL_MS + SLACK_MS;
const BOOT_TIMEOUT_MS = 20_000;

/** The `sleep` worker's input: `laterMs` is how long attempts after the first sleep. */
interface SleepInput {
  ms: number;
  laterMs?: number;
}

const processes = new Set<SupervisorProcess>();

/** The parts of the snapshot the tests read. */
interface RuntimeSnapshotView {
  actors: ActorView;
}
interface ActorView {
  name: string;
  status: string;
  state: Record<string, unknown> | null;
  children: ActorView[];
}

/** An actor of a snapshot (SupervisorProcess.snapshot()), by name. */
function actor(snapshot: unknown, name: string): ActorView {
  const { actors } = snapshot as RuntimeSnapshotView;
  const found = actors.name === name ? actors : actors.children.find((c) => c.name === name);
  if (!found) throw new Error(`no actor ${name} in the snapshot`);
  return found;
}

function supervisorOptions(databaseUrl: string, extra: SupervisorOptions = {}): SupervisorOptions {
  return {
    databaseUrl,
    workers: WORKERS,
    concurrency: 2,
    prefetch: 0,
    heartbeatMs: HEARTBEAT_MS,
    leaseMs: LEASE_MS,
    reaperIntervalMs: REAPER_INTERVAL_MS,
    pollMs: 1_000,
    backoff: { baseMs: 20, maxMs: 100 },
    shutdownTimeoutMs: 2_000,
    unknownTypeGraceMs: 60_000,
    logLevel: 'warn',
    socket: false,
    ...extra,
  };
}

/** Registers a process for the afterEach that kills them all. */
function track(p: SupervisorProcess): SupervisorProcess {
  processes.add(p);
  return p;
}

async function startSupervisorProcess(databaseUrl: string, extra: SupervisorOptions = {}): Promise<SupervisorProcess> {
  return track(new SupervisorProcess(supervisorOptions(databaseUrl, extra))).ready(BOOT_TIMEOUT_MS);
}

/** Started lines for attempt 1 of the jobs a supervisor holds. */
function startedJobs(p: SupervisorProcess): { id: string; attempt: number }[] {
  return p.all((l) => l.event === 'job:started').map((l) => ({ id: String(l.id), attempt: Number(l.attempt) }));
}

interface AttemptRecord {
  job_id: string;
  attempt: number;
  worker_id: string | null;
  outcome: string;
  error: { message?: string } | null;
  finished_at: Date;
}

async function attemptsOf(pool: pg.Pool, ids: string[]): Promise<AttemptRecord[]> {
  const { rows } = await pool.query<AttemptRecord>(
    `SELECT job_id::text, attempt, worker_id, outcome, error, finished_at
       FROM spindle.attempts WHERE job_id = ANY($1::bigint[]) ORDER BY job_id, attempt`,
    [ids],
  );
  return rows;
}

/** The database's clock, so durations are measured by the same clock as the reaper's `now()`. */
async function dbNow(pool: pg.Pool): Promise<Date> {
  const { rows } = await pool.query<{ t: Date }>('SELECT clock_timestamp() AS t');
  return rows[0]!.t;
}

/**
 * Every job is final, and its attempts are exactly 1..attempt, each recorded once, with every
 * attempt but the last one `lost` or a retryable failure, and the last one matching the job.
 */
async function expectConsistent(pool: pg.Pool, jobs: Job[]): Promise<AttemptRecord[]> {
  const attempts = await attemptsOf(pool, jobs.map((j) => j.id));
  for (const job of jobs) {
    const mine = attempts.filter((a) => a.job_id === job.id);
    expect(mine.map((a) => a.attempt), `attempts of job ${job.id}`).toEqual(Array.from({ length: job.attempt }, (_, i) => i + 1));
    expect(mine.at(-1)!.outcome, `last attempt of job ${job.id}`).toBe(job.state);
  }
  const { rows } = await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM spindle.jobs WHERE state = 'running'`);
  expect(rows[0]!.n).toBe(0);
  return attempts;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Polls a condition of the database (there is no event for it) every 50 ms. */
async function until(condition: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`no ${what} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function enqueueSleeps(client: Client, inputs: SleepInput[]): Promise<Job[]> {
  return client.enqueueMany(inputs.map((input) => ({ type: 'sleep', input })));
}

async function waitAll(client: Client, jobs: Job[], timeoutMs: number): Promise<Job[]> {
  return Promise.all(jobs.map((j) => client.waitFor(j.id, { timeoutMs })));
}

afterEach(async () => {
  // Even when a test failed: no supervisor outlives it (a stopped one dies of SIGKILL too).
  for (const p of processes) {
    p.signal('SIGKILL');
    await p.exited;
  }
  processes.clear();
});

describe('crash safety (child processes, real faults)', () => {
  let db: TestDatabase;
  let client: Client;

  beforeEach(async () => {
    db = await createTestDatabase();
    client = createClient({ connectionString: db.url });
  });

  afterEach(async () => {
    await client.close();
    // The supervisors are killed by the outer afterEach, which runs after this one: end them first.
    for (const p of processes) {
      p.signal('SIGKILL');
      await p.exited;
    }
    await db.drop();
  });

  it('takes back the jobs of a SIGKILLed supervisor as their leases end, within a reaper interval', async () => {
    const leader = await startSupervisorProcess(db.url);
    await leader.waitFor((l) => l.event === 'leader:changed' && l.leader === true, 5_000, 'leadership');
    const victim = await startSupervisorProcess(db.url);
    const jobs = await enqueueSleeps(client, Array.from({ length: 6 }, () => ({ ms: 1_500, laterMs: 200 })));
    await victim.waitFor(() => startedJobs(victim).length >= 2, 10_000, 'two jobs running on the victim');
    await leader.waitFor(() => startedJobs(leader).length >= 1, 10_000, 'a job running on the leader');
    const held = startedJobs(victim).map((j) => j.id);
    // What `spindle supervisors` shows: both, with the jobs each holds.
    const before = await client.supervisors();
    expect(before.map((s) => [s.id, s.pid, s.running, s.heartbeatMs, s.live]).sort()).toEqual(
      [
        [leader.id, leader.pid, 2, HEARTBEAT_MS, true],
        [victim.id, victim.pid, 2, HEARTBEAT_MS, true],
      ].sort(),
    );
    for (const s of before) expect(s.lastSeenMs).toBeLessThan(DEAD_AFTER_MS);

    victim.signal('SIGKILL');
    const killedAt = await dbNow(db.pool);
    await victim.exited;

    const done = await waitAll(client, jobs, 20_000);
    expect(done.map((j) => j.state)).toEqual(jobs.map(() => 'succeeded'));
    const attempts = await expectConsistent(db.pool, done);

    const lost = attempts.filter((a) => a.outcome === 'lost');
    expect(lost.map((a) => a.job_id).sort()).toEqual([...held].sort());
    for (const a of lost) {
      expect(a.worker_id).toBe(victim.id);
      expect(a.attempt).toBe(1);
      expect(a.error?.message).toMatch(/stopped heartbeating/);
    }
    for (const job of done.filter((j) => held.includes(j.id))) {
      expect(job.output).toEqual({ attempt: 2, pid: leader.pid });
    }
    const backMs = lost.map((a) => a.finished_at.getTime() - killedAt.getTime());
    console.log(
      `[faults] SIGKILL -> jobs taken back: ${backMs.map((ms) => `${ms} ms`).join(', ')} ` +
        `(heartbeat ${HEARTBEAT_MS} ms, reaper ${REAPER_INTERVAL_MS} ms, lease ${LEASE_MS} ms; bound ${RECLAIM_BOUND_MS} ms)`,
    );
    for (const ms of backMs) {
      expect(ms).toBeGreaterThan(0);
      expect(ms).toBeLessThan(RECLAIM_BOUND_MS);
    }
    expect((await client.supervisors()).map((s) => s.id)).toEqual([leader.id]);
  }, 40_000);

  it('elects another leader when the leader is SIGKILLed, and the new leader reaps', async () => {
    const leader = await startSupervisorProcess(db.url);
    await leader.waitFor((l) => l.event === 'leader:changed' && l.leader === true, 5_000, 'leadership');
    const jobs = await enqueueSleeps(client, Array.from({ length: 2 }, () => ({ ms: 5_000, laterMs: 100 })));
    await leader.waitFor(() => startedJobs(leader).length >= 2, 10_000, 'two jobs running on the leader');
    const follower = await startSupervisorProcess(db.url);
    expect(follower.all((l) => l.event === 'leader:changed')).toEqual([]);

    leader.signal('SIGKILL');
    const killedAt = Date.now();
    const elected = await follower.waitFor((l) => l.event === 'leader:changed' && l.leader === true, 5_000, 'leadership');
    const reaped = await follower.waitFor(
      (l) => l.event === 'job:reaped' && l.supervisorId === leader.id,
      5_000,
      'the old leader’s jobs reaped',
    );
    const done = await waitAll(client, jobs, 10_000);
    expect(done.map((j) => [j.state, j.attempt])).toEqual([
      ['succeeded', 2],
      ['succeeded', 2],
    ]);
    const attempts = await expectConsistent(db.pool, done);
    expect(attempts.filter((a) => a.outcome === 'lost').map((a) => a.worker_id)).toEqual([leader.id, leader.id]);
    const takeoverMs = elected.receivedAt - killedAt;
    const reapMs = reaped.receivedAt - killedAt;
    console.log(`[faults] leader SIGKILL -> new leader after ${takeoverMs} ms, its jobs reaped after ${reapMs} ms`);
    // The lock goes with the dead session at once; the follower takes it at its next tick (250 ms).
    expect(takeoverMs).toBeLessThan(1_500);
    expect(reapMs).toBeLessThan(RECLAIM_BOUND_MS + 500);
  }, 40_000);

  it('takes back at once the jobs of an earlier run of a supervisor restarted with the same id', async () => {
    // A long lease: without the hand-back, the old jobs would wait for it.
    const first = await startSupervisorProcess(db.url, { id: 'fixed-id', leaseMs: 10_000 });
    const jobs = await enqueueSleeps(client, [
      { ms: 20_000, laterMs: 100 },
      { ms: 20_000, laterMs: 100 },
    ]);
    await first.waitFor(() => startedJobs(first).length >= 2, 10_000, 'both jobs running');
    first.signal('SIGKILL');
    await first.exited;
    // Restarted at once: its row is fresh again, so only the expired lease can free the old jobs.
    const second = await startSupervisorProcess(db.url, { id: 'fixed-id', leaseMs: 10_000 });
    const restartedAt = await dbNow(db.pool);
    const done = await waitAll(client, jobs, 10_000);
    expect(done.map((j) => [j.state, j.attempt])).toEqual([
      ['succeeded', 2],
      ['succeeded', 2],
    ]);
    const attempts = await expectConsistent(db.pool, done);
    const lost = attempts.filter((a) => a.outcome === 'lost');
    expect(lost.length).toBe(2);
    for (const a of lost) {
      expect(a.error?.message).toMatch(/lease/);
      expect(a.finished_at.getTime() - restartedAt.getTime()).toBeLessThan(1_000);
    }
    expect(second.exitStatus).toBeNull();
  }, 40_000);

  it('does not let a paused supervisor record over the newer attempt, and aborts its thread on the next heartbeat', async () => {
    const stale = await startSupervisorProcess(db.url);
    await stale.waitFor((l) => l.event === 'leader:changed' && l.leader === true, 5_000, 'leadership');
    // One job still runs when the stale supervisor wakes up; the other one would have finished meanwhile.
    const [long, short] = await enqueueSleeps(client, [
      { ms: 15_000, laterMs: 300 },
      // Long enough to outlast the fresh supervisor's start on a loaded machine, so it is paused too.
      { ms: 6_000, laterMs: 300 },
    ]);
    await stale.waitFor(() => startedJobs(stale).length >= 2, 10_000, 'both jobs running');
    const fresh = await startSupervisorProcess(db.url);

    stale.signal('SIGSTOP');
    // The fresh supervisor ends the stale leader's session, leads, reaps, and runs both jobs again.
    for (const job of [long!, short!]) {
      await fresh.waitFor((l) => l.event === 'job:started' && l.id === job.id && l.attempt === 2, 10_000, `job ${job.id} attempt 2`);
    }
    const resumeMark = stale.lines.length;
    const resumedAt = Date.now();
    stale.signal('SIGCONT');

    const aborted = await stale.waitFor(
      (l) => l.event === 'job:finished' && l.id === long!.id && l.attempt === 1,
      5_000,
      'the stale attempt to end',
      resumeMark,
    );
    expect(aborted.outcome).toBe('lost');
    expect(aborted.state).toBeNull();
    // The next heartbeat after SIGCONT (its timer is overdue) finds the job gone and aborts the thread.
    expect(aborted.receivedAt - resumedAt).toBeLessThan(HEARTBEAT_MS + 1_000);
    for (const job of [long!, short!]) {
      await stale.waitFor((l) => l.event === 'claim:lost' && l.id === job.id && l.attempt === 1, 5_000, `lost claim of ${job.id}`);
    }

    const done = await waitAll(client, [long!, short!], 10_000);
    for (const job of done) {
      expect(job.state).toBe('succeeded');
      expect(job.attempt).toBe(2);
      expect(job.output).toEqual({ attempt: 2, pid: fresh.pid });
    }
    const attempts = await expectConsistent(db.pool, done);
    expect(attempts.map((a) => [a.attempt, a.outcome, a.worker_id])).toEqual([
      [1, 'lost', stale.id],
      [2, 'succeeded', fresh.id],
      [1, 'lost', stale.id],
      [2, 'succeeded', fresh.id],
    ]);

    // The stale supervisor lives on, counted both lost claims, follows, and can work again.
    const snapshot = await stale.snapshot();
    expect(actor(snapshot, 'supervisor').state).toMatchObject({ lostClaims: 2, leader: false });
    expect(stale.all((l) => l.event === 'leader:changed' && l.leader === false).length).toBe(1);
    const staleSide = actor(snapshot, 'elector').state;
    expect(staleSide).toMatchObject({ leader: false });
    const after = await enqueueSleeps(client, Array.from({ length: 4 }, () => ({ ms: 200 })));
    const afterDone = await waitAll(client, after, 10_000);
    expect(afterDone.map((j) => j.state)).toEqual(['succeeded', 'succeeded', 'succeeded', 'succeeded']);
  }, 40_000);

  it('survives pg_terminate_backend on every one of its connections, re-LISTENs, and finishes every job once', async () => {
    // Polling is off (1 min): after the cut, only a new LISTEN can tell the supervisor about new jobs.
    const sup = await startSupervisorProcess(db.url, { pollMs: 60_000 });
    await sup.waitFor((l) => l.event === 'leader:changed' && l.leader === true, 5_000, 'leadership');
    const jobs = await enqueueSleeps(client, Array.from({ length: 8 }, () => ({ ms: 300 })));
    await sup.waitFor(() => startedJobs(sup).length >= 2, 10_000, 'jobs running');

    const terminate = async () => {
      const { rows } = await db.pool.query<{ application_name: string }>(
        `SELECT application_name, pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name LIKE 'spindle:%'`,
      );
      return rows.map((r) => r.application_name.split(':')[1]);
    };
    const listening = async (exceptPids: number[]) => {
      const { rows } = await db.pool.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity
          WHERE datname = current_database() AND application_name LIKE 'spindle:listener:%' AND query LIKE 'LISTEN %'
            AND NOT (pid = ANY($1::int[]))`,
        [exceptPids],
      );
      return rows.map((r) => r.pid);
    };
    const firstListener = await listening([]);
    expect(firstListener.length).toBe(1);

    const cut = await terminate();
    expect(new Set(cut)).toEqual(new Set(['supervisor', 'listener', 'elector']));
    await sup.waitFor(() => startedJobs(sup).length >= 5, 10_000, 'more jobs after the first cut');
    expect(new Set(await terminate())).toContain('listener');

    const done = await waitAll(client, jobs, 15_000);
    expect(done.map((j) => j.state)).toEqual(jobs.map(() => 'succeeded'));
    await expectConsistent(db.pool, done);

    // A new LISTEN connection, then a job enqueued now is claimed at once (NOTIFY), not at the next poll.
    await until(async () => (await listening(firstListener)).length > 0, 5_000, 'a new LISTEN connection');
    const [late] = await enqueueSleeps(client, [{ ms: 10 }]);
    const lateDone = await client.waitFor(late!.id, { timeoutMs: 5_000 });
    expect(lateDone.state).toBe('succeeded');

    const snapshot = await sup.snapshot();
    expect(actor(snapshot, 'listener').state).toMatchObject({ connected: true });
    expect(Number(actor(snapshot, 'listener').state!.reconnects)).toBeGreaterThanOrEqual(1);
    expect(actor(snapshot, 'supervisor').status).toBe('running');
    expect(sup.exitStatus).toBeNull();
  }, 40_000);

  it('client.waitFor outlives its connection being cut: it listens again and resolves when the job ends', async () => {
    // One connection: the waiter's subscription holds it, so the session named here is the one waiting.
    const pool = new pg.Pool({ connectionString: db.url, application_name: 'faults-waiter', max: 1 });
    pool.on('error', () => {});
    const waiter = createClient({ pool });
    try {
      const job = await waiter.enqueue('nobody-runs-this', {});
      // Settled into a value at once: an early rejection must not go unhandled.
      const waiting = waiter.waitFor(job.id, { timeoutMs: 30_000 }).then(
        (done) => done,
        (error: unknown) => error,
      );
      // The session, other than `old`, that has read the job after its LISTEN.
      const nextWaitingSession = async (old: number | undefined, what: string): Promise<number> => {
        let pid: number | undefined;
        await until(
          async () => {
            const { rows } = await db.pool.query<{ pid: number }>(
              `SELECT pid FROM pg_stat_activity WHERE application_name = 'faults-waiter' AND query = 'SELECT * FROM spindle.jobs WHERE id = $1'`,
            );
            pid = rows.find((r) => r.pid !== old)?.pid;
            return pid !== undefined;
          },
          10_000,
          what,
        );
        return pid!;
      };
      const terminate = (pid: number) => db.pool.query('SELECT pg_terminate_backend($1)', [pid]);
      const first = await nextWaitingSession(undefined, 'the waiter to wait');
      await terminate(first);
      const second = await nextWaitingSession(first, 'the waiter to wait on a new connection');
      await terminate(second);
      await nextWaitingSession(second, 'the waiter to wait once more');
      // Ended from elsewhere: the notification reaches the waiter on its newest connection.
      await createClient({ pool: db.pool }).cancel(job.id, 'ended by the test');
      expect(await waiting).toMatchObject({ id: job.id, state: 'cancelled' });
    } finally {
      await pool.end();
    }
  });

  it('retention deletes only what is old enough, in batches', async () => {
    const HOUR = 3_600_000;
    const DAY = 24 * HOUR;
    const insert = async (state: string, count: number, finishedAgoMs: number | null) => {
      const { rows } = await db.pool.query<{ id: string }>(
        `INSERT INTO spindle.jobs (type, state, attempt, max_attempts, created_at, finished_at)
         SELECT 'sleep', $1, 1, 1, now() - interval '90 days',
                CASE WHEN $3::bigint IS NULL THEN NULL ELSE now() - $3::bigint * interval '1 millisecond' END
           FROM generate_series(1, $2)
         RETURNING id::text`,
        [state, count, finishedAgoMs],
      );
      await db.pool.query(
        `INSERT INTO spindle.attempt_log (job_id, attempt, outcome, started_at)
         SELECT id, 1, $2, now() - interval '90 days'
           FROM unnest($1::bigint[]) AS id`,
        [rows.map((r) => r.id), state],
      );
      return rows.map((r) => r.id);
    };
    // succeeded: kept 1 h here (option); the other states keep their defaults (30 days).
    const gone = [
      ...(await insert('succeeded', 450, 2 * HOUR)),
      ...(await insert('failed', 5, 31 * DAY)),
      ...(await insert('timed_out', 5, 31 * DAY)),
      ...(await insert('cancelled', 5, 31 * DAY)),
    ];
    const kept = [
      ...(await insert('succeeded', 5, 30 * 60_000)),
      ...(await insert('failed', 5, 29 * DAY)),
      ...(await insert('timed_out', 5, 29 * DAY)),
      ...(await insert('cancelled', 5, 10 * DAY)),
    ];
    // Queued long ago but never finished: not the retention's business (no supervisor serves 'sleep'
    // here would make the unknown-type rule apply, so it is served).
    kept.push(...(await db.pool.query<{ id: string }>(
      `INSERT INTO spindle.jobs (type, state, created_at, run_at) VALUES ('sleep', 'queued', now() - interval '90 days', now() + interval '1 day') RETURNING id::text`,
    )).rows.map((r) => r.id));

    const sup = await startSupervisorProcess(db.url, { logLevel: 'info', retentionMs: { succeeded: HOUR } });
    const deleted = new Map<string, number>();
    for (const state of ['succeeded', 'failed', 'timed_out', 'cancelled']) {
      const line = await sup.waitFor(
        (l) => l.msg === 'deleted finished jobs past their retention' && l.state === state,
        10_000,
        `retention of ${state}`,
      );
      deleted.set(state, Number(line.deleted));
    }
    expect(Object.fromEntries(deleted)).toEqual({ succeeded: 450, failed: 5, timed_out: 5, cancelled: 5 });
    const { rows } = await db.pool.query<{ id: string }>('SELECT id::text FROM spindle.jobs ORDER BY id');
    expect(rows.map((r) => r.id)).toEqual([...kept].sort((a, b) => Number(a) - Number(b)));
    const orphans = await attemptsOf(db.pool, gone);
    expect(orphans).toEqual([]);
  }, 40_000);

  it('fails a job of a type nobody serves, but not while a supervisor that serves it is starting', async () => {
    const GRACE_MS = 3_000;
    const old = await startSupervisorProcess(db.url, { workers: { sleep: SLEEP }, unknownTypeGraceMs: GRACE_MS });
    const nobody = await client.enqueue('nobody', {});

    const failed = await client.waitFor(nobody.id, { timeoutMs: 15_000 });
    expect(failed.state).toBe('failed');
    expect(failed.error?.message).toBe('unknown job type "nobody"');
    expect(failed.attempt).toBe(0);
    expect(await attemptsOf(db.pool, [failed.id])).toEqual([]);
    // It waited out the grace (by the database's clock) before it failed.
    const { rows } = await db.pool.query<{ waited: number }>(
      `SELECT (extract(epoch FROM finished_at - created_at) * 1000)::float8 AS waited FROM spindle.jobs WHERE id = $1`,
      [failed.id],
    );
    expect(rows[0]!.waited).toBeGreaterThanOrEqual(GRACE_MS);

    // The old supervisor has now been up longer than the grace: a rolling deploy enqueues a new type
    // while the supervisor that serves it is still starting. The job waits for it instead of failing.
    const mystery = await client.enqueue('mystery', { ms: 50 });
    const starting = track(new SupervisorProcess(
      supervisorOptions(db.url, { workers: { mystery: SLEEP }, unknownTypeGraceMs: GRACE_MS }),
    ));
    const done = await client.waitFor(mystery.id, { timeoutMs: 15_000 });
    await starting.ready(BOOT_TIMEOUT_MS);
    expect(done.state).toBe('succeeded');
    expect(done.attempt).toBe(1);
    expect(done.output).toEqual({ attempt: 1, pid: starting.pid });
    expect(old.exitStatus).toBeNull();
  }, 40_000);
});

describe('a restart of the (embedded) PostgreSQL in the middle of a run', () => {
  let dir: string;
  let server: EmbeddedServer | undefined;

  afterEach(async () => {
    for (const p of processes) {
      p.signal('SIGKILL');
      await p.exited;
    }
    await server?.stop().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  });

  it('never runs one attempt number twice when the server crashes right after a claim (immediate shutdown)', async () => {
    dir = await mkdtemp(join(tmpdir(), 'spindle-faults-pg-'));
    await chmod(dir, 0o755);
    // Commits synchronous, as in production (fsync may stay off: the operating system survives); the
    // WAL writer slow, so an asynchronous commit would stay in memory until the crash takes it.
    const durable = { stateDir: dir, fast: true, postgresFlags: ['-c', 'synchronous_commit=on', '-c', 'wal_writer_delay=10000'] };
    server = await startEmbedded(durable);
    const { url, port } = server;
    await migrate(url);
    const pool = new pg.Pool({ connectionString: url, max: 2 });
    pool.on('error', () => {});
    const file = join(dir, 'ledger');
    const ledger = () => (existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n') : []);
    try {
      const sup = await startSupervisorProcess(url, { concurrency: 2 });
      const client = createClient({ connectionString: url });
      // An idle supervisor claims the jobs as they come: no outcome is written after their claims,
      // whose commit would carry the claims to disk as well.
      const jobs = await client.enqueueMany(Array.from({ length: 2 }, () => ({ type: 'ledger', input: { file, ms: 1_000 } })));
      await client.close();
      // Right after the claims, while the handlers run (the ledger has their lines): the crash.
      await sup.waitFor(() => startedJobs(sup).length >= 2, 20_000, 'both jobs to start');
      const crashed = server.pid!;
      process.kill(crashed, 'SIGQUIT');
      const running = startedJobs(sup).map((j) => j.id);
      await until(async () => !isAlive(crashed), 10_000, 'the postmaster to exit');
      // Its user (this test's handle) starts it again, on the same port.
      await until(async () => server!.pid !== crashed && isAlive(server!.pid!), 30_000, 'the server back');
      expect(server.port).toBe(port);

      await until(
        async () => (await pool.query(`SELECT count(*)::int AS n FROM spindle.jobs WHERE state NOT IN ('succeeded', 'failed')`)).rows[0].n === 0,
        60_000,
        'every job to end',
      );
      const runs = ledger();
      expect(runs.filter((run, i) => runs.indexOf(run) !== i)).toEqual([]);
      const { rows } = await pool.query<{ state: string; n: number }>('SELECT state, count(*)::int AS n FROM spindle.jobs GROUP BY state');
      expect(rows).toEqual([{ state: 'succeeded', n: jobs.length }]);
      console.log(`[faults] immediate shutdown while jobs ${running.join(', ')} ran: ${runs.length} runs in the ledger, none twice`);
      await sup.stop();
    } finally {
      await pool.end();
    }
  }, 90_000);

  it('reconnects and brings every job to a final state, each attempt recorded once', async () => {
    dir = await mkdtemp(join(tmpdir(), 'spindle-faults-pg-'));
    // As root, PostgreSQL runs as `postgres`, which must traverse the dir (mkdtemp makes it 0700).
    await chmod(dir, 0o755);
    server = await startEmbedded({ stateDir: dir, fast: true });
    const { url, port } = server;
    await migrate(url);
    const pool = new pg.Pool({ connectionString: url, max: 2 });
    pool.on('error', () => {});
    const client = createClient({ connectionString: url });
    try {
      // The leader serves another type: the jobs run on the worker, whose heartbeat is slower than
      // the leader's (it is judged by its own interval, 3 x 700 ms).
      const leader = await startSupervisorProcess(url, { workers: { other: SLEEP } });
      await leader.waitFor((l) => l.event === 'leader:changed' && l.leader === true, 5_000, 'leadership');
      const workerHeartbeatMs = 700;
      const workerLeaseMs = 3 * workerHeartbeatMs;
      const sup = await startSupervisorProcess(url, { heartbeatMs: workerHeartbeatMs, leaseMs: workerLeaseMs });
      const jobs = await enqueueSleeps(client, Array.from({ length: 8 }, () => ({ ms: 700 })));
      await sup.waitFor(() => startedJobs(sup).length >= 2, 10_000, 'jobs running');

      // A wait that spans the outage: its connection ends with the server, and it connects again.
      const waiting = client.waitFor(jobs.at(-1)!.id, { timeoutMs: 60_000 }).then(
        (done) => done,
        (error: unknown) => error,
      );
      const mark = sup.lines.length;
      await server.stop();
      // Down for longer than the lease and than 3 of the worker's heartbeats (counted from its first
      // failed heartbeat): when the server is back, every lease has expired and the worker looks dead.
      // The jobs it runs finish meanwhile; their outcomes wait to be written.
      const firstFailure = await sup.waitFor((l) => l.msg === 'heartbeat failed', 10_000, 'a failed heartbeat', mark);
      const downMs = workerLeaseMs + 2 * workerHeartbeatMs;
      await sup.waitFor(
        (l) => l.msg === 'heartbeat failed' && l.receivedAt - firstFailure.receivedAt >= downMs,
        downMs + 10_000,
        `heartbeats failing for ${downMs} ms`,
        mark,
      );
      expect(sup.all((l) => l.event === 'job:finished').length).toBeGreaterThanOrEqual(2);
      server = await startEmbedded({ stateDir: dir, port, fast: true });
      expect(server.port).toBe(port);

      const done = await waitAll(client, jobs, 20_000);
      expect(done.map((j) => j.state)).toEqual(jobs.map(() => 'succeeded'));
      expect(await waiting).toMatchObject({ id: jobs.at(-1)!.id, state: 'succeeded' });
      const attempts = await expectConsistent(pool, done);
      const lost = attempts.filter((a) => a.outcome === 'lost');
      console.log(`[faults] PostgreSQL restart: ${jobs.length} jobs, ${attempts.length} attempts, ${lost.length} lost`);
      // Down for more than a lease, the worker gave up the claims of the jobs it was still running
      // (it cannot tell an outage from being cut off, while another supervisor may take them back):
      // those attempts, and only those, are recorded lost. The jobs that finished meanwhile keep
      // their outcome: the server's restart is not taken for the worker's death.
      const stopped = sup.all((l) => l.event === 'job:finished' && l.outcome === 'lost').map((l) => String(l.id));
      expect(lost.map((a) => String(a.job_id)).sort()).toEqual(stopped.sort());

      const [late] = await enqueueSleeps(client, [{ ms: 10 }]);
      expect((await client.waitFor(late!.id, { timeoutMs: 10_000 })).state).toBe('succeeded');
      expect(sup.exitStatus).toBeNull();
      expect(leader.exitStatus).toBeNull();
      await sup.stop();
      await leader.stop();
      expect(sup.exitStatus).toEqual({ code: 0, signal: null });
      expect(leader.exitStatus).toEqual({ code: 0, signal: null });
      const { rows } = await pool.query('SELECT id FROM spindle.supervisors');
      expect(rows).toEqual([]);
    } finally {
      await client.close();
      await pool.end();
    }
  }, 60_000);
});
