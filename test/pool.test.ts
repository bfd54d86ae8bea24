/**
 * The worker pool through its public API: every way a job can end, with the
 * message a user would read, and the pool's health after threads die.
 */
import { once } from 'node:events';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WorkerPool, type Outcome, type RunOptions, type RunningJob, type ThreadError, type ThreadEvent } from '../src/pool/pool.ts';

const GRACE_MS = 300;

function fixture(file: string): string {
  return fileURLToPath(new URL(`./fixtures/workers/${file}`, import.meta.url));
}

let nextId = 1;

/** Runs fixture `file` as a job on `pool`. */
function start(pool: WorkerPool, file: string, input: unknown = {}, options: RunOptions = {}) {
  const type = file.replace(/\.[^.]+$/, '');
  return pool.run(
    { mode: 'run', jobId: String(nextId++), type, modulePath: fixture(file), input, attempt: 1, maxAttempts: 3 },
    options,
  );
}

function run(pool: WorkerPool, file: string, input: unknown = {}, options: RunOptions = {}): Promise<Outcome> {
  return start(pool, file, input, options).outcome;
}

/** `started` resolves when a thread takes the job; `logged` with its first log line (the handler is running). */
function startedOn(options: RunOptions = {}): { options: RunOptions; started: Promise<number>; logged: Promise<string> } {
  let onStart!: (threadId: number) => void;
  let onLog!: (line: string) => void;
  const started = new Promise<number>((resolve) => (onStart = resolve));
  const logged = new Promise<string>((resolve) => (onLog = resolve));
  return { options: { ...options, onStart, onLog }, started, logged };
}

let pool: WorkerPool;

beforeAll(() => {
  pool = new WorkerPool({ maxThreads: 2, abortGraceMs: GRACE_MS, memoryLimitsMb: { 'heap-hog': 64 } });
});

afterAll(async () => {
  await pool.close({ force: true });
});

describe('outcomes', () => {
  it('succeeds with the handler output and the ctx it saw', async () => {
    const { options, started } = startedOn();
    const job = start(pool, 'echo.ts', { hello: 'world' }, options);
    const outcome = await job.outcome;
    const threadId = await started;
    expect(outcome).toEqual({
      kind: 'succeeded',
      output: { input: { hello: 'world' }, jobId: job.jobId, attempt: 1, maxAttempts: 3, threadId },
    });
    expect(job.threadId).toBe(threadId);
    expect(job.startedAt).toBeTypeOf('number');
  });

  it('fails with the name, message and stack of a thrown Error', async () => {
    const outcome = await run(pool, 'throws-error.ts');
    expect(outcome.kind).toBe('failed');
    if (outcome.kind !== 'failed') return;
    expect(outcome.permanent).toBe(false);
    expect(outcome.error).toMatchObject({ name: 'TypeError', message: 'the input was not what I wanted', phase: 'handler' });
    expect(outcome.error.stack).toContain('throws-error.ts');
  });

  it('makes a thrown string or undefined readable', async () => {
    expect(await run(pool, 'throws-string.ts')).toMatchObject({
      kind: 'failed',
      error: { message: 'handler threw a non-Error value: "boom"' },
    });
    expect(await run(pool, 'throws-undefined.js')).toMatchObject({
      kind: 'failed',
      error: { message: 'handler threw a non-Error value: undefined' },
    });
  });

  it('marks a PermanentError as permanent', async () => {
    expect(await run(pool, 'throws-permanent.ts')).toMatchObject({
      kind: 'failed',
      permanent: true,
      error: { name: 'PermanentError', message: 'this input can never work', permanent: true },
    });
  });

  it('fails a result that cannot be cloned, saying so', async () => {
    const outcome = await run(pool, 'returns-weakmap.ts');
    expect(outcome).toMatchObject({ kind: 'failed', permanent: true, error: { phase: 'clone' } });
    if (outcome.kind === 'failed') expect(outcome.error.message).toMatch(/^handler returned a value that cannot be cloned: /);
  });

  it('fails, for good, a result that cannot be stored, naming the part at fault', async () => {
    const outcome = await run(pool, 'returns-function.ts');
    expect(outcome).toMatchObject({ kind: 'failed', permanent: true, error: { name: 'OutputError', phase: 'handler' } });
    if (outcome.kind === 'failed') expect(outcome.error.message).toMatch(/^the handler's result cannot be stored: output/);
  });

  it.each([
    ['throws-at-import.ts', 'Error: cannot start: missing configuration'],
    ['syntax-error.mjs', 'SyntaxError'],
    ['no-default.ts', 'it has no default export function'],
    ['does-not-exist.ts', 'Cannot find module'],
  ])('fails a job whose module cannot load (%s), for good', async (file, reason) => {
    const outcome = await run(pool, file);
    expect(outcome).toMatchObject({ kind: 'failed', permanent: true, error: { name: 'LoadError', phase: 'load' } });
    if (outcome.kind === 'failed') {
      const type = file.replace(/\.[^.]+$/, '');
      expect(outcome.error.message).toContain(`cannot load worker module "${type}" (${fixture(file)}): `);
      expect(outcome.error.message).toContain(reason);
    }
  });

  it('fails at once, without a thread, a type the registry could not load', async () => {
    const job = start(pool, 'echo.ts', {}, { loadError: 'cannot load worker module "echo" (x): broken' });
    expect(await job.outcome).toEqual({
      kind: 'failed',
      permanent: true,
      error: { name: 'LoadError', message: 'cannot load worker module "echo" (x): broken', phase: 'load', permanent: true },
    });
    expect(job.threadId).toBeUndefined();
  });

  it('fails a job with an error that escapes the handler while it runs', async () => {
    expect(await run(pool, 'escaping-errors.ts', { mode: 'timer' })).toMatchObject({
      kind: 'failed',
      error: { name: 'RangeError', message: 'uncaught exception: thrown by a timer' },
    });
    const logs: string[] = [];
    expect(await run(pool, 'escaping-errors.ts', { mode: 'rejection' }, { onLog: (line) => logs.push(line) })).toMatchObject({
      kind: 'failed',
      error: { message: 'unhandled rejection: nobody awaited me' },
    });
    expect(logs).toContain('[spindle] unhandled rejection: nobody awaited me');
  });

  it('reports a process.exit() as a crash and replaces the thread', async () => {
    expect(await run(pool, 'exit.ts')).toEqual({
      kind: 'crashed',
      error: { name: 'WorkerCrashError', message: 'worker thread exited with code 3', phase: 'thread' },
    });
    expect((await run(pool, 'echo.ts')).kind).toBe('succeeded');
    expect(pool.stats().threads).toBe(2);
  });

  it('reports running out of memory as a crash, and the process lives on', async () => {
    expect(await run(pool, 'heap-hog.ts')).toEqual({
      kind: 'crashed',
      error: { name: 'WorkerCrashError', message: 'worker thread ran out of memory (limit 64 MB)', phase: 'thread' },
    });
    expect((await run(pool, 'echo.ts')).kind).toBe('succeeded');
  });
});

describe('progress and logs', () => {
  it('delivers coalesced progress, the last value before the outcome, and log lines', async () => {
    const progress: Array<[number, string | undefined, unknown]> = [];
    const logs: string[] = [];
    const job = start(pool, 'progress.ts', { calls: 200_000 }, {
      onProgress: (percent, message, data) => progress.push([percent, message, data]),
      onLog: (line) => logs.push(line),
    });
    const outcome = await job.outcome;
    expect(outcome).toEqual({ kind: 'succeeded', output: { calls: 200_000 } });
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.length).toBeLessThan(100);
    expect(progress.at(-1)).toEqual([100, 'step 200000', { i: 200_000 }]);
    const percents = progress.map(([percent]) => percent);
    expect(percents).toEqual([...percents].sort((a, b) => a - b));
    expect(logs).toContain('done with 200000 calls { calls: 200000 }');
    expect(logs.some((line) => line.includes('ignored a percent that is not a finite number: NaN'))).toBe(true);
  });

  it('lets a handler take progress, log and signal out of ctx and use them alone', async () => {
    const progress: Array<[number, string | undefined]> = [];
    const logs: string[] = [];
    const job = start(pool, 'detached-ctx.ts', null, {
      onProgress: (percent, message) => progress.push([percent, message]),
      onLog: (line) => logs.push(line),
    });
    expect(await job.outcome).toEqual({ kind: 'succeeded', output: { jobId: job.jobId, signal: true, aborted: false } });
    expect(progress).toEqual([[50, 'half way']]);
    expect(logs).toEqual([`job ${job.jobId}, attempt 1`]);
  });

  it('calls the callbacks as methods of the options object, and reports one that throws without failing the job', async () => {
    class Listener implements RunOptions {
      threadId: number | undefined;
      readonly percents: number[] = [];
      readonly lines: string[] = [];
      onStart(threadId: number): void {
        this.threadId = threadId;
      }
      onProgress(percent: number): void {
        this.percents.push(percent);
      }
      onLog(line: string): void {
        this.lines.push(line);
        throw new Error('listener bug');
      }
    }
    const errors: ThreadError[] = [];
    const onError = (error: ThreadError) => errors.push(error);
    pool.on('thread:error', onError);
    try {
      const listener = new Listener();
      const job = start(pool, 'progress.ts', { calls: 10 }, listener);
      expect(await job.outcome).toEqual({ kind: 'succeeded', output: { calls: 10 } });
      expect(listener.threadId).toBe(job.threadId);
      expect(listener.percents.at(-1)).toBe(100);
      expect(listener.lines).toContain('done with 10 calls { calls: 10 }');
      expect(errors).toContainEqual(
        expect.objectContaining({ source: 'pool', jobId: job.jobId, error: expect.objectContaining({ message: 'listener bug' }) }),
      );
    } finally {
      pool.off('thread:error', onError);
    }
  });

  it('keeps ctx.progress() cheap: well under 500 ns a call (5% of a job calling it 100,000 times a second)', async () => {
    const outcome = await run(pool, 'progress-cost.ts', { calls: 1_000_000 });
    expect(outcome.kind).toBe('succeeded');
    if (outcome.kind !== 'succeeded') return;
    const { perCallNs, clock } = outcome.output as { perCallNs: number; clock: string };
    expect(perCallNs, `ns a call, by ${clock} time`).toBeLessThan(500);
  });
});

describe('timeouts and aborts', () => {
  it("counts a job's timeout from its handler's start, not from its module's first import on a thread", async () => {
    const single = new WorkerPool({ maxThreads: 1, abortGraceMs: GRACE_MS });
    try {
      const { options, started } = startedOn({ timeoutMs: 50 });
      // The import takes 150 ms, three times the job's timeout.
      expect(await start(single, 'slow-import.ts', {}, options).outcome).toEqual({ kind: 'succeeded', output: 'ran' });
      expect(await started).toBeGreaterThan(0);
    } finally {
      await single.close({ force: true });
    }
  });

  it('says a job stopped while its module loaded never started its handler', async () => {
    const single = new WorkerPool({ maxThreads: 1, abortGraceMs: GRACE_MS });
    try {
      let handlerStarted = false;
      const job = start(single, 'slow-import.ts', {}, { onStart: () => (handlerStarted = true) });
      // Taken by the thread, which imports the module for 150 ms before it could call the handler.
      await expect.poll(() => job.startedAt, { interval: 1, timeout: 10_000 }).toBeDefined();
      job.abort('cancel');
      expect(await job.outcome).toEqual({
        kind: 'cancelled',
        error: { name: 'AbortError', message: 'job cancelled (before its handler started, while its module loaded)' },
        terminated: false,
      });
      expect(handlerStarted).toBe(false);
    } finally {
      await single.close({ force: true });
    }
  });

  it('terminates an endless loop at its deadline plus the grace, and the pool recovers', async () => {
    // Read before the job's clock can start: however late this thread runs, the deadline and the
    // grace both lie inside `elapsed`.
    const before = performance.now();
    const job = start(pool, 'endless.ts', {}, { timeoutMs: 200 });
    const outcome = await job.outcome;
    const elapsed = performance.now() - before;
    expect(outcome).toEqual({
      kind: 'timed_out',
      error: { name: 'TimeoutError', message: 'job timed out after 200 ms' },
      terminated: true,
    });
    expect(elapsed).toBeGreaterThanOrEqual(200 + GRACE_MS - 5);
    // Ended by the grace, not by a later bound (the wait for a terminated thread's exit is 10 s).
    expect(elapsed).toBeLessThan(5_000);
    expect(pool.stats().threads).toBe(2);
    const next = await Promise.all([run(pool, 'echo.ts'), run(pool, 'echo.ts')]);
    expect(next.map((o) => o.kind)).toEqual(['succeeded', 'succeeded']);
  });

  it('lets a handler that honours its signal return within the grace, without terminating it', async () => {
    const single = new WorkerPool({ maxThreads: 1, abortGraceMs: 2_000 });
    try {
      const { options, started } = startedOn({ timeoutMs: 100 });
      const first = start(single, 'cooperative.ts', { ms: 10_000 }, options);
      const threadId = await started;
      // Not terminated: it returned within its grace.
      expect(await first.outcome).toEqual({
        kind: 'timed_out',
        error: { name: 'TimeoutError', message: 'job timed out after 100 ms' },
        terminated: false,
      });
      // A synchronous loop that never yields but reads ctx.signal.aborted stops too.
      expect(await run(single, 'cooperative-sync.mts', {}, { timeoutMs: 100 })).toMatchObject({
        kind: 'timed_out',
        terminated: false,
      });
      const after = await run(single, 'echo.ts');
      expect(after).toMatchObject({ kind: 'succeeded', output: { threadId } });
    } finally {
      await single.close();
    }
  });

  it('cancels a running job with the reason its signal carries', async () => {
    const { options, logged } = startedOn();
    const job = start(pool, 'cooperative.ts', { ms: 10_000 }, options);
    // Its handler runs: on a loaded machine the module could still be loading when the grace ends.
    await logged;
    job.abort('cancel', 'requested by the user');
    expect(await job.outcome).toEqual({
      kind: 'cancelled',
      error: { name: 'AbortError', message: 'job cancelled: requested by the user' },
      terminated: false,
    });
  });

  it('maps a lost lease and a shutdown to their outcomes, terminating a thread that does not listen', async () => {
    const lost = startedOn();
    const lostJob = start(pool, 'endless.ts', {}, lost.options);
    const shutdown = startedOn();
    const shutdownJob = start(pool, 'endless.ts', {}, shutdown.options);
    await Promise.all([lost.logged, shutdown.logged]);
    lostJob.abort('lost');
    shutdownJob.abort('shutdown');
    lostJob.abort('cancel'); // the first reason wins
    expect(await lostJob.outcome).toEqual({
      kind: 'lost',
      error: { name: 'AbortError', message: 'job lease lost' },
      terminated: true,
    });
    expect(await shutdownJob.outcome).toMatchObject({ kind: 'interrupted', terminated: true });
    expect((await run(pool, 'echo.ts')).kind).toBe('succeeded');
  });

  it('cancels a job still waiting for a thread without touching any thread', async () => {
    const single = new WorkerPool({ maxThreads: 1 });
    try {
      const busy = startedOn();
      const blocker = start(single, 'cooperative.ts', { ms: 10_000 }, busy.options);
      const threadId = await busy.started;
      const waiting = start(single, 'echo.ts');
      expect(single.stats().queued).toBe(1);
      waiting.abort('cancel');
      expect(await waiting.outcome).toEqual({
        kind: 'cancelled',
        error: { name: 'AbortError', message: 'job cancelled (before its handler started)' },
        terminated: false,
      });
      expect(waiting.threadId).toBeUndefined();
      await busy.logged;
      blocker.abort('cancel');
      expect(await blocker.outcome).toMatchObject({ kind: 'cancelled', terminated: false });
      expect(await run(single, 'echo.ts')).toMatchObject({ output: { threadId } });
    } finally {
      await single.close();
    }
  });

  it('keeps the main event loop turning while terminated threads take their time to exit', async () => {
    // Each job's thread is stuck in a native call that terminating it cannot interrupt, so it exits
    // only when the test lets its child go (native-block.ts). The test does that from a timer on this
    // thread, TICKS firings after the thread's termination began: an outcome can only arrive if this
    // event loop went on turning while its thread was being terminated. Were this thread blocked then
    // (a terminate that waits for the exit, a handler run here), each child would end itself at its
    // bound instead. Firings are counted, not timed: a loaded machine makes them late, not fewer.
    const TICKS = 5;
    /** One on each thread of the pool. */
    const JOBS = 2;
    const steps: string[][] = Array.from({ length: JOBS }, () => []);
    const byThread = new Map<number, number>();
    const children = new Map<number, Socket>();
    /** Jobs whose thread is being terminated, with the timer firings seen since. */
    const terminating = new Map<number, number>();
    const released = new Set<number>();
    const jobs: RunningJob[] = [];
    const server = createServer((socket) => {
      socket.once('data', (data) => {
        const i = Number(data.toString());
        children.set(i, socket);
        steps[i]!.push('blocked');
        socket.once('close', () => {
          if (!released.has(i)) steps[i]!.push('child ended itself');
        });
        jobs[i]!.abort('cancel');
      });
    });
    const onDestroy = ({ threadId }: ThreadEvent) => {
      const i = threadId === undefined ? undefined : byThread.get(threadId);
      if (i === undefined) return;
      steps[i]!.push('terminating');
      terminating.set(i, 0);
    };
    const ticker = setInterval(() => {
      for (const [i, ticks] of terminating) {
        if (ticks + 1 < TICKS) {
          terminating.set(i, ticks + 1);
          continue;
        }
        terminating.delete(i);
        released.add(i);
        steps[i]!.push('released');
        children.get(i)!.destroy();
      }
    }, 1);
    pool.on('thread:destroy', onDestroy);
    try {
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const { port } = server.address() as AddressInfo;
      for (let i = 0; i < JOBS; i++) {
        const onStart = (threadId: number) => byThread.set(threadId, i);
        jobs.push(start(pool, 'native-block.ts', { port, id: String(i), boundMs: 10_000 }, { onStart }));
      }
      const outcomes = await Promise.all(
        jobs.map((job, i) =>
          job.outcome.then((outcome) => {
            steps[i]!.push('exited');
            return outcome;
          }),
        ),
      );
      expect(steps).toEqual(steps.map(() => ['blocked', 'terminating', 'released', 'exited']));
      expect(outcomes).toEqual(
        outcomes.map(() => ({ kind: 'cancelled', error: { name: 'AbortError', message: 'job cancelled' }, terminated: true })),
      );
      expect(pool.stats().threads).toBe(2);
    } finally {
      clearInterval(ticker);
      pool.off('thread:destroy', onDestroy);
      for (const socket of children.values()) socket.destroy();
      server.close();
    }
  });
});

describe('errors no job owns', () => {
  it('reports an error from a finished job, ends that thread between jobs, and re-dispatches a job it was given', async () => {
    const single = new WorkerPool({ maxThreads: 1 });
    try {
      const reported = new Promise<ThreadError>((resolve) => single.once('thread:error', resolve));
      const leftover = start(single, 'escaping-errors.ts', { mode: 'leftover' });
      // Runs while the leftover timer fires: the error is not this job's.
      const bystander = start(single, 'cooperative.ts', { ms: 200 });
      const queued = start(single, 'echo.ts');
      expect(await leftover.outcome).toEqual({ kind: 'succeeded', output: 'finished early' });
      const error = await reported;
      expect(error).toMatchObject({
        source: 'uncaughtException',
        jobId: leftover.jobId,
        jobType: 'escaping-errors',
        error: { message: 'uncaught exception: thrown by a timer after its job ended' },
      });
      expect(await bystander.outcome).toEqual({ kind: 'succeeded', output: { reason: 'not aborted' } });
      const last = await queued.outcome;
      expect(last.kind).toBe('succeeded');
      expect(queued.threadId).not.toBe(leftover.threadId);
      expect(single.stats().threads).toBe(1);
    } finally {
      await single.close();
    }
  });
});

describe('compensate', () => {
  it("runs the module's compensate with the cancel reason", async () => {
    const job = pool.runCompensate({
      jobId: '77',
      type: 'compensating',
      modulePath: fixture('compensating.ts'),
      input: { order: 1 },
      attempt: 2,
      maxAttempts: 3,
      cancelReason: 'changed my mind',
    });
    expect(await job.outcome).toEqual({
      kind: 'succeeded',
      output: { undone: { order: 1 }, reason: 'changed my mind', attempt: 2 },
    });
  });

  it('succeeds with noCompensate for a module without one', async () => {
    const job = pool.runCompensate({
      jobId: '78',
      type: 'echo',
      modulePath: fixture('echo.ts'),
      input: {},
      attempt: 1,
      maxAttempts: 1,
      cancelReason: 'x',
    });
    expect(await job.outcome).toEqual({ kind: 'succeeded', output: undefined, noCompensate: true });
  });
});

describe('the pool itself', () => {
  it('checks its options', () => {
    expect(() => new WorkerPool({ maxThreads: 0 })).toThrow(/^options\.maxThreads must be a positive integer/);
    expect(() => new WorkerPool({ maxThreads: 1.5 })).toThrow(/^options\.maxThreads must be a positive integer/);
    expect(() => new WorkerPool({ maxThreads: 1, abortGraceMs: -1 })).toThrow(/^options\.abortGraceMs must be/);
    expect(() => new WorkerPool({ maxThreads: 1, memoryLimitsMb: { x: 4 } })).toThrow(
      /^options\.memoryLimitsMb\["x"\] must be an integer of at least 16/,
    );
  });

  it('counts outcomes and run times', () => {
    const stats = pool.stats();
    expect(stats.maxThreads).toBe(2);
    expect(stats.completed).toBeGreaterThan(10);
    expect(stats.outcomes.succeeded).toBeGreaterThan(0);
    expect(stats.outcomes.timed_out).toBeGreaterThan(0);
    expect(stats.runTimeMs.count).toBeGreaterThan(0);
    expect(stats.utilisation).toBeGreaterThan(0);
    expect(stats.utilisation).toBeLessThanOrEqual(1);
    expect(stats.busy).toBe(0);
  });

  it('starts one thread at first with initialThreads: 1, the rest at startThreads(), and keeps them all', async () => {
    const staged = new WorkerPool({ maxThreads: 3, initialThreads: 1 });
    try {
      expect(staged.stats().threads).toBe(1);
      expect((await run(staged, 'echo.ts')).kind).toBe('succeeded');
      expect(staged.stats().threads).toBe(1);
      staged.startThreads();
      expect(staged.stats().threads).toBe(3);
      // Three jobs at once, each holding its thread a while: three threads run them.
      const jobs = Array.from({ length: 3 }, () => startedOn());
      const outcomes = jobs.map((job) => run(staged, 'cooperative.ts', { ms: 300 }, job.options));
      const threads = await Promise.all(jobs.map((job) => job.started));
      expect((await Promise.all(outcomes)).map((o) => o.kind)).toEqual(['succeeded', 'succeeded', 'succeeded']);
      expect(new Set(threads).size).toBe(3);
      // A thread that dies is replaced: the pool holds its minThreads from now on.
      expect((await run(staged, 'exit.ts')).kind).toBe('crashed');
      await expect.poll(() => staged.stats().threads).toBe(3);
    } finally {
      await staged.close({ force: true });
    }
  });

  it('closes by force: running jobs are interrupted, later ones too', async () => {
    const closing = new WorkerPool({ maxThreads: 1, abortGraceMs: 100 });
    const { options, logged } = startedOn();
    const job = start(closing, 'endless.ts', {}, options);
    await logged;
    await closing.close({ force: true });
    expect(await job.outcome).toMatchObject({ kind: 'interrupted', terminated: true });
    expect(closing.stats().threads).toBe(0);
    expect(await run(closing, 'echo.ts')).toMatchObject({ kind: 'interrupted' });
  });
});
