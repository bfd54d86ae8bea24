/**
 * The supervisor's side of the worker threads (WorkerPool): Piscina pools that run jobs on threads
 * and turn every way a job can end into an Outcome. A job's way through a pool is a JobRun
 * (job-run.ts); jobs wait in lanes (lane.ts), which send short ones to a thread together (batch.ts).
 *
 * - Piscina's resource limits are per pool, so each distinct `maxMemoryMb` gets
 *   a lane of its own (no threads kept when idle); every other job type
 *   shares the main lane, whose threads start at once (or, with initialThreads,
 *   some at once and the rest at startThreads()).
 * - A compensation (a module's `compensate`, after a cancel) runs in a lane of
 *   its own whose threads end when idle: right after its cancel, not behind the
 *   jobs waiting for the busy threads.
 * - Threads run with Piscina's `atomics: 'disabled'`: an idle thread then runs
 *   its event loop, so a timer left behind by a finished job fires (and is
 *   reported) between jobs instead of inside the next job's time.
 */
import { EventEmitter } from 'eventemitter3';
import { createHistogram, performance } from 'node:perf_hooks';
import { Piscina } from 'piscina';
import { ValidationError } from '../errors.ts';
import { RunTimes } from '../policy/run-times.ts';
import { BatchRules } from './batch-rules.ts';
import { ThreadChannels } from './channels.ts';
import { JobRun } from './job-run.ts';
import { Lane, type LaneHost } from './lane.ts';
import {
  describeAbort,
  type ModuleReport,
  type PortHandoff,
  type ProbeTask,
  type ProbingMessage,
  START_TASK,
  type SerializedError,
  type ThreadErrorReport,
} from './protocol.ts';
import type { JobRequest, Outcome, OutcomeKind, RunOptions, RunningJob, ThreadError } from './running-job.ts';
import { toSerializedError } from './task-thread.ts';

export type { AbortedOutcome, JobRequest, Outcome, OutcomeKind, RunOptions, RunningJob, ThreadError } from './running-job.ts';

/** The file Piscina loads in each thread (plain CommonJS; see thread-entry.cjs). */
const THREAD_ENTRY = new URL('./thread-entry.cjs', import.meta.url).href;

/** Default time a handler has to return after its signal fired, before its thread is terminated. */
export const DEFAULT_ABORT_GRACE_MS = 1000;
/** Default idle time after which a thread of a memory-limited pool is stopped. */
export const DEFAULT_IDLE_TIMEOUT_MS = 30_000;
/** Default bound on waiting for a terminated thread to exit (a blocking native call delays it). */
export const DEFAULT_EXIT_WAIT_MS = 10_000;
/** The smallest heap limit a job type may ask for: tsx and thread.ts need room too. */
export const MIN_MEMORY_MB = 16;
/**
 * The young generation (MB) of a memory-limited pool's threads. When a thread
 * reaches its heap limit, Node gives the collection under way 16 MB more and
 * then ends the thread (ERR_WORKER_OUT_OF_MEMORY); a scavenge that must promote
 * more than that aborts the whole process instead. Left to V8, the young
 * generation is 48 MB on Node 20 but 192 MB on Node 24, where a thread running
 * out of memory can kill the process. 48: Node 20's size, safe on both.
 */
const YOUNG_GENERATION_MB = 48;
/** Idle time after which a compensation's thread ends: compensations are rare. */
const COMPENSATION_IDLE_TIMEOUT_MS = 1_000;
/**
 * Default most jobs in one batch. Each batch costs the main thread a structured clone and a port
 * transfer, shared by its jobs; a batch's budget of expected work (lane.ts) still bounds how long
 * one batch holds its thread.
 */
export const DEFAULT_MAX_BATCH_JOBS = 256;
/** Default run time (ms, average on the thread) under which a job type is batched. */
export const DEFAULT_BATCH_BELOW_MS = 1;
const MAX_TIMER_MS = 2_147_483_647;

/** Options of a WorkerPool. */
export interface WorkerPoolOptions {
  /** Threads of the main pool, and the most threads of each memory-limited pool. */
  maxThreads: number;
  /** Threads the main pool keeps even when idle (default: maxThreads). */
  minThreads?: number;
  /**
   * Threads of the main pool started at once (default: minThreads); the rest up to minThreads start
   * at startThreads(), or earlier as jobs need them. A thread's start takes a core for tens of ms:
   * one started alone is ready sooner than several starting side by side on few cores.
   */
  initialThreads?: number;
  /** Idle time (ms) after which a thread above minThreads stops (default 30 s). */
  idleTimeout?: number;
  /** Time (ms) a handler has to return after its signal fired, before its thread is terminated (default 1000). */
  abortGraceMs?: number;
  /** Heap limit (MB, `maxOldGenerationSizeMb`) per job type; such types run in their own small pools. */
  memoryLimitsMb?: Readonly<Record<string, number>>;
  /** Bound (ms) on waiting for a terminated thread to exit before the outcome resolves anyway (default 10 s). */
  exitWaitMs?: number;
  /** Most short jobs sent to a thread in one task (default 256); 1 sends every job on its own. */
  maxBatchJobs?: number;
  /** Jobs of a type whose run time on a thread averages under this many ms (default 1) are batched when queued. */
  batchBelowMs?: number;
}

/** A thread of one of the pools. */
export interface ThreadEvent {
  /** Absent when the thread had already exited (Node then reports -1). */
  threadId?: number;
  /** The heap limit of its pool, if it has one. */
  memoryLimitMb?: number;
}

/** Events of a WorkerPool. Without a 'thread:error' listener, those go to stderr. */
export interface WorkerPoolEvents {
  'thread:error': (error: ThreadError) => void;
  /** A thread is ready (or, for the main pool's first threads, was started). */
  'thread:create': (thread: ThreadEvent) => void;
  /** A thread was removed: terminated, died, idle too long, or closed. It may still be exiting. */
  'thread:destroy': (thread: ThreadEvent) => void;
}

/** A JSON-safe view of the pool, for the debug socket. */
export interface PoolStats {
  maxThreads: number;
  /** Live threads over all pools. */
  threads: number;
  /** Jobs a thread has started and not finished. */
  busy: number;
  idle: number;
  /** Jobs handed to the pool that no thread has started yet. */
  queued: number;
  /** Share of maxThreads' time spent running jobs since the pool started, 0 to 1. */
  utilisation: number;
  /** Jobs finished, by outcome. */
  completed: number;
  outcomes: Record<OutcomeKind, number>;
  /** Run time (from 'started' to outcome) of finished jobs, in ms. */
  runTimeMs: { count: number; mean: number; p50: number; p90: number; p99: number; max: number };
  /** Results Piscina received for tasks already aborted (a race, harmless). */
  lateResults: number;
  /**
   * Tasks that carried several jobs, and the jobs they carried; jobs fed to a thread's running batch;
   * jobs taken back from a batch whose thread was busy with an earlier one, for a thread that was free.
   */
  batches: { tasks: number; jobs: number; fed: number; taken: number };
}

/** Runs jobs on worker threads; see the file comment. */
export class WorkerPool extends EventEmitter<WorkerPoolEvents> {
  readonly maxThreads: number;
  readonly minThreads: number;
  readonly idleTimeout: number;
  readonly abortGraceMs: number;
  readonly exitWaitMs: number;
  readonly maxBatchJobs: number;
  readonly batchBelowMs: number;
  readonly #memoryLimitsMb: ReadonlyMap<string, number>;
  /** Each job type's run time on its threads: read by the batching rules and by the claim plan. */
  readonly runTimes = new RunTimes();
  #batchTasks = 0;
  #batchedJobs = 0;
  #fedJobs = 0;
  #takenJobs = 0;
  readonly #main: Lane;
  readonly #limited = new Map<number, Lane>();
  readonly #compensating = new Map<number | undefined, Lane>();
  readonly #runs = new Set<JobRun>();
  readonly #host: LaneHost;
  readonly #channels = new ThreadChannels();
  /** The registry's probes under way, by number: see followProbe(). */
  readonly #probes = new Map<number, (message: ProbingMessage) => void>();
  #closed: Promise<void> | undefined;
  #busy = 0;
  #completed = 0;
  #lateResults = 0;
  #finishedRunTimeMs = 0;
  readonly #createdAt = performance.now();
  readonly #outcomes: Record<OutcomeKind, number> = {
    succeeded: 0,
    failed: 0,
    timed_out: 0,
    cancelled: 0,
    crashed: 0,
    lost: 0,
    interrupted: 0,
  };
  readonly #runTimeHistogram = createHistogram();

  constructor(options: WorkerPoolOptions) {
    super();
    if (typeof options !== 'object' || options === null) {
      throw new ValidationError('options', 'must be an object');
    }
    this.maxThreads = positiveInteger('options.maxThreads', options.maxThreads, 1024);
    this.minThreads =
      options.minThreads === undefined
        ? this.maxThreads
        : nonNegativeInteger('options.minThreads', options.minThreads, this.maxThreads);
    const initialThreads =
      options.initialThreads === undefined
        ? this.minThreads
        : Math.min(this.minThreads, nonNegativeInteger('options.initialThreads', options.initialThreads, this.maxThreads));
    this.idleTimeout =
      options.idleTimeout === undefined
        ? DEFAULT_IDLE_TIMEOUT_MS
        : nonNegativeInteger('options.idleTimeout', options.idleTimeout, MAX_TIMER_MS);
    this.abortGraceMs =
      options.abortGraceMs === undefined
        ? DEFAULT_ABORT_GRACE_MS
        : nonNegativeInteger('options.abortGraceMs', options.abortGraceMs, MAX_TIMER_MS);
    this.exitWaitMs =
      options.exitWaitMs === undefined
        ? DEFAULT_EXIT_WAIT_MS
        : positiveInteger('options.exitWaitMs', options.exitWaitMs, MAX_TIMER_MS);
    this.maxBatchJobs =
      options.maxBatchJobs === undefined
        ? DEFAULT_MAX_BATCH_JOBS
        : positiveInteger('options.maxBatchJobs', options.maxBatchJobs, 4096);
    this.batchBelowMs =
      options.batchBelowMs === undefined ? DEFAULT_BATCH_BELOW_MS : nonNegativeNumber('options.batchBelowMs', options.batchBelowMs);
    const limits = new Map<string, number>();
    if (options.memoryLimitsMb !== undefined) {
      if (typeof options.memoryLimitsMb !== 'object' || options.memoryLimitsMb === null) {
        throw new ValidationError('options.memoryLimitsMb', 'must be an object of job type -> MB');
      }
      for (const [type, mb] of Object.entries(options.memoryLimitsMb)) {
        limits.set(type, memoryLimit(`options.memoryLimitsMb["${type}"]`, mb));
      }
    }
    this.#memoryLimitsMb = limits;
    const rules = new BatchRules(this.runTimes, this.batchBelowMs, this.maxBatchJobs);
    const pool = this;
    this.#host = {
      channels: this.#channels,
      abortGraceMs: this.abortGraceMs,
      exitWaitMs: this.exitWaitMs,
      maxBatchJobs: this.maxBatchJobs,
      get closing(): boolean {
        return pool.#closed !== undefined;
      },
      runStarted: () => {
        this.#busy += 1;
      },
      runFinished: (run, outcome, runTimeMs) => this.#onRunFinished(run, outcome, runTimeMs),
      reportError: (error) => this.#reportError(error),
      batchCost: (run) => rules.batchCost(run),
      feedsBehind: (run) => rules.feedsBehind(run),
      feedable: (run) => run.mode === 'run' && run.batchable,
      batchDispatched: (jobs) => {
        if (jobs < 2) return;
        this.#batchTasks += 1;
        this.#batchedJobs += jobs;
      },
      jobsFed: (jobs) => {
        this.#fedJobs += jobs;
      },
      jobsTaken: (jobs) => {
        this.#takenJobs += jobs;
      },
    };
    this.#main = this.#createLane(undefined, initialThreads, this.idleTimeout);
  }

  /**
   * Starts the main pool's threads up to minThreads, those that `initialThreads` held back. Piscina
   * keeps minThreads alive from then on (it replaces a thread that ends), but starts one only when a
   * task finds no thread free: so one empty task per missing thread, plus one per idle thread, which
   * takes one at once. thread-entry.cjs answers them without loading anything.
   */
  startThreads(): void {
    const piscina = this.#main.piscina;
    if (this.#closed !== undefined || piscina.options.minThreads >= this.minThreads) return;
    piscina.options.minThreads = this.minThreads;
    const tasks = this.minThreads - piscina.threads.length + piscina.idleThreads;
    for (let i = 0; i < tasks; i++) piscina.run(START_TASK).catch(() => {});
  }

  /** Hands a job to a thread. Never throws for what the job does; see RunningJob. */
  run(task: JobRequest, options: RunOptions = {}): RunningJob {
    if (options.timeoutMs !== undefined) positiveInteger('timeoutMs', options.timeoutMs, MAX_TIMER_MS);
    const memoryLimitMb = options.maxMemoryMb ?? this.#memoryLimitsMb.get(task.type);
    if (memoryLimitMb !== undefined) memoryLimit('maxMemoryMb', memoryLimitMb);
    if (this.#closed !== undefined) return settledRun(task.jobId, closedOutcome());
    if (options.loadError !== undefined) {
      const error: SerializedError = { name: 'LoadError', message: options.loadError, phase: 'load', permanent: true };
      const outcome: Outcome = { kind: 'failed', error, permanent: true };
      this.#completed += 1;
      this.#outcomes.failed += 1;
      return settledRun(task.jobId, outcome);
    }
    const lane = task.mode === 'compensate' ? this.#compensationLane(memoryLimitMb) : this.#laneFor(memoryLimitMb);
    const run = new JobRun(this.#host, lane, task, options);
    this.#runs.add(run);
    lane.submit(run);
    return run;
  }

  /** Runs the module's `compensate(input, reason, ctx)` (after a cancel); without one: succeeded, noCompensate. */
  runCompensate(task: Omit<JobRequest, 'mode'> & { cancelReason: string }, options: RunOptions = {}): RunningJob {
    return this.run({ ...task, mode: 'compensate' }, options);
  }

  /** A snapshot of threads, jobs and run times. */
  stats(): PoolStats {
    let threads = 0;
    let queued = 0;
    for (const lane of this.#lanes()) threads += lane.piscina.threads.length;
    for (const run of this.#runs) if (run.startedAt === undefined) queued += 1;
    const now = performance.now();
    let busyMs = this.#finishedRunTimeMs;
    for (const run of this.#runs) busyMs += run.elapsedMs(now);
    const uptimeMs = now - this.#createdAt;
    const h = this.#runTimeHistogram;
    const count = h.count;
    const ms = (ns: number): number => (count === 0 ? 0 : Math.round(ns / 1000) / 1000);
    return {
      maxThreads: this.maxThreads,
      threads,
      busy: this.#busy,
      idle: Math.max(0, threads - this.#busy),
      queued,
      utilisation: uptimeMs <= 0 ? 0 : Math.min(1, busyMs / (uptimeMs * this.maxThreads)),
      completed: this.#completed,
      outcomes: { ...this.#outcomes },
      runTimeMs: {
        count,
        mean: ms(h.mean),
        p50: ms(h.percentile(50)),
        p90: ms(h.percentile(90)),
        p99: ms(h.percentile(99)),
        max: ms(h.max),
      },
      lateResults: this.#lateResults,
      batches: { tasks: this.#batchTasks, jobs: this.#batchedJobs, fed: this.#fedJobs, taken: this.#takenJobs },
    };
  }

  /** Runs a task of the registry's probe on a thread of the main lane (ProbeHost, see probe.ts). */
  runProbe(task: ProbeTask, signal?: AbortSignal): Promise<ModuleReport[]> {
    return this.#main.piscina.run(task, signal === undefined ? {} : { signal }) as Promise<ModuleReport[]>;
  }

  /** Routes a probe's 'spindle:probing' messages to `listener` until the returned function is called. */
  followProbe(probe: number, listener: (message: ProbingMessage) => void): () => void {
    this.#probes.set(probe, listener);
    return () => this.#probes.delete(probe);
  }

  /**
   * Stops the pool. Without `force`, waits for every job handed to it; with
   * `force`, aborts them (reason 'shutdown': outcome 'interrupted'). Then all
   * threads exit. Later run() calls get an 'interrupted' outcome at once.
   */
  close(options: { force?: boolean } = {}): Promise<void> {
    this.#closed ??= this.#shutdown(options.force === true);
    return this.#closed;
  }

  async #shutdown(force: boolean): Promise<void> {
    if (force) for (const run of this.#runs) run.abort('shutdown', 'the worker pool is closing');
    await Promise.all([...this.#runs].map((run) => run.outcome));
    await Promise.all([...this.#lanes()].map((lane) => lane.piscina.close()));
    this.#channels.closeAll();
  }

  *#lanes(): Iterable<Lane> {
    yield this.#main;
    yield* this.#limited.values();
    yield* this.#compensating.values();
  }

  #laneFor(mb: number | undefined): Lane {
    if (mb === undefined) return this.#main;
    let lane = this.#limited.get(mb);
    if (lane === undefined) {
      lane = this.#createLane(mb, 0, this.idleTimeout);
      this.#limited.set(mb, lane);
    }
    return lane;
  }

  /**
   * Compensations run in lanes of their own, on threads started for them that end when idle: a
   * compensation runs right after its cancel, not behind the jobs queued for the busy threads.
   */
  #compensationLane(mb: number | undefined): Lane {
    let lane = this.#compensating.get(mb);
    if (lane === undefined) {
      lane = this.#createLane(mb, 0, COMPENSATION_IDLE_TIMEOUT_MS);
      this.#compensating.set(mb, lane);
    }
    return lane;
  }

  #createLane(memoryLimitMb: number | undefined, minThreads: number, idleTimeout: number): Lane {
    const piscina = new Piscina({
      filename: THREAD_ENTRY,
      minThreads,
      maxThreads: this.maxThreads,
      idleTimeout,
      atomics: 'disabled',
      recordTiming: false,
      ...(memoryLimitMb === undefined
        ? {}
        : { resourceLimits: { maxOldGenerationSizeMb: memoryLimitMb, maxYoungGenerationSizeMb: YOUNG_GENERATION_MB } }),
    });
    const thread = (threadId: number): ThreadEvent => {
      const event: ThreadEvent = threadId === -1 ? {} : { threadId };
      if (memoryLimitMb !== undefined) event.memoryLimitMb = memoryLimitMb;
      return event;
    };
    // Without an 'error' listener, an error a thread raises after its task can crash this process.
    piscina.on('error', (err: unknown) => this.#onPiscinaError(err));
    piscina.on('message', (message: unknown) => this.#onPiscinaMessage(message));
    piscina.on('workerCreate', (worker: { id: number }) => this.emit('thread:create', thread(worker.id)));
    piscina.on('workerDestroy', (worker: { id: number }) => {
      this.#channels.forget(worker.id);
      this.emit('thread:destroy', thread(worker.id));
    });
    return new Lane(piscina, this.maxThreads, memoryLimitMb, this.#host);
  }

  #onPiscinaError(err: unknown): void {
    // A result that arrives for a task that was just aborted: the run already has its outcome.
    if (err instanceof Error && err.message.startsWith('Unexpected message from Worker')) {
      this.#lateResults += 1;
      return;
    }
    this.#reportError({ source: 'pool', error: toSerializedError(err, 'thread') });
  }

  #onPiscinaMessage(message: unknown): void {
    if (isPortHandoff(message)) {
      this.#channels.adopt(message);
      return;
    }
    if (isProbingMessage(message)) {
      this.#probes.get(message.probe)?.(message);
      return;
    }
    if (!isThreadErrorReport(message)) return;
    const error: ThreadError = { source: message.kind, threadId: message.threadId, error: message.error };
    if (message.jobId !== undefined) error.jobId = message.jobId;
    if (message.jobType !== undefined) error.jobType = message.jobType;
    this.#reportError(error);
  }

  #reportError(error: ThreadError): void {
    if (this.listenerCount('thread:error') > 0) {
      this.emit('thread:error', error);
      return;
    }
    const where = error.jobId === undefined ? '' : ` (from job ${error.jobId}, type ${error.jobType ?? '?'})`;
    const thread = error.threadId === undefined ? '' : ` in thread ${error.threadId}`;
    process.stderr.write(`spindle: ${error.source}${thread}${where}: ${error.error.message}\n`);
  }

  #onRunFinished(run: JobRun, outcome: Outcome, runTimeMs: number): void {
    this.#runs.delete(run);
    if (run.startedAt !== undefined) {
      this.#busy -= 1;
      this.#finishedRunTimeMs += runTimeMs;
      this.#runTimeHistogram.record(Math.max(1, Math.round(runTimeMs * 1e6)));
      // The thread's own measure when it sent one: the main thread's adds hop latency, large under load.
      if (run.mode === 'run') this.runTimes.record(run.type, run.threadRunMs ?? runTimeMs);
    }
    this.#completed += 1;
    this.#outcomes[outcome.kind] += 1;
  }
}

/** A RunningJob that never reached a thread. */
function settledRun(jobId: string, outcome: Outcome): RunningJob {
  return {
    jobId,
    threadId: undefined,
    thread: undefined,
    startedAt: undefined,
    abortReason: undefined,
    abort() {},
    outcome: Promise.resolve(outcome),
  };
}

function closedOutcome(): Outcome {
  return {
    kind: 'interrupted',
    error: { name: 'AbortError', message: describeAbort('shutdown', 'the worker pool is closed') },
    terminated: false,
  };
}

function isPortHandoff(message: unknown): message is PortHandoff {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === 'spindle:port';
}

function isProbingMessage(message: unknown): message is ProbingMessage {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === 'spindle:probing';
}

function isThreadErrorReport(message: unknown): message is ThreadErrorReport {
  return (
    typeof message === 'object' &&
    message !== null &&
    (message as { type?: unknown }).type === 'spindle:thread:error'
  );
}

function positiveInteger(field: string, value: unknown, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
    throw new ValidationError(field, `must be a positive integer (at most ${max}), got ${String(value)}`);
  }
  return value;
}

function memoryLimit(field: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < MIN_MEMORY_MB || value > 1_048_576) {
    throw new ValidationError(field, `must be an integer of at least ${MIN_MEMORY_MB} (MB), got ${String(value)}`);
  }
  return value;
}

function nonNegativeNumber(field: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new ValidationError(field, `must be a non-negative number, got ${String(value)}`);
  }
  return value;
}

function nonNegativeInteger(field: string, value: unknown, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > max) {
    throw new ValidationError(field, `must be a non-negative integer (at most ${max}), got ${String(value)}`);
  }
  return value;
}
