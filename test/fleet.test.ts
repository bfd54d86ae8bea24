/**
 * Fleet mode: supervisors whose hot statements go through PgBouncer in transaction pooling mode
 * (any version: 1.18 carries no named statement from one transaction to the next), with LISTEN and
 * the leader lock on one direct session each. The pooler has two server connections for both
 * supervisors, so their statements take turns on each other's sessions. The heavy version (fifty
 * supervisors, ten killed) is bench/fleet.ts.
 */
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../src/client.ts';
import { resolveConfig } from '../src/config.ts';
import { LEADER_SESSION_SQL } from '../src/db/leader.ts';
import { ValidationError } from '../src/errors.ts';
import { createLogger } from '../src/logger.ts';
import { startSupervisor, type SupervisorHandle } from '../src/start.ts';
import { withSettingsPerStatement } from '../src/db/pooler.ts';
import { createTestDatabase, serverUrl, type TestDatabase } from './helpers/database.ts';
import { findPgBouncer, startPgBouncer, type PgBouncer } from './helpers/pgbouncer.ts';

const FLEET_JOB = fileURLToPath(new URL('./fixtures/fleet-workers/fleet-job.mjs', import.meta.url));
/** Server connections PgBouncer may open for both supervisors. */
const POOL_SIZE = 2;
/** Connections of the test's own, told apart from the supervisors' by this name. */
const OWN = 'fleet-test';

describe('fleet mode options', () => {
  it('names the field of a bad pooler, and of the session URL transaction pooling needs', () => {
    const url = 'postgres://u@127.0.0.1:6432/db';
    expect(() => resolveConfig({ databaseUrl: url, pooler: 'transactions' as 'transaction' }, {})).toThrow(
      new ValidationError('options.pooler', 'must be one of none, session, transaction, got "transactions"'),
    );
    expect(() => resolveConfig({ databaseUrl: url, pooler: 'transaction' }, {})).toThrow(/^options\.sessionDatabaseUrl is required with options\.pooler 'transaction'/);
    expect(() => resolveConfig({ pooler: 'transaction', sessionDatabaseUrl: url }, {})).toThrow(/^options\.databaseUrl must be the pooler's URL/);
    expect(() => resolveConfig({ databaseUrl: url, pooler: 'transaction', sessionDatabaseUrl: '' }, {})).toThrow(/^options\.sessionDatabaseUrl must be a PostgreSQL URL/);
    expect(resolveConfig({}, { DATABASE_URL: url, SPINDLE_POOLER: 'transaction', SPINDLE_SESSION_DATABASE_URL: url })).toMatchObject({
      pooler: 'transaction',
      sessionDatabaseUrl: url,
    });
    expect(resolveConfig({}, {}).pooler).toBe('none');
  });
});

describe('statements with their settings in one round trip', () => {
  it('writes values as literals that read back as they were, and the settings hold for that statement alone', async () => {
    const pool = new pg.Pool({ connectionString: serverUrl(), max: 1 });
    try {
      const tricky = ['plain', "it's", 'back\\slash', 'quote"d', 'a,b', '{braces}', 'NULL', '', 'ünï', '$1'];
      const db = withSettingsPerStatement(pool, 'SET LOCAL enable_sort = off; SET LOCAL jit = off');
      const { rows } = await db.query<{ arr: string[]; one: string; n: number; neg: number; ints: number[]; empty: string[]; sort: string }>({
        name: 'ignored',
        text: `SELECT $1::text[] AS arr, $2::text AS one, $3::int AS n, 1-$4 AS neg, $5::int[] AS ints, $6::text[] AS empty,
                      current_setting('enable_sort') AS sort`,
        values: [tricky, "x'; DROP TABLE y; --", 42, -5, [1, -2, 3], []],
      });
      expect(rows).toEqual([{ arr: tricky, one: "x'; DROP TABLE y; --", n: 42, neg: 6, ints: [1, -2, 3], empty: [], sort: 'off' }]);
      expect((await pool.query<{ sort: string }>(`SELECT current_setting('enable_sort') AS sort`)).rows[0]!.sort).toBe('on');
    } finally {
      await pool.end();
    }
  });
});

const pgbouncer = findPgBouncer();
if (!pgbouncer) console.warn('test/fleet.test.ts: fleet mode tests SKIPPED, pgbouncer is not installed (apt-get install pgbouncer)');

describe.skipIf(!pgbouncer)('fleet mode through PgBouncer in transaction mode', () => {
  let db: TestDatabase;
  let bouncer: PgBouncer;
  let direct: Client;
  let pooled: Client;
  let sampler: pg.Pool;
  const ledger = join(tmpdir(), `spindle-fleet-test-${process.pid}.ledger`);
  const handles: SupervisorHandle[] = [];
  /** What the supervisors logged: a statement the pooler cannot carry fails, is logged, and is retried. */
  const logged: { msg: string; err?: { message: string } }[] = [];
  const logSink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logged.push(JSON.parse(line) as (typeof logged)[number]);
      done();
    },
  });
  const errorsLogged = () => logged.filter((l) => l.err).map((l) => `${l.msg}: ${l.err!.message}`);

  const start = async (id: string) => {
    const handle = await startSupervisor({
      id,
      databaseUrl: bouncer.url(new URL(db.url).pathname.slice(1)),
      sessionDatabaseUrl: db.url,
      pooler: 'transaction',
      workers: { 'fleet-job': FLEET_JOB },
      concurrency: 1,
      heartbeatMs: 200,
      leaseMs: 1_000,
      reaperIntervalMs: 200,
      // Only a NOTIFY wakes an idle supervisor within a test's time.
      pollMs: 60_000,
      socket: false,
      logger: createLogger('warn', logSink),
    });
    handles.push(handle);
    return handle;
  };

  /** Backends of the test database that are not the test's own: the supervisors' sessions and the pooler's. */
  const serverConnections = async () => {
    const { rows } = await sampler.query<{ application_name: string }>(
      `SELECT application_name FROM pg_stat_activity
        WHERE datname = current_database() AND backend_type = 'client backend' AND application_name NOT LIKE '${OWN}%'`,
    );
    return rows.map((r) => r.application_name);
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    bouncer = await startPgBouncer({ serverUrl: db.url, poolSize: POOL_SIZE });
    rmSync(ledger, { force: true });
    // Threads read the ledger's path from the environment they start with.
    process.env.SPINDLE_FLEET_LEDGER = ledger;
    const named = new URL(db.url);
    named.searchParams.set('application_name', OWN);
    direct = new Client({ connectionString: named.toString() });
    sampler = new pg.Pool({ connectionString: named.toString(), max: 1 });
    // Enqueues through the pooler too: the Client names no statement either.
    pooled = new Client({ connectionString: bouncer.url(new URL(db.url).pathname.slice(1)) });
    await Promise.all([start('fleet-a'), start('fleet-b')]);
  });

  afterAll(async () => {
    for (const handle of handles) await handle.stop();
    await Promise.all([direct?.close(), pooled?.close(), sampler?.end()]);
    await bouncer?.stop();
    await db?.drop();
    rmSync(ledger, { force: true });
    delete process.env.SPINDLE_FLEET_LEDGER;
  });

  it('runs every job exactly once, on one session per supervisor and the pooler’s two', async () => {
    const jobs = await pooled.enqueueMany(Array.from({ length: 200 }, () => ({ type: 'fleet-job', input: { ms: 2 } })));
    let most = 0;
    let sampling = true;
    const sampled = (async () => {
      while (sampling) {
        most = Math.max(most, (await serverConnections()).length);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    try {
      await Promise.all(jobs.map((j) => direct.waitFor(j.id, { timeoutMs: 20_000 })));
    } finally {
      sampling = false;
      await sampled;
    }

    const { rows } = await db.pool.query<{ state: string; attempt: number; n: number }>(
      `SELECT state, attempt, count(*)::int AS n FROM spindle.jobs GROUP BY state, attempt`,
    );
    expect(errorsLogged()).toEqual([]);
    expect(rows).toEqual([{ state: 'succeeded', attempt: 1, n: 200 }]);
    const runs = new Map<string, number>();
    for (const line of readFileSync(ledger, 'utf8').trim().split('\n')) {
      const id = line.split(' ')[0]!;
      runs.set(id, (runs.get(id) ?? 0) + 1);
    }
    expect(runs.size).toBe(200);
    expect([...runs.values()].every((n) => n === 1)).toBe(true);

    // One session each, for LISTEN and the leader lock together, named as the elector's; no listener of its own.
    const sessions = await serverConnections();
    expect(sessions.filter((n) => n.startsWith('spindle:elector:')).sort()).toEqual(['spindle:elector:fleet-a', 'spindle:elector:fleet-b']);
    expect(sessions.some((n) => n.startsWith('spindle:listener:'))).toBe(false);
    expect(most).toBeLessThanOrEqual(2 + POOL_SIZE);
  });

  it('wakes an idle supervisor by NOTIFY on its session (the poll is a minute away)', async () => {
    const job = await pooled.enqueue('fleet-job', { ms: 0 });
    const done = await direct.waitFor(job.id, { timeoutMs: 15_000 });
    expect(done.state).toBe('succeeded');
    const listeners = handles.map((h) => h.snapshot().actors.children.find((a) => a.name === 'listener'));
    expect(listeners.map((l) => (l?.state as { connected: boolean } | undefined)?.connected)).toEqual([true, true]);
  });

  it('claims a limited type through claim_limited, its settings set per statement', async () => {
    await direct.setLimits('fleet-job', { globalConcurrency: 1 });
    try {
      const jobs = await pooled.enqueueMany(Array.from({ length: 20 }, () => ({ type: 'fleet-job', input: { ms: 1 } })));
      const done = await Promise.all(jobs.map((j) => direct.waitFor(j.id, { timeoutMs: 15_000 })));
      expect(done.map((j) => j.state)).toEqual(jobs.map(() => 'succeeded'));
      expect(errorsLogged()).toEqual([]);
    } finally {
      await direct.clearLimits('fleet-job');
    }
  });

  it('elects one leader on the shared sessions, and another when it stops', async () => {
    const leaderSession = async () => (await sampler.query<{ application_name: string }>(LEADER_SESSION_SQL)).rows.map((r) => r.application_name);
    const until = async (check: () => boolean) => {
      while (!check()) await new Promise((resolve) => setTimeout(resolve, 20));
    };
    await until(() => handles.some((h) => h.supervisor.isLeader));
    const [leader, other] = handles[0]!.supervisor.isLeader ? [handles[0]!, handles[1]!] : [handles[1]!, handles[0]!];
    expect(other.supervisor.isLeader).toBe(false);
    expect(await leaderSession()).toEqual([`spindle:elector:${leader.id}`]);

    const takeover = new Promise<void>((resolve) =>
      other.supervisor.events.on('leader:changed', (e) => {
        if (e.leader) resolve();
      }),
    );
    await leader.stop();
    handles.splice(handles.indexOf(leader), 1);
    await takeover;
    expect(await leaderSession()).toEqual([`spindle:elector:${other.id}`]);
    expect(errorsLogged()).toEqual([]);
  });
});
