/**
 * The supervisor's side of the worker threads: Piscina pools that run one job
 * per thread and turn every way a job can end into an Outcome.
 *
 * - A job's timeout clock starts when a thread takes it (its 'started'
 *   message), not when run() is called.
 * - Stopping a job (timeout, cancel, lost lease, shutdown) first fires its
 *   `ctx.signal`; a handler that has not returned `abortGraceMs` later has its
 *   thread terminated, and Piscina starts a replacement.
 * - `outcome` resolves once and never rejects; when a thread was terminated or
 *   died, only after that thread has really exited.
 * - Piscina's resource limits are per pool, so each distinct `maxMemoryMb` gets
 *   a small pool of its own (no threads kept when idle); every other job type
 *   shares the main pool, whose threads start at once.
 * - Short jobs share thread hops: when a lane has queued jobs of types whose
 *   recent run time on a thread averages under `batchBelowMs`, up to
 *   `maxBatchJobs` of them go to one thread in one Piscina task (a batch) and
 *   run there one after another. Each still has its own 'started' (its timeout
 *   clock), progress, logs, abort and outcome, streamed as it ends. Stopping the
 *   running job of a batch may terminate the thread: the jobs of the batch that
 *   had not started are then 'interrupted' (back in the queue, no attempt used).
 *   A type not measured yet runs one job per task.
 * - Threads do not wait for the supervisor between jobs: when every thread is
 *   busy, the next waiting job is fed to a thread whose batch is on its last
 *   job, if that job's type averages under FEED_BELOW_MS; the thread starts it
 *   the moment it is done, without a round trip through this thread. A thread that is free while
 *   nothing waits takes half the jobs a batch has not started (a job far longer
 *   than its type's average holds up nothing).
 * - A compensation (a module's `compensate`, after a cancel) runs in a lane of
 *   its own whose threads end when idle: right after its cancel, not behind the
 *   jobs waiting for the busy threads.
 * - Threads run with Piscina's `atomics: 'disabled'`: an idle thread then runs
 *   its event loop, so a timer left behind by a finished job fires (and is
 *   reported) between jobs instead of inside the next job's time. Measured cost
 *   on round trips: within noise.
 */
import { EventEmitter } from 'eventemitter3';
import { createHistogram, performance } from 'node:perf_hooks';
import type { Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { ValidationError } from '../errors.ts';
import { ThreadChannels } from './channels.ts';
import {
  ABORT_REASONS,
  MODULE_IMPORT_LIMIT_MS,
  SLOT_WITHDRAWN,
  describeAbort,
  type AbortMessage,
  type AbortReason,
  type BatchDoneMessage,
  type BatchResult,
  type BatchTask,
  type FeedMessage,
  type JobTask,
  type ModuleReport,
  type PortHandoff,
  type ProbeTask,
  type ProbingMessage,
  type SerializedError,
  type TaskResult,
  type ThreadErrorReport,
  type ThreadMessage,
  takenBy,
  threadCell,
} from './protocol.ts';

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
/** How often a job whose thread died before starting it is dispatched again. */
const MAX_REDISPATCHES = 3;
/**
 * Default most jobs in one batch. Each batch costs the main thread a structured clone and a port
 * transfer, shared by its jobs; BATCH_BUDGET_MS still bounds how long one batch holds its thread.
 */
export const DEFAULT_MAX_BATCH_JOBS = 256;
/** Default run time (ms, average on the thread) under which a job type is batched. */
export const DEFAULT_BATCH_BELOW_MS = 1;
/** Runs of a type measured before its average counts: an unknown type is never batched. */
const BATCH_MIN_SAMPLES = 3;
/** A batch holds about this much expected work (ms), so a queue of 1 ms jobs is not one 256 ms task. */
const BATCH_BUDGET_MS = 8;
/**
 * A waiting job is fed to a busy thread's batch only behind a job whose type
 * averages under this (ms): the round trip it saves is worth it for short
 * jobs, and a job fed behind a long one could wait long.
 */
const FEED_BELOW_MS = 50;
/**
 * Most abort cells a batch allocates up front, so most jobs it takes in all (fed ones included),
 * unless it starts with more.
 */
const MAX_BATCH_SLOTS = 1024;
/** Weight of the newest run in a type's moving average. */
const RUN_TIME_WEIGHT = 0.2;
const MAX_TIMER_MS = 2_147_483_647;

/** What run() takes: a JobTask without the parts the pool makes itself. */
export type JobRequest = Omit<JobTask, 'task' | 'abortFlag'>;

/** How a job ended. Every failure is an Outcome; `outcome` never rejects. */
export type Outcome =
  | {
      kind: 'succeeded';
      output: unknown;
      /** Mode 'compensate' on a module without a `compensate` export: nothing ran. */
      noCompensate?: true;
    }
  | { kind: 'failed'; error: SerializedError; permanent: boolean }
  | AbortedOutcome<'timed_out'>
  | AbortedOutcome<'cancelled'>
  | AbortedOutcome<'lost'>
  | AbortedOutcome<'interrupted'>
  | { kind: 'crashed'; error: SerializedError };

/** A job stopped by abort(): 'job timed out after N ms', 'job cancelled: ...'. */
export interface AbortedOutcome<K extends string> {
  kind: K;
  error: SerializedError;
  /** True when the handler did not return within the grace period and its thread was terminated. */
  terminated: boolean;
}

/** Every kind of Outcome. */
export type OutcomeKind = Outcome['kind'];

const ABORT_OUTCOME = {
  timeout: 'timed_out',
  cancel: 'cancelled',
  lost: 'lost',
  shutdown: 'interrupted',
} as const satisfies Record<AbortReason, OutcomeKind>;

/** Per-run options. The pool calls the callbacks as methods of this object, so they may be methods of a class. */
export interface RunOptions {
  /** Abort with reason 'timeout' this many ms after a thread took the job. */
  timeoutMs?: number;
  /** Heap limit (MB) of the job's thread; the job runs in a small pool kept for that limit. Default: options.memoryLimitsMb[type]. */
  maxMemoryMb?: number;
  /**
   * The registry's load error for this job type: the job fails at once with it
   * (permanent, phase 'load') and no thread is used.
   */
  loadError?: string;
  /** Called when a thread takes the job (RunningJob.thread is set by then). */
  onStart?: (threadId: number) => void;
  /**
   * Called with each progress report as ctx.progress() made it, coalesced in the
   * thread (at most one per ~50 ms per job; the last one always arrives, before `outcome` resolves).
   */
  onProgress?: (percent: number, message?: string, data?: unknown) => void;
  /** Called with each `ctx.log()` line (bounded in the thread). */
  onLog?: (line: string) => void;
}

/** A job handed to the pool. */
export interface RunningJob {
  readonly jobId: string;
  /** The thread running it, once one has taken it. */
  readonly threadId: number | undefined;
  /**
   * That thread's number in its pool, 1 to maxThreads, once one has taken it. Node's thread ids
   * grow as Piscina replaces threads; a replacement takes over the number of the thread it replaces.
   */
  readonly thread: number | undefined;
  /** When a thread took it (epoch ms), or undefined while it waits for one. */
  readonly startedAt: number | undefined;
  /** Why it is being stopped (its own timeout, or the first abort() call), once it is. */
  readonly abortReason: AbortReason | undefined;
  /** Stops the job: fires its signal, terminates its thread after the grace period. First call wins. */
  abort(reason: AbortReason, detail?: string): void;
  /** How it ended; resolves once, never rejects. */
  readonly outcome: Promise<Outcome>;
}

/** Options of a WorkerPool. */
export interface WorkerPoolOptions {
  /** Threads of the main pool, and the most threads of each memory-limited pool. */
  maxThreads: number;
  /** Threads the main pool keeps even when idle (default: maxThreads, started at once). */
  minThreads?: number;
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

/** An error from a thread that no running job owns, or from Piscina itself. */
export interface ThreadError {
  source: ThreadErrorReport['kind'] | 'pool';
  threadId?: number;
  /** The job whose code scheduled the failing callback, when known. */
  jobId?: string;
  jobType?: string;
  error: SerializedError;
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

/**
 * One Piscina pool and the jobs waiting for it. Jobs wait here, in FIFO order,
 * rather than in Piscina's queue: Piscina does not keep abortable tasks in
 * order (five queued on one thread ran a, c, e, d, b). Dispatch waits for the
 * end of the current tick, so the jobs a claim hands over together can be
 * batched together. When every thread is busy, the next waiting job is fed to
 * a batch whose thread is on its last job and expected to finish it soon; when
 * a thread is free and nothing waits, it takes half of the jobs a batch has not
 * started yet.
 */
class Lane {
  /** Tasks (single jobs or batches) handed to Piscina and not yet settled there. */
  private active = 0;
  private readonly waiting: JobRun[] = [];
  /** Batches handed to Piscina and not yet settled there. */
  private readonly batches = new Set<Batch>();
  private pumpQueued = false;
  /** The number of each of its threads that has taken a job, by Node's thread id (see threadNumber). */
  private readonly numbers = new Map<number, number>();

  constructor(
    readonly piscina: Piscina,
    private readonly capacity: number,
    readonly memoryLimitMb: number | undefined,
    private readonly host: RunHost,
  ) {}

  /** The most tasks (threads) it runs at once. */
  get threadsMax(): number {
    return this.capacity;
  }

  /**
   * The number, 1 to its most threads, of its thread with this id: the lowest that none of its live
   * threads has, so a thread that replaces one takes over its number. Looked up once per job; the
   * numbers of threads that have gone are dropped only when a new thread needs one.
   */
  threadNumber(threadId: number): number {
    const known = this.numbers.get(threadId);
    if (known !== undefined) return known;
    const live = new Set(this.piscina.threads.map((worker) => worker.threadId));
    for (const id of this.numbers.keys()) if (!live.has(id)) this.numbers.delete(id);
    const taken = new Set(this.numbers.values());
    let number = 1;
    while (taken.has(number)) number += 1;
    this.numbers.set(threadId, number);
    return number;
  }

  /** Queues the run; it is dispatched (or fed to a batch) at the end of this tick. */
  submit(run: JobRun): void {
    this.waiting.push(run);
    if (this.pumpQueued) return;
    this.pumpQueued = true;
    queueMicrotask(() => {
      this.pumpQueued = false;
      this.pump();
    });
  }

  /** Puts runs that never started back at the head of the queue (their batch did not run them). */
  requeue(runs: readonly JobRun[]): void {
    this.waiting.unshift(...runs);
  }

  /** Dispatches what it can now (after a requeue while no slot was released, or when a batch can be fed). */
  pumpNow(): void {
    this.pump();
  }

  /** Takes a run that was never dispatched out of the queue; false if it was dispatched. */
  withdraw(run: JobRun): boolean {
    const index = this.waiting.indexOf(run);
    if (index === -1) return false;
    this.waiting.splice(index, 1);
    return true;
  }

  /** A batch went to Piscina. */
  batchDispatched(batch: Batch): void {
    this.batches.add(batch);
  }

  /** A dispatched task settled in Piscina: its thread is free (or being replaced). */
  release(batch?: Batch): void {
    if (batch !== undefined) this.batches.delete(batch);
    this.active -= 1;
    this.pump();
  }

  private pump(): void {
    while (this.waiting.length > 0) {
      if (this.active < this.capacity) {
        const group = this.takeGroup(this.capacity - this.active);
        this.active += 1;
        if (group.length === 1 && !this.host.feedsBehind(group[0]!)) group[0]!.dispatch();
        else new Batch(this, this.host, group).dispatch();
      } else if (!this.feed()) {
        return;
      }
    }
    if (this.active < this.capacity) this.steal();
  }

  /** Feeds the head of the queue to a batch about to run out of jobs; false if none can take it. */
  private feed(): boolean {
    if (!this.host.feedable(this.waiting[0]!)) return false;
    for (const batch of this.batches) {
      if (batch.isHungry()) {
        batch.feed(this.takeGroup(this.capacity, batch.room()));
        return true;
      }
    }
    return false;
  }

  /**
   * A thread is free and nothing waits: takes half the jobs held up behind a
   * running job, from the batch with the most. Never from a batch whose thread
   * has not begun or is between jobs: that thread starts them as soon as a free
   * one would, and taking them would only send them twice.
   */
  private steal(): void {
    let richest: Batch | undefined;
    let most = 0;
    for (const batch of this.batches) {
      const heldUp = batch.heldUpCount();
      if (heldUp > most) {
        richest = batch;
        most = heldUp;
      }
    }
    if (richest === undefined) return;
    const taken = richest.withdrawUnstarted(Math.ceil(most / 2));
    if (taken.length === 0) return;
    this.host.jobsTaken(taken.length);
    this.requeue(taken);
    this.pump();
  }

  /**
   * The next task's jobs: the head of the queue alone, or, if it is short, the
   * short jobs queued right behind it, up to maxBatchJobs, about BATCH_BUDGET_MS
   * of expected work, a fair share of the queue for each of `threads`, and
   * `most` (the cells a batch being fed has left).
   */
  private takeGroup(threads: number, most = Infinity): JobRun[] {
    const waiting = this.waiting;
    const { maxBatchJobs } = this.host;
    let count = 1;
    let cost = this.host.batchCost(waiting[0]!);
    if (cost !== undefined && maxBatchJobs > 1) {
      const share = Math.ceil(waiting.length / threads);
      const limit = Math.min(maxBatchJobs, share, waiting.length, most);
      while (count < limit && cost < BATCH_BUDGET_MS) {
        const next = this.host.batchCost(waiting[count]!);
        if (next === undefined) break;
        cost += next;
        count += 1;
      }
    }
    return waiting.splice(0, count);
  }
}

/** What a JobRun, a Batch and a Lane need of their pool. */
interface RunHost {
  readonly channels: ThreadChannels;
  readonly abortGraceMs: number;
  readonly exitWaitMs: number;
  readonly closing: boolean;
  readonly maxBatchJobs: number;
  runStarted(run: JobRun): void;
  runFinished(run: JobRun, outcome: Outcome, runTimeMs: number): void;
  reportError(error: ThreadError): void;
  /** The run's expected time (ms) if it may share a batch, else undefined. */
  batchCost(run: JobRun): number | undefined;
  /** Its type is measured short enough (FEED_BELOW_MS) for a waiting job to be fed behind it. */
  feedsBehind(run: JobRun): boolean;
  /** It may be fed to a running batch. */
  feedable(run: JobRun): boolean;
  batchDispatched(jobs: number): void;
  jobsFed(jobs: number): void;
  jobsTaken(jobs: number): void;
}

/** A job type's recent run time on a thread. */
interface TypeRunTime {
  averageMs: number;
  samples: number;
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
  private readonly memoryLimitsMb: ReadonlyMap<string, number>;
  private readonly runTimeByType = new Map<string, TypeRunTime>();
  private batchTasks = 0;
  private batchedJobs = 0;
  private fedJobs = 0;
  private takenJobs = 0;
  private readonly main: Lane;
  private readonly limited = new Map<number, Lane>();
  private readonly compensating = new Map<number | undefined, Lane>();
  private readonly runs = new Set<JobRun>();
  private readonly host: RunHost;
  private readonly channels = new ThreadChannels();
  /** The registry's probes under way, by number: see followProbe(). */
  private readonly probes = new Map<number, (message: ProbingMessage) => void>();
  private closed: Promise<void> | undefined;
  private busy = 0;
  private completed = 0;
  private lateResults = 0;
  private finishedRunTimeMs = 0;
  private readonly createdAt = performance.now();
  private readonly outcomes: Record<OutcomeKind, number> = {
    succeeded: 0,
    failed: 0,
    timed_out: 0,
    cancelled: 0,
    crashed: 0,
    lost: 0,
    interrupted: 0,
  };
  private readonly runTimes = createHistogram();

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
    this.memoryLimitsMb = limits;
    const pool = this;
    this.host = {
      channels: this.channels,
      abortGraceMs: this.abortGraceMs,
      exitWaitMs: this.exitWaitMs,
      maxBatchJobs: this.maxBatchJobs,
      get closing(): boolean {
        return pool.closed !== undefined;
      },
      runStarted: () => {
        this.busy += 1;
      },
      runFinished: (run, outcome, runTimeMs) => this.onRunFinished(run, outcome, runTimeMs),
      reportError: (error) => this.reportError(error),
      batchCost: (run) => this.batchCost(run),
      feedsBehind: (run) => this.feedsBehind(run),
      feedable: (run) => run.mode === 'run' && run.batchable,
      batchDispatched: (jobs) => {
        if (jobs < 2) return;
        this.batchTasks += 1;
        this.batchedJobs += jobs;
      },
      jobsFed: (jobs) => {
        this.fedJobs += jobs;
      },
      jobsTaken: (jobs) => {
        this.takenJobs += jobs;
      },
    };
    this.main = this.createLane(undefined, this.minThreads, this.idleTimeout);
  }

  /** Hands a job to a thread. Never throws for what the job does; see RunningJob. */
  run(task: JobRequest, options: RunOptions = {}): RunningJob {
    if (options.timeoutMs !== undefined) positiveInteger('timeoutMs', options.timeoutMs, MAX_TIMER_MS);
    const memoryLimitMb = options.maxMemoryMb ?? this.memoryLimitsMb.get(task.type);
    if (memoryLimitMb !== undefined) memoryLimit('maxMemoryMb', memoryLimitMb);
    if (this.closed !== undefined) return settledRun(task.jobId, closedOutcome());
    if (options.loadError !== undefined) {
      const error: SerializedError = { name: 'LoadError', message: options.loadError, phase: 'load', permanent: true };
      const outcome: Outcome = { kind: 'failed', error, permanent: true };
      this.completed += 1;
      this.outcomes.failed += 1;
      return settledRun(task.jobId, outcome);
    }
    const lane = task.mode === 'compensate' ? this.compensationLane(memoryLimitMb) : this.laneFor(memoryLimitMb);
    const run = new JobRun(this.host, lane, task, options);
    this.runs.add(run);
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
    for (const lane of this.lanes()) threads += lane.piscina.threads.length;
    for (const run of this.runs) if (run.startedAt === undefined) queued += 1;
    const now = performance.now();
    let busyMs = this.finishedRunTimeMs;
    for (const run of this.runs) busyMs += run.elapsedMs(now);
    const uptimeMs = now - this.createdAt;
    const h = this.runTimes;
    const count = h.count;
    const ms = (ns: number): number => (count === 0 ? 0 : Math.round(ns / 1000) / 1000);
    return {
      maxThreads: this.maxThreads,
      threads,
      busy: this.busy,
      idle: Math.max(0, threads - this.busy),
      queued,
      utilisation: uptimeMs <= 0 ? 0 : Math.min(1, busyMs / (uptimeMs * this.maxThreads)),
      completed: this.completed,
      outcomes: { ...this.outcomes },
      runTimeMs: {
        count,
        mean: ms(h.mean),
        p50: ms(h.percentile(50)),
        p90: ms(h.percentile(90)),
        p99: ms(h.percentile(99)),
        max: ms(h.max),
      },
      lateResults: this.lateResults,
      batches: { tasks: this.batchTasks, jobs: this.batchedJobs, fed: this.fedJobs, taken: this.takenJobs },
    };
  }

  /** Runs a task of the registry's probe on a thread of the main lane (ProbeHost, see probe.ts). */
  runProbe(task: ProbeTask, signal?: AbortSignal): Promise<ModuleReport[]> {
    return this.main.piscina.run(task, signal === undefined ? {} : { signal }) as Promise<ModuleReport[]>;
  }

  /** Routes a probe's 'spindle:probing' messages to `listener` until the returned function is called. */
  followProbe(probe: number, listener: (message: ProbingMessage) => void): () => void {
    this.probes.set(probe, listener);
    return () => this.probes.delete(probe);
  }

  /**
   * Stops the pool. Without `force`, waits for every job handed to it; with
   * `force`, aborts them (reason 'shutdown': outcome 'interrupted'). Then all
   * threads exit. Later run() calls get an 'interrupted' outcome at once.
   */
  close(options: { force?: boolean } = {}): Promise<void> {
    this.closed ??= this.shutdown(options.force === true);
    return this.closed;
  }

  private async shutdown(force: boolean): Promise<void> {
    if (force) for (const run of this.runs) run.abort('shutdown', 'the worker pool is closing');
    await Promise.all([...this.runs].map((run) => run.outcome));
    await Promise.all([...this.lanes()].map((lane) => lane.piscina.close()));
    this.channels.closeAll();
  }

  private *lanes(): Iterable<Lane> {
    yield this.main;
    yield* this.limited.values();
    yield* this.compensating.values();
  }

  private laneFor(mb: number | undefined): Lane {
    if (mb === undefined) return this.main;
    let lane = this.limited.get(mb);
    if (lane === undefined) {
      lane = this.createLane(mb, 0, this.idleTimeout);
      this.limited.set(mb, lane);
    }
    return lane;
  }

  /**
   * Compensations run in lanes of their own, on threads started for them that end when idle: a
   * compensation runs right after its cancel, not behind the jobs queued for the busy threads.
   */
  private compensationLane(mb: number | undefined): Lane {
    let lane = this.compensating.get(mb);
    if (lane === undefined) {
      lane = this.createLane(mb, 0, COMPENSATION_IDLE_TIMEOUT_MS);
      this.compensating.set(mb, lane);
    }
    return lane;
  }

  private createLane(memoryLimitMb: number | undefined, minThreads: number, idleTimeout: number): Lane {
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
    piscina.on('error', (err: unknown) => this.onPiscinaError(err));
    piscina.on('message', (message: unknown) => this.onPiscinaMessage(message));
    piscina.on('workerCreate', (worker: { id: number }) => this.emit('thread:create', thread(worker.id)));
    piscina.on('workerDestroy', (worker: { id: number }) => {
      this.channels.forget(worker.id);
      this.emit('thread:destroy', thread(worker.id));
    });
    return new Lane(piscina, this.maxThreads, memoryLimitMb, this.host);
  }

  private onPiscinaError(err: unknown): void {
    // A result that arrives for a task that was just aborted: the run already has its outcome.
    if (err instanceof Error && err.message.startsWith('Unexpected message from Worker')) {
      this.lateResults += 1;
      return;
    }
    this.reportError({ source: 'pool', error: toSerializedError(err, 'thread') });
  }

  private onPiscinaMessage(message: unknown): void {
    if (isPortHandoff(message)) {
      this.channels.adopt(message);
      return;
    }
    if (isProbingMessage(message)) {
      this.probes.get(message.probe)?.(message);
      return;
    }
    if (!isThreadErrorReport(message)) return;
    const error: ThreadError = { source: message.kind, threadId: message.threadId, error: message.error };
    if (message.jobId !== undefined) error.jobId = message.jobId;
    if (message.jobType !== undefined) error.jobType = message.jobType;
    this.reportError(error);
  }

  private reportError(error: ThreadError): void {
    if (this.listenerCount('thread:error') > 0) {
      this.emit('thread:error', error);
      return;
    }
    const where = error.jobId === undefined ? '' : ` (from job ${error.jobId}, type ${error.jobType ?? '?'})`;
    const thread = error.threadId === undefined ? '' : ` in thread ${error.threadId}`;
    process.stderr.write(`spindle: ${error.source}${thread}${where}: ${error.error.message}\n`);
  }

  private onRunFinished(run: JobRun, outcome: Outcome, runTimeMs: number): void {
    this.runs.delete(run);
    if (run.startedAt !== undefined) {
      this.busy -= 1;
      this.finishedRunTimeMs += runTimeMs;
      this.runTimes.record(Math.max(1, Math.round(runTimeMs * 1e6)));
      // The thread's own measure when it sent one: the main thread's adds hop latency, large under load.
      if (run.mode === 'run') this.recordRunTime(run.type, run.threadRunMs ?? runTimeMs);
    }
    this.completed += 1;
    this.outcomes[outcome.kind] += 1;
  }

  private recordRunTime(type: string, ms: number): void {
    const known = this.runTimeByType.get(type);
    if (known === undefined) {
      this.runTimeByType.set(type, { averageMs: ms, samples: 1 });
    } else {
      known.averageMs += (ms - known.averageMs) * RUN_TIME_WEIGHT;
      known.samples += 1;
    }
  }

  private batchCost(run: JobRun): number | undefined {
    if (run.mode !== 'run' || !run.batchable) return undefined;
    const known = this.runTimeByType.get(run.type);
    if (known === undefined || known.samples < BATCH_MIN_SAMPLES || known.averageMs >= this.batchBelowMs) return undefined;
    return known.averageMs;
  }

  private feedsBehind(run: JobRun): boolean {
    if (run.mode !== 'run' || !run.batchable || this.maxBatchJobs < 2) return false;
    const known = this.runTimeByType.get(run.type);
    return known !== undefined && known.samples >= BATCH_MIN_SAMPLES && known.averageMs < FEED_BELOW_MS;
  }
}

/** One job's way through a pool: dispatch, messages, abort, outcome. */
class JobRun implements RunningJob {
  readonly jobId: string;
  threadId: number | undefined;
  thread: number | undefined;
  startedAt: number | undefined;
  readonly outcome: Promise<Outcome>;
  /** The job's run time as its thread measured it, once it has a result. */
  threadRunMs: number | undefined;
  /** False once a batch could not carry it (Piscina refused the batch): it then runs alone. */
  batchable = true;
  private resolveOutcome!: (outcome: Outcome) => void;
  /** The outcome is chosen (it may still wait for the thread to exit). */
  private decided = false;
  private started = false;
  /** Its thread is importing its module; the handler has not been called. */
  private loading = false;
  private startedPerf = 0;
  private finishedPerf: number | undefined;
  abortReason: AbortReason | undefined;
  private abortMessage = '';
  /** Piscina was told to abort the task: the thread is being terminated. */
  private terminating = false;
  private worker: Worker | undefined;
  /** Its task number on the thread channels while it runs alone (0: none). */
  private taskId = 0;
  private flag: Int32Array | undefined;
  private controller: AbortController | undefined;
  private timeoutTimer: NodeJS.Timeout | undefined;
  private graceTimer: NodeJS.Timeout | undefined;
  private redispatches = 0;
  /** Handed to Piscina (it holds one of its lane's slots until its task settles there). */
  private dispatched = false;
  /** The batch carrying it, and its slot there; undefined when it runs alone. */
  private batch: Batch | undefined;
  private slot = 0;

  constructor(
    private readonly host: RunHost,
    private readonly lane: Lane,
    readonly task: JobRequest,
    private readonly options: RunOptions,
  ) {
    this.jobId = task.jobId;
    this.outcome = new Promise((resolve) => {
      this.resolveOutcome = resolve;
    });
  }

  get type(): string {
    return this.task.type;
  }

  get mode(): JobRequest['mode'] {
    return this.task.mode;
  }

  get isDecided(): boolean {
    return this.decided;
  }

  get isStarted(): boolean {
    return this.started;
  }

  dispatch(): void {
    this.dispatched = true;
    // The abort cell and the thread cell (see threadCell).
    const flag = new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT * 2));
    const controller = new AbortController();
    this.taskId = this.host.channels.open(this);
    this.flag = flag;
    this.controller = controller;
    const task: JobTask = { ...this.task, task: this.taskId, abortFlag: flag };
    this.lane.piscina
      .run(task, { signal: controller.signal })
      .then(
        (result: TaskResult) => this.onResult(result),
        (err: unknown) => this.onRejected(err),
      );
  }

  /** True while `batch` carries it (it may have been taken back to the queue). */
  inBatch(batch: Batch): boolean {
    return this.batch === batch;
  }

  /** It rides in `batch`, at `slot`. */
  joinBatch(batch: Batch, slot: number): void {
    this.dispatched = true;
    this.batch = batch;
    this.slot = slot;
  }

  /**
   * Its batch never started it and gives it back to the lane's queue. `failed`:
   * the batch's thread died or refused it, which counts towards MAX_REDISPATCHES;
   * false when it has been re-sent too often.
   */
  leaveBatch(failed: boolean): boolean {
    this.batch = undefined;
    this.dispatched = false;
    if (failed) this.redispatches += 1;
    return this.redispatches <= MAX_REDISPATCHES;
  }

  abort(reason: AbortReason, detail?: string): void {
    if (this.decided || this.abortReason !== undefined) return;
    this.abortReason = reason;
    this.abortMessage = describeAbort(reason, detail);
    clearTimeout(this.timeoutTimer);
    if (!this.dispatched && this.lane.withdraw(this)) {
      this.decided = true;
      this.finish(this.abortedOutcome(false));
      return;
    }
    // A batch puts its own task number on it (Batch.abortJob).
    const message: AbortMessage = { type: 'abort', task: this.taskId, reason, message: this.abortMessage };
    if (detail !== undefined) message.detail = detail;
    if (this.batch !== undefined) {
      this.batch.abortJob(this, this.slot, message);
      return;
    }
    // A 'started' already posted means the handler is running: give it its grace.
    this.drain();
    if (!this.started) {
      this.terminate();
      return;
    }
    this.host.channels.post(this.runningOn(), message);
    // After the post: a thread that sees the flag finds the message already on its channel.
    if (this.flag !== undefined) Atomics.store(this.flag, 0, ABORT_REASONS.indexOf(reason) + 1);
    this.armGrace(() => this.terminate());
  }

  /** Terminates the thread if the handler has not returned `abortGraceMs` after its signal fired. */
  armGrace(terminate: () => void): void {
    this.graceTimer = setTimeout(terminate, this.host.abortGraceMs);
  }

  /** Time this job has run on a thread, up to `now` (or its end). */
  elapsedMs(now: number): number {
    if (!this.started) return 0;
    return (this.finishedPerf ?? now) - this.startedPerf;
  }

  private terminate(): void {
    if (this.decided || this.terminating || this.controller === undefined) return;
    this.terminating = true;
    const before = this.lane.piscina.threads;
    // Piscina rejects the task at once and terminates the thread that holds it, if any.
    this.controller.abort();
    if (this.worker === undefined) {
      const after = new Set(this.lane.piscina.threads);
      this.worker = before.find((worker) => !after.has(worker));
    }
  }

  /** The thread that has its task, if one has taken it (0: none yet). */
  private runningOn(): number {
    if (this.threadId !== undefined) return this.threadId;
    return this.flag === undefined ? 0 : takenBy(this.flag);
  }

  /** A message about this job from its thread (as a task of its own, or routed by its batch). */
  onThreadMessage(message: ThreadMessage): void {
    if (this.decided) return;
    switch (message.type) {
      case 'started':
        this.onStarted(message.threadId, undefined, message.loading === true);
        break;
      case 'loaded':
        this.onLoaded();
        break;
      case 'progress':
        this.tell('onProgress', message.percent, message.message, message.data);
        break;
      case 'log':
        this.tell('onLog', message.line);
        break;
      case 'done':
        // As a task of its own: the thread's copy of its result, posted as it ended itself
        // (see exitThread in thread.ts). Batches route their 'done' messages themselves (Batch.onMessage).
        if (this.batch === undefined) this.settle(message.result);
        break;
    }
  }

  /**
   * A thread took the job. `loading`: it imports the job's module first (its first job of that module),
   * bounded by MODULE_IMPORT_LIMIT_MS; the job's own clock starts with its handler (onLoaded).
   * `worker`, when the caller knows it already.
   */
  onStarted(threadId: number, worker?: Worker, loading = false): void {
    if (this.started) return;
    this.started = true;
    this.threadId = threadId;
    this.thread = this.lane.threadNumber(threadId);
    this.startedAt = Date.now();
    this.startedPerf = performance.now();
    this.worker = worker ?? this.lane.piscina.threads.find((w) => w.threadId === threadId);
    this.host.runStarted(this);
    if (!loading) {
      this.handlerStarts();
      return;
    }
    this.loading = true;
    if (this.abortReason === undefined) {
      this.timeoutTimer = setTimeout(() => this.abort('timeout', `${MODULE_IMPORT_LIMIT_MS} ms`), MODULE_IMPORT_LIMIT_MS);
    }
  }

  /** Its thread has imported its module: the handler starts now, unless the job was stopped meanwhile. */
  private onLoaded(): void {
    if (!this.loading) return;
    this.loading = false;
    if (this.abortReason !== undefined) return;
    clearTimeout(this.timeoutTimer);
    this.startedPerf = performance.now();
    this.handlerStarts();
  }

  /** Its handler is called: the job's clock starts. */
  private handlerStarts(): void {
    const { timeoutMs } = this.options;
    if (timeoutMs !== undefined && this.abortReason === undefined) {
      this.timeoutTimer = setTimeout(() => this.abort('timeout', `${timeoutMs} ms`), timeoutMs);
    }
    this.tell('onStart', this.threadId!);
  }

  /**
   * Calls a RunOptions callback as a method of the options (they may be a class's methods, as the
   * supervisor's InFlight are); one that throws is reported and the pool carries on.
   */
  private tell<K extends 'onStart' | 'onProgress' | 'onLog'>(name: K, ...args: Parameters<NonNullable<RunOptions[K]>>): void {
    const { options } = this;
    const callback = options[name] as ((...args: unknown[]) => void) | undefined;
    if (callback === undefined) return;
    try {
      callback.apply(options, args);
    } catch (err) {
      this.host.reportError({ source: 'pool', jobId: this.jobId, jobType: this.task.type, error: toSerializedError(err, 'thread') });
    }
  }

  /** Delivers what the thread posted before its result: the last progress, the last log lines, 'started'. */
  private drain(): void {
    this.host.channels.drain(this.runningOn(), this.taskId);
  }

  private onResult(result: TaskResult): void {
    this.lane.release();
    if (this.decided) return;
    this.host.channels.whenReady(this.runningOn(), () => {
      this.drain();
      this.settle(result);
    });
  }

  /** The thread's result for this job. */
  settle(result: TaskResult): void {
    if (this.decided) return;
    this.decided = true;
    this.threadRunMs = result.runMs;
    // An abort counts only if the handler saw it before it settled; otherwise it lost the race.
    if (this.abortReason !== undefined && result.abortedBy !== undefined) {
      this.finish(this.abortedOutcome(false, false, result.ok ? undefined : result.notStarted));
    } else if (result.ok) {
      this.finish(
        result.noCompensate === true
          ? { kind: 'succeeded', output: result.output, noCompensate: true }
          : { kind: 'succeeded', output: result.output },
      );
    } else {
      this.finish({ kind: 'failed', error: result.error, permanent: result.error.permanent === true });
    }
  }

  /** Stopped before its thread started it (and it never will): its abort outcome, now. */
  settleAborted(): void {
    if (this.decided) return;
    this.decided = true;
    this.finish(this.abortedOutcome(false));
  }

  /** It had not started when its batch's thread was terminated or died: back to the queue, no attempt used. */
  settleInterrupted(message: string): void {
    if (this.decided) return;
    this.decided = true;
    this.finish({ kind: 'interrupted', error: { name: 'AbortError', message }, terminated: false });
  }

  /**
   * Its batch's thread was terminated or died while this job ran. `crash` is
   * undefined when it was terminated: to stop this job (its abort outcome) or
   * another job of the batch ('interrupted'). Resolves once `exited` does.
   */
  settleDeath(crash: SerializedError | undefined, exited: Promise<boolean>, cause: string): void {
    if (this.decided) return;
    this.decided = true;
    void exited.then((late) => {
      if (this.abortReason !== undefined) this.finish(this.abortedOutcome(true, late));
      else if (crash !== undefined) this.finish({ kind: 'crashed', error: appendLate(crash, late) });
      else this.finish({ kind: 'interrupted', error: appendLate({ name: 'AbortError', message: cause }, late), terminated: true });
    });
  }

  private onRejected(err: unknown): void {
    this.host.channels.whenReady(this.runningOn(), () => this.afterRejection(err));
  }

  private afterRejection(err: unknown): void {
    if (this.decided) {
      this.lane.release();
      return;
    }
    this.drain();
    if (this.decided) {
      // The thread had finished the job and ended itself; its 'exit' came before Piscina's copy of the result.
      this.lane.release();
      return;
    }
    if (this.terminating) {
      this.lane.release();
      this.decided = true;
      const terminated = this.worker !== undefined || this.started;
      void afterExit(this.worker, this.host.exitWaitMs).then((late) => this.finish(this.abortedOutcome(terminated, late)));
      return;
    }
    const crash = describeDeath(err, this.lane, this.worker);
    if (crash === undefined) {
      this.lane.release();
      // Piscina refused the task (its input cannot be cloned) or thread.ts failed.
      const error = toSerializedError(err, 'thread');
      this.decided = true;
      this.finish({ kind: 'failed', error, permanent: error.name === 'DataCloneError' });
      return;
    }
    if (!this.started && this.abortReason === undefined && this.redispatches < MAX_REDISPATCHES && !this.host.closing) {
      // The thread died before it began this job (a thread ends itself after an
      // error no job owns, just as the job reached it): nothing ran, try again.
      // It keeps its slot in the lane.
      this.redispatches += 1;
      this.host.channels.close(this.taskId);
      this.dispatch();
      return;
    }
    this.lane.release();
    this.decided = true;
    void afterExit(this.worker, this.host.exitWaitMs).then((late) => {
      this.finish(this.abortReason !== undefined ? this.abortedOutcome(true, late) : { kind: 'crashed', error: appendLate(crash, late) });
    });
  }

  /**
   * Its outcome when stopped; `terminated` counts only for a handler that had started (else no handler
   * ignored a signal). `notStarted`: the thread took the job but never called its handler.
   */
  private abortedOutcome(terminated: boolean, late = false, notStarted?: 'loading' | 'taken'): Outcome {
    const reason = this.abortReason ?? 'shutdown';
    let message = this.abortMessage;
    if (notStarted === 'loading' || this.loading) message += ' (before its handler started, while its module loaded)';
    else if (notStarted === 'taken' || !this.started) message += ' (before its handler started)';
    const error: SerializedError = appendLate({ name: reason === 'timeout' ? 'TimeoutError' : 'AbortError', message }, late);
    return { kind: ABORT_OUTCOME[reason], error, terminated: terminated && this.started && !this.loading };
  }

  private finish(outcome: Outcome): void {
    clearTimeout(this.timeoutTimer);
    clearTimeout(this.graceTimer);
    if (this.taskId !== 0) this.host.channels.close(this.taskId);
    this.finishedPerf = performance.now();
    this.host.runFinished(this, outcome, this.elapsedMs(this.finishedPerf));
    this.resolveOutcome(outcome);
  }
}

/**
 * Several jobs of one lane in one Piscina task, with one Int32 abort cell per
 * job (see BatchTask). It holds one of its lane's slots
 * until its task settles there. The jobs run one after another; the thread
 * reports each as it starts and ends, and this routes the reports to the jobs'
 * JobRuns. The lane may feed it more jobs while it runs, and take back the ones
 * its thread has not started.
 */
class Batch {
  /** Its task number on the thread channels, once dispatched. */
  private taskId = 0;
  /** The thread running it, from its first 'started' (0 before). */
  private threadId = 0;
  private readonly flags: Int32Array;
  private readonly runs: JobRun[];
  private readonly controller = new AbortController();
  private worker: Worker | undefined;
  /** Piscina was told to abort the task: the thread is being terminated. */
  private terminating = false;
  /** The job whose abort made us terminate the thread. */
  private stopping: JobRun | undefined;
  /** The task settled in Piscina. */
  private settled = false;
  /** The slot the thread started last; the ones before it are started or skipped. */
  private lastStarted = -1;

  constructor(
    private readonly lane: Lane,
    private readonly host: RunHost,
    runs: readonly JobRun[],
  ) {
    this.runs = [...runs];
    // Room to be fed as many again, within MAX_BATCH_SLOTS; never fewer cells than jobs (maxBatchJobs may pass it).
    const slots = Math.max(runs.length, Math.min(MAX_BATCH_SLOTS, host.maxBatchJobs * 2));
    // One cell per slot, and the thread cell (see threadCell).
    this.flags = new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT * (slots + 1)));
  }

  dispatch(): void {
    const { runs } = this;
    for (let slot = 0; slot < runs.length; slot++) runs[slot]!.joinBatch(this, slot);
    this.taskId = this.host.channels.open(this);
    const task: BatchTask = { mode: 'batch', task: this.taskId, jobs: runs.map((run) => run.task), flags: this.flags };
    this.host.batchDispatched(runs.length);
    this.lane.batchDispatched(this);
    this.lane.piscina
      .run(task, { signal: this.controller.signal })
      .then(
        (result: BatchResult) => this.onResult(result),
        (err: unknown) => this.onRejected(err),
      );
  }

  /**
   * Its thread runs its last job, one expected to end soon, and has room for
   * more: a waiting job fed now starts the moment that one ends.
   */
  isHungry(): boolean {
    const running = this.running();
    if (running === undefined || this.room() === 0 || !this.host.feedsBehind(running)) return false;
    return this.unstartedCount() === 0;
  }

  /** The job its thread is running now, if any (none before it begins, between jobs, or once it ends). */
  private running(): JobRun | undefined {
    if (this.settled || this.terminating) return undefined;
    const run = this.runs[this.lastStarted];
    return run === undefined || run.isDecided ? undefined : run;
  }

  /** How many more jobs it can be fed: one abort cell each. */
  room(): number {
    return threadCell(this.flags) - this.runs.length;
  }

  /** Jobs that wait for the job its thread is running (0 if it runs none). */
  heldUpCount(): number {
    return this.running() === undefined ? 0 : this.unstartedCount();
  }

  /** Jobs it holds that its thread has not started (nor been told to skip). */
  unstartedCount(): number {
    let count = 0;
    for (let slot = this.lastStarted + 1; slot < this.runs.length; slot++) {
      const run = this.runs[slot]!;
      if (!run.isDecided && !run.isStarted && run.inBatch(this)) count += 1;
    }
    return count;
  }

  /** Appends `runs` to the thread's list (see FeedMessage). */
  feed(runs: readonly JobRun[]): void {
    try {
      const feed: FeedMessage = { type: 'feed', task: this.taskId, jobs: runs.map((run) => run.task) };
      // Fed only once it has started (isHungry), so over a channel the pool has.
      if (!this.host.channels.post(this.threadId, feed)) throw new Error(`no channel to thread ${this.threadId}`);
    } catch {
      // An input that cannot be cloned: these run alone, where only that job fails.
      for (const run of runs) run.batchable = false;
      this.lane.requeue(runs);
      return;
    }
    for (const run of runs) {
      run.joinBatch(this, this.runs.length);
      this.runs.push(run);
    }
    this.host.jobsFed(runs.length);
  }

  /** Takes back up to `count` of the jobs its thread has not started, the last ones first, in queue order. */
  withdrawUnstarted(count: number): JobRun[] {
    const taken: JobRun[] = [];
    if (this.settled || this.terminating) return taken;
    for (let slot = this.runs.length - 1; slot > this.lastStarted && taken.length < count; slot--) {
      const run = this.runs[slot]!;
      if (run.isDecided || run.isStarted || !run.inBatch(this)) continue;
      if (Atomics.compareExchange(this.flags, slot, 0, SLOT_WITHDRAWN) !== 0) continue;
      run.leaveBatch(false);
      taken.push(run);
    }
    return taken.reverse();
  }

  /** Stops the job in `slot`: at once if its thread has not started it, else by its signal, then the grace. */
  abortJob(run: JobRun, slot: number, message: AbortMessage): void {
    this.drain();
    if (run.isDecided) return;
    const code = ABORT_REASONS.indexOf(message.reason) + 1;
    // Whoever swaps the cell first wins: the thread (it starts the job) or we (it never will).
    if (Atomics.compareExchange(this.flags, slot, 0, code) === 0) {
      run.settleAborted();
      return;
    }
    message.slot = slot;
    message.task = this.taskId;
    this.host.channels.post(this.runningOn(), message);
    // After the post: a thread that sees the flag finds the message already on its channel.
    Atomics.store(this.flags, slot, code);
    run.armGrace(() => this.terminate(run));
  }

  /** `run`'s grace is over: terminate the thread, unless it has returned meanwhile. */
  private terminate(run: JobRun): void {
    if (this.settled || this.terminating) return;
    this.drain();
    if (run.isDecided) return;
    this.terminating = true;
    this.stopping = run;
    const before = this.lane.piscina.threads;
    // Piscina rejects the task at once and terminates the thread that holds it.
    this.controller.abort();
    if (this.worker === undefined) {
      const after = new Set(this.lane.piscina.threads);
      this.worker = before.find((worker) => !after.has(worker));
    }
  }

  /** The thread that has it, if one has taken it (0: none yet). */
  private runningOn(): number {
    return this.threadId !== 0 ? this.threadId : takenBy(this.flags);
  }

  onThreadMessage(message: ThreadMessage): void {
    if (message.type === 'done') {
      this.onDone(message);
      return;
    }
    const run = this.runs[message.slot ?? -1];
    if (run === undefined) return;
    if (message.type === 'started') this.onStarted(message.slot!, message.threadId, message.loading === true);
    else run.onThreadMessage(message);
  }

  private onDone(message: BatchDoneMessage): void {
    this.runs[message.slot]?.settle(message.result);
    if (message.next !== undefined) this.onStarted(message.next, message.threadId);
  }

  private onStarted(slot: number, threadId: number, loading = false): void {
    this.threadId = threadId;
    this.worker ??= this.lane.piscina.threads.find((worker) => worker.threadId === threadId);
    this.lastStarted = slot;
    this.runs[slot]?.onStarted(threadId, this.worker, loading);
    // Its thread is on its last job: a job waiting for a thread can be fed to it now.
    if (slot === this.runs.length - 1) this.lane.pumpNow();
  }

  /** Delivers what the thread has posted so far. */
  private drain(): void {
    this.host.channels.drain(this.runningOn(), this.taskId);
  }

  private onResult(result: BatchResult): void {
    this.settled = true;
    this.host.channels.whenReady(this.runningOn(), () => this.afterResult(result));
  }

  private afterResult(result: BatchResult): void {
    this.drain();
    this.host.channels.close(this.taskId);
    // Jobs fed after the thread had finished the rest, or left because it must exit (an error no job
    // owns): the swap of their cells makes sure they never start there.
    const notStarted: JobRun[] = [];
    const lost: JobRun[] = [];
    for (let slot = 0; slot < this.runs.length; slot++) {
      const run = this.runs[slot]!;
      if (run.isDecided || !run.inBatch(this)) continue;
      if (Atomics.compareExchange(this.flags, slot, 0, SLOT_WITHDRAWN) === 0 && !run.isStarted) notStarted.push(run);
      else lost.push(run);
    }
    if (result.skipped > 0) this.giveBack(notStarted, 'its thread had to exit');
    else this.giveBack(notStarted, 'the pool is closing', false);
    this.failRest(lost, { name: 'WorkerCrashError', message: 'the thread ended a batch without this job', phase: 'thread' });
    this.lane.release(this);
  }

  private onRejected(err: unknown): void {
    this.settled = true;
    this.host.channels.whenReady(this.runningOn(), () => this.afterRejection(err));
  }

  private afterRejection(err: unknown): void {
    this.drain();
    this.host.channels.close(this.taskId);
    const left = this.runs.filter((run) => !run.isDecided && run.inBatch(this));
    if (this.terminating) {
      const cause = this.stopping === undefined ? 'another job' : `job ${this.stopping.jobId}`;
      this.endAfterDeath(left, undefined, `its thread was terminated to stop ${cause} of the same batch`);
      this.lane.release(this);
      return;
    }
    const crash = describeDeath(err, this.lane, this.worker);
    if (crash === undefined) {
      // Piscina refused the task (an input that cannot be cloned) or thread.ts failed: each job alone.
      for (const run of left) run.batchable = false;
      this.giveBack(left, 'its batch could not be sent');
      this.lane.release(this);
      return;
    }
    if (left.every((run) => !run.isStarted) && !this.host.closing) {
      // The thread died before it began any of them (see JobRun.onRejected): nothing ran, try again.
      this.giveBack(left, crash.message);
    } else {
      const running = left.find((run) => run.isStarted);
      const cause = running === undefined ? 'a job' : `job ${running.jobId}`;
      this.endAfterDeath(left, crash, `its thread died (${crash.message}) running ${cause} of the same batch`);
    }
    this.lane.release(this);
  }

  /**
   * The thread was terminated or died. The job it was running ends when the
   * thread has exited; the ones it had not started are interrupted at once (the
   * swap of their cells makes sure a dying thread cannot start them now).
   */
  private endAfterDeath(left: readonly JobRun[], crash: SerializedError | undefined, cause: string): void {
    let exited: Promise<boolean> | undefined;
    for (let slot = 0; slot < this.runs.length; slot++) {
      const run = this.runs[slot]!;
      if (run.isDecided || !left.includes(run)) continue;
      const neverStarted = Atomics.compareExchange(this.flags, slot, 0, ABORT_REASONS.indexOf('shutdown') + 1) === 0;
      if (neverStarted && !run.isStarted) {
        if (run.abortReason !== undefined) run.settleAborted();
        else run.settleInterrupted(`job interrupted before it started: ${cause}`);
      } else {
        exited ??= afterExit(this.worker, this.host.exitWaitMs);
        run.settleDeath(crash, exited, `job interrupted: ${cause}`);
      }
    }
  }

  /**
   * Puts jobs that never started back at the head of the lane's queue. `failed`: this
   * batch could not run them, which counts towards MAX_REDISPATCHES (then they are interrupted).
   */
  private giveBack(left: readonly JobRun[], why: string, failed = true): void {
    const again: JobRun[] = [];
    for (const run of left) {
      if (run.abortReason !== undefined) run.settleAborted();
      else if (this.host.closing || !run.leaveBatch(failed)) run.settleInterrupted(`job interrupted before it started: ${why}`);
      else again.push(run);
    }
    this.lane.requeue(again);
  }

  private failRest(left: readonly JobRun[], error: SerializedError): void {
    for (const run of left) run.settle({ ok: false, error });
  }
}

/** Resolves when `worker` has exited; true if that took longer than exitWaitMs (it may live on). */
function afterExit(worker: Worker | undefined, exitWaitMs: number): Promise<boolean> {
  if (worker === undefined || worker.threadId === -1) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      worker.off('exit', onExit);
      resolve(true);
    }, exitWaitMs);
    const onExit = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    worker.once('exit', onExit);
  });
}

/** The crash error if `err` says the thread died, else undefined. */
function describeDeath(err: unknown, lane: Lane, worker: Worker | undefined): SerializedError | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 'ERR_WORKER_OUT_OF_MEMORY') {
    const limit = lane.memoryLimitMb;
    const message =
      limit === undefined ? 'worker thread ran out of memory' : `worker thread ran out of memory (limit ${limit} MB)`;
    return { name: 'WorkerCrashError', message, phase: 'thread' };
  }
  const text = err instanceof Error ? err.message : String(err);
  const exited = /^worker exited with code: (-?\d+)/.exec(text);
  if (exited !== null) {
    return { name: 'WorkerCrashError', message: `worker thread exited with code ${exited[1]}`, phase: 'thread' };
  }
  if (text === 'Terminating worker thread') {
    return { name: 'WorkerCrashError', message: 'worker thread was terminated', phase: 'thread' };
  }
  // An uncaught error that killed the thread arrives as itself; the thread is gone from the pool.
  if (worker !== undefined && !lane.piscina.threads.includes(worker)) {
    const cause = toSerializedError(err, 'thread');
    return { ...cause, message: `worker thread died: ${cause.message}`, phase: 'thread' };
  }
  return undefined;
}

function appendLate(error: SerializedError, late: boolean): SerializedError {
  if (!late) return error;
  return { ...error, message: `${error.message} (its thread had not exited after being terminated; a blocking native call?)` };
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

function toSerializedError(err: unknown, phase: SerializedError['phase']): SerializedError {
  if (err instanceof Error) {
    const error: SerializedError = { name: err.name, message: err.message || err.name, phase };
    if (err.stack !== undefined) error.stack = err.stack;
    return error;
  }
  return { name: 'Error', message: String(err), phase };
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
