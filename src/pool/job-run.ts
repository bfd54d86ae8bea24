/**
 * One job's way through a pool (JobRun): dispatch, its thread's messages, abort, outcome. It runs
 * as a Piscina task of its own, or rides in a batch (batch.ts), which routes its thread's reports
 * to it.
 *
 * - Its timeout clock starts when its handler is called: after the thread takes it ('started')
 *   and, on that thread's first job of its module, after the import ('loaded').
 * - Stopping it (timeout, cancel, lost lease, shutdown) first fires its `ctx.signal`; a handler
 *   that has not returned `abortGraceMs` later has its thread terminated, and Piscina starts a
 *   replacement.
 * - `outcome` resolves once and never rejects; when its thread was terminated or died, only after
 *   that thread has really exited.
 */
import { performance } from 'node:perf_hooks';
import type { Worker } from 'node:worker_threads';
import type { ThreadChannels } from './channels.ts';
import {
  ABORT_REASONS,
  MODULE_IMPORT_LIMIT_MS,
  describeAbort,
  type AbortMessage,
  type AbortReason,
  type JobTask,
  type SerializedError,
  type TaskResult,
  type ThreadMessage,
} from './protocol.ts';
import type { JobRequest, Outcome, OutcomeKind, RunOptions, RunningJob, ThreadError } from './running-job.ts';
import {
  afterExit,
  appendLate,
  describeDeath,
  terminateTask,
  threadHolding,
  toSerializedError,
  type TaskLane,
} from './task-thread.ts';

/** How often a job whose thread died before starting it is dispatched again. */
const MAX_REDISPATCHES = 3;

const ABORT_OUTCOME = {
  timeout: 'timed_out',
  cancel: 'cancelled',
  lost: 'lost',
  shutdown: 'interrupted',
} as const satisfies Record<AbortReason, OutcomeKind>;

/** What a JobRun needs of its pool. */
export interface RunHost {
  readonly channels: ThreadChannels;
  readonly abortGraceMs: number;
  readonly exitWaitMs: number;
  readonly closing: boolean;
  runStarted(run: JobRun): void;
  runFinished(run: JobRun, outcome: Outcome, runTimeMs: number): void;
  reportError(error: ThreadError): void;
}

/** What a JobRun needs of its lane (lane.ts). */
export interface RunLane extends TaskLane {
  /** The number, 1 to its most threads, of its thread with this id. */
  threadNumber(threadId: number): number;
  /** Takes a run that was never dispatched out of the queue; false if it was dispatched. */
  withdraw(run: JobRun): boolean;
  /** A task it dispatched settled in Piscina: its thread is free (or being replaced). */
  release(): void;
}

/** What a JobRun needs of the batch that carries it (batch.ts). */
export interface RunCarrier {
  /** Stops `run`, in `slot` of the batch, with `message`. */
  abortJob(run: JobRun, slot: number, message: AbortMessage): void;
}

/** One job's way through a pool: dispatch, messages, abort, outcome. */
export class JobRun implements RunningJob {
  readonly jobId: string;
  threadId: number | undefined;
  thread: number | undefined;
  startedAt: number | undefined;
  abortReason: AbortReason | undefined;
  readonly outcome: Promise<Outcome>;
  /** The job's run time as its thread measured it, once it has a result. */
  threadRunMs: number | undefined;
  /** False once a batch could not carry it (Piscina refused the batch): it then runs alone. */
  batchable = true;
  readonly task: JobRequest;
  readonly #host: RunHost;
  readonly #lane: RunLane;
  readonly #options: RunOptions;
  #resolveOutcome!: (outcome: Outcome) => void;
  /** The outcome is chosen (it may still wait for the thread to exit). */
  #decided = false;
  #started = false;
  /** Its thread is importing its module; the handler has not been called. */
  #loading = false;
  #startedPerf = 0;
  #finishedPerf: number | undefined;
  #abortMessage = '';
  /** Piscina was told to abort the task: the thread is being terminated. */
  #terminating = false;
  #worker: Worker | undefined;
  /** Its task number on the thread channels while it runs alone (0: none). */
  #taskId = 0;
  #flag: Int32Array | undefined;
  #controller: AbortController | undefined;
  #timeoutTimer: NodeJS.Timeout | undefined;
  #graceTimer: NodeJS.Timeout | undefined;
  #redispatches = 0;
  /** Handed to Piscina (it holds one of its lane's slots until its task settles there). */
  #dispatched = false;
  /** The batch carrying it, and its slot there; undefined when it runs alone. */
  #batch: RunCarrier | undefined;
  #slot = 0;

  constructor(host: RunHost, lane: RunLane, task: JobRequest, options: RunOptions) {
    this.#host = host;
    this.#lane = lane;
    this.task = task;
    this.#options = options;
    this.jobId = task.jobId;
    this.outcome = new Promise((resolve) => {
      this.#resolveOutcome = resolve;
    });
  }

  get type(): string {
    return this.task.type;
  }

  get mode(): JobRequest['mode'] {
    return this.task.mode;
  }

  get isDecided(): boolean {
    return this.#decided;
  }

  get isStarted(): boolean {
    return this.#started;
  }

  dispatch(): void {
    this.#dispatched = true;
    // The abort cell and the thread cell (see threadCell).
    const flag = new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT * 2));
    const controller = new AbortController();
    this.#taskId = this.#host.channels.open(this);
    this.#flag = flag;
    this.#controller = controller;
    const task: JobTask = { ...this.task, task: this.#taskId, abortFlag: flag };
    this.#lane.piscina
      .run(task, { signal: controller.signal })
      .then(
        (result: TaskResult) => this.#onResult(result),
        (err: unknown) => this.#onRejected(err),
      );
  }

  /** True while `batch` carries it (it may have been taken back to the queue). */
  inBatch(batch: RunCarrier): boolean {
    return this.#batch === batch;
  }

  /** It rides in `batch`, at `slot`. */
  joinBatch(batch: RunCarrier, slot: number): void {
    this.#dispatched = true;
    this.#batch = batch;
    this.#slot = slot;
  }

  /**
   * Its batch never started it and gives it back to the lane's queue. `failed`:
   * the batch's thread died or refused it, which counts towards MAX_REDISPATCHES;
   * false when it has been re-sent too often.
   */
  leaveBatch(failed: boolean): boolean {
    this.#batch = undefined;
    this.#dispatched = false;
    if (failed) this.#redispatches += 1;
    return this.#redispatches <= MAX_REDISPATCHES;
  }

  abort(reason: AbortReason, detail?: string): void {
    if (this.#decided || this.abortReason !== undefined) return;
    this.abortReason = reason;
    this.#abortMessage = describeAbort(reason, detail);
    clearTimeout(this.#timeoutTimer);
    if (!this.#dispatched && this.#lane.withdraw(this)) {
      this.#decided = true;
      this.#finish(this.#abortedOutcome(false));
      return;
    }
    // A batch puts its own task number on it (Batch.abortJob).
    const message: AbortMessage = { type: 'abort', task: this.#taskId, reason, message: this.#abortMessage };
    if (detail !== undefined) message.detail = detail;
    if (this.#batch !== undefined) {
      this.#batch.abortJob(this, this.#slot, message);
      return;
    }
    // A 'started' already posted means the handler is running: give it its grace.
    this.#drain();
    if (!this.#started) {
      this.#terminate();
      return;
    }
    this.#host.channels.post(this.#runningOn(), message);
    // After the post: a thread that sees the flag finds the message already on its channel.
    if (this.#flag !== undefined) Atomics.store(this.#flag, 0, ABORT_REASONS.indexOf(reason) + 1);
    this.armGrace(() => this.#terminate());
  }

  /** Terminates the thread if the handler has not returned `abortGraceMs` after its signal fired. */
  armGrace(terminate: () => void): void {
    this.#graceTimer = setTimeout(terminate, this.#host.abortGraceMs);
  }

  /** Time this job has run on a thread, up to `now` (or its end). */
  elapsedMs(now: number): number {
    if (!this.#started) return 0;
    return (this.#finishedPerf ?? now) - this.#startedPerf;
  }

  #terminate(): void {
    if (this.#decided || this.#terminating || this.#controller === undefined) return;
    this.#terminating = true;
    this.#worker = terminateTask(this.#lane, this.#controller, this.#worker);
  }

  /** The thread that has its task, if one has taken it (0: none yet). */
  #runningOn(): number {
    return threadHolding(this.threadId, this.#flag);
  }

  /** A message about this job from its thread (as a task of its own, or routed by its batch). */
  onThreadMessage(message: ThreadMessage): void {
    if (this.#decided) return;
    switch (message.type) {
      case 'started':
        this.onStarted(message.threadId, undefined, message.loading === true);
        break;
      case 'loaded':
        this.#onLoaded();
        break;
      case 'progress':
        this.#tell('onProgress', message.percent, message.message, message.data);
        break;
      case 'log':
        this.#tell('onLog', message.line);
        break;
      case 'done':
        // As a task of its own: the thread's copy of its result, posted as it ended itself
        // (see exitThread in thread.ts). Batches route their 'done' messages themselves (Batch.onThreadMessage).
        if (this.#batch === undefined) this.settle(message.result);
        break;
    }
  }

  /**
   * A thread took the job. `loading`: it imports the job's module first (its first job of that module),
   * bounded by MODULE_IMPORT_LIMIT_MS; the job's own clock starts with its handler (onLoaded).
   * `worker`, when the caller knows it already.
   */
  onStarted(threadId: number, worker?: Worker, loading = false): void {
    if (this.#started) return;
    this.#started = true;
    this.threadId = threadId;
    this.thread = this.#lane.threadNumber(threadId);
    this.startedAt = Date.now();
    this.#startedPerf = performance.now();
    this.#worker = worker ?? this.#lane.piscina.threads.find((w) => w.threadId === threadId);
    this.#host.runStarted(this);
    if (!loading) {
      this.#handlerStarts();
      return;
    }
    this.#loading = true;
    if (this.abortReason === undefined) {
      this.#timeoutTimer = setTimeout(() => this.abort('timeout', `${MODULE_IMPORT_LIMIT_MS} ms`), MODULE_IMPORT_LIMIT_MS);
    }
  }

  /** Its thread has imported its module: the handler starts now, unless the job was stopped meanwhile. */
  #onLoaded(): void {
    if (!this.#loading) return;
    this.#loading = false;
    if (this.abortReason !== undefined) return;
    clearTimeout(this.#timeoutTimer);
    this.#startedPerf = performance.now();
    this.#handlerStarts();
  }

  /** Its handler is called: the job's clock starts. */
  #handlerStarts(): void {
    const { timeoutMs } = this.#options;
    if (timeoutMs !== undefined && this.abortReason === undefined) {
      this.#timeoutTimer = setTimeout(() => this.abort('timeout', `${timeoutMs} ms`), timeoutMs);
    }
    this.#tell('onStart', this.threadId!);
  }

  /**
   * Calls a RunOptions callback as a method of the options (they may be a class's methods, as the
   * supervisor's InFlight are); one that throws is reported and the pool carries on.
   */
  #tell<K extends 'onStart' | 'onProgress' | 'onLog'>(name: K, ...args: Parameters<NonNullable<RunOptions[K]>>): void {
    const options = this.#options;
    const callback = options[name] as ((...args: unknown[]) => void) | undefined;
    if (callback === undefined) return;
    try {
      callback.apply(options, args);
    } catch (err) {
      this.#host.reportError({ source: 'pool', jobId: this.jobId, jobType: this.task.type, error: toSerializedError(err, 'thread') });
    }
  }

  /** Delivers what the thread posted before its result: the last progress, the last log lines, 'started'. */
  #drain(): void {
    this.#host.channels.drain(this.#runningOn(), this.#taskId);
  }

  #onResult(result: TaskResult): void {
    this.#lane.release();
    if (this.#decided) return;
    this.#host.channels.whenReady(this.#runningOn(), () => {
      this.#drain();
      this.settle(result);
    });
  }

  /** The thread's result for this job. */
  settle(result: TaskResult): void {
    if (this.#decided) return;
    this.#decided = true;
    this.threadRunMs = result.runMs;
    // An abort counts only if the handler saw it before it settled; otherwise it lost the race.
    if (this.abortReason !== undefined && result.abortedBy !== undefined) {
      this.#finish(this.#abortedOutcome(false, false, result.ok ? undefined : result.notStarted));
    } else if (result.ok) {
      this.#finish(
        result.noCompensate === true
          ? { kind: 'succeeded', output: result.output, noCompensate: true }
          : { kind: 'succeeded', output: result.output },
      );
    } else {
      this.#finish({ kind: 'failed', error: result.error, permanent: result.error.permanent === true });
    }
  }

  /** Stopped before its thread started it (and it never will): its abort outcome, now. */
  settleAborted(): void {
    if (this.#decided) return;
    this.#decided = true;
    this.#finish(this.#abortedOutcome(false));
  }

  /** It had not started when its batch's thread was terminated or died: back to the queue, no attempt used. */
  settleInterrupted(message: string): void {
    if (this.#decided) return;
    this.#decided = true;
    this.#finish({ kind: 'interrupted', error: { name: 'AbortError', message }, terminated: false });
  }

  /**
   * Its batch's thread was terminated or died while this job ran. `crash` is
   * undefined when it was terminated: to stop this job (its abort outcome) or
   * another job of the batch ('interrupted'). Resolves once `exited` does.
   */
  settleDeath(crash: SerializedError | undefined, exited: Promise<boolean>, cause: string): void {
    if (this.#decided) return;
    this.#decided = true;
    void exited.then((late) => {
      if (this.abortReason !== undefined) this.#finish(this.#abortedOutcome(true, late));
      else if (crash !== undefined) this.#finish({ kind: 'crashed', error: appendLate(crash, late) });
      else this.#finish({ kind: 'interrupted', error: appendLate({ name: 'AbortError', message: cause }, late), terminated: true });
    });
  }

  #onRejected(err: unknown): void {
    this.#host.channels.whenReady(this.#runningOn(), () => this.#afterRejection(err));
  }

  #afterRejection(err: unknown): void {
    if (this.#decided) {
      this.#lane.release();
      return;
    }
    this.#drain();
    if (this.#decided) {
      // The thread had finished the job and ended itself; its 'exit' came before Piscina's copy of the result.
      this.#lane.release();
      return;
    }
    if (this.#terminating) {
      this.#lane.release();
      this.#decided = true;
      const terminated = this.#worker !== undefined || this.#started;
      void afterExit(this.#worker, this.#host.exitWaitMs).then((late) => this.#finish(this.#abortedOutcome(terminated, late)));
      return;
    }
    const crash = describeDeath(err, this.#lane, this.#worker);
    if (crash === undefined) {
      this.#lane.release();
      // Piscina refused the task (its input cannot be cloned) or thread.ts failed.
      const error = toSerializedError(err, 'thread');
      this.#decided = true;
      this.#finish({ kind: 'failed', error, permanent: error.name === 'DataCloneError' });
      return;
    }
    if (!this.#started && this.abortReason === undefined && this.#redispatches < MAX_REDISPATCHES && !this.#host.closing) {
      // The thread died before it began this job (a thread ends itself after an
      // error no job owns, just as the job reached it): nothing ran, try again.
      // It keeps its slot in the lane.
      this.#redispatches += 1;
      this.#host.channels.close(this.#taskId);
      this.dispatch();
      return;
    }
    this.#lane.release();
    this.#decided = true;
    void afterExit(this.#worker, this.#host.exitWaitMs).then((late) => {
      this.#finish(this.abortReason !== undefined ? this.#abortedOutcome(true, late) : { kind: 'crashed', error: appendLate(crash, late) });
    });
  }

  /**
   * Its outcome when stopped; `terminated` counts only for a handler that had started (else no handler
   * ignored a signal). `notStarted`: the thread took the job but never called its handler.
   */
  #abortedOutcome(terminated: boolean, late = false, notStarted?: 'loading' | 'taken'): Outcome {
    const reason = this.abortReason ?? 'shutdown';
    let message = this.#abortMessage;
    if (notStarted === 'loading' || this.#loading) message += ' (before its handler started, while its module loaded)';
    else if (notStarted === 'taken' || !this.#started) message += ' (before its handler started)';
    const error: SerializedError = appendLate({ name: reason === 'timeout' ? 'TimeoutError' : 'AbortError', message }, late);
    return { kind: ABORT_OUTCOME[reason], error, terminated: terminated && this.#started && !this.#loading };
  }

  #finish(outcome: Outcome): void {
    clearTimeout(this.#timeoutTimer);
    clearTimeout(this.#graceTimer);
    if (this.#taskId !== 0) this.#host.channels.close(this.#taskId);
    this.#finishedPerf = performance.now();
    this.#host.runFinished(this, outcome, this.elapsedMs(this.#finishedPerf));
    this.#resolveOutcome(outcome);
  }
}
