import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type Client } from '../src/client.ts';
import { startSupervisor, type StartOptions, type SupervisorHandle } from '../src/start.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';
import { tempPath } from './helpers/temp.ts';

const FIXTURES = fileURLToPath(new URL('./fixtures/supervisor-workers/', import.meta.url));
const EXAMPLES = fileURLToPath(new URL('../workers/', import.meta.url));
const BIN = fileURLToPath(new URL('../bin/spindle.mjs', import.meta.url));

let db: TestDatabase;
let client: Client;
const running: SupervisorHandle[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  client = createClient({ connectionString: db.url });
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((h) => h.stop()));
  await db.pool.query('TRUNCATE spindle.jobs, spindle.attempt_log, spindle.supervisors');
});

afterAll(async () => {
  await client?.close();
  await db?.drop();
});

async function start(options: StartOptions = {}): Promise<SupervisorHandle> {
  const handle = await startSupervisor({
    databaseUrl: db.url,
    workers: FIXTURES,
    concurrency: 2,
    logLevel: 'silent',
    socket: false,
    pollMs: 200,
    ...options,
  });
  running.push(handle);
  return handle;
}

describe('running jobs', () => {
  it('runs each example worker to success with its output', async () => {
    await start({ workers: EXAMPLES });
    const jobs = await client.enqueueMany([
      { type: 'primes', input: { limit: 1_000_000 } },
      { type: 'hashchain', input: { seed: 'spindle', rounds: 3 } },
      { type: 'mandelbrot', input: { width: 32, height: 24, maxIter: 50 } },
      { type: 'wordfreq', input: { text: 'the cat and the hat', top: 1 } },
    ]);
    const [primes, hashchain, mandelbrot, wordfreq] = await Promise.all(
      jobs.map((j) => client.waitFor(j.id, { timeoutMs: 20_000 })),
    );
    expect(primes).toMatchObject({ state: 'succeeded', output: { count: 78498 }, attempt: 1, progress: 100 });
    expect(hashchain?.output).toMatchObject({ rounds: 3, digest: expect.stringMatching(/^[0-9a-f]{64}$/) });
    const png = Buffer.from((mandelbrot!.output as { png: string }).png, 'base64');
    expect(png.subarray(1, 4).toString()).toBe('PNG');
    expect(wordfreq?.output).toMatchObject({ top: [{ word: 'the', count: 2 }] });
    const attempts = await client.attempts(jobs[0]!.id);
    expect(attempts).toMatchObject([{ attempt: 1, outcome: 'succeeded' }]);
  });

  it('never uses more threads than --concurrency', async () => {
    const handle = await start({ concurrency: 2 });
    const gate = await tempPath('spindle-gate-', 'open');
    let most = 0;
    const threads = new Set<number>();
    // The first jobs hold their threads until both threads are busy: on a loaded machine a thread
    // slow to start would otherwise find the other one done with every job.
    handle.supervisor.events.on('job:started', (e) => {
      threads.add(e.threadId);
      most = Math.max(most, handle.snapshot().pool.busy);
      if (most === 2 && !existsSync(gate)) writeFileSync(gate, '');
    });
    try {
      const jobs = await client.enqueueMany(Array.from({ length: 12 }, () => ({ type: 'gated', input: { gate } })));
      await Promise.all(jobs.map((j) => client.waitFor(j.id, { timeoutMs: 20_000 })));
      expect(most).toBe(2);
      expect(threads.size).toBeLessThanOrEqual(2);
    } finally {
      rmSync(dirname(gate), { recursive: true, force: true });
    }
  });

  it('honours a type concurrency limit, and claims the next as soon as one ends', async () => {
    const handle = await start({ concurrency: 2, pollMs: 60_000 });
    let now = 0;
    let most = 0;
    handle.supervisor.events.on('job:claimed', () => (most = Math.max(most, ++now)));
    handle.supervisor.events.on('job:finished', () => now--);
    const jobs = await client.enqueueMany(Array.from({ length: 4 }, () => ({ type: 'limited', input: { ms: 40 } })));
    await Promise.all(jobs.map((j) => client.waitFor(j.id, { timeoutMs: 20_000 })));
    expect(most).toBe(1);
  });

  it('runs higher priority first, and nothing before its run_at', async () => {
    const low = await client.enqueue('echo', 'low', { priority: -5 });
    const high = await client.enqueue('echo', 'high', { priority: 10 });
    const mid = await client.enqueue('echo', 'mid');
    // The highest priority, but not due before the others are done, however slowly the supervisor starts.
    const later = await client.enqueue('echo', 'later', { delayMs: 60_000, priority: 100 });
    await start({ concurrency: 1, prefetch: 0 });
    const due = [low, high, mid];
    await Promise.all(due.map((j) => client.waitFor(j.id, { timeoutMs: 20_000 })));
    // In the order they were claimed, one at a time, by the database's clock: the supervisor may
    // have started them before start() returned, so not by its events.
    const { rows } = await db.pool.query<{ id: string }>(
      'SELECT id::text FROM spindle.jobs WHERE id = ANY($1::bigint[]) ORDER BY started_at',
      [due.map((j) => j.id)],
    );
    expect(rows.map((r) => r.id)).toEqual([high.id, mid.id, low.id]);
    expect((await client.get(later.id))?.state).toBe('queued');
  });

  it('serves only the queues it was started with', async () => {
    await start({ queues: ['fast'] });
    const other = await client.enqueue('echo', 1, { queue: 'slow' });
    const mine = await client.enqueue('echo', 2, { queue: 'fast' });
    await client.waitFor(mine.id, { timeoutMs: 10_000 });
    expect((await client.get(other.id))?.state).toBe('queued');
  });
});

describe('failures and retries', () => {
  it('retries with backoff, each attempt in attempts', async () => {
    await start();
    const job = await client.enqueue('flaky', { succeedOn: 3 }, { maxAttempts: 5 });
    const done = await client.waitFor(job.id, { timeoutMs: 20_000 });
    expect(done).toMatchObject({ state: 'succeeded', attempt: 3, output: { attempt: 3 } });
    const attempts = await client.attempts(job.id);
    expect(attempts.map((a) => a.outcome)).toEqual(['failed', 'failed', 'succeeded']);
    expect(attempts[0]!.error?.message).toBe('attempt 1 failed on purpose');
    // The module's backoff (50 ms base, doubling, +-25% jitter) separates the attempts.
    const gap = attempts[1]!.startedAt!.getTime() - attempts[0]!.finishedAt.getTime();
    expect(gap).toBeGreaterThanOrEqual(35);
  });

  it('fails for good when attempts run out', async () => {
    await start();
    const job = await client.enqueue('flaky', { succeedOn: 10 }, { maxAttempts: 2 });
    const done = await client.waitFor(job.id, { timeoutMs: 20_000 });
    expect(done).toMatchObject({ state: 'failed', attempt: 2, error: { message: 'attempt 2 failed on purpose' } });
  });

  it('fails the jobs of a broken module with its load error and runs the others', async () => {
    await start();
    const broken = await client.enqueue('broken', null, { maxAttempts: 3 });
    const fine = await client.enqueue('echo', 'fine');
    const [b, f] = await Promise.all([broken, fine].map((j) => client.waitFor(j.id, { timeoutMs: 20_000 })));
    expect(f?.state).toBe('succeeded');
    expect(b).toMatchObject({ state: 'failed', attempt: 1 });
    expect(b?.error?.message).toMatch(/broken/);
  });
});

describe('many supervisors', () => {
  it('two supervisors run 2,000 jobs, each attempt exactly once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spindle-record-'));
    const file = join(dir, 'runs.log');
    try {
      const a = await start();
      const b = await start();
      const jobs = await client.enqueueMany(Array.from({ length: 2_000 }, () => ({ type: 'record', input: { file } })));
      await Promise.all(jobs.map((j) => client.waitFor(j.id, { timeoutMs: 60_000 })).slice(-50));
      await expect
        .poll(async () => (await db.pool.query("SELECT count(*)::int AS n FROM spindle.jobs WHERE state = 'succeeded'")).rows[0].n, { timeout: 30_000 })
        .toBe(2_000);
      const runs = readFileSync(file, 'utf8').trim().split('\n');
      expect(runs.length).toBe(2_000);
      expect(new Set(runs).size).toBe(2_000);
      const { rows } = await db.pool.query('SELECT count(*)::int AS n, count(DISTINCT worker_id)::int AS workers FROM spindle.attempts');
      expect(rows[0]).toEqual({ n: 2_000, workers: 2 });
      expect(a.snapshot().actors.state?.claimed).toBeGreaterThan(0);
      expect(b.snapshot().actors.state?.claimed).toBeGreaterThan(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('sharing work', () => {
  it('does not hoard slow jobs after a run of fast ones: a supervisor that starts later gets its share', async () => {
    const a = await start();
    const warmup = await client.enqueueMany(Array.from({ length: 300 }, (_, i) => ({ type: 'echo', input: i })));
    await Promise.all(warmup.slice(-20).map((j) => client.waitFor(j.id, { timeoutMs: 20_000 })));
    // Fast jobs taught `a` to claim hundreds at a time; these are slow (of a type it has not timed
    // yet), and `a` sees them first. They hold their threads until `b` runs two of them (or `a` holds
    // them all), so however slowly `b` starts, `a` cannot have run them all by then: `b` finds them
    // only if `a` left them.
    const gate = await tempPath('spindle-gate-', 'open');
    const claimed = new Promise((resolve) => a.supervisor.events.once('job:claimed', resolve));
    const slow = await client.enqueueMany(Array.from({ length: 16 }, () => ({ type: 'gated', input: { gate } })));
    try {
      await claimed;
      const b = await start();
      // Read from the supervisors' in-flight jobs: b may have started some before start() returned.
      const gated = (h: SupervisorHandle) => h.supervisor.jobs().filter((j) => j.type === 'gated');
      await new Promise<void>((resolve) => {
        const check = () => {
          if (gated(b).filter((j) => j.startedAt !== null).length >= 2 || gated(a).length === slow.length) resolve();
        };
        b.supervisor.events.on('job:started', check);
        a.supervisor.events.on('job:claimed', check);
        check();
      });
      writeFileSync(gate, '');
      await Promise.all(slow.map((j) => client.waitFor(j.id, { timeoutMs: 30_000 })));
      const { rows } = await db.pool.query<{ worker_id: string; n: number }>(
        "SELECT a.worker_id, count(*)::int AS n FROM spindle.attempts a JOIN spindle.jobs j ON j.id = a.job_id WHERE j.type = 'gated' GROUP BY a.worker_id",
      );
      const ranOn = new Map(rows.map((r) => [r.worker_id, r.n]));
      expect((ranOn.get(a.id) ?? 0) + (ranOn.get(b.id) ?? 0)).toBe(16);
      expect(ranOn.get(b.id) ?? 0).toBeGreaterThanOrEqual(3);
    } finally {
      rmSync(dirname(gate), { recursive: true, force: true });
    }
  });
});

describe('giving back', () => {
  it('keeps claiming after it gave jobs back, without waiting for the poll', async () => {
    const handle = await start({ pollMs: 60_000 });
    const warmup = await client.enqueueMany(Array.from({ length: 300 }, (_, i) => ({ type: 'echo', input: i })));
    await Promise.all(warmup.slice(-20).map((j) => client.waitFor(j.id, { timeoutMs: 20_000 })));
    const slow = await client.enqueueMany(Array.from({ length: 16 }, () => ({ type: 'sleepy', input: { ms: 50 } })));
    await Promise.all(slow.map((j) => client.waitFor(j.id, { timeoutMs: 10_000 })));
    expect(handle.snapshot().actors.state?.released).toBeGreaterThan(0);
  });
});

describe('the main thread stays free', () => {
  it('keeps its timers firing and takes in cancels while every thread burns CPU', async () => {
    // Each job burns CPU until it is cancelled, and the test cancels it from a timer on this thread
    // once that timer has fired TICKS times since the job began to burn: a job ends cancelled only if
    // this event loop went on turning, and took the cancel in, while the threads burned. A handler
    // run on this thread, or anything else that held it while jobs ran, would leave the jobs to burn
    // to their bound and succeed. Firings are counted, not timed: a loaded machine makes them late,
    // not fewer.
    const TICKS = 10;
    const handle = await start({ concurrency: 2 });
    /** Jobs burning, with the timer firings seen since. */
    const burning = new Map<string, number>();
    handle.supervisor.events.on('job:progress', (e) => {
      if (e.message === 'burning') burning.set(e.id, 0);
    });
    const cancels: Promise<unknown>[] = [];
    const ticker = setInterval(() => {
      for (const [id, ticks] of burning) {
        if (ticks + 1 < TICKS) {
          burning.set(id, ticks + 1);
          continue;
        }
        burning.delete(id);
        cancels.push(client.cancel(id, `after ${TICKS} ticks`));
      }
    }, 1);
    try {
      const jobs = await client.enqueueMany(Array.from({ length: 4 }, () => ({ type: 'spin', input: { boundMs: 5_000 } })));
      const done = await Promise.all(jobs.map((j) => client.waitFor(j.id, { timeoutMs: 30_000 })));
      expect(done.map((j) => [j.state, j.cancelReason])).toEqual(jobs.map(() => ['cancelled', `after ${TICKS} ticks`]));
    } finally {
      clearInterval(ticker);
      await Promise.all(cancels);
    }
  });
});

describe('spindle start', () => {
  it('on SIGTERM puts unfinished jobs back as queued and exits 0', async () => {
    const jobs = await client.enqueueMany(Array.from({ length: 3 }, () => ({ type: 'sleepy', input: { ms: 30_000 } })));
    const child = spawn(
      process.execPath,
      [BIN, 'start', '--database-url', db.url, '--workers', FIXTURES, '--concurrency', '2', '--shutdown-timeout', '100', '--no-socket', '--log-level', 'info'],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } },
    );
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await expect
        .poll(async () => (await db.pool.query("SELECT count(*)::int AS n FROM spindle.jobs WHERE state = 'running'")).rows[0].n, { timeout: 20_000 })
        .toBe(3);
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
    const after = await Promise.all(jobs.map((j) => client.get(j.id)));
    expect(after.map((j) => j?.state)).toEqual(['queued', 'queued', 'queued']);
    const attempts = await db.pool.query('SELECT outcome FROM spindle.attempts ORDER BY job_id');
    expect(attempts.rows.map((r) => r.outcome)).toEqual(['interrupted', 'interrupted', 'interrupted']);
    // An interrupted attempt is given back: the job still has all its attempts.
    expect(after.every((j) => j!.maxAttempts! - j!.attempt === 3)).toBe(true);
    expect(await db.pool.query('SELECT count(*)::int AS n FROM spindle.supervisors').then((r) => r.rows[0].n)).toBe(0);
    expect(output).toMatch(/shutting down/);
  });
});
