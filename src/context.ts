/**
 * What a handler receives as its second argument. The thread builds it for each
 * attempt; a handler that runs a long synchronous loop must yield to the event
 * loop now and then, or `signal` can never fire (the abort arrives as a message).
 */
export interface JobContext {
  /** The job's id (a bigint, as a decimal string). */
  readonly jobId: string;
  /** This attempt's number, starting at 1. */
  readonly attempt: number;
  /** How many attempts the job may use in all. */
  readonly maxAttempts: number;
  /** Fires on cancel, timeout, lost lease or shutdown; stop promptly when it does. */
  readonly signal: AbortSignal;
  /** Reports progress (0–100) with an optional message and data; cheap, fire-and-forget. */
  progress(percent: number, message?: string, data?: unknown): void;
  /** Appends a line to this attempt's log (bounded). */
  log(...args: unknown[]): void;
}
