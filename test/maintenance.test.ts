/**
 * The maintenance actors one tick at a time, River's way: each test sets up rows in SQL, calls the
 * actor's runOnce() (the method its own timer loop calls) on an actor that is not started, with a
 * fixed clock, and asserts what the tables hold afterwards. Nothing here waits for a timer.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Completer, type CompletedBatch } from '../src/actors/completer.ts';
import { Elector } from '../src/actors/elector.ts';
import { Heartbeat, type BeatResult } from '../src/actors/heartbeat.ts';
import type { Clock } from '../src/clock.ts';
import { Listener } from '../src/actors/listener.ts';
import { Progress } from '../src/actors/progress.ts';
import { Reaper, type SweepResult } from '../src/actors/reaper.ts';
import { Scheduler } from '../src/actors/scheduler.ts';
import { createClient, type Client } from '../src/client.ts';
import { claimJobs } from '../src/db/claims.ts';
import type { ReapedJob } from '../src/db/maintenance.ts';
import type { JobState } from '../src/job.ts';
import type { Finish } from '../src/db/outcomes.ts';
import { registerSupervisor, type SupervisorRecord } from '../src/db/supervisors.ts';
import { DEFAULT_WORKFLOW_LIMITS } from '../src/workflows/limits.ts';
import { parseSchedule, WorkflowRegistry } from '../src/workflows/registry.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';

let db: TestDatabase;
let client: Client;

beforeAll(async () => {
  db = await createTestDatabase();
  client = createClient({ connectionString: db.url });
});

afterAll(async () => {
  await client.close();
  await db.drop();
});

/** A clock that moves only when a test moves it. */
function fixedClock(iso: string): Clock & { set(iso: string): void; advance(ms: number): void } {
  let now = Date.parse(iso);
  return {
    now: () => now,
    set: (to) => {
      now = Date.parse(to);
    },
    advance: (ms) => {
      now += ms;
    },
  };
}

/**
 * What a supervisor registers. A heartbeat of 1 s (3 s unseen is dead) by default, so the reaper's
 * wait after a server restart is short; other tests' supervisors may die meanwhile, so the sweeps'
 * lists of the dead are checked for what a test made, not for equality.
 */
function record(id: string, types: string[] = [], heartbeatMs = 1_000): SupervisorRecord {
  return { id, host: 'test', pid: 1, version: 'test', queues: [], types, concurrency: 1, heartbeatMs };
}

/** Jobs enqueued and claimed by `supervisorId`: what a supervisor holds while their attempts run. */
async function claimed(supervisorId: string, type: string, n: number, maxAttempts = 3): Promise<{ id: string; attempt: number }[]> {
  await client.enqueueMany(Array.from({ length: n }, (_, i) => ({ type, input: i, options: { maxAttempts } })));
  const rows = await claimJobs(db.pool, { supervisorId, queues: [], types: [{ type, maxAttempts }], limit: n, leaseMs: 60_000 });
  expect(rows).toHaveLength(n);
  return rows.map((r) => ({ id: r.id, attempt: r.attempt })).sort((a, b) => Number(a.id) - Number(b.id));
}

/** The rows of some jobs, by id. */
async function jobRows(ids: string[]) {
  const { rows } = await db.pool.query<{
    id: string;
    state: string;
    attempt: number;
    worker_id: string | null;
    output: unknown;
    error: { name: string; message: string } | null;
    progress: number | null;
    progress_message: string | null;
    lease_s: number | null;
    run_in_s: number;
  }>(
    `SELECT id::text, state, attempt, worker_id, output, error, progress, progress_message,
            extract(epoch FROM lease_expires_at - now())::float8 AS lease_s,
            extract(epoch FROM run_at - now())::float8 AS run_in_s
       FROM spindle.jobs WHERE id = ANY($1::bigint[]) ORDER BY id`,
    [ids],
  );
  return rows;
}

/** Seconds since a supervisor's row was last seen, or null when it has no row. */
async function unseenFor(id: string): Promise<number | null> {
  const { rows } = await db.pool.query<{ s: number }>(
    `SELECT extract(epoch FROM now() - last_seen_at)::float8 AS s FROM spindle.supervisors WHERE id = $1`,
    [id],
  );
  return rows[0]?.s ?? null;
}

function newReaper(
  selfId: string,
  clock: Clock,
  reaped: ReapedJob[] = [],
  isLeader = () => true,
  retentionMs: Partial<Record<JobState, number>> = { succeeded: 60_000 },
): Reaper {
  return new Reaper({
    db: db.pool,
    selfId,
    intervalMs: 1_000,
    unknownTypeGraceMs: 3_600_000,
    backoff: { baseMs: 60_000, maxMs: 60_000 },
    backoffByType: {},
    retentionMs,
    isLeader,
    onReaped: (jobs) => reaped.push(...jobs),
    clock,
  });
}

describe('heartbeat', () => {
  it('marks its row seen and extends the leases of the jobs it holds', async () => {
    const clock = fixedClock('2030-01-02T03:04:05.000Z');
    const rec = record('hb-live');
    await registerSupervisor(db.pool, rec);
    const jobs = await claimed(rec.id, 'hb-live-type', 2);
    await db.pool.query(`UPDATE spindle.supervisors SET last_seen_at = now() - interval '1 hour' WHERE id = $1`, [rec.id]);
    await db.pool.query(`UPDATE spindle.jobs SET lease_expires_at = now() + interval '1 second' WHERE worker_id = $1`, [rec.id]);
    const beats: BeatResult[] = [];
    const heartbeat = new Heartbeat({ db: db.pool, record: rec, intervalMs: 1_000, leaseMs: 60_000, claims: () => jobs, onBeat: (r) => beats.push(r), clock });

    const result = await heartbeat.runOnce();

    expect(result.registeredAgain).toBe(false);
    expect(result.held.map((h) => h.id).sort()).toEqual(jobs.map((j) => j.id).sort());
    expect(beats).toEqual([result]);
    expect(await unseenFor(rec.id)).toBeLessThan(10);
    for (const row of await jobRows(jobs.map((j) => j.id))) expect(row.lease_s).toBeGreaterThan(50);
    expect(heartbeat.snapshot().state).toMatchObject({ beats: 1, failures: 0, lastBeatAt: '2030-01-02T03:04:05.000Z' });
  });

  it('notices it was declared dead: registers again, and a job taken back meanwhile is not among those it holds', async () => {
    const clock = fixedClock('2030-01-02T03:04:05.000Z');
    const rec = record('hb-paused');
    await registerSupervisor(db.pool, rec);
    const jobs = await claimed(rec.id, 'hb-paused-type', 2);
    // A pause: unseen for an hour, and the lease of one job ended meanwhile. The leader sweeps.
    await db.pool.query(`UPDATE spindle.supervisors SET last_seen_at = now() - interval '1 hour' WHERE id = $1`, [rec.id]);
    await db.pool.query(`UPDATE spindle.jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1`, [jobs[0]!.id]);
    const sweep = await newReaper('hb-leader', clock).runOnce();
    expect(sweep.deadSupervisors).toContain(rec.id);
    expect(sweep.reaped.map((j) => j.id)).toEqual([jobs[0]!.id]);
    expect(await unseenFor(rec.id)).toBeNull();

    const heartbeat = new Heartbeat({ db: db.pool, record: rec, intervalMs: 1_000, leaseMs: 60_000, claims: () => jobs, onBeat: () => {}, clock });
    const result = await heartbeat.runOnce();

    expect(result.registeredAgain).toBe(true);
    expect(result.asked).toEqual(jobs);
    expect(result.held.map((h) => h.id)).toEqual([jobs[1]!.id]);
    expect(await unseenFor(rec.id)).toBeLessThan(10);
    const [taken, kept] = await jobRows(jobs.map((j) => j.id));
    expect(taken).toMatchObject({ state: 'queued', lease_s: null });
    expect(kept).toMatchObject({ state: 'running', worker_id: rec.id });
    expect(kept!.lease_s).toBeGreaterThan(50);
    // A second beat finds its row there.
    expect((await heartbeat.runOnce()).registeredAgain).toBe(false);
  });

  it('counts the live supervisors, itself included, leaving out those unseen for three of their heartbeats', async () => {
    const rec = record('hb-count');
    const heartbeat = new Heartbeat({ db: db.pool, record: rec, intervalMs: 1_000, leaseMs: 60_000, claims: () => [], onBeat: () => {} });
    const before = (await heartbeat.runOnce()).liveSupervisors;
    expect(before).toBeGreaterThanOrEqual(1);
    const others = ['hb-count-a', 'hb-count-b', 'hb-count-c', 'hb-count-gone'].map((id) => record(id));
    for (const other of others) await registerSupervisor(db.pool, other);
    await db.pool.query(`UPDATE spindle.supervisors SET last_seen_at = now() - interval '1 hour' WHERE id = 'hb-count-gone'`);
    expect((await heartbeat.runOnce()).liveSupervisors).toBe(before + 3);
    // Unseen for 3.5 of its 1 s heartbeats: dead, though no sweep has removed it yet.
    await db.pool.query(`UPDATE spindle.supervisors SET last_seen_at = now() - interval '3.5 seconds' WHERE id = 'hb-count-c'`);
    expect((await heartbeat.runOnce()).liveSupervisors).toBe(before + 2);
  });
});

describe('reaper', () => {
  it('takes back jobs whose lease ended: a retry after the backoff, a failure when no attempts are left', async () => {
    const clock = fixedClock('2030-01-02T03:04:05.000Z');
    const holder = record('rp-holder', ['rp-type']);
    await registerSupervisor(db.pool, holder);
    const [retried] = await claimed(holder.id, 'rp-type', 1, 3);
    const [lastTry] = await claimed(holder.id, 'rp-type', 1, 1);
    const [leased] = await claimed(holder.id, 'rp-type', 1, 3);
    await db.pool.query(`UPDATE spindle.jobs SET lease_expires_at = now() - interval '1 second' WHERE id = ANY($1::bigint[])`, [
      [retried!.id, lastTry!.id],
    ]);
    const told: ReapedJob[] = [];
    const reaper = newReaper('rp-leader', clock, told);

    const result = await reaper.runOnce();

    expect(result.leader).toBe(true);
    expect(result.deadSupervisors).not.toContain(holder.id);
    const byId = new Map(result.reaped.map((j) => [j.id, j]));
    expect(byId.get(retried!.id)).toMatchObject({ state: 'queued', attempt: 1, worker_id: holder.id, orphaned: false });
    expect(byId.get(lastTry!.id)).toMatchObject({ state: 'failed', attempt: 1, orphaned: false });
    expect(byId.has(leased!.id)).toBe(false);
    expect(told).toEqual(result.reaped);

    const [r, f, l] = await jobRows([retried!.id, lastTry!.id, leased!.id]);
    // 60 s backoff for a first attempt, with a jitter of 0.75 to 1.25 capped at the maximum.
    expect(r).toMatchObject({ state: 'queued', lease_s: null, error: { name: 'LostError' } });
    expect(r!.run_in_s).toBeGreaterThan(44);
    expect(r!.run_in_s).toBeLessThanOrEqual(60);
    expect(f).toMatchObject({ state: 'failed', error: { name: 'LostError' } });
    expect(l).toMatchObject({ state: 'running', worker_id: holder.id });
    const { rows: log } = await db.pool.query<{ job_id: string; outcome: string }>(
      `SELECT job_id::text, outcome FROM spindle.attempt_log WHERE job_id = ANY($1::bigint[]) ORDER BY job_id`,
      [[retried!.id, lastTry!.id, leased!.id]],
    );
    expect(log).toEqual([
      { job_id: retried!.id, outcome: 'lost' },
      { job_id: lastTry!.id, outcome: 'lost' },
    ]);
    expect(reaper.snapshot().state).toMatchObject({ sweeps: 1, reaped: 2, lastSweepAt: '2030-01-02T03:04:05.000Z' });

    // What was taken back is not taken back again.
    expect((await reaper.runOnce()).reaped).toEqual([]);
  });

  it('removes supervisors that stopped heartbeating (never itself), takes back their jobs, applies retention; does nothing when not leading', async () => {
    const clock = fixedClock('2030-01-02T03:04:05.000Z');
    const dead = record('rp-dead');
    const self = record('rp-self');
    await registerSupervisor(db.pool, dead);
    await registerSupervisor(db.pool, self);
    const [orphan] = await claimed(dead.id, 'rp-orphan-type', 1);
    const old = await client.enqueue('rp-old', null);
    await db.pool.query(
      `UPDATE spindle.jobs SET state = 'succeeded', finished_at = now() - interval '1 hour', output = 'null' WHERE id = $1`,
      [old.id],
    );
    await db.pool.query(`UPDATE spindle.supervisors SET last_seen_at = now() - interval '1 hour' WHERE id = ANY($1::text[])`, [
      [dead.id, self.id],
    ]);
    await db.pool.query(`UPDATE spindle.jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1`, [orphan!.id]);

    let leading = false;
    const reaper = newReaper(self.id, clock, [], () => leading);
    expect(await reaper.runOnce()).toEqual({
      leader: false,
      deadSupervisors: [],
      reaped: [],
      unknownTypeFailed: [],
      deleted: 0,
      deletedRuns: 0,
      deletedCronTicks: 0,
      deletedThrottleWindows: 0,
    });
    expect(await unseenFor(dead.id)).not.toBeNull();

    leading = true;
    const result: SweepResult = await reaper.runOnce();

    expect(result.deadSupervisors).toContain(dead.id);
    expect(result.deadSupervisors).not.toContain(self.id);
    expect(result.reaped).toEqual([expect.objectContaining({ id: orphan!.id, state: 'queued', orphaned: true })]);
    expect(result.deleted).toBe(1);
    expect(await unseenFor(dead.id)).toBeNull();
    expect(await unseenFor(self.id)).not.toBeNull();
    expect(await jobRows([old.id])).toEqual([]);
    expect((await jobRows([orphan!.id]))[0]).toMatchObject({ state: 'queued', lease_s: null, error: { name: 'LostError' } });
  });

  it('applies retention to finished workflow runs, their steps and events, and to cron ticks but the newest of each schedule', async () => {
    const clock = fixedClock('2030-01-02T03:04:05.000Z');
    const runs: [string, string, string | null][] = [
      ['rt-old-ok', 'succeeded', '1 hour'],
      ['rt-old-compensation-failed', 'compensation_failed', '1 hour'],
      ['rt-new-ok', 'succeeded', '1 second'],
      ['rt-running', 'running', null],
    ];
    for (const [id, state, age] of runs) {
      await db.pool.query(
        `INSERT INTO spindle.workflow_runs (id, name, state, finished_at)
         VALUES ($1, 'rt', $2, now() - $3::interval)`,
        [id, state, age],
      );
      await db.pool.query(`INSERT INTO spindle.workflow_steps (run_id, seq, name, kind, state) VALUES ($1, 1, 's', 'step', 'succeeded')`, [id]);
    }
    // A run that failed its compensation takes the retention of failed.
    const reaper = newReaper('rp-retention', clock, [], () => true, { succeeded: 60_000, failed: 1_000 });
    await db.pool.query(
      `INSERT INTO spindle.cron_ticks (schedule, tick_at, created_at) VALUES
         ('rt-every-minute', now() - interval '3 hours', now() - interval '3 hours'),
         ('rt-every-minute', now() - interval '2 hours', now() - interval '2 hours'),
         ('rt-hourly', now() - interval '5 hours', now() - interval '5 hours')`,
    );

    const result = await reaper.runOnce();

    expect(result.deletedRuns).toBe(2);
    const { rows: left } = await db.pool.query(`SELECT id FROM spindle.workflow_runs WHERE name = 'rt' ORDER BY id`);
    expect(left.map((r) => r.id)).toEqual(['rt-new-ok', 'rt-running']);
    const { rows: steps } = await db.pool.query(`SELECT run_id FROM spindle.workflow_steps WHERE run_id LIKE 'rt-%' ORDER BY run_id`);
    expect(steps.map((r) => r.run_id)).toEqual(['rt-new-ok', 'rt-running']);
    expect(result.deletedCronTicks).toBe(1);
    const { rows: ticks } = await db.pool.query(`SELECT schedule, tick_at < now() - interval '150 minutes' AS oldest FROM spindle.cron_ticks WHERE schedule LIKE 'rt-%' ORDER BY schedule`);
    expect(ticks).toEqual([
      { schedule: 'rt-every-minute', oldest: false },
      { schedule: 'rt-hourly', oldest: true },
    ]);
  });
});

describe('reaper: throttle windows', () => {
  it('deletes ended windows, and keeps past its retention a finished job whose window is open', async () => {
    const clock = fixedClock('2030-01-02T03:04:05.000Z');
    const open = await client.enqueue('rt-throttled', 1, { throttle: { key: 'rt-open', windowMs: 3_600_000 } });
    const ended = await client.enqueue('rt-throttled', 2, { throttle: { key: 'rt-ended', windowMs: 3_600_000 } });
    await db.pool.query(
      `UPDATE spindle.jobs SET state = 'succeeded', finished_at = now() - interval '1 hour', output = 'null' WHERE id = ANY($1::bigint[])`,
      [[open.id, ended.id]],
    );
    await db.pool.query(`UPDATE spindle.throttle_windows SET ends_at = now() - interval '1 second' WHERE key = 'rt-ended'`);

    const result = await newReaper('rp-throttle', clock).runOnce();

    expect(result.deletedThrottleWindows).toBe(1);
    const { rows: windows } = await db.pool.query(`SELECT key FROM spindle.throttle_windows WHERE key LIKE 'rt-%'`);
    expect(windows).toEqual([{ key: 'rt-open' }]);
    expect((await jobRows([open.id, ended.id])).map((r) => r.id)).toEqual([open.id]);
    // Enqueues of the open window's key still return its job.
    expect(await client.enqueue('rt-throttled', 3, { throttle: { key: 'rt-open', windowMs: 1 } })).toMatchObject({ id: open.id });
  });
});

describe('elector', () => {
  function newElector(supervisorId: string, changes: boolean[], clock: Clock): Elector {
    return new Elector({
      session: { connectionString: db.url },
      supervisorId,
      intervalMs: 60_000,
      deadAfterMs: 3_000,
      onChange: (leader) => changes.push(leader),
      clock,
    });
  }

  /** Ends what is left of the electors' sessions (an actor never started has no onStop to do it). */
  async function endElectorSessions(): Promise<void> {
    await db.pool.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE datname = current_database() AND application_name LIKE 'spindle:elector:%'`,
    );
  }

  it('takes the lead when it is free, not while a live supervisor holds it, and from one that stopped heartbeating; the deposed one gives it up', async () => {
    const clock = fixedClock('2030-01-02T03:04:05.000Z');
    // Heartbeats of a minute: only the one made stale below counts as dead.
    await registerSupervisor(db.pool, record('el-a', [], 60_000));
    await registerSupervisor(db.pool, record('el-b', [], 60_000));
    const aChanges: boolean[] = [];
    const bChanges: boolean[] = [];
    const a = newElector('el-a', aChanges, clock);
    const b = newElector('el-b', bChanges, clock);
    try {
      expect(await a.runOnce()).toEqual({ leader: true, changed: true, staleLeadersEnded: [] });
      expect(await b.runOnce()).toEqual({ leader: false, changed: false, staleLeadersEnded: [] });
      expect(await a.runOnce()).toEqual({ leader: true, changed: false, staleLeadersEnded: [] });
      expect(a.isLeader).toBe(true);
      expect(a.snapshot().state).toMatchObject({ leader: true, elections: 1, lastChangeAt: '2030-01-02T03:04:05.000Z' });

      // el-a stops heartbeating (a pause): el-b ends its session and leads.
      await db.pool.query(`UPDATE spindle.supervisors SET last_seen_at = now() - interval '1 hour' WHERE id = 'el-a'`);
      clock.advance(5_000);
      expect(await b.runOnce()).toEqual({ leader: true, changed: true, staleLeadersEnded: ['el-a'] });
      expect(bChanges).toEqual([true]);

      // el-a comes back: its session is gone, so it does not lead, and it cannot take the lead back.
      expect((await a.runOnce()).leader).toBe(false);
      expect(await a.runOnce()).toEqual({ leader: false, changed: false, staleLeadersEnded: [] });
      expect(aChanges).toEqual([true, false]);
      expect(a.isLeader).toBe(false);
      expect(a.snapshot().state).toMatchObject({ leader: false, lastChangeAt: '2030-01-02T03:04:10.000Z' });
    } finally {
      await endElectorSessions();
    }
  });

  it('gives up the lead when it stops, so another supervisor leads at its next tick', async () => {
    const clock = fixedClock('2030-01-02T03:04:05.000Z');
    await registerSupervisor(db.pool, record('el-c', [], 60_000));
    await registerSupervisor(db.pool, record('el-d', [], 60_000));
    const dChanges: boolean[] = [];
    const d = newElector('el-d', dChanges, clock);
    // Started, as in a supervisor: its first tick runs at start; the test waits for its report.
    let led!: () => void;
    const leading = new Promise<void>((resolve) => (led = resolve));
    const cChanges: boolean[] = [];
    const c = new Elector({
      session: { connectionString: db.url },
      supervisorId: 'el-c',
      intervalMs: 60_000,
      deadAfterMs: 3_000,
      onChange: (leader) => {
        cChanges.push(leader);
        if (leader) led();
      },
      clock,
    });
    try {
      await c.start();
      await leading;
      expect((await d.runOnce()).leader).toBe(false);
      await c.stop();
      expect(cChanges).toEqual([true, false]);
      expect(await d.runOnce()).toEqual({ leader: true, changed: true, staleLeadersEnded: [] });
    } finally {
      await c.stop();
      await endElectorSessions();
    }
  });
});

describe('completer', () => {
  it('writes a batch of outcomes in one statement, fenced: the outcome of an attempt taken back is refused', async () => {
    const supervisorId = 'cp-worker';
    const jobs = await claimed(supervisorId, 'cp-type', 3);
    const [done, retry, stale] = jobs;
    // The third job's attempt 1 was taken back, and this same supervisor runs it again as attempt 2:
    // only the attempt tells the stale outcome from the current one.
    await db.pool.query(`UPDATE spindle.jobs SET attempt = attempt + 1 WHERE id = $1`, [stale!.id]);
    const batches: CompletedBatch[] = [];
    const completer = new Completer({ db: db.pool, supervisorId, onBatch: (b) => batches.push(b) });
    const finishes: Finish[] = [
      { ...done!, outcome: 'succeeded', nextState: 'succeeded', outputJson: '{"ok":1}', logs: null },
      { ...retry!, outcome: 'failed', nextState: 'queued', error: { name: 'Error', message: 'boom' }, delayMs: 30_000, logs: 'a line\n' },
      { ...stale!, outcome: 'succeeded', nextState: 'succeeded', outputJson: '{"ok":"stale"}', logs: null },
    ];
    for (const f of finishes) completer.add(f);
    expect(completer.held()).toEqual(jobs);

    const batch = await completer.runOnce();

    expect(batch).not.toBeNull();
    expect(batch!.written.map((f) => f.id)).toEqual([done!.id, retry!.id]);
    expect(batch!.notWritten.map((f) => f.id)).toEqual([stale!.id]);
    expect(batch!.cancelledInstead).toEqual([]);
    expect(batches).toEqual([batch]);
    const [d, r, s] = await jobRows(jobs.map((j) => j.id));
    expect(d).toMatchObject({ state: 'succeeded', output: { ok: 1 }, lease_s: null });
    expect(r).toMatchObject({ state: 'queued', lease_s: null, error: { name: 'Error', message: 'boom' } });
    expect(r!.run_in_s).toBeGreaterThan(25);
    expect(s).toMatchObject({ state: 'running', attempt: 2, worker_id: supervisorId, output: null });
    const { rows: log } = await db.pool.query<{ job_id: string; outcome: string }>(
      `SELECT job_id::text, outcome FROM spindle.attempt_log WHERE job_id = ANY($1::bigint[])`,
      [jobs.map((j) => j.id)],
    );
    expect(log).toEqual([{ job_id: retry!.id, outcome: 'failed' }]);
    expect(completer.snapshot().state).toMatchObject({ pending: 0, written: 2, notWritten: 1, batches: 1 });

    // Nothing left: the next tick writes nothing.
    expect(await completer.runOnce()).toBeNull();
    await completer.stop();
  });
});

describe('progress', () => {
  it("flushes each job's latest progress only, in one statement, fenced on the attempt", async () => {
    const supervisorId = 'pg-worker';
    const [first, second, gone] = await claimed(supervisorId, 'pg-type', 3);
    // Reports arrive as messages, so the actor runs (its timer too far off to fire); flush() is
    // runOnce() through the mailbox, after the reports sent before it.
    const progress = new Progress({ db: db.pool, supervisorId, flushMs: 3_600_000 });
    await progress.start();
    try {
      progress.report({ ...first!, percent: 10, message: 'early', data: null, logs: null });
      progress.report({ ...first!, percent: 60, message: 'latest', data: { step: 2 }, logs: null });
      progress.report({ ...second!, percent: 30, message: 'current attempt', data: null, logs: null });
      // An older attempt never replaces a newer one.
      progress.report({ ...second!, attempt: second!.attempt - 1, percent: 90, message: 'older attempt', data: null, logs: null });
      // A job finished meanwhile (by another writer) is fenced out.
      await db.pool.query(`UPDATE spindle.jobs SET state = 'succeeded', finished_at = now() WHERE id = $1`, [gone!.id]);
      progress.report({ ...gone!, percent: 99, message: 'too late', data: null, logs: null });

      expect(await progress.flush(10_000)).toEqual({ updates: 3, rowsWritten: 2, failed: false });

      const [a, b, c] = await jobRows([first!.id, second!.id, gone!.id]);
      expect(a).toMatchObject({ progress: 60, progress_message: 'latest' });
      expect(b).toMatchObject({ progress: 30, progress_message: 'current attempt' });
      expect(c).toMatchObject({ state: 'succeeded', progress: null, progress_message: null });
      expect(progress.snapshot().state).toMatchObject({ reports: 5, statements: 1, rowsWritten: 2, dirty: 0 });
      // What was written is not written again.
      expect(await progress.runOnce()).toEqual({ updates: 0, rowsWritten: 0, failed: false });
    } finally {
      await progress.stop();
    }
  });
});

describe('listener', () => {
  it('connects, LISTENs and hands each notification over as it arrives', async () => {
    const connects: boolean[] = [];
    const notes: [string, string][] = [];
    let noted!: () => void;
    const arrived = new Promise<void>((resolve) => (noted = resolve));
    const listener = new Listener({
      connectionString: db.url,
      channels: ['spindle_jobs', 'spindle_cancel'],
      applicationName: 'spindle:listener:mt',
      onNotification: (channel, payload) => {
        notes.push([channel, payload]);
        noted();
      },
      onConnect: (reconnected) => connects.push(reconnected),
    });
    try {
      expect(await listener.runOnce()).toEqual({ connected: true, reconnected: false, channels: ['spindle_jobs', 'spindle_cancel'] });
      expect(connects).toEqual([false]);
      const { rows } = await db.pool.query(
        `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'spindle:listener:mt'`,
      );
      expect(rows).toHaveLength(1);
      // Already connected: nothing to do.
      expect((await listener.runOnce()).connected).toBe(false);
      expect(connects).toEqual([false]);

      await db.pool.query(`SELECT pg_notify('spindle_cancel', '{"id":"1"}')`);
      await arrived;
      expect(notes).toEqual([['spindle_cancel', '{"id":"1"}']]);
      expect(listener.snapshot().state).toMatchObject({ connected: true, notifications: 1, reconnects: 0 });
    } finally {
      // Started and stopped, so its onStop closes the connection (its start finds it open).
      await listener.start();
      await listener.stop();
    }
  });
});

describe('scheduler', () => {
  it('enqueues a due cron tick once, and not again for the same tick, whoever fires it', async () => {
    const clock = fixedClock('2030-01-02T03:04:30.000Z');
    const schedule = parseSchedule('* * * * *', undefined, 'test');
    const make = (id: string, isLeader = () => true) =>
      new Scheduler({
        db: db.pool,
        selfId: id,
        workflows: new WorkflowRegistry(),
        schedules: [{ key: 'job:mt-cron', target: { kind: 'job', type: 'mt-cron' }, schedule }],
        limits: DEFAULT_WORKFLOW_LIMITS,
        leaseMs: 10_000,
        pollMs: 10_000,
        isLeader,
        clock,
      });
    const cronJobs = async () =>
      (await db.pool.query<{ key: string }>(`SELECT key FROM spindle.jobs WHERE type = 'mt-cron' ORDER BY id`)).rows.map((r) => r.key);
    const one = make('sc-1');

    // A schedule never fired starts now: nothing is due yet.
    expect(await one.runOnce()).toEqual({ leader: true, fired: [], skipped: 0 });
    expect(await make('sc-follower', () => false).runOnce()).toEqual({ leader: false, fired: [], skipped: 0 });

    clock.advance(60_000);
    const check = await one.runOnce();
    expect(check.fired).toEqual([{ schedule: 'job:mt-cron', tickAt: new Date('2030-01-02T03:05:00.000Z'), id: expect.any(String) }]);
    expect(await cronJobs()).toEqual(['cron:job:mt-cron:2030-01-02T03:05:00Z']);

    // The same tick again: from this scheduler, and from another that never fired anything.
    expect((await one.runOnce()).fired).toEqual([]);
    expect((await make('sc-2').runOnce()).fired).toEqual([]);

    // Two schedulers at once on the next tick: one job between them.
    clock.advance(60_000);
    const both = await Promise.all([one.runOnce(), make('sc-3').runOnce()]);
    expect(both.flatMap((c) => c.fired).map((f) => f.tickAt.toISOString())).toEqual(['2030-01-02T03:06:00.000Z']);
    expect(await cronJobs()).toEqual(['cron:job:mt-cron:2030-01-02T03:05:00Z', 'cron:job:mt-cron:2030-01-02T03:06:00Z']);
    const { rows } = await db.pool.query(`SELECT tick_at FROM spindle.cron_ticks WHERE schedule = 'job:mt-cron'`);
    expect(rows).toHaveLength(2);
  });
});
