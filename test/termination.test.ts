/**
 * Timeouts, cancellation and misbehaving handlers through the whole runtime: a real supervisor,
 * real threads, a real database. Every case of issue 5, and after each one the supervisor carries
 * on: other jobs succeed, the pool is back to full size, and every attempt was written once.
 */
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RuntimeEvents } from '../src/runtime-events.ts';
import { createClient, type Client } from '../src/client.ts';
import type { Job } from '../src/job.ts';
import { startSupervisor, type SupervisorHandle } from '../src/start.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';
import { tempPath } from './helpers/temp.ts';

const FIXTURES = fileURLToPath(new URL('./fixtures/termination-workers/', import.meta.url));
const BIN = fileURLToPath(new URL('../bin/spindle.mjs', import.meta.url));

const CONCURRENCY = 2;
const GRACE_MS = 300;
const DEFAULT_TIMEOUT_MS = 1_500;
/** Bound on any one job in these tests. */
const WAIT_MS = 15_000;

type EventName = keyof RuntimeEvents;
type EventData<K extends EventName> = RuntimeEvents[K][0];
interface Seen<K extends EventName = EventName> {
  name: K;
  /** performance.now() when the supervisor emitted it. */
  at: number;
  data: EventData<K>;
}

let db: TestDatabase;
let client: Client;
let handle: SupervisorHandle;
/** Every runtime event since the supervisor started, in order. */
const seen: Seen[] = [];
const waiters = new Set<() => void>();

beforeAll(async () => {
  db = await createTestDatabase();
  client = createClient({ connectionString: db.url });
  handle = await startSupervisor({
    databaseUrl: db.url,
    workers: FIXTURES,
    concurrency: CONCURRENCY,
    abortGraceMs: GRACE_MS,
    defaultTimeoutMs: DEFAULT_TIMEOUT_MS,
    backoff: { baseMs: 20, maxMs: 100 },
    logLevel: 'silent',
    socket: false,
    pollMs: 200,
  });
  const names: EventName[] = ['job:claimed', 'job:started', 'job:progress', 'job:finished', 'claim:lost', 'job:reaped'];
  for (const name of names) {
    handle.supervisor.events.on(name, (data: EventData<typeof name>) => {
      seen.push({ name, at: performance.now(), data });
      for (const wake of waiters) wake();
    });
  }
});

afterEach(async () => {
  // The supervisor carries on: nothing in flight, the pool at full size, and other jobs succeed.
  await expect.poll(() => handle.snapshot().jobs.length, { timeout: WAIT_MS }).toBe(0);
  await expect.poll(() => handle.snapshot().pool.threads, { timeout: 5_000 }).toBe(CONCURRENCY);
  const jobs = await client.enqueueMany(Array.from({ length: CONCURRENCY + 1 }, (_, i) => ({ type: 'echo', input: i })));
  const done = await Promise.all(jobs.map((j) => client.waitFor(j.id, { timeoutMs: WAIT_MS })));
  expect(done.map((j) => j.state)).toEqual(jobs.map(() => 'succeeded'));
  // Each attempt's outcome was written once: one job:finished per attempt, one row per attempt, no lost claim.
  const finished = seen.filter((e): e is Seen<'job:finished'> => e.name === 'job:finished');
  const keys = finished.map((e) => `${e.data.id}/${e.data.attempt}`);
  expect(new Set(keys).size).toBe(keys.length);
  const { rows } = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM spindle.attempts');
  expect(rows[0]!.n).toBe(finished.length);
  expect(seen.filter((e) => e.name === 'claim:lost')).toEqual([]);
  expect(handle.supervisor.snapshot().state?.lostClaims).toBe(0);
  const running = await db.pool.query("SELECT id FROM spindle.jobs WHERE state = 'running'");
  expect(running.rows).toEqual([]);
});

afterAll(async () => {
  await handle?.stop();
  await client?.close();
  await db?.drop();
});

/** The first event `name` (seen already or to come) that `match` accepts. */
function until<K extends EventName>(name: K, match: (data: EventData<K>) => boolean, timeoutMs = WAIT_MS): Promise<Seen<K>> {
  const find = () => seen.find((e): e is Seen<K> => e.name === name && match(e.data as EventData<K>));
  const found = find();
  if (found) return Promise.resolve(found);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      waiters.delete(check);
      reject(new Error(`no ${name} event within ${timeoutMs} ms`));
    }, timeoutMs);
    const check = () => {
      const hit = find();
      if (!hit) return;
      clearTimeout(timer);
      waiters.delete(check);
      resolve(hit);
    };
    waiters.add(check);
  });
}

const started = (job: Job, attempt = 1) => until('job:started', (e) => e.id === job.id && e.attempt === attempt);
/** The handler is running (its module imported): waits, endless and stubborn report progress first. */
const running = (job: Job) => until('job:progress', (e) => e.id === job.id && e.message === 'running');
const finishedEvent = (job: Job, attempt = 1) => until('job:finished', (e) => e.id === job.id && e.attempt === attempt);
const waitFor = (job: Job) => client.waitFor(job.id, { timeoutMs: WAIT_MS });

async function outcomes(job: Job): Promise<{ outcome: string; message: string | undefined }[]> {
  return (await client.attempts(job.id)).map((a) => ({ outcome: a.outcome, message: a.error?.message }));
}

/** Waits until the compensation of a cancelled job is on its row. */
async function compensationOf(job: Job): Promise<unknown> {
  await expect.poll(async () => (await client.get(job.id))?.compensation, { timeout: WAIT_MS, interval: 20 }).not.toBeNull();
  return (await client.get(job.id))?.compensation;
}

describe('timeouts', () => {
  it('takes the job timeout, else the type timeout, else the supervisor default; a handler that returns at the signal is timed_out', async () => {
    const [perJob, perType, jobOverType, byDefault] = await client.enqueueMany([
      { type: 'waits', input: {}, options: { timeoutMs: 200, maxAttempts: 1 } },
      { type: 'typed', input: {}, options: { maxAttempts: 1 } },
      { type: 'typed', input: {}, options: { timeoutMs: 250, maxAttempts: 1 } },
      { type: 'waits', input: {}, options: { maxAttempts: 1 } },
    ]);
    const cases: [Job, number][] = [
      [perJob!, 200],
      [perType!, 400],
      [jobOverType!, 250],
      [byDefault!, DEFAULT_TIMEOUT_MS],
    ];
    for (const [job, timeoutMs] of cases) {
      const done = await waitFor(job);
      expect(done).toMatchObject({
        state: 'timed_out',
        attempt: 1,
        output: null,
        error: { name: 'TimeoutError', message: `job timed out after ${timeoutMs} ms`, outcome: 'timed_out' },
      });
      expect(await outcomes(job)).toEqual([{ outcome: 'timed_out', message: `job timed out after ${timeoutMs} ms` }]);
      // It returned at its signal: the message above says its thread was not terminated.
      const { data } = await finishedEvent(job);
      expect(data).toMatchObject({ outcome: 'timed_out', state: 'timed_out' });
      expect(data.ms).toBeGreaterThanOrEqual(timeoutMs - 5);
    }
  });

  it('terminates an endless loop after the grace and records timed_out with a readable error', async () => {
    const job = await client.enqueue('endless', null, { timeoutMs: 200 });
    const done = await waitFor(job);
    expect(done).toMatchObject({ state: 'timed_out', attempt: 1, error: { name: 'TimeoutError', outcome: 'timed_out' } });
    expect(done.error?.message).toMatch(/^job timed out after 200 ms/);
    expect(done.error?.message).toBe('job timed out after 200 ms (the handler did not stop at its signal: its thread was terminated)');
    // Written after the thread was terminated, not at the deadline; and not at a later bound (the
    // wait for a terminated thread's exit is 10 s).
    const { data } = await finishedEvent(job);
    expect(data.ms).toBeGreaterThanOrEqual(200 + GRACE_MS - 5);
    expect(data.ms).toBeLessThan(5_000);
    const [attempt] = await client.attempts(job.id);
    expect(attempt!.logs).toContain('spinning');
  });

  it('retries a timed-out attempt while attempts are left and ends timed_out on the last', async () => {
    const job = await client.enqueue('endless', null, { timeoutMs: 100, maxAttempts: 2 });
    const first = await finishedEvent(job, 1);
    expect(first.data).toMatchObject({ outcome: 'timed_out', state: 'queued' });
    const done = await waitFor(job);
    expect(done).toMatchObject({ state: 'timed_out', attempt: 2 });
    expect((await outcomes(job)).map((a) => a.outcome)).toEqual(['timed_out', 'timed_out']);
    const second = await finishedEvent(job, 2);
    expect(second.data).toMatchObject({ outcome: 'timed_out', state: 'timed_out' });
  });

  it('starts the clock when a thread takes the job, not while it waits behind busy threads', async () => {
    // Blockers long enough that the job waits past its timeout even when its claim is slow to come.
    const blockers = await client.enqueueMany(
      Array.from({ length: CONCURRENCY }, () => ({ type: 'sleeps', input: { ms: 1_500 }, options: { maxAttempts: 1 } })),
    );
    await Promise.all(blockers.map((b) => started(b)));
    const job = await client.enqueue('sleeps', { ms: 100 }, { timeoutMs: 400, maxAttempts: 1 });
    const done = await waitFor(job);
    expect(done).toMatchObject({ state: 'succeeded', output: { slept: 100 } });
    // It was held by the supervisor longer than its timeout before a thread took it.
    const claimed = await until('job:claimed', (e) => e.id === job.id);
    const began = await started(job);
    expect(began.at - claimed.at).toBeGreaterThan(400);
    await Promise.all(blockers.map(waitFor));
  });
});

describe('cancel', () => {
  it('ends a running job as cancelled, with the reason', async () => {
    const job = await client.enqueue('waits', {});
    await running(job);
    const result = await client.cancel(job.id, 'changed my mind');
    expect(result).toEqual({
      id: job.id,
      state: 'running',
      changed: true,
      message: `job ${job.id} is running; its supervisor was asked to stop it`,
    });
    const done = await waitFor(job);
    expect(done).toMatchObject({
      state: 'cancelled',
      attempt: 1,
      cancelReason: 'changed my mind',
      error: { name: 'AbortError', message: 'job cancelled: changed my mind', outcome: 'cancelled' },
    });
    // The message says it returned at its signal: its thread was not terminated.
    expect(await outcomes(job)).toEqual([{ outcome: 'cancelled', message: 'job cancelled: changed my mind' }]);
  });

  it('terminates a handler that ignores the cancel after the grace', async () => {
    const job = await client.enqueue('endless', null);
    await running(job);
    // Read before the cancel is sent: the grace cannot start earlier.
    const asked = performance.now();
    await client.cancel(job.id, 'stop spinning');
    const done = await waitFor(job);
    expect(done).toMatchObject({ state: 'cancelled', cancelReason: 'stop spinning', attempt: 1 });
    expect(done.error?.message).toMatch(/^job cancelled: stop spinning/);
    const { at } = await finishedEvent(job);
    expect(at - asked).toBeGreaterThanOrEqual(GRACE_MS - 20);
  });

  it('cancels a job that waits for a thread without using one', async () => {
    const blockers = await client.enqueueMany(
      Array.from({ length: CONCURRENCY }, () => ({ type: 'sleeps', input: { ms: 500 }, options: { maxAttempts: 1 } })),
    );
    await Promise.all(blockers.map((b) => started(b)));
    const job = await client.enqueue('waits', {});
    await until('job:claimed', (e) => e.id === job.id);
    await client.cancel(job.id, 'never mind');
    expect(await waitFor(job)).toMatchObject({ state: 'cancelled', cancelReason: 'never mind' });
    await Promise.all(blockers.map(waitFor));
    expect(seen.some((e) => e.name === 'job:started' && (e as Seen<'job:started'>).data.id === job.id)).toBe(false);
  });

  it('says a cancelled job never started, and compensates it at once, not behind the busy threads', async () => {
    const blockers = await client.enqueueMany(
      Array.from({ length: CONCURRENCY }, () => ({ type: 'sleeps', input: { ms: 60_000 }, options: { maxAttempts: 1 } })),
    );
    await Promise.all(blockers.map((b) => started(b)));
    const job = await client.enqueue('compensating', {});
    await until('job:claimed', (e) => e.id === job.id);
    await client.cancel(job.id, 'never mind');
    const done = await waitFor(job);
    expect(done).toMatchObject({
      state: 'cancelled',
      error: { name: 'AbortError', message: 'job cancelled: never mind (before its handler started)' },
    });
    expect(await compensationOf(job)).toEqual({ state: 'succeeded', output: { undone: true, reason: 'never mind', attempt: 1 } });
    // Compensated while both threads still run their minute-long jobs.
    for (const blocker of blockers) expect((await client.get(blocker.id))!.state).toBe('running');
    for (const blocker of blockers) await client.cancel(blocker.id, 'done with the test');
    await Promise.all(blockers.map(waitFor));
  });

  it("runs the module's compensate after the cancel and records its outcome on the job", async () => {
    const job = await client.enqueue('compensating', {});
    await running(job);
    await client.cancel(job.id, 'undo it');
    expect(await waitFor(job)).toMatchObject({ state: 'cancelled', cancelReason: 'undo it' });
    expect(await compensationOf(job)).toEqual({ state: 'succeeded', output: { undone: true, reason: 'undo it', attempt: 1 } });
  });

  it('shows the error of a compensate that throws', async () => {
    const job = await client.enqueue('compensating', { failCompensate: true });
    await running(job);
    await client.cancel(job.id, 'undo it');
    expect(await waitFor(job)).toMatchObject({ state: 'cancelled' });
    expect(await compensationOf(job)).toMatchObject({
      state: 'failed',
      error: { name: 'Error', message: 'could not undo attempt 1' },
    });
  });

  it('says a cancel of a finished job did nothing, and leaves the job as it was', async () => {
    const job = await client.enqueue('echo', 'done');
    const before = await waitFor(job);
    expect(await client.cancel(job.id, 'too late')).toEqual({
      id: job.id,
      state: 'succeeded',
      changed: false,
      message: `job ${job.id} already succeeded; nothing to cancel`,
    });
    expect(await client.get(job.id)).toEqual(before);
  });

  it('does not retry a job whose cancel arrived while its timed-out attempt was being stopped, and compensates', async () => {
    const gate = await tempPath('spindle-gate-', 'open');
    const job = await client.enqueue('stuck', { gate }, { timeoutMs: 100, maxAttempts: 3 });
    await running(job);
    // The deadline has passed; the attempt cannot end before the gate opens, so the cancel comes second.
    await expect.poll(() => handle.supervisor.jobs().find((j) => j.id === job.id)?.aborting, { interval: 5 }).toBe('timeout');
    expect((await client.cancel(job.id, 'give up')).state).toBe('running');
    writeFileSync(gate, '');
    const done = await waitFor(job);
    expect(done, JSON.stringify(await client.attempts(job.id))).toMatchObject({ state: 'cancelled', attempt: 1, cancelReason: 'give up' });
    expect((await outcomes(job)).map((a) => a.outcome)).toEqual(['timed_out']);
    // The supervisor may or may not have heard of the cancel before the attempt ended: either way it compensates.
    expect((await finishedEvent(job)).data).toMatchObject({ outcome: 'timed_out' });
    expect(await compensationOf(job)).toEqual({ state: 'succeeded', output: { undone: true, reason: 'give up', attempt: 1 } });
  });

  it('compensates a retry that the database ends cancelled, when the supervisor never heard of the cancel', async () => {
    const gate = await tempPath('spindle-gate-', 'open');
    const job = await client.enqueue('stuck', { gate }, { timeoutMs: 100, maxAttempts: 3 });
    await running(job);
    await expect.poll(() => handle.supervisor.jobs().find((j) => j.id === job.id)?.aborting, { interval: 5 }).toBe('timeout');
    // A cancel whose notification was missed: only the row says so.
    await db.pool.query(`UPDATE spindle.jobs SET cancel_requested_at = now(), cancel_reason = 'missed' WHERE id = $1`, [job.id]);
    writeFileSync(gate, '');
    const done = await waitFor(job);
    expect(done).toMatchObject({ state: 'cancelled', attempt: 1, cancelReason: 'missed' });
    expect((await finishedEvent(job)).data).toMatchObject({ outcome: 'timed_out', state: 'queued' });
    expect(await compensationOf(job)).toEqual({ state: 'succeeded', output: { undone: true, reason: 'missed', attempt: 1 } });
  });

  it('ends a running job when the cancel comes from another process (spindle cancel)', async () => {
    const job = await client.enqueue('waits', {}, { timeoutMs: 60_000 });
    await running(job);
    const child = spawn(process.execPath, [BIN, 'cancel', job.id, '--reason', 'from the shell', '--database-url', db.url], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, DATABASE_URL: '', NO_COLOR: '1' },
    });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code, output).toBe(0);
    expect(output).toContain(`job ${job.id} is running; its supervisor was asked to stop it`);
    const done = await waitFor(job);
    expect(done).toMatchObject({ state: 'cancelled', cancelReason: 'from the shell', error: { message: 'job cancelled: from the shell' } });
  });
});

describe('misbehaving handlers', () => {
  it('records process.exit(n) as a crashed attempt and retries it', async () => {
    const job = await client.enqueue('exits', { code: 7, succeedOn: 2 });
    const done = await waitFor(job);
    expect(done).toMatchObject({ state: 'succeeded', attempt: 2, output: { attempt: 2 } });
    expect(await outcomes(job)).toEqual([
      { outcome: 'crashed', message: 'worker thread exited with code 7' },
      { outcome: 'succeeded', message: undefined },
    ]);
  });

  it('makes a thrown non-Error value readable', async () => {
    const [text, object] = await client.enqueueMany([
      { type: 'throws-value', input: { value: 'boom' } },
      { type: 'throws-value', input: { value: { code: 42 } } },
    ]);
    expect(await waitFor(text!)).toMatchObject({
      state: 'failed',
      error: { message: 'handler threw a non-Error value: "boom"', outcome: 'failed' },
    });
    expect(await waitFor(object!)).toMatchObject({
      state: 'failed',
      error: { message: 'handler threw a non-Error value: {"code":42}' },
    });
  });

  it('fails a job on an unhandled rejection or a throwing timer, and survives one left behind', async () => {
    const [timer, rejection, leftover] = await client.enqueueMany([
      { type: 'escaping', input: { mode: 'timer' } },
      { type: 'escaping', input: { mode: 'rejection' } },
      { type: 'escaping', input: { mode: 'leftover' } },
    ]);
    expect(await waitFor(timer!)).toMatchObject({
      state: 'failed',
      error: { name: 'RangeError', message: 'uncaught exception: thrown by a timer' },
    });
    expect(await waitFor(rejection!)).toMatchObject({
      state: 'failed',
      error: { message: 'unhandled rejection: nobody awaited me' },
    });
    // The timer throws after its job succeeded: the thread is replaced, no job is blamed.
    expect(await waitFor(leftover!)).toMatchObject({ state: 'succeeded', output: 'finished early' });
  });

  it('records a heap past options.maxMemoryMb as crashed: out of memory', async () => {
    // A deadline far off: on a loaded machine filling the heap can take longer than the default one.
    const job = await client.enqueue('heap-hog', null, { timeoutMs: 60_000 });
    const done = await waitFor(job);
    expect(done).toMatchObject({
      state: 'failed',
      attempt: 1,
      error: { name: 'WorkerCrashError', message: 'worker thread ran out of memory (limit 64 MB)', outcome: 'crashed' },
    });
    expect((await outcomes(job)).map((a) => a.outcome)).toEqual(['crashed']);
  });

  it('fails, for good, a job whose return value cannot be stored (a function in it)', async () => {
    const job = await client.enqueue('returns-function', null, { maxAttempts: 3 });
    const done = await waitFor(job);
    expect(done).toMatchObject({ state: 'failed', attempt: 1, error: { name: 'OutputError' } });
    expect(done.error?.message).toBe("the handler's result cannot be stored: output.callback is a function, which JSON cannot hold");
  });

  it('fails, for good, a job whose return value JSON cannot hold (a BigInt, a cycle), and writes the others', async () => {
    const [big, cycle] = await client.enqueueMany([
      { type: 'returns-non-json', input: { kind: 'bigint' }, options: { maxAttempts: 3 } },
      { type: 'returns-non-json', input: { kind: 'cycle' }, options: { maxAttempts: 3 } },
    ]);
    const [bigDone, cycleDone] = await Promise.all([waitFor(big!), waitFor(cycle!)]);
    for (const done of [bigDone, cycleDone]) {
      expect(done).toMatchObject({ state: 'failed', attempt: 1, output: null, error: { name: 'OutputError' } });
      expect(done.error?.message).toMatch(/^the handler's result cannot be stored: output/);
    }
    expect(bigDone.error?.message).toContain('output.total is a bigint');
    expect(cycleDone.error?.message).toContain('circular');
  });

  it('bounds a huge error message at 64 KiB, marking the cut, in the job and its attempt', async () => {
    const job = await client.enqueue('throws-text', { size: 5 * 1024 * 1024 }, { maxAttempts: 1 });
    const done = await waitFor(job);
    expect(done.state).toBe('failed');
    const cut = `x`.repeat(64 * 1024 - 40) + `… [${5 * 1024 * 1024 - 64 * 1024 + 40} more characters cut]`;
    expect(done.error!.message).toBe(cut);
    expect(done.error!.stack!.length).toBeLessThanOrEqual(64 * 1024);
    const [attempt] = await client.attempts(job.id);
    expect(attempt!.error!.message).toBe(cut);
  });

  it('stores an error message holding NUL and a lone surrogate, escaped, and retries as usual', async () => {
    const job = await client.enqueue('throws-text', { unstorable: true }, { maxAttempts: 2 });
    const done = await waitFor(job);
    expect(done).toMatchObject({ state: 'failed', attempt: 2, error: { name: 'Error', message: 'bad\\u0000msg \\ud800' } });
    expect((await outcomes(job)).map((a) => a.outcome)).toEqual(['failed', 'failed']);
  });

  it('fails, for good and on no thread, a job whose module has invalid options', async () => {
    const ledger = await tempPath('spindle-bad-options-', 'ledger');
    const job = await client.enqueue('bad-options', { ledger }, { maxAttempts: 3 });
    const done = await waitFor(job);
    expect(done).toMatchObject({ state: 'failed', attempt: 1, output: null, error: { name: 'LoadError' } });
    expect(done.error?.message).toBe('options.timeoutMs of worker "bad-options" must be a positive integer (ms), got -5');
    expect(existsSync(ledger)).toBe(false);
    expect((await outcomes(job)).map((a) => a.outcome)).toEqual(['failed']);
  });

  it('fails, for good, a job whose module ends its thread at import, with the load error', async () => {
    const job = await client.enqueue('exits-at-import', null, { maxAttempts: 3 });
    const done = await waitFor(job);
    expect(done).toMatchObject({ state: 'failed', attempt: 1, error: { name: 'LoadError' } });
    expect(done.error?.message).toMatch(/^cannot load worker module "exits-at-import" \(.*\): it ended its thread with exit code 7$/);
    expect((await outcomes(job)).map((a) => a.outcome)).toEqual(['failed']);
  });

  it('fails, for good, a job whose module throws at import', async () => {
    const job = await client.enqueue('throws-at-import', null, { maxAttempts: 3 });
    const done = await waitFor(job);
    expect(done).toMatchObject({ state: 'failed', attempt: 1, error: { name: 'LoadError' } });
    expect(done.error?.message).toContain('cannot start: missing configuration');
  });
});

describe('the main thread while threads are terminated', () => {
  // Whether terminating a thread can block this event loop is pinned in pool.test.ts, and how long the
  // loop lags meanwhile is a figure of the benchmark (bench/termination.ts): neither is timed here.
  it('stops endless handlers back to back, at their deadline or by cancel, and carries on', async () => {
    const endless = await client.enqueueMany(
      Array.from({ length: 6 }, () => ({ type: 'endless', input: null, options: { timeoutMs: 50 } })),
    );
    // A deadline far off: on a loaded machine the default one could come before the cancel.
    const cancelled = await client.enqueueMany(
      Array.from({ length: 2 }, () => ({ type: 'endless', input: null, options: { timeoutMs: 60_000 } })),
    );
    for (const job of cancelled) {
      await running(job);
      await client.cancel(job.id, 'stop spinning');
    }
    const done = await Promise.all([...endless, ...cancelled].map(waitFor));
    expect(done.map((j) => j.state)).toEqual([...endless.map(() => 'timed_out'), ...cancelled.map(() => 'cancelled')]);
  });
});
