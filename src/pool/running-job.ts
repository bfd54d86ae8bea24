/**
 * A job handed to the pool, as its callers see it: what run() takes (JobRequest, RunOptions), the
 * handle it returns (RunningJob), how the job ended (Outcome), and an error no job owns
 * (ThreadError). The pool's parts share these types; pool.ts hands them on as its own.
 */
import type { AbortReason, JobTask, SerializedError, ThreadErrorReport } from './protocol.ts';

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

/** An error from a thread that no running job owns, or from Piscina itself. */
export interface ThreadError {
  source: ThreadErrorReport['kind'] | 'pool';
  threadId?: number;
  /** The job whose code scheduled the failing callback, when known. */
  jobId?: string;
  jobType?: string;
  error: SerializedError;
}
