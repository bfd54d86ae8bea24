/**
 * Cron: the parser (5 fields, and 6 with seconds, the extension these tests use to tick fast),
 * time zones, and exactly one job per tick however many schedulers fire it.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Scheduler } from '../src/actors/scheduler.ts';
import { ValidationError } from '../src/errors.ts';
import { startSupervisor, type SupervisorHandle } from '../src/start.ts';
import { nextTick, parseCron, ticksBetween } from '../src/workflows/cron.ts';
import { DEFAULT_WORKFLOW_LIMITS } from '../src/workflows/limits.ts';
import { parseSchedule, WorkflowRegistry } from '../src/workflows/registry.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';

const WORKERS = fileURLToPath(new URL('./fixtures/workflow-workers', import.meta.url));
const at = (iso: string) => Date.parse(iso);
const iso = (ms: number) => new Date(ms).toISOString();

describe('cron expressions', () => {
  it('steps, lists and ranges', () => {
    const every15 = parseCron('*/15 * * * *');
    expect(iso(nextTick(every15, at('2024-05-01T10:07:30Z')))).toBe('2024-05-01T10:15:00.000Z');
    expect(iso(nextTick(every15, at('2024-05-01T10:45:00Z')))).toBe('2024-05-01T11:00:00.000Z');
    const weekdays = parseCron('30 9,17 * * 1-5');
    // 2024-05-03 is a Friday: the next one after its 17:30 is Monday 09:30.
    expect(iso(nextTick(weekdays, at('2024-05-03T17:30:00Z')))).toBe('2024-05-06T09:30:00.000Z');
    expect(iso(nextTick(parseCron('0 0 1-10/3 * *'), at('2024-05-02T00:00:00Z')))).toBe('2024-05-04T00:00:00.000Z');
    // Both day fields restricted: either matches (the 13th, or a Friday).
    expect(iso(nextTick(parseCron('0 0 13 * 5'), at('2024-05-01T00:00:00Z')))).toBe('2024-05-03T00:00:00.000Z');
    expect(iso(nextTick(parseCron('0 0 * * 7'), at('2024-05-01T00:00:00Z')))).toBe('2024-05-05T00:00:00.000Z');
    expect(iso(nextTick(parseCron('*/20 * * * * *'), at('2024-05-01T00:00:41Z')))).toBe('2024-05-01T00:01:00.000Z');
  });

  it('wall-clock times in a time zone, across a DST change', () => {
    const nine = parseCron('0 9 * * *', 'America/New_York');
    expect(iso(nextTick(nine, at('2024-03-09T12:00:00Z')))).toBe('2024-03-09T14:00:00.000Z'); // EST
    expect(iso(nextTick(nine, at('2024-03-09T15:00:00Z')))).toBe('2024-03-10T13:00:00.000Z'); // EDT
  });

  it('rejects bad expressions, zones and options with messages that say why', () => {
    expect(() => parseCron('* * * *')).toThrow(/5 fields \(or 6 with seconds\), got 4/);
    expect(() => parseCron('61 * * * *')).toThrow(/minute field "61".*0-59/);
    expect(() => parseCron('*/0 * * * *')).toThrow(ValidationError);
    expect(() => parseCron('x * * * *')).toThrow(/not \*, a number, a range or a step/);
    expect(() => parseCron('* * * * *', 'Mars/Base')).toThrow(/IANA time zone/);
    expect(() => nextTick(parseCron('0 0 30 2 *'), 0)).toThrow(/never fires/);
    expect(() => parseSchedule({ cron: '* * * * *', catchUp: -1 }, undefined, 'worker "w"')).toThrow(/catchUp/);
  });

  it('after a gap, keeps the newest ticks up to the limit and counts the rest as skipped', () => {
    const minutely = parseCron('* * * * *');
    const { ticks, skipped } = ticksBetween(minutely, at('2024-05-01T00:00:00Z'), at('2024-05-01T00:10:00Z'), 3);
    expect(ticks.map(iso)).toEqual(['2024-05-01T00:08:00.000Z', '2024-05-01T00:09:00.000Z', '2024-05-01T00:10:00.000Z']);
    expect(skipped).toBe(7);
  });
});

describe('cron ticks in the database', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db.drop();
  });

  it('two schedulers that both think they lead fire one job per tick', async () => {
    let now = at('2024-05-01T00:00:30Z');
    const clock = { now: () => now };
    const schedule = parseSchedule({ cron: '* * * * *', catchUp: 10 }, undefined, 'test');
    const make = (id: string) =>
      new Scheduler({
        db: db.pool,
        selfId: id,
        workflows: new WorkflowRegistry(),
        schedules: [{ key: 'job:race', target: { kind: 'job', type: 'race' }, schedule }],
        limits: DEFAULT_WORKFLOW_LIMITS,
        leaseMs: 10_000,
        pollMs: 10_000,
        isLeader: () => true,
        clock,
      });
    const schedulers = [make('a'), make('b')];
    await Promise.all(schedulers.map((s) => s.start()));
    const checks = () => schedulers.map((s) => s.snapshot().state!.cronChecks);
    const afterChecks = async (n: number) => {
      const base = checks();
      while (checks().some((c, i) => c < base[i]! + n)) await new Promise((resolve) => setTimeout(resolve, 20));
    };
    try {
      await afterChecks(1);
      now = at('2024-05-01T00:05:10Z'); // five ticks due: 00:01 .. 00:05
      await afterChecks(2);
      now = at('2024-05-01T00:06:00Z'); // one more, exactly on time
      await afterChecks(2);
    } finally {
      await Promise.all(schedulers.map((s) => s.stop()));
    }
    const { rows } = await db.pool.query<{ key: string }>(`SELECT key FROM spindle.jobs WHERE type = 'race' ORDER BY key`);
    expect(rows.map((r) => r.key)).toEqual(
      ['01', '02', '03', '04', '05', '06'].map((m) => `cron:job:race:2024-05-01T00:${m}:00Z`),
    );
    const fired = schedulers.map((s) => s.snapshot().state!.cronFired);
    expect(fired[0]! + fired[1]!).toBe(6);
  });

  it('two supervisors, the leader stopped midway: one job per tick (6-field schedule, every second)', async () => {
    const options = {
      databaseUrl: db.url,
      workers: WORKERS,
      workflows: {},
      heartbeatMs: 250,
      leaseMs: 2_500,
      reaperIntervalMs: 200,
      pollMs: 100,
      concurrency: 1,
      socket: false as const,
      logLevel: 'silent' as const,
      shutdownTimeoutMs: 1_000,
    };
    const supervisors: SupervisorHandle[] = [await startSupervisor(options), await startSupervisor(options)];
    const ticks = async () => (await db.pool.query(`SELECT count(*)::int AS n FROM spindle.jobs WHERE type = 'tick'`)).rows[0].n as number;
    const reach = async (n: number) => {
      const deadline = Date.now() + 15_000;
      while ((await ticks()) < n) {
        if (Date.now() > deadline) throw new Error(`fewer than ${n} ticks fired`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    };
    try {
      await reach(3);
      const leader = supervisors.find((s) => s.supervisor.isLeader)!;
      expect(leader).toBeDefined();
      await leader.stop();
      supervisors.splice(supervisors.indexOf(leader), 1);
      const before = await ticks();
      await reach(before + 3);
    } finally {
      for (const s of supervisors) await s.stop();
    }
    const { rows } = await db.pool.query(
      `SELECT count(*)::int AS jobs, count(DISTINCT key)::int AS keys FROM spindle.jobs WHERE type = 'tick'`,
    );
    expect(rows[0].jobs).toBe(rows[0].keys);
    const { rows: perTick } = await db.pool.query(
      `SELECT t.tick_at, count(j.id)::int AS n FROM spindle.cron_ticks t
         LEFT JOIN spindle.jobs j ON j.key = 'cron:job:tick:' || to_char(t.tick_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
        WHERE t.schedule = 'job:tick' GROUP BY t.tick_at`,
    );
    expect(perTick.length).toBe(rows[0].jobs);
    expect(perTick.every((r) => r.n === 1)).toBe(true);
  }, 40_000);
});
