/**
 * The batch writers against a real PostgreSQL, fed directly (the thread refuses or escapes bad values
 * before they get here, so only a value that slipped past it reaches this path): one item the database
 * refuses for its data is split off, and every other item of the batch is written.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Completer, type CompletedBatch } from '../src/actors/completer.ts';
import { Progress } from '../src/actors/progress.ts';
import { createClient, type Client } from '../src/client.ts';
import { claimJobs } from '../src/db/claims.ts';
import type { Finish } from '../src/db/outcomes.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';

const WORKER = 'batch-writer-test';

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

/** `n` jobs enqueued and claimed by WORKER: what a supervisor holds while their attempts run. */
async function claimed(type: string, n: number): Promise<{ id: string; attempt: number }[]> {
  await client.enqueueMany(Array.from({ length: n }, (_, i) => ({ type, input: i })));
  const rows = await claimJobs(db.pool, { supervisorId: WORKER, queues: [], types: [{ type, maxAttempts: 3 }], limit: n, leaseMs: 60_000 });
  expect(rows).toHaveLength(n);
  return rows.map((r) => ({ id: r.id, attempt: r.attempt }));
}

describe('batch writers isolate what the database refuses', () => {
  it('the completer records a refused outcome as its own failure and writes the rest of the batch', async () => {
    const jobs = await claimed('finish-mix', 9);
    const batches: CompletedBatch[] = [];
    const completer = new Completer({ db: db.pool, supervisorId: WORKER, onBatch: (b) => batches.push(b) });
    await completer.start();
    try {
      const bad = jobs[4]!;
      for (const job of jobs) {
        // JSON text with a NUL escape: what jsonb refuses (22P05).
        const outputJson = job === bad ? '{"s":"a\\u0000b"}' : JSON.stringify({ ok: job.id });
        const finish: Finish = { ...job, outcome: 'succeeded', nextState: 'succeeded', outputJson, logs: null };
        completer.add(finish);
      }
      await completer.drain(10_000);
    } finally {
      await completer.stop();
    }
    expect(batches.flatMap((b) => b.notWritten)).toEqual([]);
    expect(batches.flatMap((b) => b.written.map((f) => f.id)).sort()).toEqual(jobs.map((j) => j.id).sort());
    const { rows } = await db.pool.query<{ id: string; state: string; output: unknown; error: { name: string; message: string } | null }>(
      `SELECT id::text, state, output, error FROM spindle.jobs WHERE type = 'finish-mix' ORDER BY id`,
    );
    for (const row of rows) {
      if (row.id === jobs[4]!.id) {
        expect(row).toMatchObject({ state: 'failed', output: null, error: { name: 'StorageError' } });
        expect(row.error!.message).toMatch(/^the outcome of attempt 1 could not be stored: /);
      } else {
        expect(row).toMatchObject({ state: 'succeeded', output: { ok: row.id }, error: null });
      }
    }
    expect(completer.snapshot().state).toMatchObject({ refused: 1, written: 9, failedWrites: 0 });
  });

  it('the progress writer drops a refused report and writes the others', async () => {
    const jobs = await claimed('progress-mix', 5);
    const progress = new Progress({ db: db.pool, supervisorId: WORKER, flushMs: 60_000 });
    await progress.start();
    try {
      for (const job of jobs) {
        const message = job === jobs[2] ? 'bad\u0000message' : `at ${job.id}`;
        progress.report({ ...job, percent: 50, message, data: null, logs: null });
      }
      await progress.flush(10_000);
    } finally {
      await progress.stop();
    }
    const { rows } = await db.pool.query<{ id: string; progress: number | null; progress_message: string | null }>(
      `SELECT id::text, progress, progress_message FROM spindle.jobs WHERE type = 'progress-mix' ORDER BY id`,
    );
    expect(rows).toEqual(
      jobs.map((job) => (job === jobs[2] ? { id: job.id, progress: null, progress_message: null } : { id: job.id, progress: 50, progress_message: `at ${job.id}` })),
    );
    expect(progress.snapshot().state).toMatchObject({ refused: 1, rowsWritten: 4, failedWrites: 0 });
  });
});
