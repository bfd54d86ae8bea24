/**
 * What a handler receives as its second argument. The thread builds it for each
 * attempt. A handler in a long synchronous loop still sees an abort when it reads
 * `signal.aborted` (a shared flag backs it); listeners on `signal` fire only when
 * the loop yields to the event loop.
 */
export interface JobContext {
  /** The job's id (a bigint, as a decimal string). */
  readonly jobId: string;
  /** This attempt's number, starting at 1. */
  readonly attempt: number;
  /** How many attempts the job may use in all. */
  readonly maxAttempts: number;
  /**
   * The W3C trace context of this attempt's span (`spindle.run TYPE`) when the supervisor traces
   * with OpenTelemetry: continue the trace in the thread with your own SDK. Undefined otherwise.
   */
  readonly traceparent?: string;
  /** Fires on cancel, timeout, lost lease or shutdown; stop promptly when it does. */
  readonly signal: AbortSignal;
  /** Reports progress (0–100) with an optional message and data; cheap, fire-and-forget. */
  progress(percent: number, message?: string, data?: unknown): void;
  /** Appends a line to this attempt's log (bounded). */
  log(...args: unknown[]): void;
}
