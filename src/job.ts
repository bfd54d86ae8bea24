/** The states a job moves through. */
export type JobState = 'queued' | 'running' | 'succeeded' | 'failed' | 'timed_out' | 'cancelled';

/** The states a job ends in. */
export const FINAL_STATES: readonly JobState[] = ['succeeded', 'failed', 'timed_out', 'cancelled'];

/** How one attempt ended. */
export type AttemptOutcome = 'succeeded' | 'failed' | 'timed_out' | 'cancelled' | 'crashed' | 'lost' | 'interrupted';

/** The error recorded on a job or attempt: always readable. */
export interface JobError {
  name: string;
  message: string;
  stack?: string;
  /** The attempt outcome that produced it. */
  outcome?: AttemptOutcome;
}

/** A job as the Client returns it. Ids are strings: PostgreSQL bigints do not fit a JS number. */
export interface Job<Input = unknown, Output = unknown> {
  id: string;
  type: string;
  queue: string;
  state: JobState;
  priority: number;
  input: Input;
  output: Output | null;
  error: JobError | null;
  attempt: number;
  /** Null until the job is first claimed: then the worker module's maxAttempts, or 3. */
  maxAttempts: number | null;
  timeoutMs: number | null;
  key: string | null;
  /** Jobs with the same concurrency key share their type's per-key limits. */
  concurrencyKey: string | null;
  /** The debounce key it was enqueued with: it stands for the last enqueue of that key before it ran. */
  debounceKey: string | null;
  runAt: Date;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  /** The supervisor that holds it, or last held it. */
  supervisorId: string | null;
  /** @deprecated The same as supervisorId, its earlier name. */
  workerId: string | null;
  leaseExpiresAt: Date | null;
  progress: number | null;
  progressMessage: string | null;
  progressData: unknown;
  cancelReason: string | null;
  /** The compensation's outcome after a cancel, when the module has one. */
  compensation: unknown;
}

/** One attempt of a job. */
export interface Attempt {
  jobId: string;
  attempt: number;
  /** The supervisor that ran the attempt. */
  supervisorId: string | null;
  /** @deprecated The same as supervisorId, its earlier name. */
  workerId: string | null;
  outcome: AttemptOutcome;
  error: JobError | null;
  logs: string | null;
  startedAt: Date | null;
  finishedAt: Date;
}

/** A row of spindle.jobs as pg returns it. */
export interface JobRow {
  id: string;
  type: string;
  queue: string;
  state: JobState;
  priority: number;
  input: unknown;
  output: unknown;
  error: JobError | null;
  attempt: number;
  max_attempts: number | null;
  timeout_ms: number | null;
  key: string | null;
  concurrency_key: string | null;
  debounce_key: string | null;
  run_at: Date;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  worker_id: string | null;
  lease_expires_at: Date | null;
  progress: number | null;
  progress_message: string | null;
  progress_data: unknown;
  cancel_reason: string | null;
  compensation: unknown;
}

/** A row of spindle.attempts as pg returns it. */
export interface AttemptRow {
  job_id: string;
  attempt: number;
  worker_id: string | null;
  outcome: AttemptOutcome;
  error: JobError | null;
  logs: string | null;
  started_at: Date | null;
  finished_at: Date;
}

/** Maps a database row to the public Job shape. */
export function jobFromRow<I = unknown, O = unknown>(row: JobRow): Job<I, O> {
  return {
    id: String(row.id),
    type: row.type,
    queue: row.queue,
    state: row.state,
    priority: row.priority,
    input: row.input as I,
    output: (row.output ?? null) as O | null,
    error: row.error ?? null,
    attempt: row.attempt,
    maxAttempts: row.max_attempts,
    timeoutMs: row.timeout_ms,
    key: row.key,
    concurrencyKey: row.concurrency_key ?? null,
    debounceKey: row.debounce_key ?? null,
    runAt: row.run_at,
    createdAt: row.created_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    supervisorId: row.worker_id,
    workerId: row.worker_id,
    leaseExpiresAt: row.lease_expires_at,
    progress: row.progress,
    progressMessage: row.progress_message,
    progressData: row.progress_data ?? null,
    cancelReason: row.cancel_reason,
    compensation: row.compensation ?? null,
  };
}

/** Maps a database row to the public Attempt shape. */
export function attemptFromRow(row: AttemptRow): Attempt {
  return {
    jobId: String(row.job_id),
    attempt: row.attempt,
    supervisorId: row.worker_id,
    workerId: row.worker_id,
    outcome: row.outcome,
    error: row.error ?? null,
    logs: row.logs,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
  };
}
