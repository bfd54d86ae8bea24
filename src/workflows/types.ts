/** What workflow modules see: the `wf` argument of a workflow's body, and the module's exports. */

/** Options of `wf.step()`. */
export interface StepOptions<T> {
  /**
   * Undoes the step after a cancel: called with the step's recorded result, newest step first, as
   * a durable step of its own (retried; a crash resumes compensation where it stopped).
   */
  compensate?: (result: T) => unknown;
  /**
   * When this step's compensation fails for good (after `compensationAttempts`), go on with the
   * compensations of the steps before it; the run still ends `compensation_failed`. Default: stop
   * there, and record the rest as skipped.
   */
  continueOnError?: boolean;
  /**
   * Runs of the function before the step fails (`maxAttempts`, default 1: no retry), and the wait
   * between them (default 1 s, doubling, at most 1 min, with jitter). The attempts of one resume are
   * counted together; a crash between them starts the count again.
   */
  retry?: { maxAttempts: number; backoff?: { baseMs: number; maxMs: number } };
  /**
   * Time (ms) an attempt may take: past it, it fails with a TimeoutError (and is retried if `retry`
   * allows). The function is not stopped: it runs on the supervisor's main thread; work that must be
   * stopped belongs in `wf.run`, on a thread.
   */
  timeoutMs?: number;
}

/** Options of the job `wf.run()` enqueues (its key is the workflow's own). */
export interface WorkflowJobOptions {
  queue?: string;
  priority?: number;
  maxAttempts?: number;
  timeoutMs?: number;
}

/** What `wf.waitForEvent()` resolves to. */
export type EventResult<P = unknown> = { timedOut: false; payload: P } | { timedOut: true; payload: null };

/** Options of `wf.waitForEvent()`: at most one of them; without either the wait has no deadline. */
export interface WaitOptions {
  timeoutMs?: number;
  until?: Date;
}

/**
 * The second argument of a workflow's body. The body runs again from the start on every resume:
 * each call below is known by its kind, its name and how many calls of that name came before it,
 * and a call already recorded returns its recorded value, in the order the calls first ended,
 * without running anything. Results are JSON (undefined becomes null, a Date a string).
 */
export interface WorkflowContext {
  /** The run's id (its idempotency key). */
  readonly runId: string;
  /** The workflow's name. */
  readonly name: string;
  /** The version of the module that started the run. */
  readonly version: string;
  /** Runs `fn` once and records its result under this call's number; on replay returns the record. */
  step<T>(name: string, fn: () => T | Promise<T>, options?: StepOptions<T>): Promise<T>;
  /** Enqueues a job (once, whatever the replays) and resolves with its output; throws WorkflowJobError if it did not succeed. */
  run<O = unknown>(type: string, input?: unknown, options?: WorkflowJobOptions): Promise<O>;
  /** Suspends the run until `ms` from now or `{ until }`; nothing is held meanwhile. */
  sleep(name: string, duration: number | { until: Date }): Promise<void>;
  /** Takes the oldest event of this name from the run's inbox, waiting for one if none came yet. */
  waitForEvent<P = unknown>(name: string, options?: WaitOptions): Promise<EventResult<P>>;
  /** The time, recorded: replays see the same value. */
  now(): Promise<Date>;
  /** A random number in [0, 1), recorded. */
  random(): Promise<number>;
  /**
   * True for a run that reached this point with the code that has the patch (new runs, and old
   * runs that had not got this far); false for a run that passed this point before the patch.
   */
  patched(id: string): Promise<boolean>;
}

/** A workflow module's body. */
export type WorkflowBody = (input: unknown, wf: WorkflowContext) => Promise<unknown>;
