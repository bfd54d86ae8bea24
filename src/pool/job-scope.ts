/**
 * One job on a thread (JobScope): loads its module, builds its `ctx` (JobContext), runs the
 * handler (or compensate) and turns whatever happens into a TaskResult; its progress and log
 * lines go to the pool on the thread's channel, its abort comes from the pool's message or from
 * its abort cell. thread.ts runs a task's jobs through it, one at a time.
 */
import { performance } from 'node:perf_hooks';
import { format } from 'node:util';
import { threadId, type MessagePort } from 'node:worker_threads';
import {
  ABORT_REASONS,
  describeAbort,
  type AbortMessage,
  type AbortReason,
  type BatchJob,
  type JobTask,
  type SerializedError,
  type TaskResult,
  type ThreadMessage,
} from './protocol.ts';
import { loadedModule, loadWorkerModule, type ThreadJobContext } from './loader.ts';
import { describeValue, serializeThrown, truncate } from './thrown.ts';
import { findUnstorable, storableText } from '../storable.ts';

/** At most one progress message per job per this many ms; the latest value wins, the last one is always sent. */
export const PROGRESS_INTERVAL_MS = 50;
/** Log lines kept per attempt; later ones are dropped, with one line saying so. */
export const MAX_LOG_LINES = 1000;
/** Characters kept per log line. */
export const MAX_LOG_LINE_CHARS = 8192;
/** Characters kept of a progress message. */
const MAX_PROGRESS_MESSAGE_CHARS = 1024;

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

/** Where a job's messages go, and where its abort comes from. */
export interface JobLink {
  /** The thread's channel to the pool (see PortHandoff). */
  port: MessagePort;
  /** The task the job belongs to: every message names it. */
  task: number;
  /** The job's abort cell: `flags[slot]` (a single job's abortFlag, slot 0). */
  flags: Int32Array | undefined;
  /** The job's slot in its batch; undefined for a single job. */
  slot: number | undefined;
  /** Delivers the supervisor messages already queued on the port (the abort message comes before its flag). */
  drain(): void;
}

/**
 * A handler's ctx. `signal` is a getter on the prototype: a getter in an object
 * literal makes V8 build each ctx the slow way, and a ctx is built for every job.
 * `progress` and `log` stay own functions, so a handler may take them out of ctx
 * and call them alone.
 */
class JobContext implements ThreadJobContext {
  readonly jobId: string;
  readonly attempt: number;
  readonly maxAttempts: number;
  readonly traceparent: string | undefined;
  readonly threadId: number;
  readonly progress: (percent: number, message?: string, data?: unknown) => void;
  readonly log: (...args: unknown[]) => void;
  readonly #scope: JobScope;

  constructor(scope: JobScope) {
    const { task } = scope;
    this.jobId = task.jobId;
    this.attempt = task.attempt;
    this.maxAttempts = task.maxAttempts;
    this.traceparent = task.traceparent;
    this.threadId = threadId;
    this.progress = (percent, message, data) => scope.progress(percent, message, data);
    this.log = (...args) => scope.log(args);
    this.#scope = scope;
  }

  get signal(): AbortSignal {
    return this.#scope.getSignal();
  }
}

/** One job on this thread: its ctx, its port, its abort state. */
export class JobScope {
  readonly task: BatchJob;
  readonly ctx: ThreadJobContext;
  readonly slot: number | undefined;
  /** Set once the handler has settled: later aborts and errors are not the handler's. */
  settled = false;
  abortedBy: AbortReason | undefined;
  readonly #port: MessagePort;
  readonly #taskId: number;
  readonly #flags: Int32Array | undefined;
  readonly #index: number;
  readonly #drainSupervisor: () => void;
  /** Made on first use of ctx.signal: most short handlers never look at it. */
  #controller: AbortController | undefined;
  #signal: AbortSignal | undefined;
  /** Tracked here: `signal.aborted` is overridden below and polls. */
  #signalFired = false;
  #abortError: Error | undefined;
  /** Ends the running handler's race with an error that escaped its callbacks. */
  #failWith: ((error: SerializedError) => void) | undefined;
  /** An error that escaped before the handler started (while its module loaded). */
  #escapedEarly: SerializedError | undefined;
  #logLines = 0;
  #warnedBadPercent = false;
  #warnedBadData = false;
  #progressPending = false;
  #progressPercent = 0;
  #progressMessage: string | undefined;
  #progressData: unknown;
  #lastProgressAt = -Infinity;
  #progressTimer: NodeJS.Timeout | undefined;

  constructor(task: BatchJob, link: JobLink) {
    this.task = task;
    this.#port = link.port;
    this.#taskId = link.task;
    this.#flags = link.flags;
    this.slot = link.slot;
    this.#index = link.slot ?? 0;
    this.#drainSupervisor = link.drain;
    this.ctx = new JobContext(this);
  }

  post(message: ThreadMessage): void {
    if (this.slot !== undefined) message.slot = this.slot;
    this.#port.postMessage(message);
  }

  /** Fails the running job with an error that escaped its callbacks. */
  fail(error: SerializedError): void {
    if (this.#failWith === undefined) {
      this.#escapedEarly ??= error;
      return;
    }
    this.#failWith(error);
    this.#failWith = undefined;
  }

  /** Runs the handler (or compensate) and returns what the pool should see; `checkClone`: see below. */
  async execute(checkClone: boolean): Promise<TaskResult> {
    const { task } = this;
    const cached = loadedModule(task.modulePath);
    const loaded = cached ?? (await loadWorkerModule(task.modulePath));
    // Its 'started' said loading: the job's clock starts now.
    if (cached === undefined) this.post({ type: 'loaded', task: this.#taskId });
    if (!loaded.ok) {
      const error: SerializedError = {
        name: 'LoadError',
        message: `cannot load worker module "${task.type}" (${task.modulePath}): ${loaded.reason}`,
        phase: 'load',
        // The module cache keeps the failure: another attempt on this thread cannot do better.
        permanent: true,
      };
      if (loaded.stack !== undefined) error.stack = loaded.stack;
      return this.#finish({ ok: false, error });
    }
    const { module } = loaded;
    // Stopped before the handler began (while its module loaded, or as the job was taken): never start it.
    this.pollAbort();
    if (this.#signalFired) {
      const error = serializeThrown(this.#abortError, 'handler');
      return this.#finish({ ok: false, error, notStarted: cached === undefined ? 'loading' : 'taken' });
    }
    const { compensate } = module;
    if (task.mode === 'compensate' && compensate === undefined) {
      return this.#finish({ ok: true, output: undefined, noCompensate: true });
    }
    const startedAt = performance.now();
    // Whichever comes first: the handler settles, or an error escapes its callbacks (fail()).
    const result = await new Promise<TaskResult>((resolve) => {
      if (this.#escapedEarly !== undefined) return resolve({ ok: false, error: this.#escapedEarly });
      this.#failWith = (error) => resolve({ ok: false, error });
      try {
        const value =
          task.mode === 'compensate'
            ? compensate!(task.input, task.cancelReason ?? '', this.ctx)
            : module.handler(task.input, this.ctx);
        // Promise.resolve: the same promise for a native one; a foreign thenable is flattened as `await` would.
        if (isThenable(value)) {
          Promise.resolve(value).then(
            (output) => resolve({ ok: true, output }),
            (err: unknown) => resolve({ ok: false, error: serializeThrown(err, 'handler') }),
          );
        } else {
          resolve({ ok: true, output: value });
        }
      } catch (err) {
        resolve({ ok: false, error: serializeThrown(err, 'handler') });
      }
    });
    this.#failWith = undefined;
    result.runMs = performance.now() - startedAt;
    if (result.ok && result.output !== undefined) {
      // Refused here, where the handler's value is: the job fails alone, naming the part at fault.
      const bad = findUnstorable(result.output, 'output');
      if (bad !== undefined) return this.#finish(outputFailure(task.mode, bad.path, bad.problem, result.runMs));
    }
    if (result.ok && checkClone) {
      try {
        // Checked here, where the reason can still be told: a failed postMessage
        // inside Piscina would surface as a thread error without a job. (A batch
        // posts results itself and sees the failure there: no copy made twice.)
        structuredClone(result.output);
      } catch (err) {
        return this.#finish(cloneFailure(err, result.runMs));
      }
    }
    return this.#finish(result);
  }

  #finish(result: TaskResult): TaskResult {
    this.pollAbort();
    this.settled = true;
    if (this.abortedBy !== undefined) result.abortedBy = this.abortedBy;
    this.#flushProgress();
    return result;
  }

  /** Stops the job's own timer; the port belongs to whoever opened it. */
  close(): void {
    if (this.#progressTimer !== undefined) clearTimeout(this.#progressTimer);
  }

  /** The supervisor stops this job. */
  receive(message: AbortMessage): void {
    this.#fireAbort(message.reason, message.message);
  }

  #fireAbort(reason: AbortReason, message: string): void {
    if (this.#signalFired) return;
    this.#signalFired = true;
    if (!this.settled) this.abortedBy = reason;
    const error = new Error(message);
    error.name = reason === 'timeout' ? 'TimeoutError' : 'AbortError';
    this.#abortError = error;
    this.#controller?.abort(error);
  }

  /** Fires the signal if the supervisor has set the abort flag, even if its message is still queued. */
  pollAbort(): void {
    const flags = this.#flags;
    if (flags === undefined || this.#signalFired) return;
    const code = Atomics.load(flags, this.#index);
    // 0: not aborted; SLOT_STARTED (negative): this thread's own mark in a batch.
    if (code <= 0) return;
    // The message is posted before the flag is set, so it is already on the port.
    this.#drainSupervisor();
    const reason = ABORT_REASONS[code - 1] ?? 'cancel';
    this.#fireAbort(reason, describeAbort(reason));
  }

  /**
   * The job's AbortSignal, with `aborted` and `throwIfAborted()` that also look
   * at the shared abort flag: a handler in a synchronous loop never gets the
   * abort message, but it does read its signal.
   */
  getSignal(): AbortSignal {
    if (this.#signal !== undefined) return this.#signal;
    const controller = new AbortController();
    this.#controller = controller;
    if (this.#abortError !== undefined) controller.abort(this.#abortError);
    const signal = controller.signal;
    this.#signal = signal;
    const abortedGetter = Object.getOwnPropertyDescriptor(AbortSignal.prototype, 'aborted')?.get;
    if (this.#flags === undefined || abortedGetter === undefined) return signal;
    const poll = (): void => this.pollAbort();
    Object.defineProperty(signal, 'aborted', {
      configurable: true,
      get(): boolean {
        poll();
        return abortedGetter.call(signal) as boolean;
      },
    });
    const throwIfAborted = AbortSignal.prototype.throwIfAborted;
    Object.defineProperty(signal, 'throwIfAborted', {
      configurable: true,
      value(): void {
        poll();
        throwIfAborted.call(signal);
      },
    });
    return signal;
  }

  progress(percent: number, message: string | undefined, data: unknown): void {
    if (typeof percent !== 'number' || !Number.isFinite(percent)) {
      if (!this.#warnedBadPercent) {
        this.#warnedBadPercent = true;
        this.log([`[spindle] ctx.progress() ignored a percent that is not a finite number: ${describeValue(percent)}`]);
      }
      return;
    }
    this.#progressPercent = percent < 0 ? 0 : percent > 100 ? 100 : percent;
    this.#progressMessage = message;
    this.#progressData = data;
    this.#progressPending = true;
    // A time check on each call, not a timer: a handler in a synchronous loop runs no timers.
    const now = performance.now();
    if (now - this.#lastProgressAt >= PROGRESS_INTERVAL_MS) {
      this.#flushProgress(now);
      this.pollAbort();
    } else if (this.#progressTimer === undefined) {
      const delay = Math.ceil(PROGRESS_INTERVAL_MS - (now - this.#lastProgressAt));
      this.#progressTimer = setTimeout(() => {
        this.#progressTimer = undefined;
        this.#flushProgress();
      }, delay);
    }
  }

  #flushProgress(now = performance.now()): void {
    if (!this.#progressPending) return;
    this.#progressPending = false;
    this.#lastProgressAt = now;
    const message: ThreadMessage = { type: 'progress', task: this.#taskId, percent: this.#progressPercent };
    if (this.slot !== undefined) message.slot = this.slot;
    if (this.#progressMessage !== undefined) {
      message.message = storableText(truncate(String(this.#progressMessage), MAX_PROGRESS_MESSAGE_CHARS));
    }
    if (this.#progressData !== undefined) {
      const bad = findUnstorable(this.#progressData, 'data');
      if (bad === undefined) message.data = this.#progressData;
      else if (!this.#warnedBadData) {
        this.#warnedBadData = true;
        this.log([`[spindle] ctx.progress() dropped data that cannot be stored: ${bad.path} ${bad.problem}`]);
      }
    }
    try {
      this.#port.postMessage(message);
    } catch (err) {
      delete message.data;
      this.#port.postMessage(message);
      if (!this.#warnedBadData) {
        this.#warnedBadData = true;
        this.log([`[spindle] ctx.progress() dropped data that cannot be cloned: ${serializeThrown(err, 'handler').message}`]);
      }
    }
    this.#progressData = undefined;
  }

  log(args: unknown[]): void {
    if (this.#logLines > MAX_LOG_LINES) return;
    this.#logLines += 1;
    let line: string;
    if (this.#logLines > MAX_LOG_LINES) {
      line = `[spindle] log limit of ${MAX_LOG_LINES} lines reached: later lines of this attempt are dropped`;
    } else {
      try {
        line = storableText(truncate(format(...args), MAX_LOG_LINE_CHARS));
      } catch (err) {
        line = `[spindle] ctx.log() arguments could not be formatted: ${serializeThrown(err, 'handler').message}`;
      }
    }
    this.post({ type: 'log', task: this.#taskId, line });
  }
}

/** A handler's (or compensate's) result that the database cannot store: fails the job, not retried. */
function outputFailure(mode: JobTask['mode'], path: string, problem: string, runMs: number | undefined): TaskResult {
  const whose = mode === 'compensate' ? "compensate()'s result" : "the handler's result";
  const result: TaskResult = {
    ok: false,
    error: { name: 'OutputError', message: `${whose} cannot be stored: ${path} ${problem}`, phase: 'handler', permanent: true },
  };
  if (runMs !== undefined) result.runMs = runMs;
  return result;
}

/** A handler's (or compensate's) result that cannot be cloned to the pool: fails the job, not retried. */
export function cloneFailure(err: unknown, runMs: number | undefined): TaskResult {
  const cause = serializeThrown(err, 'clone');
  const result: TaskResult = {
    ok: false,
    error: {
      name: 'DataCloneError',
      message: `handler returned a value that cannot be cloned: ${cause.message}`,
      phase: 'clone',
      permanent: true,
    },
  };
  if (runMs !== undefined) result.runMs = runMs;
  return result;
}
