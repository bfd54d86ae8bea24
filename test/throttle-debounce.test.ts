/**
 * Throttle and debounce by key, at enqueue, against a real PostgreSQL: from the Client, from SQL and
 * in enqueueMany; strict under concurrent enqueues from many connections, and against a claim.
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type Client } from '../src/client.ts';
import { claimJobs, releaseJobs } from '../src/db/claims.ts';
import { ValidationError } from '../src/errors.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';

let db: TestDatabase;
let client: Client;
/** Other Clients, each with its own pool: concurrent enqueues come from many connections. */
let others: Client[];

beforeAll(async () => {
  db = await createTestDatabase();
  client = createClient({ connectionString: db.url });
  others = Array.from({ length: 5 }, () => createClient({ connectionString: db.url, maxConnections: 10 }));
});

afterAll(async () => {
  await Promise.all([client, ...others].map((c) => c?.close()));
  await db?.drop();
});

async function one<T>(sql: string, params: unknown[] = []): Promise<T> {
  const { rows } = await db.pool.query(sql, params);
  return Object.values(rows[0] as object)[0] as T;
}

const jobsOf = (column: 'input' | 'debounce_key', value: unknown) =>
  one<number>(`SELECT count(*)::int FROM spindle.jobs WHERE ${column} = $1`, [value]);

/** Polls the database until `sql` returns true (no fixed sleeps: the database says when). */
async function until(sql: string, params: unknown[] = [], timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await one<boolean>(sql, params))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${sql}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Resolves once some statement on the test database waits for a lock. */
const someoneWaitsForALock = () =>
  until(`SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock')`);

/** The real claim, of every runnable job of `type`, by supervisor `by`. */
const claim = (queryable: pg.Pool | pg.PoolClient, type: string, by = 'sup-1') =>
  claimJobs(queryable, { supervisorId: by, queues: [], types: [{ type, maxAttempts: 3 }], limit: 10, leaseMs: 60_000 });

describe('throttle', () => {
  it('makes exactly one job for 50 concurrent enqueues of a key inside one window, from many connections', async () => {
    const jobs = await Promise.all(
      Array.from({ length: 50 }, (_, i) => others[i % others.length]!.enqueue('th', { i }, { throttle: { key: 'th-burst', windowMs: 60_000 } })),
    );
    expect(new Set(jobs.map((j) => j.id)).size).toBe(1);
    expect(await one<number>(`SELECT count(*)::int FROM spindle.jobs WHERE type = 'th'`)).toBe(1);
  });

  it('opens a new window after the window, once, however many enqueue at its end', async () => {
    const throttle = { key: 'th-window', windowMs: 300 };
    const first = await client.enqueue('th-w', 1, { throttle });
    const inside = await client.enqueue('th-w', 2, { throttle: { ...throttle, windowMs: 1 } });
    expect(inside).toMatchObject({ id: first.id, input: 1 });

    await until(`SELECT ends_at <= clock_timestamp() FROM spindle.throttle_windows WHERE key = 'th-window'`);
    const after = await Promise.all(Array.from({ length: 50 }, (_, i) => others[i % others.length]!.enqueue('th-w', 3, { throttle })));
    expect(new Set(after.map((j) => j.id)).size).toBe(1);
    expect(after[0]!.id).not.toBe(first.id);
    expect(await one<number>(`SELECT count(*)::int FROM spindle.jobs WHERE type = 'th-w'`)).toBe(2);
    // The new window is at least windowMs long, by the database's clock.
    expect(await one<boolean>(`SELECT ends_at > clock_timestamp() FROM spindle.throttle_windows WHERE key = 'th-window'`)).toBe(true);
  });

  it('returns the job that opened the window whatever its state now; keys are independent', async () => {
    const throttle = { key: 'th-state', windowMs: 60_000 };
    const first = await client.enqueue('th-s', 1, { throttle });
    await db.pool.query(`UPDATE spindle.jobs SET state = 'succeeded', finished_at = now(), output = '"done"' WHERE id = $1`, [first.id]);
    expect(await client.enqueue('th-s', 2, { throttle })).toMatchObject({ id: first.id, state: 'succeeded', output: 'done' });

    const other = await client.enqueue('th-s', 3, { throttle: { key: 'th-state-2', windowMs: 60_000 } });
    expect(other.id).not.toBe(first.id);
    expect(await one<number>(`SELECT count(*)::int FROM spindle.jobs WHERE type = 'th-s'`)).toBe(2);
  });

  it('opens the window again when its job was deleted by hand, rather than return nothing', async () => {
    const throttle = { key: 'th-deleted', windowMs: 60_000 };
    const first = await client.enqueue('th-d', 1, { throttle });
    await db.pool.query(`DELETE FROM spindle.jobs WHERE id = $1`, [first.id]);
    const second = await client.enqueue('th-d', 2, { throttle });
    expect(second).toMatchObject({ type: 'th-d', input: 2, state: 'queued' });
    expect(await client.get(second.id)).toEqual(second);
    expect(await client.enqueue('th-d', 3, { throttle })).toMatchObject({ id: second.id, input: 2 });
  });

  it('behaves the same from SQL', async () => {
    const opts = '{"throttle":{"key":"th-sql","windowMs":60000}}';
    const a = await one<string>(`SELECT spindle.enqueue('th-sql', '{"n":1}', $1)`, [opts]);
    const b = await one<string>(`SELECT spindle.enqueue('th-sql', '{"n":2}', $1)`, [opts]);
    expect(b).toBe(a);
    expect(await client.enqueue('th-sql', 3, { throttle: { key: 'th-sql', windowMs: 60_000 } })).toMatchObject({ id: a, input: { n: 1 } });
    expect(await one<number>(`SELECT count(*)::int FROM spindle.jobs WHERE type = 'th-sql'`)).toBe(1);
  });
});

describe('debounce', () => {
  it('20 rapid enqueues make one job, with the last input, to run delayMs after the last enqueue', async () => {
    const debounce = { key: 'db-rapid', delayMs: 60_000 };
    const first = await client.enqueue('db', { n: 0 }, { debounce });
    for (let n = 1; n < 19; n++) expect(await client.enqueue('db', { n }, { debounce })).toMatchObject({ id: first.id, input: { n } });
    const before = await one<Date>('SELECT clock_timestamp()');
    const last = await client.enqueue('db', { n: 19 }, { debounce, priority: 7 });

    expect(last).toMatchObject({ id: first.id, state: 'queued', input: { n: 19 }, priority: 7, debounceKey: 'db-rapid' });
    expect(last.runAt.getTime()).toBeGreaterThanOrEqual(before.getTime() + 60_000);
    expect(await client.get(first.id)).toEqual(last);
    expect(await jobsOf('debounce_key', 'db-rapid')).toBe(1);
  });

  it('makes one job for 20 concurrent enqueues of a key, from many connections', async () => {
    const debounce = { key: 'db-burst', delayMs: 60_000 };
    const jobs = await Promise.all(Array.from({ length: 20 }, (_, n) => others[n % others.length]!.enqueue('db', { n }, { debounce })));
    expect(new Set(jobs.map((j) => j.id)).size).toBe(1);
    expect(await jobsOf('debounce_key', 'db-burst')).toBe(1);
  });

  it('the last enqueue decides the whole job: options it does not give go back to their defaults', async () => {
    const debounce = { key: 'db-replace', delayMs: 60_000 };
    const first = await client.enqueue('db-a', 1, { debounce, queue: 'q1', priority: 3, maxAttempts: 2, timeoutMs: 500, concurrencyKey: 'c' });
    const last = await client.enqueue('db-b', 2, { debounce });
    expect(last).toMatchObject({ id: first.id, type: 'db-b', queue: 'default', priority: 0, maxAttempts: null, timeoutMs: null, concurrencyKey: null });
    expect(last.createdAt).toEqual(first.createdAt);
  });

  it('once its job is claimed, the next enqueue of the key makes a new job and leaves the running one alone', async () => {
    const debounce = { key: 'db-claimed', delayMs: 60_000 };
    const first = await client.enqueue('db-c', 'first', { debounce });
    await db.pool.query(`UPDATE spindle.jobs SET run_at = now() WHERE id = $1`, [first.id]);
    expect((await claim(db.pool, 'db-c')).map((j) => j.id)).toEqual([first.id]);

    const next = await client.enqueue('db-c', 'next', { debounce });
    expect(next.id).not.toBe(first.id);
    expect(await client.get(first.id)).toMatchObject({ state: 'running', input: 'first' });
    expect(await client.enqueue('db-c', 'again', { debounce })).toMatchObject({ id: next.id, input: 'again' });
  });

  it('against a claim that locked the job first: waits for it, then makes a new job', async () => {
    const debounce = { key: 'db-race-claim', delayMs: 60_000 };
    const first = await client.enqueue('db-r1', 'first', { debounce });
    await db.pool.query(`UPDATE spindle.jobs SET run_at = now() WHERE id = $1`, [first.id]);
    const tx = await db.pool.connect();
    try {
      await tx.query('BEGIN');
      expect((await claim(tx, 'db-r1')).map((j) => j.id)).toEqual([first.id]);
      const enqueued = client.enqueue('db-r1', 'second', { debounce });
      await someoneWaitsForALock();
      await tx.query('COMMIT');
      const second = await enqueued;
      expect(second.id).not.toBe(first.id);
      expect(await client.get(first.id)).toMatchObject({ state: 'running', input: 'first' });
    } finally {
      tx.release();
    }
  });

  it('against a claim that comes while the enqueue holds the job: the claim skips it, and it runs later', async () => {
    const debounce = { key: 'db-race-enqueue', delayMs: 60_000 };
    const first = await client.enqueue('db-r2', 'first', { debounce });
    await db.pool.query(`UPDATE spindle.jobs SET run_at = now() WHERE id = $1`, [first.id]);
    const tx = await db.pool.connect();
    try {
      await tx.query('BEGIN');
      expect(await client.enqueue('db-r2', 'second', { debounce, client: tx })).toMatchObject({ id: first.id });
      expect(await claim(db.pool, 'db-r2')).toEqual([]);
      await tx.query('COMMIT');
      expect(await claim(db.pool, 'db-r2')).toEqual([]);
      expect(await client.get(first.id)).toMatchObject({ state: 'queued', input: 'second' });
    } finally {
      tx.release();
    }
  });

  it('a debounced job given back to the queue beside a newer one of its key is not refused, and the newer one takes the next enqueue', async () => {
    const debounce = { key: 'db-released', delayMs: 60_000 };
    const first = await client.enqueue('db-rel', 'first', { debounce });
    await db.pool.query(`UPDATE spindle.jobs SET run_at = now() WHERE id = $1`, [first.id]);
    const [claimed] = await claim(db.pool, 'db-rel', 'sup-rel');
    const newer = await client.enqueue('db-rel', 'newer', { debounce });
    expect(await releaseJobs(db.pool, 'sup-rel', [{ id: claimed!.id, attempt: claimed!.attempt }])).toBe(1);
    expect(await client.get(first.id)).toMatchObject({ state: 'queued', input: 'first' });
    expect(await client.enqueue('db-rel', 'last', { debounce })).toMatchObject({ id: newer.id, input: 'last' });
  });

  it('a retried debounced job is not taken over by the next enqueue: it has run', async () => {
    const debounce = { key: 'db-retried', delayMs: 60_000 };
    const first = await client.enqueue('db-ret', 'first', { debounce });
    await db.pool.query(`UPDATE spindle.jobs SET state = 'failed', attempt = 1, finished_at = now() WHERE id = $1`, [first.id]);
    await client.retry(first.id);
    const next = await client.enqueue('db-ret', 'next', { debounce });
    expect(next.id).not.toBe(first.id);
    expect(await client.get(first.id)).toMatchObject({ state: 'queued', input: 'first' });
  });

  it('behaves the same from SQL', async () => {
    const opts = (n: number) => JSON.stringify({ debounce: { key: 'db-sql', delayMs: 60_000 }, priority: n });
    const a = await one<string>(`SELECT spindle.enqueue('db-sql', '{"n":1}', $1)`, [opts(1)]);
    const b = await one<string>(`SELECT spindle.enqueue('db-sql', '{"n":2}', $1)`, [opts(2)]);
    expect(b).toBe(a);
    expect(await client.get(a)).toMatchObject({ input: { n: 2 }, priority: 2, debounceKey: 'db-sql' });
  });
});

describe('enqueueMany', () => {
  it('takes each spec with a throttle or a debounce through the same rules, all in one statement, rows in the order given', async () => {
    const throttle = { key: 'many-th', windowMs: 60_000 };
    const debounce = { key: 'many-db', delayMs: 60_000 };
    const jobs = await client.enqueueMany([
      { type: 'many', input: 'plain' },
      { type: 'many', input: 'th-1', options: { throttle } },
      { type: 'many', input: 'db-1', options: { debounce } },
      { type: 'many', input: 'th-2', options: { throttle } },
      { type: 'many', input: 'db-2', options: { debounce } },
      { type: 'many', input: 'key', options: { key: 'many-key' } },
    ]);
    expect(jobs.map((j) => j.input)).toEqual(['plain', 'th-1', 'db-1', 'th-1', 'db-2', 'key']);
    expect(jobs[3]!.id).toBe(jobs[1]!.id);
    expect(jobs[4]!.id).toBe(jobs[2]!.id);
    expect(await one<number>(`SELECT count(*)::int FROM spindle.jobs WHERE type = 'many'`)).toBe(4);
    expect(await client.get(jobs[2]!.id)).toMatchObject({ input: 'db-2', debounceKey: 'many-db' });
  });

  it('throttles and debounces even when no spec has a dedupe key', async () => {
    const jobs = await client.enqueueMany([
      { type: 'many-2', input: 1, options: { throttle: { key: 'many-2-th', windowMs: 60_000 } } },
      { type: 'many-2', input: 2, options: { throttle: { key: 'many-2-th', windowMs: 60_000 } } },
      { type: 'many-2', input: 3, options: { debounce: { key: 'many-2-db', delayMs: 60_000 } } },
    ]);
    expect(jobs[1]!.id).toBe(jobs[0]!.id);
    expect(jobs[2]!.debounceKey).toBe('many-2-db');
  });

  it('two calls with the same keys in opposite orders do not deadlock', async () => {
    for (let round = 0; round < 10; round++) {
      const specs = ['a', 'b', 'c', 'd'].flatMap((k) => [
        { type: 'many-order', input: k, options: { debounce: { key: `order-db-${round}-${k}`, delayMs: 60_000 } } },
        { type: 'many-order', input: k, options: { throttle: { key: `order-th-${round}-${k}`, windowMs: 60_000 } } },
      ]);
      const calls = await Promise.allSettled([others[0]!.enqueueMany(specs), others[1]!.enqueueMany([...specs].reverse())]);
      expect(calls.filter((c) => c.status === 'rejected')).toEqual([]);
    }
  });
});

describe('bad input names the field and writes nothing', () => {
  const windows = () => one<number>('SELECT count(*)::int FROM spindle.throttle_windows');
  const jobs = () => one<number>('SELECT count(*)::int FROM spindle.jobs');

  // Cases only a JavaScript caller can make; those SQL shares are in client.test.ts (sharedCases).
  const cases: [string, () => Promise<unknown>, RegExp][] = [
    ['NUL in a throttle key', () => client.enqueue('t', null, { throttle: { key: 'k\u0000', windowMs: 1 } }), /^options\.throttle\.key contains a NUL/],
    ['lone surrogate in a debounce key', () => client.enqueue('t', null, { debounce: { key: '\ud800', delayMs: 1 } }), /^options\.debounce\.key contains a lone surrogate/],
    ['throttle null', () => client.enqueue('t', null, { throttle: null as never }), /^options\.throttle must be an object \{ key, windowMs \}, got null/],
    [
      'a bad spec among good ones in enqueueMany',
      () =>
        client.enqueueMany([
          { type: 't', options: { throttle: { key: 'bad-many', windowMs: 60_000 } } },
          { type: 't', options: { debounce: { key: 'bad-many', delayMs: 1.5 } } },
        ]),
      /^specs\[1\]\.options\.debounce\.delayMs must be an integer from 1 to 3155760000000/,
    ],
  ];
  it.each(cases)('%s', async (_name, call, message) => {
    const before = [await jobs(), await windows()];
    const error = await call().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as Error).message).toMatch(message);
    expect([await jobs(), await windows()]).toEqual(before);
  });
});
