import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type Client } from '../src/client.ts';
import { migrate, migrationNames } from '../src/db/migrate.ts';
import { NotFoundError, StateError, ValidationError } from '../src/errors.ts';
import type { Job } from '../src/job.ts';
import { createTestDatabase, serverUrl, withDatabase, type TestDatabase } from './helpers/database.ts';

let db: TestDatabase;
let client: Client;

beforeAll(async () => {
  db = await createTestDatabase();
  client = createClient({ connectionString: db.url });
});

afterAll(async () => {
  await client?.close();
  await db?.drop();
});

async function count(sql = 'SELECT count(*)::int AS n FROM spindle.jobs'): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(sql);
  return rows[0]!.n;
}

describe('enqueue and read', () => {
  it('enqueues a job with its options and reads it back', async () => {
    const runAt = new Date(Date.now() + 60_000);
    const job = await client.enqueue('primes', { limit: 1000 }, {
      queue: 'cpu',
      priority: 5,
      runAt,
      maxAttempts: 2,
      timeoutMs: 1500,
    });
    expect(job).toMatchObject({
      type: 'primes',
      queue: 'cpu',
      state: 'queued',
      priority: 5,
      input: { limit: 1000 },
      attempt: 0,
      maxAttempts: 2,
      timeoutMs: 1500,
    });
    expect(job.runAt.getTime()).toBe(runAt.getTime());
    const read = await client.get(job.id);
    expect(read).toEqual(job);
  });

  it('defaults: queue default, priority 0, runs now, no input is null', async () => {
    const job = await client.enqueue('noop');
    expect(job).toMatchObject({ queue: 'default', priority: 0, input: null, maxAttempts: null, timeoutMs: null });
    expect(Math.abs(job.runAt.getTime() - Date.now())).toBeLessThan(5_000);
  });

  it('delayMs puts run_at in the future, by the database clock', async () => {
    const job = await client.enqueue('noop', {}, { delayMs: 30_000 });
    const { rows } = await db.pool.query('SELECT run_at - created_at AS d FROM spindle.jobs WHERE id = $1', [job.id]);
    expect(rows[0].d).toMatchObject({ seconds: 30 });
  });

  it('returns null for a job that does not exist', async () => {
    expect(await client.get('999999999')).toBeNull();
  });

  it('enqueueMany writes all jobs in one statement, in order', async () => {
    const jobs = await client.enqueueMany([
      { type: 'a', input: 1 },
      { type: 'b', input: { x: 2 }, options: { priority: 3 } },
      { type: 'c' },
    ]);
    expect(jobs.map((j) => [j.type, j.input, j.priority])).toEqual([
      ['a', 1, 0],
      ['b', { x: 2 }, 3],
      ['c', null, 0],
    ]);
    expect(await client.enqueueMany([])).toEqual([]);
  });

  it('enqueueMany takes every option as enqueue does, keeps the order of a large batch, and wakes each queue once', async () => {
    const listener = new pg.Client({ connectionString: db.url });
    await listener.connect();
    try {
      const woken: string[] = [];
      listener.on('notification', (n) => woken.push(n.payload ?? ''));
      await listener.query('LISTEN spindle_jobs');
      const runAt = new Date(Date.now() + 120_000);
      const options = { queue: 'many-a', priority: -7, runAt, maxAttempts: 4, timeoutMs: 900 };
      const [single, ...many] = [
        await client.enqueue('many', 0, options),
        ...(await client.enqueueMany([
          { type: 'many', input: 1, options },
          { type: 'many', input: { two: 2 }, options: { queue: 'many-b', delayMs: 30_000 } },
          ...Array.from({ length: 998 }, (_, i) => ({ type: 'many', input: i + 3, options: { queue: 'many-a' } })),
        ])),
      ];
      const pick = ({ type, queue, priority, maxAttempts, timeoutMs, state, attempt }: Job) =>
        ({ type, queue, priority, maxAttempts, timeoutMs, state, attempt });
      expect(pick(many[0]!)).toEqual(pick(single!));
      expect(many[0]!.runAt.getTime()).toBe(runAt.getTime());
      expect(many[1]).toMatchObject({ queue: 'many-b', priority: 0, maxAttempts: null, timeoutMs: null, input: { two: 2 } });
      const { rows } = await db.pool.query('SELECT run_at - created_at AS d FROM spindle.jobs WHERE id = $1', [many[1]!.id]);
      expect(rows[0].d).toMatchObject({ seconds: 30 });
      expect(many.slice(2).map((j) => j.input)).toEqual(Array.from({ length: 998 }, (_, i) => i + 3));
      expect(await client.get(many[500]!.id)).toEqual(many[500]);
      await expect.poll(() => [...woken].sort()).toEqual(['many-a', 'many-a', 'many-b']);
    } finally {
      await listener.end();
    }
  });

  it('enqueueMany with a dedupe key among its jobs returns the live job for that key', async () => {
    const live = await client.enqueue('many-keyed', 'first', { key: 'many:1' });
    const jobs = await client.enqueueMany([
      { type: 'many-keyed', input: 'second', options: { key: 'many:1' } },
      { type: 'many-keyed', input: 'other' },
    ]);
    expect(jobs[0]).toEqual(live);
    expect(jobs[1]).toMatchObject({ input: 'other', key: null });
  });

  it('enqueueMany writes nothing when one spec is bad', async () => {
    const before = await count();
    await expect(client.enqueueMany([{ type: 'ok' }, { type: 'bad type!' }])).rejects.toThrow(
      /specs\[1\]\.type must be 1 to 128 characters/,
    );
    expect(await count()).toBe(before);
  });

  it('lists newest first, filtered, in pages', async () => {
    const made = await client.enqueueMany(
      Array.from({ length: 5 }, (_, i) => ({ type: 'listed', input: i, options: { queue: 'listq' } })),
    );
    const page1 = await client.list({ type: 'listed', limit: 3 });
    expect(page1.map((j) => j.input)).toEqual([4, 3, 2]);
    const page2 = await client.list({ type: 'listed', limit: 3, after: page1[2]!.id });
    expect(page2.map((j) => j.input)).toEqual([1, 0]);
    expect((await client.list({ queue: 'listq', state: 'queued' })).length).toBe(5);
    expect(await client.list({ queue: 'listq', state: 'succeeded' })).toEqual([]);
    expect(made.length).toBe(5);
  });
});

describe('supervisors', () => {
  it('lists every registered supervisor with what it serves, and says which ones stopped heartbeating', async () => {
    await db.pool.query(
      `INSERT INTO spindle.supervisors (id, host, pid, version, queues, types, concurrency, heartbeat_ms, started_at, last_seen_at)
       VALUES ('alive', 'h1', 11, '0.1.0', '{}', '{a,b}', 2, 5000, now() - interval '1 minute', now()),
              ('gone', 'h2', 22, '0.1.0', '{q}', '{a}', 4, 1000, now() - interval '2 minutes', now() - interval '4 seconds')`,
    );
    try {
      const listed = await client.supervisors();
      expect(listed).toMatchObject([
        { id: 'gone', host: 'h2', pid: 22, queues: ['q'], types: ['a'], concurrency: 4, heartbeatMs: 1000, running: 0, live: false },
        { id: 'alive', host: 'h1', pid: 11, queues: [], types: ['a', 'b'], concurrency: 2, heartbeatMs: 5000, running: 0, live: true },
      ]);
      expect(listed[0]!.lastSeenMs).toBeGreaterThanOrEqual(4_000);
      expect(listed[1]!.upMs).toBeGreaterThanOrEqual(60_000);
    } finally {
      await db.pool.query(`DELETE FROM spindle.supervisors WHERE id IN ('alive', 'gone')`);
    }
  });
});

describe('dedupe key', () => {
  it('returns the live job for the same key, and a new one once it finished', async () => {
    const first = await client.enqueue('report', { n: 1 }, { key: 'report:42' });
    const again = await client.enqueue('report', { n: 2 }, { key: 'report:42' });
    expect(again.id).toBe(first.id);
    expect(again.input).toEqual({ n: 1 });
    await client.cancel(first.id);
    const fresh = await client.enqueue('report', { n: 3 }, { key: 'report:42' });
    expect(fresh.id).not.toBe(first.id);
  });

  it('makes exactly one job under concurrent enqueues of one key', async () => {
    const others = Array.from({ length: 5 }, () => createClient({ connectionString: db.url, maxConnections: 4 }));
    try {
      const jobs = await Promise.all(
        Array.from({ length: 40 }, (_, i) => others[i % others.length]!.enqueue('dedupe', { i }, { key: 'only-one' })),
      );
      expect(new Set(jobs.map((j) => j.id)).size).toBe(1);
      expect(await count("SELECT count(*)::int AS n FROM spindle.jobs WHERE key = 'only-one'")).toBe(1);
    } finally {
      await Promise.all(others.map((c) => c.close()));
    }
  });
});

describe('transactional enqueue', () => {
  it('exists if and only if the caller commits', async () => {
    const tx = await db.pool.connect();
    try {
      await tx.query('BEGIN');
      const committed = await client.enqueue('tx', { v: 'commit' }, { client: tx });
      await tx.query('COMMIT');
      expect((await client.get(committed.id))?.input).toEqual({ v: 'commit' });

      await tx.query('BEGIN');
      const rolledBack = await client.enqueue('tx', { v: 'rollback' }, { client: tx });
      await tx.query('ROLLBACK');
      expect(await client.get(rolledBack.id)).toBeNull();
    } finally {
      tx.release();
    }
  });
});

describe('cancel and retry', () => {
  it('cancels a queued job at once', async () => {
    const job = await client.enqueue('slow');
    const result = await client.cancel(job.id, 'not needed');
    expect(result).toMatchObject({ state: 'cancelled', changed: true });
    const read = await client.get(job.id);
    expect(read).toMatchObject({ state: 'cancelled', cancelReason: 'not needed' });
    expect(read?.finishedAt).toBeInstanceOf(Date);
  });

  it('wakes a waiter at once when a queued job is cancelled', async () => {
    const job = await client.enqueue('slow');
    const waiting = client.waitFor(job.id, { timeoutMs: 3_000 });
    // Let the waiter subscribe first: a waiter reads the row after it LISTENs.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const started = performance.now();
    await client.cancel(job.id);
    expect((await waiting).state).toBe('cancelled');
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it('says so when the job already finished', async () => {
    const job = await client.enqueue('slow');
    await client.cancel(job.id);
    const again = await client.cancel(job.id);
    expect(again).toMatchObject({ state: 'cancelled', changed: false });
    expect(again.message).toMatch(/already cancelled; nothing to cancel/);
  });

  it('marks a running job and notifies its holder', async () => {
    const job = await client.enqueue('slow');
    await db.pool.query(
      "UPDATE spindle.jobs SET state = 'running', attempt = 1, worker_id = 'sup-1' WHERE id = $1",
      [job.id],
    );
    const listener = new pg.Client({ connectionString: db.url });
    await listener.connect();
    try {
      await listener.query('LISTEN spindle_cancel');
      const notified = new Promise<pg.Notification>((resolve) => listener.once('notification', resolve));
      const result = await client.cancel(job.id, 'user asked');
      expect(result).toMatchObject({ state: 'running', changed: true });
      const note = await notified;
      expect(JSON.parse(note.payload!)).toEqual({ id: job.id, workerId: 'sup-1', attempt: 1, reason: 'user asked' });
      expect(await client.get(job.id)).toMatchObject({ state: 'running', cancelReason: 'user asked' });
    } finally {
      await listener.end();
    }
  });

  it('throws NotFoundError for an unknown job', async () => {
    await expect(client.cancel('987654321')).rejects.toThrow(NotFoundError);
    await expect(client.retry('987654321')).rejects.toThrow(NotFoundError);
  });

  it('retries a failed job, granting one more attempt when none are left', async () => {
    const job = await client.enqueue('flaky', null, { maxAttempts: 2 });
    await db.pool.query(
      "UPDATE spindle.jobs SET state = 'failed', attempt = 2, finished_at = now(), error = '{\"name\":\"Error\",\"message\":\"x\"}' WHERE id = $1",
      [job.id],
    );
    const retried = await client.retry(job.id);
    expect(retried).toMatchObject({ state: 'queued', attempt: 2, maxAttempts: 3, finishedAt: null });
  });

  it('refuses to retry a queued or succeeded job', async () => {
    const job = await client.enqueue('flaky');
    await expect(client.retry(job.id)).rejects.toThrow(StateError);
    await expect(client.retry(job.id)).rejects.toThrow(/is queued; only failed, timed-out or cancelled/);
  });
});

describe('the SQL function spindle.enqueue', () => {
  it('enqueues with the same options as the Client', async () => {
    const { rows } = await db.pool.query(
      `SELECT spindle.enqueue('sqljob', '{"a":1}', '{"queue":"q","priority":5,"timeoutMs":1000,"maxAttempts":1,"key":"k1","runAt":"2030-01-01T00:00:00Z"}') AS id`,
    );
    const job = await client.get(rows[0].id);
    expect(job).toMatchObject({
      type: 'sqljob',
      queue: 'q',
      priority: 5,
      timeoutMs: 1000,
      maxAttempts: 1,
      key: 'k1',
      input: { a: 1 },
    });
    expect(job?.runAt.toISOString()).toBe('2030-01-01T00:00:00.000Z');
  });

  it('notifies once per statement, not per row', async () => {
    const listener = new pg.Client({ connectionString: db.url });
    await listener.connect();
    const notes: string[] = [];
    listener.on('notification', (n) => notes.push(n.payload ?? ''));
    try {
      await listener.query('LISTEN spindle_jobs');
      await client.enqueueMany(Array.from({ length: 50 }, () => ({ type: 'many', options: { queue: 'nq' } })));
      // A marker notification sent after the batch: once it arrives, the batch's have too.
      await db.pool.query("SELECT pg_notify('spindle_jobs', 'marker')");
      await new Promise<void>((resolve) => {
        const check = () => (notes.includes('marker') ? resolve() : setTimeout(check, 5));
        check();
      });
      expect(notes.filter((n) => n === 'nq')).toHaveLength(1);
    } finally {
      await listener.end();
    }
  });
});

describe('bad input is refused with a ValidationError naming the field, and writes nothing', () => {
  const nested = (depth: number): unknown => {
    let value: unknown = 'bottom';
    for (let i = 0; i < depth; i++) value = [value];
    return value;
  };
  const circular: Record<string, unknown> = {};
  circular.self = circular;
  const cases: [string, () => Promise<unknown>, RegExp][] = [
    // Cases only a JavaScript caller can make; those the SQL function shares are in sharedCases below.
    ['type not a string', () => client.enqueue(42 as unknown as string), /^type must be/],
    ['bigint input', () => client.enqueue('t', { n: 1n }), /^input\.n is a bigint/],
    ['function input', () => client.enqueue('t', { f: () => 1 }), /^input\.f is a function/],
    ['circular input', () => client.enqueue('t', circular), /^input\.self is a circular reference/],
    ['NaN input', () => client.enqueue('t', [1, Number.NaN]), /^input\[1\] is NaN/],
    ['Map input', () => client.enqueue('t', { m: new Map() }), /^input\.m is a Map/],
    ['input too large', () => client.enqueue('t', 'x'.repeat(1024 * 1024)), /^input is \d+ bytes of JSON, over the limit/],
    ['negative maxAttempts', () => client.enqueue('t', null, { maxAttempts: -1 }), /^options\.maxAttempts must be an integer from 1/],
    ['invalid date', () => client.enqueue('t', null, { runAt: 'tomorrow-ish' }), /^options\.runAt must be a Date, an ISO 8601 date/],
    ['invalid Date object', () => client.enqueue('t', null, { runAt: new Date('x') }), /^options\.runAt must be a Date.* got an invalid Date$/],
    ['year past 9999', () => client.enqueue('t', null, { runAt: new Date(8.64e15) }), /^options\.runAt must be a date from year 1 to 9999/],
    ['NUL in input', () => client.enqueue('t', { s: 'a\u0000b' }), /^input\.s contains a NUL character \(U\+0000\)/],
    ['NUL in a key of input', () => client.enqueue('t', { 'a\u0000': 1 }), /^input\["a\\u0000"\] has a key that contains a NUL/],
    ['lone surrogate in input', () => client.enqueue('t', ['\ud800']), /^input\[0\] contains a lone surrogate \(U\+D800/],
    ['input nested too deep', () => client.enqueue('t', nested(100_000)), /^input(\[0\]){1000} is nested deeper than 1000 levels$/],
    ['NUL in key', () => client.enqueue('t', null, { key: 'k\u0000' }), /^options\.key contains a NUL character/],
    ['lone surrogate in key', () => client.enqueue('t', null, { key: '\udc00k' }), /^options\.key contains a lone surrogate/],
    ['NUL in a cancel reason', () => client.cancel('1', 'why\u0000'), /^reason contains a NUL character/],
    ['bad id', () => client.get('abc'), /^id must be a job id/],
    ['bad state filter', () => client.list({ state: 'done' as 'failed' }), /^filter\.state must be one of/],
    ['bad limit', () => client.list({ limit: 0 }), /^filter\.limit must be an integer/],
  ];
  it.each(cases)('%s', async (_name, call, message) => {
    const before = await count();
    const error = await call().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as Error).message).toMatch(message);
    expect(await count()).toBe(before);
  });

  it('refuses bad options to createClient', () => {
    expect(() => createClient({ connectionString: db.url, maxInputBytes: -1 })).toThrow(
      /options\.maxInputBytes must be an integer/,
    );
  });

  it('honours a configured input limit', async () => {
    const small = createClient({ connectionString: db.url, maxInputBytes: 10 });
    try {
      await expect(small.enqueue('t', 'x'.repeat(20))).rejects.toThrow(/over the limit of 10 bytes/);
    } finally {
      await small.close();
    }
  });

  // One table of the enqueue rules that both writers hold (validate.ts for the Client, the SQL
  // function spindle.enqueue for SQL callers): each case must be refused alike by both.
  const sharedCases: [string, string, Record<string, unknown>, RegExp][] = [
    ['empty type', '', {}, /^type must be 1 to 128 characters/],
    ['long type', 'x'.repeat(129), {}, /^type must be 1 to 128 characters/],
    ['type with a space', 'a b', {}, /^type must be/],
    ['fractional priority', 't', { priority: 1.5 }, /^options\.priority must be an integer/],
    ['string priority', 't', { priority: '1' }, /^options\.priority must be an integer/],
    ['string timeout', 't', { timeoutMs: '5' }, /^options\.timeoutMs must be an integer/],
    ['zero timeout', 't', { timeoutMs: 0 }, /^options\.timeoutMs must be an integer from 1/],
    ['zero maxAttempts', 't', { maxAttempts: 0 }, /^options\.maxAttempts must be an integer from 1/],
    ['negative delay', 't', { delayMs: -5 }, /^options\.delayMs must be an integer from 0/],
    ['delay past 100 years', 't', { delayMs: 2 ** 53 - 1 }, /^options\.delayMs must be an integer from 0 to 3155760000000/],
    ['invalid date', 't', { runAt: 'not a date' }, /^options\.runAt must be .*ISO 8601 date/],
    ['infinite date', 't', { runAt: 'infinity' }, /^options\.runAt must be .*ISO 8601 date/],
    ['minus infinity', 't', { runAt: '-infinity' }, /^options\.runAt must be .*ISO 8601 date/],
    ['epoch', 't', { runAt: 'epoch' }, /^options\.runAt must be .*ISO 8601 date/],
    ['date without a zone', 't', { runAt: '2030-01-01 10:00' }, /^options\.runAt must be .*ISO 8601 date/],
    ['runAt with delayMs', 't', { runAt: '2030-01-01T00:00:00Z', delayMs: 1 }, /^options\.runAt cannot be combined/],
    ['unknown option', 't', { prio: 1 }, /^options\.prio is not a known option/],
    ['bad queue', 't', { queue: 'a b' }, /^options\.queue must be/],
    ['empty queue', 't', { queue: '' }, /^options\.queue must be/],
    ['empty key', 't', { key: '' }, /^options\.key must be a string/],
    ['throttle not an object', 't', { throttle: 5 }, /^options\.throttle must be an object \{ key, windowMs \}/],
    ['debounce an array', 't', { debounce: [] }, /^options\.debounce must be an object \{ key, delayMs \}/],
    ['throttle without a window', 't', { throttle: { key: 'k' } }, /^options\.throttle\.windowMs must be an integer from 1 to 3155760000000/],
    ['debounce without a key', 't', { debounce: { delayMs: 5 } }, /^options\.debounce\.key must be a string of 1 to 128 characters/],
    ['empty throttle key', 't', { throttle: { key: '', windowMs: 1 } }, /^options\.throttle\.key must be a string of 1 to 128 characters/],
    ['long debounce key', 't', { debounce: { key: 'x'.repeat(129), delayMs: 1 } }, /^options\.debounce\.key must be a string of 1 to 128 characters/],
    ['number as a throttle key', 't', { throttle: { key: 7, windowMs: 1 } }, /^options\.throttle\.key must be a string/],
    ['zero throttle window', 't', { throttle: { key: 'k', windowMs: 0 } }, /^options\.throttle\.windowMs must be an integer from 1 to 3155760000000/],
    ['fractional debounce delay', 't', { debounce: { key: 'k', delayMs: 1.5 } }, /^options\.debounce\.delayMs must be an integer from 1 to 3155760000000/],
    ['string debounce delay', 't', { debounce: { key: 'k', delayMs: '5' } }, /^options\.debounce\.delayMs must be an integer from 1 to 3155760000000/],
    ['throttle window past 100 years', 't', { throttle: { key: 'k', windowMs: 3155760000001 } }, /^options\.throttle\.windowMs must be an integer from 1 to 3155760000000/],
    ['unknown throttle field', 't', { throttle: { key: 'k', windowMs: 1, foo: 1 } }, /^options\.throttle\.foo is not a known option/],
    ['debounce with a window', 't', { debounce: { key: 'k', delayMs: 1, windowMs: 1 } }, /^options\.debounce\.windowMs is not a known option/],
    ['throttle with debounce', 't', { throttle: { key: 'k', windowMs: 1 }, debounce: { key: 'k', delayMs: 1 } }, /^options\.throttle cannot be combined with options\.debounce/],
    ['throttle with a dedupe key', 't', { throttle: { key: 'k', windowMs: 1 }, key: 'k' }, /^options\.throttle cannot be combined with options\.key/],
    ['debounce with a dedupe key', 't', { debounce: { key: 'k', delayMs: 1 }, key: 'k' }, /^options\.debounce cannot be combined with options\.key/],
    ['debounce with delayMs', 't', { debounce: { key: 'k', delayMs: 1 }, delayMs: 5 }, /^options\.debounce cannot be combined with options\.delayMs/],
    ['debounce with runAt', 't', { debounce: { key: 'k', delayMs: 1 }, runAt: '2030-01-01' }, /^options\.debounce cannot be combined with options\.runAt/],
  ];
  it.each(sharedCases)('Client and SQL alike: %s', async (_name, type, opts, message) => {
    const written = async () => [await count(), await count('SELECT count(*)::int AS n FROM spindle.throttle_windows')];
    const before = await written();
    const fromClient = await client.enqueue(type, {}, opts).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(fromClient).toBeInstanceOf(ValidationError);
    expect((fromClient as Error).message).toMatch(message);
    const fromSql = await db.pool.query('SELECT spindle.enqueue($1, $2, $3)', [type, '{}', JSON.stringify(opts)]).catch((e) => e);
    expect(fromSql).toMatchObject({ code: '22023' });
    expect((fromSql as Error).message).toMatch(message);
    expect(await written()).toEqual(before);
  });

  it('SQL: input nested deeper than 1000 levels', async () => {
    const before = await count();
    const deep = `${'['.repeat(1001)}${']'.repeat(1001)}`;
    const error = await db.pool.query("SELECT spindle.enqueue('t', $1::jsonb)", [deep]).catch((e) => e);
    expect(error).toMatchObject({ code: '22023', message: 'input is nested deeper than 1000 levels' });
    const shallow = `${'['.repeat(1000)}${']'.repeat(1000)}`;
    await db.pool.query("SELECT spindle.enqueue('t', $1::jsonb)", [shallow]);
    expect(await count()).toBe(before + 1);
  });

});

describe('migrations', () => {
  it('two migrators at once apply each migration exactly once', async () => {
    const name = `spindle_mig_${Date.now().toString(36)}`;
    const admin = new pg.Client({ connectionString: serverUrl() });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    try {
      const url = withDatabase(serverUrl(), name);
      const results = await Promise.all([migrate(url), migrate(url), migrate(url)]);
      const all = await migrationNames();
      expect(results.flat().sort()).toEqual(all);
      expect(await migrate(url)).toEqual([]);
    } finally {
      await admin.query(`DROP DATABASE ${name} WITH (FORCE)`);
      await admin.end();
    }
  });
});
