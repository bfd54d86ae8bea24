/**
 * Flow control against the database: the limited claim under concurrent claimers, limits set by
 * modules and operators, pauses, why a job waits, and bad input (named, nothing written). The
 * multi-process runs are in flow-limits.test.ts.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type Client } from '../src/client.ts';
import { CLAIM_CONNECTION_OPTIONS, claimJobs } from '../src/db/claims.ts';
import { claimLimited } from '../src/db/limits.ts';
import { ValidationError } from '../src/errors.ts';
import { validateOptions } from '../src/pool/registry.ts';
import { startSupervisor, type SupervisorHandle } from '../src/start.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';
import { eventually } from './helpers/processes.ts';

const BIN = fileURLToPath(new URL('../bin/spindle.mjs', import.meta.url));
const FLOW_WORKERS = fileURLToPath(new URL('./fixtures/flow-workers/', import.meta.url));

let db: TestDatabase;
let client: Client;
let claimers: pg.Pool;

beforeAll(async () => {
  db = await createTestDatabase();
  client = createClient({ connectionString: db.url });
  claimers = new pg.Pool({ connectionString: db.url, max: 12, options: CLAIM_CONNECTION_OPTIONS });
  claimers.on('error', () => {});
});

afterEach(async () => {
  await db.pool.query('TRUNCATE spindle.jobs, spindle.limits, spindle.limit_starts CASCADE');
});

afterAll(async () => {
  await claimers?.end();
  await client?.close();
  await db?.drop();
});

async function n(sql: string, values: unknown[] = []): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(sql, values);
  return rows[0]!.n;
}

const running = (type: string) => n("SELECT count(*)::int AS n FROM spindle.jobs WHERE state = 'running' AND type = $1", [type]);

function claimOf(type: string, want: number, supervisorId = 's1', queues: string[] = []) {
  return claimLimited(claimers, {
    scope: { kind: 'type', name: type },
    supervisorId,
    queues,
    types: [{ type, maxAttempts: 3 }],
    want,
    leaseMs: 30_000,
  });
}

describe('the limited claim', () => {
  it('never claims past globalConcurrency with 12 claimers at once, and a finished job frees its slot', async () => {
    await client.setLimits('t', { globalConcurrency: 3 });
    await client.enqueueMany(Array.from({ length: 100 }, () => ({ type: 't' })));
    const claims = await Promise.all(Array.from({ length: 12 }, (_, i) => claimOf('t', 5, `s${i}`)));
    expect(claims.reduce((sum, c) => sum + c.jobs.length, 0)).toBe(3);
    expect(await running('t')).toBe(3);

    await db.pool.query("UPDATE spindle.jobs SET state = 'succeeded' WHERE id = (SELECT min(id) FROM spindle.jobs WHERE state = 'running')");
    const again = await Promise.all(Array.from({ length: 12 }, (_, i) => claimOf('t', 5, `s${i}`)));
    expect(again.reduce((sum, c) => sum + c.jobs.length, 0)).toBe(1);
    expect(await running('t')).toBe(3);
  });

  it('the plain claim leaves limited and paused types alone', async () => {
    await client.setLimits('t', { globalConcurrency: 3 });
    await client.pause('p');
    await client.enqueueMany([...Array.from({ length: 5 }, () => ({ type: 't' })), { type: 'p' }, { type: 'free' }]);
    const types = ['t', 'p', 'free', 'other'].map((type) => ({ type, maxAttempts: 3 }));
    const rows = await claimJobs(claimers, { supervisorId: 's', queues: [], types, limit: 50, leaseMs: 30_000 });
    expect(rows.map((r) => r.type)).toEqual(['free']);
    // Type by type (while scopes are limited or paused): the same rule, and claim order across types.
    await client.enqueueMany([{ type: 'other', options: { priority: 1 } }, { type: 'free' }, { type: 'other' }]);
    const byType = await claimJobs(claimers, { supervisorId: 's', queues: [], types, limit: 2, leaseMs: 30_000, byType: true });
    expect(byType.map((r) => r.type)).toEqual(['other', 'free']);
    expect((await claimOf('p', 5)).jobs).toEqual([]);
  });

  it('keyConcurrency 1: one running job per key, keys taken round-robin, jobs without a key in their turn', async () => {
    await client.setLimits('k', { keyConcurrency: 1 });
    await client.enqueueMany([
      ...Array.from({ length: 9 }, (_, i) => ({ type: 'k', options: { concurrencyKey: `c${i % 3}` } })),
      { type: 'k' },
    ]);
    const first = await claimOf('k', 10);
    expect(first.jobs).toHaveLength(4);
    const keys = (await db.pool.query<{ k: string | null }>("SELECT concurrency_key AS k FROM spindle.jobs WHERE state = 'running' ORDER BY k")).rows.map((r) => r.k);
    expect(keys).toEqual(['c0', 'c1', 'c2', null]);
    expect((await claimOf('k', 10)).jobs).toEqual([]);
    expect(await client.waitingFor((await client.list({ state: 'queued', limit: 1 }))[0]!.id)).toMatch(/^waiting for a slot: key c\d at 1\/1$/);
  });

  it('a rate limit holds starts inside its window and says when the next is allowed', async () => {
    await client.setLimits('r', { rateLimit: { limit: 4, intervalMs: 60_000 } });
    await client.enqueueMany(Array.from({ length: 10 }, () => ({ type: 'r' })));
    expect((await claimOf('r', 3)).jobs).toHaveLength(3);
    await db.pool.query("UPDATE spindle.jobs SET state = 'succeeded' WHERE state = 'running'");
    const second = await claimOf('r', 3);
    expect(second.jobs).toHaveLength(1);
    const third = await claimOf('r', 3);
    expect(third.jobs).toHaveLength(0);
    expect(third.retryMs).toBeGreaterThan(50_000);
    const queued = (await client.list({ state: 'queued', limit: 1 }))[0]!;
    expect(await client.waitingFor(queued.id)).toBe('rate limit: 4 per 1 min (type r)');
  });

  it('a queue limit caps every type in it, limited types included', async () => {
    await client.setLimits('queue:q', { globalConcurrency: 2 });
    await client.setLimits('a', { globalConcurrency: 10 });
    await client.enqueueMany([
      ...Array.from({ length: 3 }, () => ({ type: 'a', options: { queue: 'q' } })),
      ...Array.from({ length: 3 }, () => ({ type: 'b', options: { queue: 'q' } })),
    ]);
    const byQueue = () =>
      claimLimited(claimers, { scope: { kind: 'queue', name: 'q' }, supervisorId: 's', queues: [], types: [{ type: 'b', maxAttempts: 3 }], want: 5, leaseMs: 30_000 });
    const results = await Promise.all([claimOf('a', 5), byQueue(), claimOf('a', 5), byQueue()]);
    expect(results.reduce((sum, r) => sum + r.jobs.length, 0)).toBe(2);
    expect(await n("SELECT count(*)::int AS n FROM spindle.jobs WHERE state = 'running'")).toBe(2);
  });

  it('passes over a job another writer holds (a debounced enqueue pushing it later), without waiting for it', async () => {
    await client.setLimits('d', { globalConcurrency: 5 });
    const [held, free] = await client.enqueueMany([{ type: 'd' }, { type: 'd' }]);
    const writer = await db.pool.connect();
    try {
      await writer.query('BEGIN');
      await writer.query('SELECT id FROM spindle.jobs WHERE id = $1 FOR UPDATE', [held!.id]);
      expect((await claimOf('d', 5)).jobs.map((j) => j.id)).toEqual([free!.id]);
      await writer.query("UPDATE spindle.jobs SET run_at = now() + interval '1 minute' WHERE id = $1", [held!.id]);
      await writer.query('COMMIT');
    } finally {
      writer.release();
    }
    // Pushed later while it was held: not claimed early.
    expect((await claimOf('d', 5)).jobs).toEqual([]);
  });

  it('a lost job (its supervisor dead) frees its slot when the reaper ends it', async () => {
    await client.setLimits('t', { globalConcurrency: 1 });
    await client.enqueueMany([{ type: 't' }, { type: 't' }]);
    expect((await claimOf('t', 5, 'dead')).jobs).toHaveLength(1);
    expect((await claimOf('t', 5, 'alive')).jobs).toHaveLength(0);
    // What the reaper writes of a lost attempt with attempts left: queued again.
    await db.pool.query("UPDATE spindle.jobs SET state = 'queued', worker_id = NULL, lease_expires_at = NULL WHERE worker_id = 'dead'");
    expect((await claimOf('t', 5, 'alive')).jobs).toHaveLength(1);
  });
});

describe('limits set by modules and by operators', () => {
  let handle: SupervisorHandle | undefined;
  afterEach(async () => {
    await handle?.stop();
    handle = undefined;
  });

  it("a supervisor writes its modules' limits; an operator's win field by field, null lifts one, clear brings the module's back", async () => {
    handle = await startSupervisor({ databaseUrl: db.url, workers: FLOW_WORKERS, concurrency: 1, logLevel: 'silent', socket: false });
    const limited = () => client.limits().then((rows) => rows.find((r) => r.kind === 'type' && r.name === 'limited')!);
    expect((await limited()).limits).toEqual({ globalConcurrency: 3 });
    expect((await client.limits()).find((r) => r.name === 'rated')!.limits).toEqual({ rateLimit: { limit: 20, intervalMs: 1000 } });

    await client.setLimits('limited', { globalConcurrency: 1, keyConcurrency: 2 });
    expect((await limited()).limits).toEqual({ globalConcurrency: 1, keyConcurrency: 2 });
    await client.setLimits('limited', { globalConcurrency: null });
    expect((await limited()).limits).toEqual({ keyConcurrency: 2 });
    expect(await client.clearLimits('limited')).toBe(true);
    expect((await limited()).limits).toEqual({ globalConcurrency: 3 });
    expect(await client.clearLimits('limited')).toBe(false);
  });

  it('a limited type is not starved by a flood of unlimited jobs that keeps every thread and the prefetch full', async () => {
    await client.enqueueMany(Array.from({ length: 400 }, () => ({ type: 'plain', input: { ledger: '/dev/null', ms: 20 } })));
    handle = await startSupervisor({ databaseUrl: db.url, workers: FLOW_WORKERS, concurrency: 1, logLevel: 'silent', socket: false });
    expect(await eventually(async () => (await n("SELECT count(*)::int AS n FROM spindle.jobs WHERE state = 'succeeded'")) > 20, 20_000)).toBe(true);
    const limited = await client.enqueue('limited', { ledger: '/dev/null', ms: 0 });
    expect((await client.waitFor(limited.id, { timeoutMs: 20_000 })).state).toBe('succeeded');
    expect(await n("SELECT count(*)::int AS n FROM spindle.jobs WHERE type = 'plain' AND state = 'queued'")).toBeGreaterThan(100);
  });

  it('pause: no supervisor claims a paused type; running jobs finish; resume claims at once', async () => {
    handle = await startSupervisor({ databaseUrl: db.url, workers: FLOW_WORKERS, concurrency: 2, logLevel: 'silent', socket: false, pollMs: 60_000 });
    expect(await client.pause('plain')).toBe(true);
    expect(await client.pause('plain')).toBe(false);
    const job = await client.enqueue('plain', { ledger: '/dev/null', ms: 0 });
    expect(await client.waitingFor(job.id)).toBe('paused: type plain');
    // The supervisor was woken by the enqueue, and a paused type is left: still queued after its claim.
    expect(await eventually(async () => (await client.get(job.id))!.state !== 'queued', 500)).toBe(false);
    expect(await client.resume('plain')).toBe(true);
    // With a minute between polls, only the resume's notification can have claimed it.
    expect((await client.waitFor(job.id, { timeoutMs: 10_000 })).state).toBe('succeeded');
  });
});

describe('bad input gets a clear error and writes nothing', () => {
  const bad: [string, () => Promise<unknown>, string][] = [
    ['zero', () => client.setLimits('t', { globalConcurrency: 0 }), 'limits.globalConcurrency'],
    ['negative', () => client.setLimits('t', { keyConcurrency: -1 }), 'limits.keyConcurrency'],
    ['non-integer', () => client.setLimits('t', { globalConcurrency: 1.5 }), 'limits.globalConcurrency'],
    ['a string', () => client.setLimits('t', { globalConcurrency: '3' as never }), 'limits.globalConcurrency'],
    ['a rate without a window', () => client.setLimits('t', { rateLimit: { limit: 3 } as never }), 'limits.rateLimit.intervalMs'],
    ['a rate of zero', () => client.setLimits('t', { rateLimit: { limit: 0, intervalMs: 1000 } }), 'limits.rateLimit.limit'],
    ['an unknown limit', () => client.setLimits('t', { concurrency: 3 } as never), 'limits.concurrency'],
    ['a key limit on a queue', () => client.setLimits('queue:q', { keyConcurrency: 1 }), 'limits.keyConcurrency'],
    ['nothing to set', () => client.setLimits('t', {}), 'limits'],
    ['a scope with NUL', () => client.setLimits('t\u0000x', { globalConcurrency: 1 }), 'scope'],
    ['a scope of 129 characters', () => client.pause('x'.repeat(129)), 'scope'],
    ['an unknown scope kind', () => client.pause({ topic: 'x' } as never), 'scope'],
    ['a concurrency key of 129 characters', () => client.enqueue('t', null, { concurrencyKey: 'k'.repeat(129) }), 'options.concurrencyKey'],
    ['a concurrency key with NUL', () => client.enqueue('t', null, { concurrencyKey: 'a\u0000b' }), 'options.concurrencyKey'],
    ['a concurrency key with a lone surrogate', () => client.enqueue('t', null, { concurrencyKey: 'a\ud800' }), 'options.concurrencyKey'],
    ['an empty concurrency key', () => client.enqueueMany([{ type: 't', options: { concurrencyKey: '' } }]), 'specs[0].options.concurrencyKey'],
  ];
  it.each(bad)('%s', async (_name, call, field) => {
    const error = await call().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).field).toBe(field);
    expect(await n('SELECT count(*)::int AS n FROM spindle.limits')).toBe(0);
    expect(await n('SELECT count(*)::int AS n FROM spindle.jobs')).toBe(0);
  });

  it('the SQL function refuses a bad concurrency key too, naming it', async () => {
    await expect(db.pool.query(`SELECT spindle.enqueue('t', 'null', '{"concurrencyKey": ""}')`)).rejects.toThrow(
      'options.concurrencyKey must be a string of 1 to 128 characters',
    );
    await expect(db.pool.query(`SELECT spindle.enqueue('t', 'null', jsonb_build_object('concurrencyKey', repeat('k', 129)))`)).rejects.toThrow(
      'options.concurrencyKey',
    );
    expect(await n('SELECT count(*)::int AS n FROM spindle.jobs')).toBe(0);
  });

  it("a module's bad limits are its load error, naming the option", () => {
    expect(() => validateOptions('w', { globalConcurrency: 0 })).toThrow('options.globalConcurrency of worker "w" must be an integer from 1 to 2147483647, got 0');
    expect(() => validateOptions('w', { rateLimit: { limit: 5, intervalMs: 0 } })).toThrow('options.rateLimit.intervalMs of worker "w"');
    expect(() => validateOptions('w', { fair: 'yes' })).toThrow('options.fair of worker "w" must be true or false');
    expect(validateOptions('w', { keyConcurrency: 1, fair: true })).toEqual({ keyConcurrency: 1, fair: true });
  });
});

describe('the CLI', () => {
  function spindle(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DATABASE_URL: db.url } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    return new Promise((resolve) => child.on('exit', (code) => resolve({ code, stdout, stderr })));
  }

  it('sets, lists, pauses and clears; a queued job says why it waits; a bad flag is named and writes nothing', async () => {
    const set = await spindle(['limits', 'set', 'resize', '--global-concurrency', '3', '--rate', '20/1s']);
    expect(set).toMatchObject({ code: 0, stdout: 'type resize: at most 3 running; 20 per 1 s\n' });
    expect((await spindle(['pause', 'queue:images'])).stdout).toBe('queue images paused: no supervisor claims its jobs; running ones finish\n');
    const listed = await spindle(['limits']);
    expect(listed.stdout).toMatch(/type:resize\s+at most 3 running; 20 per 1 s\s+operator\s+0\/3\s+0\s+claiming/);
    expect(listed.stdout).toMatch(/queue:images\s+-\s+module\s+0\s+0\s+paused/);

    const job = await client.enqueue('resize', null, { queue: 'images' });
    expect((await spindle(['job', job.id])).stdout).toContain('waiting: paused: queue images');
    expect((await spindle(['jobs'])).stdout).toContain('paused: queue images');

    const zero = await spindle(['limits', 'set', 'resize', '--global-concurrency', '0']);
    expect(zero.code).toBe(2);
    expect(zero.stderr).toContain('--global-concurrency must be a decimal integer from 1 to 2147483647, got "0"');
    const badRate = await spindle(['limits', 'set', 'resize', '--rate', '20 per second']);
    expect(badRate.stderr).toContain('--rate must be N/WINDOW');
    const queueKey = await spindle(['limits', 'set', 'queue:images', '--key-concurrency', '1']);
    expect(queueKey.code).toBe(1);
    expect(queueKey.stderr).toContain('--key-concurrency applies to job types only');
    expect((await client.limits()).find((r) => r.name === 'resize')!.limits).toEqual({ globalConcurrency: 3, rateLimit: { limit: 20, intervalMs: 1000 } });

    expect((await spindle(['limits', 'clear', 'resize'])).stdout).toBe("type resize: the operator's limits are cleared; its module's apply\n");
    expect((await spindle(['resume', 'queue:images'])).stdout).toBe('queue images resumed\n');
    expect(await client.waitingFor(job.id)).toBeNull();
  });
});
