/**
 * Short jobs sharing thread hops: queued jobs of a type measured short go to
 * one thread in one task. Through the public API, each job must still behave
 * as if it ran alone: its own start and timeout clock, progress, logs, abort
 * and exactly one outcome, streamed as it ends; stopping or losing the thread
 * sends the jobs it had not started back to the queue ('interrupted').
 */
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_BACKOFF } from '../src/backoff.ts';
import { finishFor } from '../src/outcome.ts';
import { WorkerPool, type Outcome, type RunOptions, type RunningJob, type ThreadError } from '../src/pool/pool.ts';

const GRACE_MS = 300;
const STEP = fileURLToPath(new URL('./fixtures/workers/batch-step.ts', import.meta.url));

let nextId = 1;
let nextType = 1;

/** What batch-step.ts does: see the fixture. */
type Step =
  | { do?: 'return' | 'cooperate' | 'endless' | 'exit' | 'report' | 'uncloneable' | 'leftover' }
  | { do: 'hold'; gate: Int32Array };

/** A job of batch-step.ts, under job type `type` (each test has its own, so its own run-time history). */
interface StepJob {
  job: RunningJob;
  /** Resolves when a thread takes the job. */
  started: Promise<number>;
  /** How many times onStart was called. */
  starts: () => number;
}

function step(pool: WorkerPool, type: string, input: Step = {}, options: RunOptions = {}): StepJob {
  let count = 0;
  let onStarted!: (threadId: number) => void;
  const started = new Promise<number>((resolve) => (onStarted = resolve));
  const job = pool.run(
    { mode: 'run', jobId: String(nextId++), type, modulePath: STEP, input, attempt: 1, maxAttempts: 3 },
    {
      ...options,
      onStart: (threadId) => {
        count += 1;
        onStarted(threadId);
        options.onStart?.(threadId);
      },
    },
  );
  return { job, started, starts: () => count };
}

/** A new job type measured short: three quick runs, one at a time. */
async function shortType(pool: WorkerPool): Promise<string> {
  const type = `step-${nextType++}`;
  for (let i = 0; i < 3; i++) expect((await step(pool, type).job.outcome).kind).toBe('succeeded');
  return type;
}

function gate(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT));
}

function open(g: Int32Array): void {
  Atomics.store(g, 0, 1);
  Atomics.notify(g, 0);
}

/** Runs `submit` (which hands jobs to the pool in one tick) and returns how many batch tasks and jobs it made. */
async function batched<T>(pool: WorkerPool, submit: () => T): Promise<{ result: T; tasks: number; jobs: number }> {
  const before = pool.stats().batches;
  const result = submit();
  await Promise.resolve();
  const after = pool.stats().batches;
  return { result, tasks: after.tasks - before.tasks, jobs: after.jobs - before.jobs };
}

/** `promise`, or a failure after `ms` that shows where the pool stood: a hang then says what it waited for. */
async function within<T>(promise: Promise<T>, ms: number, what: string, pool: WorkerPool): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms; the pool: ${JSON.stringify(pool.stats())}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The order in which outcomes resolve. */
function settleOrder(jobs: StepJob[]): Promise<string[]> {
  const order: string[] = [];
  return Promise.all(jobs.map(({ job }) => job.outcome.then(() => order.push(job.jobId)))).then(() => order);
}

function interruptedBy(cause: RegExp): Outcome {
  return {
    kind: 'interrupted',
    error: { name: 'AbortError', message: expect.stringMatching(cause) as unknown as string },
    terminated: false,
  };
}

/**
 * A quick job's run time, as its thread measures it, passes the default 1 ms on a loaded machine
 * (a thread at nice +5 waits for a core): the types these tests measure short must stay short.
 */
const BATCH_BELOW_MS = 10;

let pool: WorkerPool;

beforeAll(() => {
  pool = new WorkerPool({ batchBelowMs: BATCH_BELOW_MS, maxThreads: 1, abortGraceMs: GRACE_MS });
});

afterAll(async () => {
  await pool.close({ force: true });
});

describe('which jobs share a task', () => {
  it('batches queued jobs of a type measured short, on one thread', async () => {
    const type = await shortType(pool);
    const { result: jobs, tasks, jobs: carried } = await batched(pool, () => [1, 2, 3, 4, 5].map(() => step(pool, type)));
    expect(tasks).toBe(1);
    expect(carried).toBe(5);
    const outcomes = await Promise.all(jobs.map(({ job }) => job.outcome));
    const threadId = jobs[0]!.job.threadId;
    expect(outcomes).toEqual(jobs.map(({ job }) => ({ kind: 'succeeded', output: { jobId: job.jobId, threadId } })));
    expect(jobs.every(({ starts }) => starts() === 1)).toBe(true);
  });

  it('never batches a type not measured yet, nor one measured long', async () => {
    const unknown = `step-${nextType++}`;
    const first = await batched(pool, () => [1, 2, 3].map(() => step(pool, unknown)));
    expect(first.tasks).toBe(0);
    expect((await Promise.all(first.result.map(({ job }) => job.outcome))).map((o) => o.kind)).toEqual([
      'succeeded',
      'succeeded',
      'succeeded',
    ]);

    const long = `step-${nextType++}`;
    for (let i = 0; i < 3; i++) {
      const g = gate();
      const held = step(pool, long, { do: 'hold', gate: g });
      await held.started;
      setTimeout(() => open(g), 20);
      expect((await held.job.outcome).kind).toBe('succeeded');
    }
    const second = await batched(pool, () => [1, 2, 3].map(() => step(pool, long)));
    expect(second.tasks).toBe(0);
    await Promise.all(second.result.map(({ job }) => job.outcome));
  });
});

describe('each job of a batch on its own', () => {
  it('takes back the jobs a long-running job holds up, for a thread that is free', async () => {
    const two = new WorkerPool({ batchBelowMs: BATCH_BELOW_MS, maxThreads: 2, abortGraceMs: GRACE_MS });
    try {
      const type = await shortType(two);
      // One thread busy with a job of a type not measured yet (so alone): the batch goes to the other.
      const busyGate = gate();
      const busy = step(two, `step-${nextType++}`, { do: 'hold', gate: busyGate });
      await within(busy.started, 10_000, 'the busy job started', two);
      const holdGate = gate();
      const { result: jobs, tasks } = await batched(two, () => [
        step(two, type, { do: 'hold', gate: holdGate }),
        step(two, type),
        step(two, type),
      ]);
      expect(tasks).toBe(1);
      const [holder, ...rest] = jobs;
      await within(holder!.started, 10_000, 'the holder started', two);
      open(busyGate);
      expect((await within(busy.job.outcome, 10_000, 'the busy job ended', two)).kind).toBe('succeeded');
      // Done while the first job of their batch still holds its thread.
      const outcomes = await within(Promise.all(rest.map(({ job }) => job.outcome)), 10_000, 'the jobs behind the holder ended', two);
      expect(outcomes.map((o) => o.kind)).toEqual(['succeeded', 'succeeded']);
      for (const { job } of rest) expect(job.threadId).not.toBe(holder!.job.threadId);
      expect(two.stats().batches.taken).toBe(2);
      open(holdGate);
      expect((await holder!.job.outcome).kind).toBe('succeeded');
    } finally {
      await two.close();
    }
  });

  it('takes nothing back from a batch its thread has not begun: a job sent to an idle pool is sent once', async () => {
    const two = new WorkerPool({ batchBelowMs: BATCH_BELOW_MS, maxThreads: 2, abortGraceMs: GRACE_MS });
    try {
      const type = await shortType(two);
      // Sent as a batch of one (so that it can be fed), with the other thread free.
      for (let i = 0; i < 3; i++) expect((await step(two, type).job.outcome).kind).toBe('succeeded');
      expect(two.stats().batches.taken).toBe(0);
    } finally {
      await two.close();
    }
  });

  it('streams each outcome as its job ends, in order, and starts each clock when the thread takes that job', async () => {
    const type = await shortType(pool);
    const g = gate();
    const { result: jobs, tasks } = await batched(pool, () => [
      step(pool, type),
      step(pool, type, { do: 'hold', gate: g }),
      step(pool, type),
    ]);
    expect(tasks).toBe(1);
    const [first, held, last] = jobs;
    const order = settleOrder(jobs);
    let heldSettled = false;
    void held!.job.outcome.then(() => (heldSettled = true));

    expect((await first!.job.outcome).kind).toBe('succeeded');
    await held!.started;
    // The first job's outcome is out while the second runs and the third waits.
    expect(heldSettled).toBe(false);
    expect(held!.job.startedAt).toBeTypeOf('number');
    expect(last!.job.startedAt).toBeUndefined();
    expect(pool.stats()).toMatchObject({ busy: 1, queued: 1 });

    open(g);
    expect(await order).toEqual(jobs.map(({ job }) => job.jobId));
    expect(last!.job.threadId).toBe(first!.job.threadId);
  });

  it("times a job out on its own clock, not its batch's", async () => {
    const type = await shortType(pool);
    const g = gate();
    const { result: jobs } = await batched(pool, () => [
      step(pool, type, { do: 'hold', gate: g }),
      step(pool, type, { do: 'cooperate' }, { timeoutMs: 100 }),
      step(pool, type),
    ]);
    const [holder, timed, after] = jobs;
    await holder!.started;
    // Longer than the second job's timeout: it has not started, so its clock has not either.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(timed!.job.startedAt).toBeUndefined();
    // Read before the job can start, so before its clock does, however late this thread runs.
    const t0 = performance.now();
    open(g);
    await timed!.started;
    expect(await timed!.job.outcome).toEqual({
      kind: 'timed_out',
      error: { name: 'TimeoutError', message: 'job timed out after 100 ms' },
      terminated: false,
    });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(95);
    // It returned within its grace: the thread was not terminated and the batch went on.
    expect(await after!.job.outcome).toMatchObject({ kind: 'succeeded', output: { threadId: holder!.job.threadId } });
    expect(await holder!.job.outcome).toMatchObject({ kind: 'succeeded' });
  });

  it('delivers progress and logs to the job that made them', async () => {
    const type = await shortType(pool);
    const seen = new Map<string, { progress: unknown[]; logs: string[] }>();
    const { result: jobs, tasks } = await batched(pool, () =>
      [1, 2, 3].map(() => {
        const mine = { progress: [] as unknown[], logs: [] as string[] };
        const made = step(pool, type, { do: 'report' }, {
          onProgress: (percent, message, data) => mine.progress.push([percent, message, data]),
          onLog: (line) => mine.logs.push(line),
        });
        seen.set(made.job.jobId, mine);
        return made;
      }),
    );
    expect(tasks).toBe(1);
    for (const { job } of jobs) {
      expect(await job.outcome).toEqual({ kind: 'succeeded', output: { reported: job.jobId } });
      expect(seen.get(job.jobId)).toEqual({
        progress: [[50, `half of ${job.jobId}`, { jobId: job.jobId }]],
        logs: [`log of ${job.jobId}`],
      });
    }
  });

  it('fails only the job whose result cannot be cloned', async () => {
    const type = await shortType(pool);
    const { result: jobs } = await batched(pool, () => [step(pool, type, { do: 'uncloneable' }), step(pool, type)]);
    const [bad, good] = await Promise.all(jobs.map(({ job }) => job.outcome));
    expect(bad).toMatchObject({ kind: 'failed', permanent: true, error: { name: 'DataCloneError', phase: 'clone' } });
    if (bad?.kind === 'failed') expect(bad.error.message).toMatch(/^handler returned a value that cannot be cloned: /);
    expect(good).toMatchObject({ kind: 'succeeded' });
  });
});

describe('a batch that cannot be sent', () => {
  it('runs each of its jobs alone when one input cannot be cloned: only that one fails', async () => {
    const type = await shortType(pool);
    const uncloneable = { do: 'return', callback: () => 'no' } as unknown as Step;
    const { result: jobs, tasks } = await batched(pool, () => [step(pool, type), step(pool, type, uncloneable), step(pool, type)]);
    expect(tasks).toBe(1);
    const outcomes = await Promise.all(jobs.map(({ job }) => job.outcome));
    expect(outcomes.map((o) => o.kind)).toEqual(['succeeded', 'failed', 'succeeded']);
    expect(outcomes[1]).toMatchObject({ kind: 'failed', permanent: true, error: { name: 'DataCloneError' } });
  });
});

describe('aborts in a batch', () => {
  it('cancels a job the thread has not reached at once, and the others run on the same thread', async () => {
    const type = await shortType(pool);
    const g = gate();
    const { result: jobs } = await batched(pool, () => [
      step(pool, type, { do: 'hold', gate: g }),
      step(pool, type),
      step(pool, type),
    ]);
    const [holder, cancelled, after] = jobs;
    await holder!.started;
    cancelled!.job.abort('cancel', 'requested by the test');
    // Resolved while the thread is still busy with the job before it.
    expect(await cancelled!.job.outcome).toEqual({
      kind: 'cancelled',
      error: { name: 'AbortError', message: 'job cancelled: requested by the test (before its handler started)' },
      terminated: false,
    });
    expect(cancelled!.job.threadId).toBeUndefined();
    expect(cancelled!.starts()).toBe(0);
    open(g);
    expect(await after!.job.outcome).toMatchObject({ kind: 'succeeded', output: { threadId: holder!.job.threadId } });
    expect(await holder!.job.outcome).toMatchObject({ kind: 'succeeded' });
  });

  it('cancels the running job of a batch through its signal; the rest go on', async () => {
    const type = await shortType(pool);
    const { result: jobs } = await batched(pool, () => [step(pool, type, { do: 'cooperate' }), step(pool, type)]);
    const [running, after] = jobs;
    await running!.started;
    running!.job.abort('cancel');
    expect(await running!.job.outcome).toEqual({
      kind: 'cancelled',
      // A thread descheduled between taking the job and calling its handler sees the abort first.
      error: { name: 'AbortError', message: expect.stringMatching(/^job cancelled( \(before its handler started\))?$/) },
      terminated: false,
    });
    expect(await after!.job.outcome).toMatchObject({ kind: 'succeeded', output: { threadId: running!.job.threadId } });
  });

  it('terminates a running job that ignores its timeout; the ones it had not started are interrupted, the finished keep their outcome', async () => {
    const type = await shortType(pool);
    // Read before the endless job can start, so before its clock does, however late this thread runs.
    const t0 = performance.now();
    const { result: jobs, tasks } = await batched(pool, () => [
      step(pool, type),
      step(pool, type, { do: 'endless' }, { timeoutMs: 100 }),
      step(pool, type),
      step(pool, type),
    ]);
    expect(tasks).toBe(1);
    const [before, endless, ...rest] = jobs;
    await endless!.started;
    const outcomes = await Promise.all(jobs.map(({ job }) => job.outcome));
    expect(performance.now() - t0).toBeGreaterThanOrEqual(100 + GRACE_MS - 5);
    expect(outcomes[0]).toMatchObject({ kind: 'succeeded', output: { jobId: before!.job.jobId } });
    expect(outcomes[1]).toEqual({
      kind: 'timed_out',
      error: { name: 'TimeoutError', message: 'job timed out after 100 ms' },
      terminated: true,
    });
    const cause = new RegExp(
      `^job interrupted before it started: its thread was terminated to stop job ${endless!.job.jobId} of the same batch$`,
    );
    expect(outcomes.slice(2)).toEqual([interruptedBy(cause), interruptedBy(cause)]);
    expect(rest.every(({ starts, job }) => starts() === 0 && job.threadId === undefined)).toBe(true);
    // The supervisor puts an interrupted job back in the queue at once, without using up an attempt.
    const finish = finishFor({ id: rest[0]!.job.jobId, attempt: 1, maxAttempts: 3, logs: null, cancelRequested: false }, outcomes[2]!, DEFAULT_BACKOFF);
    expect(finish).toMatchObject({ outcome: 'interrupted', nextState: 'queued', delayMs: 0 });
    // The pool has its thread back.
    expect((await step(pool, type).job.outcome).kind).toBe('succeeded');
    expect(pool.stats().threads).toBe(1);
  });

  it('reports a thread that dies in a batch: the running job crashed, the ones not started interrupted', async () => {
    const type = await shortType(pool);
    const before = pool.stats();
    const { result: jobs } = await batched(pool, () => [
      step(pool, type),
      step(pool, type, { do: 'exit' }),
      step(pool, type),
      step(pool, type),
    ]);
    const outcomes = await Promise.all(jobs.map(({ job }) => job.outcome));
    expect(outcomes[0]).toMatchObject({ kind: 'succeeded' });
    expect(outcomes[1]).toEqual({
      kind: 'crashed',
      error: { name: 'WorkerCrashError', message: 'worker thread exited with code 3', phase: 'thread' },
    });
    const cause = new RegExp(
      `^job interrupted before it started: its thread died \\(worker thread exited with code 3\\) running job ${jobs[1]!.job.jobId} of the same batch$`,
    );
    expect(outcomes.slice(2)).toEqual([interruptedBy(cause), interruptedBy(cause)]);
    // Each outcome counted once; every clock stopped.
    expect(jobs.map(({ starts }) => starts())).toEqual([1, 1, 0, 0]);
    const after = pool.stats();
    expect(after.completed - before.completed).toBe(4);
    expect(after.outcomes.crashed - before.outcomes.crashed).toBe(1);
    expect(after.outcomes.interrupted - before.outcomes.interrupted).toBe(2);
    expect(after).toMatchObject({ busy: 0, queued: 0 });
    expect((await step(pool, type).job.outcome).kind).toBe('succeeded');
  });

  it('sends the rest of a batch to a fresh thread when an error no job owns ends its thread', async () => {
    const type = await shortType(pool);
    const reported = new Promise<ThreadError>((resolve) => pool.once('thread:error', resolve));
    const g = gate();
    const { result: jobs } = await batched(pool, () => [
      step(pool, type, { do: 'leftover' }),
      step(pool, type, { do: 'hold', gate: g }),
      step(pool, type),
      step(pool, type),
    ]);
    const [leftover, holder, ...rest] = jobs;
    expect(await reported).toMatchObject({
      source: 'uncaughtException',
      jobId: leftover!.job.jobId,
      error: { message: 'uncaught exception: thrown by a timer after its job ended' },
    });
    open(g);
    const outcomes = await Promise.all(jobs.map(({ job }) => job.outcome));
    expect(outcomes.map((o) => o.kind)).toEqual(['succeeded', 'succeeded', 'succeeded', 'succeeded']);
    expect(holder!.job.threadId).toBe(leftover!.job.threadId);
    for (const { job } of rest) expect(job.threadId).not.toBe(leftover!.job.threadId);
  });

  it('interrupts every job of a batch when the pool closes by force', async () => {
    const closing = new WorkerPool({ batchBelowMs: BATCH_BELOW_MS, maxThreads: 1, abortGraceMs: 100 });
    const type = await shortType(closing);
    let logged!: () => void;
    const looping = new Promise<void>((resolve) => (logged = resolve));
    const { result: jobs, tasks } = await batched(closing, () => [
      step(closing, type, { do: 'endless' }, { onLog: () => logged() }),
      step(closing, type),
      step(closing, type),
    ]);
    expect(tasks).toBe(1);
    await looping;
    await closing.close({ force: true });
    const outcomes = await Promise.all(jobs.map(({ job }) => job.outcome));
    expect(outcomes[0]).toMatchObject({ kind: 'interrupted', terminated: true });
    const shutdown: Outcome = {
      kind: 'interrupted',
      error: { name: 'AbortError', message: 'job interrupted by shutdown: the worker pool is closing (before its handler started)' },
      terminated: false,
    };
    expect(outcomes.slice(1)).toEqual([shutdown, shutdown]);
    expect(closing.stats().threads).toBe(0);
  });
});

describe('jobs fed to a busy thread', () => {
  it('feeds waiting jobs to the thread on its last job; they start there as it ends, and one cancelled first never starts', async () => {
    const type = await shortType(pool);
    const g = gate();
    const holder = step(pool, type, { do: 'hold', gate: g });
    await holder.started;
    const fedBefore = pool.stats().batches.fed;
    const { result: fed, tasks } = await batched(pool, () => [step(pool, type), step(pool, type)]);
    expect(tasks).toBe(0);
    expect(pool.stats().batches.fed - fedBefore).toBe(2);
    const [next, cancelled] = fed;
    cancelled!.job.abort('cancel', 'before its turn');
    expect(await cancelled!.job.outcome).toMatchObject({ kind: 'cancelled', terminated: false });
    expect(cancelled!.starts()).toBe(0);
    open(g);
    expect(await next!.job.outcome).toEqual({ kind: 'succeeded', output: { jobId: next!.job.jobId, threadId: holder.job.threadId } });
    expect(next!.starts()).toBe(1);
    expect((await holder.job.outcome).kind).toBe('succeeded');
  });

  it('runs a fed job on a thread that becomes free first', async () => {
    const two = new WorkerPool({ batchBelowMs: BATCH_BELOW_MS, maxThreads: 2, abortGraceMs: GRACE_MS });
    try {
      const type = await shortType(two);
      // A type not measured yet runs alone: nothing is fed to its thread.
      const otherGate = gate();
      const other = step(two, `step-${nextType++}`, { do: 'hold', gate: otherGate });
      await other.started;
      const holdGate = gate();
      const holder = step(two, type, { do: 'hold', gate: holdGate });
      await holder.started;
      const fedBefore = two.stats().batches.fed;
      const waiting = step(two, type);
      await Promise.resolve();
      expect(two.stats().batches.fed - fedBefore).toBe(1);
      // The other thread frees up while the holder still holds: it takes the fed job.
      open(otherGate);
      expect((await waiting.job.outcome).kind).toBe('succeeded');
      expect(waiting.job.threadId).toBe(other.job.threadId);
      expect(waiting.starts()).toBe(1);
      open(holdGate);
      expect((await holder.job.outcome).kind).toBe('succeeded');
    } finally {
      await two.close();
    }
  });

  it('feeds a batch no more jobs than it has abort cells for; a free thread takes the rest', async () => {
    // maxBatchJobs 2: a batch has cells for 4 jobs.
    const two = new WorkerPool({ batchBelowMs: BATCH_BELOW_MS, maxThreads: 2, abortGraceMs: GRACE_MS, maxBatchJobs: 2 });
    try {
      const type = await shortType(two);
      // A type not measured yet runs alone, on the other thread.
      const otherGate = gate();
      const other = step(two, `step-${nextType++}`, { do: 'hold', gate: otherGate });
      await other.started;
      const [a, b, c] = [gate(), gate(), gate()];
      const holder = step(two, type, { do: 'hold', gate: a });
      await holder.started;
      const fed = [step(two, type, { do: 'hold', gate: b }), step(two, type, { do: 'hold', gate: c })];
      await Promise.resolve();
      open(a);
      await fed[0]!.started;
      open(b);
      await fed[1]!.started;
      // The holder's thread is on the last of 3 jobs, with a cell for 1 more; more wait.
      const later = Array.from({ length: 3 }, () => step(two, type));
      await Promise.resolve();
      // The other thread frees up and takes what waits, and what the holder's thread has not started.
      open(otherGate);
      expect((await other.job.outcome).kind).toBe('succeeded');
      open(c);
      const jobs = [...fed, ...later];
      expect((await Promise.all(jobs.map((s) => s.job.outcome))).map((o) => o.kind)).toEqual(jobs.map(() => 'succeeded'));
      expect(jobs.map((s) => s.starts())).toEqual(jobs.map(() => 1));
      expect((await holder.job.outcome).kind).toBe('succeeded');
    } finally {
      await two.close();
    }
  });

  it('runs a job fed as its thread ended the batch elsewhere, once', async () => {
    const type = await shortType(pool);
    const g = gate();
    const holder = step(pool, type, { do: 'hold', gate: g });
    await holder.started;
    open(g);
    // This thread does not look at its messages for a while: the holder ends, and its thread ends the
    // batch, before this thread learns of it and feeds the batch a job.
    const until = performance.now() + 200;
    while (performance.now() < until);
    const fedBefore = pool.stats().batches.fed;
    const late = step(pool, type);
    await Promise.resolve();
    expect(pool.stats().batches.fed - fedBefore).toBe(1);
    expect((await holder.job.outcome).kind).toBe('succeeded');
    expect(await late.job.outcome).toEqual({ kind: 'succeeded', output: { jobId: late.job.jobId, threadId: holder.job.threadId } });
    expect(late.starts()).toBe(1);
  });
});
