/**
 * The contract between the supervisor and a worker thread. Both sides import
 * this file and nothing else of each other.
 */
import type { MessagePort } from 'node:worker_threads';

/** Why a running job is being stopped. */
export type AbortReason = 'timeout' | 'cancel' | 'lost' | 'shutdown';

/**
 * Posted once by each pool thread on its parentPort as it starts, before Piscina's own ready
 * message (see thread-entry.cjs): the thread's end of a channel to the pool for the thread's life.
 * Every message about a task travels on it, named by `task`: making and transferring a channel per
 * task would add that work to every hop.
 */
export interface PortHandoff {
  type: 'spindle:port';
  threadId: number;
  port: MessagePort;
}

/**
 * The value the supervisor stores in `JobTask.abortFlag[0]` when it aborts a job:
 * the index of the reason here, plus one (0 means "not aborted").
 */
export const ABORT_REASONS: readonly AbortReason[] = ['timeout', 'cancel', 'lost', 'shutdown'];

/** What the supervisor sends to a thread with each job (the Piscina task). */
export interface JobTask {
  mode: 'run' | 'compensate';
  jobId: string;
  type: string;
  /** Absolute path or file: URL of the worker module. */
  modulePath: string;
  input: unknown;
  attempt: number;
  maxAttempts: number;
  /** Names the task in every message about it, both ways, on the thread's channel (PortHandoff). */
  task: number;
  /** With mode 'compensate': the cancel reason. */
  cancelReason?: string;
  /** The attempt's W3C trace context: the handler's ctx.traceparent. */
  traceparent?: string;
  /**
   * Two Int32s on a SharedArrayBuffer. [0] is set (see ABORT_REASONS) just after the
   * abort message is posted. A handler stuck in a synchronous loop never sees port
   * messages, but reading `ctx.signal.aborted` checks this flag, so a loop that
   * polls the signal still stops. [1] is the thread's id, stored
   * as the thread takes the task (see threadCell).
   */
  abortFlag: Int32Array;
}

/**
 * Messages a thread posts about a task on its channel, named by `task`. 'started'
 * comes first, as soon as the thread takes the job. `loading`: the thread imports
 * the job's module first and posts 'loaded' before it calls the handler; the job's
 * timeout counts from there, the import has MODULE_IMPORT_LIMIT_MS. A batch's
 * messages name their job by `slot` (its index in BatchTask.jobs).
 */
export type ThreadMessage =
  | { type: 'started'; task: number; threadId: number; slot?: number; loading?: true }
  | { type: 'loaded'; task: number; slot?: number }
  | { type: 'progress'; task: number; percent: number; message?: string; data?: unknown; slot?: number }
  | { type: 'log'; task: number; line: string; slot?: number }
  | BatchDoneMessage;

/**
 * Batches: the job in `slot` has ended with `result`. (A single job's thread
 * posts it too, slot 0, just before it ends itself: see exitThread in thread.ts.) `next` is the slot
 * the thread started right after it (its 'started', folded into this message
 * to save a post): that job's clock starts now.
 */
export interface BatchDoneMessage {
  type: 'done';
  task: number;
  slot: number;
  result: TaskResult;
  threadId: number;
  next?: number;
}

/** Messages the supervisor posts on a thread's channel about its task (in a batch, `slot` names the job). */
export type SupervisorMessage = AbortMessage | FeedMessage;

/** Stop the job (in `slot`, on a batch's port). */
export interface AbortMessage {
  type: 'abort';
  task: number;
  reason: AbortReason;
  detail?: string;
  /** Readable text for `ctx.signal.reason.message` (see describeAbort). */
  message: string;
  slot?: number;
}

/**
 * More jobs for a running batch, in the slots after its last ones: the thread
 * starts them as soon as it is done with the rest, with no round trip to the
 * supervisor in between. A thread that has already ended the batch never sees
 * them; their cells stay 0 and the supervisor runs them elsewhere.
 */
export interface FeedMessage {
  type: 'feed';
  task: number;
  jobs: BatchJob[];
}

/**
 * Several short jobs in one Piscina task, run one after another on one thread
 * over one channel: one thread hop for all of them instead of one each. Each
 * job still reports on its own ('started', progress, logs, 'done'), can be
 * aborted on its own, and has its own cell in `flags`.
 */
export interface BatchTask {
  mode: 'batch';
  jobs: BatchJob[];
  /** Names the task in every message about it, both ways, on the thread's channel (PortHandoff). */
  task: number;
  /**
   * One Int32 per job on a SharedArrayBuffer, with room for the jobs fed to the
   * batch later (FeedMessage). 0: not started. The thread swaps
   * in SLOT_STARTED before it starts the job; the supervisor swaps in an abort
   * code (see ABORT_REASONS) to stop it, or SLOT_WITHDRAWN to run it elsewhere.
   * Both sides use compareExchange from 0, so a job taken back before it
   * started is never started here, and the supervisor knows which came first.
   * The thread skips a job whose cell it finds set. After SLOT_STARTED the
   * supervisor stores its abort code as a single-job abortFlag would be. The last
   * cell is the thread's id (see threadCell), not a job's.
   */
  flags: Int32Array;
}

/** One job of a BatchTask: a JobTask without a task of its own. */
export type BatchJob = Omit<JobTask, 'task' | 'abortFlag'>;

/**
 * The index of the cell, in a task's abortFlag or flags, where the thread stores its
 * id as it takes the task (before any 'started'): the supervisor then knows whose
 * channel carries the task's messages even when none has arrived yet. 0: not taken.
 */
export function threadCell(flags: Int32Array): number {
  return flags.length - 1;
}

/** The thread that has taken the task of these cells (0: none yet). */
export function takenBy(flags: Int32Array): number {
  return Atomics.load(flags, threadCell(flags));
}

/** The value a thread stores in BatchTask.flags[slot] when it starts that job. */
export const SLOT_STARTED = -1;
/** The value the supervisor stores in BatchTask.flags[slot] to take back a job the thread has not started. */
export const SLOT_WITHDRAWN = -2;

/** What a thread resolves a BatchTask with; the jobs' results went over the port. */
export interface BatchResult {
  /**
   * Jobs the thread left alone at the end of the batch because it must exit
   * (an error no job owns; see thread.ts): they never started.
   */
  skipped: number;
}

/** Either kind of Piscina task. */
export type ThreadTask = JobTask | BatchTask | ProbeTask;

/** An error as it crosses the thread boundary: always readable, whatever was thrown. */
export interface SerializedError {
  name: string;
  message: string;
  stack?: string;
  /** The handler threw a PermanentError (or the module cannot load): do not retry. */
  permanent?: boolean;
  /** Where it came from: the handler, loading the module, cloning the result, the thread itself. */
  phase?: 'load' | 'handler' | 'clone' | 'thread';
}

/** What a thread resolves its Piscina task with. Handler errors are values, not rejections. */
export type TaskResult =
  | {
      ok: true;
      output: unknown;
      abortedBy?: AbortReason;
      /** Mode 'compensate' on a module that exports no `compensate`: nothing ran. */
      noCompensate?: true;
      /** The job's time on the thread, from start to result, in ms (the pool's guide to batching). */
      runMs?: number;
    }
  | {
      ok: false;
      error: SerializedError;
      abortedBy?: AbortReason;
      runMs?: number;
      /** Stopped before its handler was called: 'loading' while its module loaded on this thread. */
      notStarted?: 'loading' | 'taken';
    };

/**
 * Posted by a thread on its parentPort (Piscina re-emits it as the pool's
 * 'message' event) when an error escapes that no running job owns: a timer or
 * promise left behind by a finished job. The thread exits as soon as it has no
 * job (see thread.ts); Piscina starts a replacement.
 */
export interface ThreadErrorReport {
  type: 'spindle:thread:error';
  kind: 'uncaughtException' | 'unhandledRejection';
  threadId: number;
  /** The job whose code scheduled the failing callback, when known. */
  jobId?: string;
  jobType?: string;
  error: SerializedError;
}

/** The exit code of a thread that ends itself after a ThreadErrorReport. */
export const THREAD_ERROR_EXIT_CODE = 70;

/** What the registry's probe learns about one module, without running its handler. */
export type ModuleReport =
  | {
      ok: true;
      /** The module's `options` export, cloned (undefined when absent). */
      options: unknown;
      hasDefault: boolean;
      hasCompensate: boolean;
      /** The module's `schedule` export, if any, unvalidated. */
      schedule?: unknown;
    }
  | { ok: false; error: string };

/**
 * The registry's probe, as a task on a pool thread: import each module of `paths`, one after
 * another, without running a handler. The thread keeps them loaded for its jobs. Its result: one
 * report per path, in order.
 */
export interface ProbeTask {
  mode: 'probe';
  /** Names the probe's messages. */
  probe: number;
  paths: string[];
}

/**
 * A task that only makes Piscina start a thread (WorkerPool.startThreads()): thread-entry.cjs
 * answers it at once, with null.
 */
export const START_TASK = { mode: 'start' } as const;

/** What a probe task posts on its parentPort (Piscina's 'message' event) as it starts each module. */
export interface ProbingMessage {
  type: 'spindle:probing';
  probe: number;
  path: string;
}

/** How long a worker module's import may take: when the registry probes it, and on each thread. */
export const MODULE_IMPORT_LIMIT_MS = 10_000;

/** The readable text of an abort, the same on both sides: 'job timed out after 5000 ms'. */
export function describeAbort(reason: AbortReason, detail?: string): string {
  switch (reason) {
    case 'timeout':
      return detail === undefined ? 'job timed out' : `job timed out after ${detail}`;
    case 'cancel':
      return detail === undefined ? 'job cancelled' : `job cancelled: ${detail}`;
    case 'lost':
      return detail === undefined ? 'job lease lost' : `job lease lost: ${detail}`;
    case 'shutdown':
      return detail === undefined ? 'job interrupted by shutdown' : `job interrupted by shutdown: ${detail}`;
  }
}
