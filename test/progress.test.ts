import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type Client, type JobUpdate } from '../src/client.ts';
import { writeProgress } from '../src/db/progress.ts';
import { startSupervisor, type SupervisorHandle } from '../src/start.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';

const WORKERS = fileURLToPath(new URL('./fixtures/progress-workers/', import.meta.url));
const BIN = fileURLToPath(new URL('../bin/spindle.mjs', import.meta.url));
const FLUSH_MS = 100;

let db: TestDatabase;
let client: Client;
let handle: SupervisorHandle;

beforeAll(async () => {
  db = await createTestDatabase();
  client = createClient({ connectionString: db.url });
  handle = await startSupervisor({
    databaseUrl: db.url,
    workers: WORKERS,
    concurrency: 2,
    logLevel: 'silent',
    socket: false,
    progressFlushMs: FLUSH_MS,
  });
});

afterEach(async () => {
  await db.pool.query("DELETE FROM spindle.jobs WHERE state <> 'running'");
});

afterAll(async () => {
  await handle?.stop();
  await client?.close();
  await db?.drop();
});

function progressState() {
  return handle.snapshot().actors.children.find((c) => c.name === 'progress')!.state as { statements: number; reports: number };
}

describe('progress', () => {
  it('reaches the row and the watcher, in order, ending with the final state', async () => {
    const job = await client.enqueue('stepper', { steps: 5, stepMs: 150 });
    const seen: JobUpdate[] = [];
    for await (const update of client.watch(job.id, { timeoutMs: 20_000 })) seen.push(update);
    const progressed = seen.filter((u) => u.state === 'running' && u.progress !== null);
    expect(progressed.length).toBeGreaterThanOrEqual(3);
    const values = progressed.map((u) => u.progress!);
    expect(values).toEqual([...values].sort((a, b) => a - b));
    expect(progressed.at(-1)!.message).toMatch(/^step \d$/);
    expect(seen.at(-1)).toMatchObject({ state: 'succeeded', progress: 100 });
  });

  it('writes at most (duration / flush interval) + 2 statements however often a handler reports', async () => {
    const before = progressState().statements;
    const started = Date.now();
    const job = await client.enqueue('chatty', { calls: 100_000, ms: 1_000 });
    const done = await client.waitFor(job.id, { timeoutMs: 20_000 });
    const duration = Date.now() - started;
    const statements = progressState().statements - before;
    expect(done.state).toBe('succeeded');
    expect(statements).toBeGreaterThan(2);
    expect(statements).toBeLessThanOrEqual(Math.ceil(duration / FLUSH_MS) + 2);
  });

  it("ends with the handler's last report, however soon after it the handler returns", async () => {
    // The last reports come within the thread's 50 ms coalescing and the writer's 100 ms interval:
    // only the outcome's write can carry them.
    const job = await client.enqueue('chatty', { calls: 8, ms: 10 });
    const done = await client.waitFor(job.id, { timeoutMs: 20_000 });
    expect(done).toMatchObject({ state: 'succeeded', progress: 100, progressMessage: 'step 8 of 8', progressData: { i: 8 } });
    const failing = await client.enqueue('stepper', { steps: 3, stepMs: 5, fail: true }, { maxAttempts: 1 });
    expect(await client.waitFor(failing.id, { timeoutMs: 20_000 })).toMatchObject({ state: 'failed', progressMessage: 'step 3' });
  });

  it('keeps ctx.log lines per attempt, shown by spindle job', async () => {
    const job = await client.enqueue('chatty', { calls: 8, ms: 10 });
    await client.waitFor(job.id, { timeoutMs: 20_000 });
    const [attempt] = await client.attempts(job.id);
    expect(attempt!.logs?.trim().split('\n')).toEqual(['reached 2', 'reached 4', 'reached 6', 'reached 8']);
    const out = await run(['job', job.id, '--database-url', db.url]);
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/reached 8/);
  });

  it('never lets an older attempt overwrite a newer one', async () => {
    const job = await client.enqueue('stepper', { steps: 1, stepMs: 1 });
    await client.waitFor(job.id, { timeoutMs: 20_000 });
    await db.pool.query(
      "UPDATE spindle.jobs SET state = 'running', attempt = 2, worker_id = 'w', progress = 50 WHERE id = $1",
      [job.id],
    );
    const stale = { id: job.id, attempt: 1, percent: 99, message: 'late', data: null, logs: null };
    expect(await writeProgress(db.pool, 'w', [stale])).toBe(0);
    expect(await writeProgress(db.pool, 'other', [{ ...stale, attempt: 2 }])).toBe(0);
    expect((await client.get(job.id))?.progress).toBe(50);
    expect(await writeProgress(db.pool, 'w', [{ ...stale, attempt: 2 }])).toBe(1);
    expect((await client.get(job.id))?.progress).toBe(99);
  });

  it('waitFor on a job that already finished returns at once', async () => {
    const job = await client.enqueue('stepper', { steps: 1, stepMs: 1 });
    await client.waitFor(job.id, { timeoutMs: 20_000 });
    const started = performance.now();
    expect((await client.waitFor(job.id)).state).toBe('succeeded');
    // At once: not after the 5 s wait for a notification that will never come.
    expect(performance.now() - started).toBeLessThan(2_000);
  });

  it('waitFor times out with a TimeoutError', async () => {
    const job = await client.enqueue('stepper', { steps: 1, stepMs: 10 }, { delayMs: 60_000 });
    await expect(client.waitFor(job.id, { timeoutMs: 100 })).rejects.toThrow(/did not finish within 100 ms/);
  });
});

describe('spindle enqueue --wait', () => {
  it('prints the output and exits 0 when the job succeeds', async () => {
    // 400 ms of work: long enough to be seen running from a CLI process that has only just started watching.
    const out = await run(['enqueue', 'stepper', '{"steps":4,"stepMs":100}', '--wait', '--database-url', db.url]);
    expect(out.code).toBe(0);
    expect(JSON.parse(out.stdout)).toEqual({ steps: 4 });
    expect(out.stderr).toMatch(/\[running\]/);
  });

  it('exits 1 with the error when the job fails', async () => {
    const out = await run([
      'enqueue', 'stepper', '{"steps":1,"stepMs":10,"fail":true}', '--max-attempts', '1', '--wait', '--database-url', db.url,
    ]);
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/failed: stepper failed on purpose/);
  });

  it('rejects bad JSON with a clear error and enqueues nothing', async () => {
    const before = await db.pool.query('SELECT count(*)::int AS n FROM spindle.jobs');
    const out = await run(['enqueue', 'stepper', '{bad', '--database-url', db.url]);
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/^spindle: input is not valid JSON/);
    const after = await db.pool.query('SELECT count(*)::int AS n FROM spindle.jobs');
    expect(after.rows[0].n).toBe(before.rows[0].n);
  });
});

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}
