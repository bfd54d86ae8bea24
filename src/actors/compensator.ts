/**
 * Runs a worker module's compensate() after one of its jobs was cancelled, on a pool thread, and
 * records what it did on the job's row (fenced on the cancelled attempt).
 *
 * A job with a compensate that is put back for a retry is watched until its outcome is written:
 * the database may end it cancelled instead (a cancel this supervisor had not heard of yet), and
 * then it is compensated too.
 */
import type { Finish } from '../db/outcomes.ts';
import { recordCompensation } from '../db/outcomes.ts';
import type { Queryable } from '../db/queryable.ts';
import { toJson } from '../outcome.ts';
import type { Outcome, WorkerPool } from '../pool/pool.ts';
import type { CompletedBatch } from './completer.ts';
import { Actor, assertNever } from './kernel.ts';

/** Time a compensate() hook gets when its module says nothing. */
export const DEFAULT_COMPENSATE_TIMEOUT_MS = 60_000;
/** How long a compensation waits for the cancelled outcome to be written before recording itself. */
const OUTCOMES_WRITTEN_WAIT_MS = 30_000;

/** The cancelled attempt a compensate() undoes, and what its module asks of the run. */
export interface CompensatedJob {
  id: string;
  type: string;
  modulePath: string;
  input: unknown;
  attempt: number;
  maxAttempts: number;
  cancelReason: string | null;
  /** The module's own timeout; undefined: DEFAULT_COMPENSATE_TIMEOUT_MS. */
  timeoutMs: number | undefined;
  maxMemoryMb: number | undefined;
}

type CompensatorMsg =
  | { type: 'compensate'; job: CompensatedJob }
  | { type: 'written'; batch: CompletedBatch };

export interface CompensatorState {
  running: number;
  /** Retries of jobs with a compensate whose outcome is not written yet. */
  watching: number;
  succeeded: number;
  /** compensate() failed, timed out or was stopped. */
  failed: number;
  /** Compensations whose record could not be written. */
  unrecorded: number;
}

export interface CompensatorOptions {
  pool: Pick<WorkerPool, 'run'>;
  db: Queryable;
  supervisorId: string;
  /** Resolves once the outcomes queued so far are written (the completer's drain). */
  outcomesWritten(timeoutMs: number): Promise<void>;
}

export class Compensator extends Actor<CompensatorMsg, CompensatorState> {
  readonly #options: CompensatorOptions;
  readonly #running = new Set<Promise<void>>();
  readonly #watching = new Map<Finish, CompensatedJob>();
  #stats = { succeeded: 0, failed: 0, unrecorded: 0 };

  constructor(options: CompensatorOptions) {
    super({ name: 'compensator' });
    this.#options = options;
  }

  /** Compensates a job that ended cancelled. */
  compensate(job: CompensatedJob): void {
    this.send({ type: 'compensate', job });
  }

  /**
   * Watches a retry of a job with a compensate until its outcome is written. Kept at once, not as a
   * message, so that `written()` never misses a batch that holds it.
   */
  watchRetry(finish: Finish, job: CompensatedJob): void {
    this.#watching.set(finish, job);
  }

  /** What the completer wrote: retries it ended cancelled instead are compensated. */
  written(batch: CompletedBatch): void {
    if (this.#watching.size > 0) this.send({ type: 'written', batch });
  }

  /** Resolves when the compensations running now have finished and been recorded. */
  async settled(): Promise<void> {
    await Promise.allSettled(this.#running);
  }

  protected handle(msg: CompensatorMsg): void {
    switch (msg.type) {
      case 'compensate':
        return this.#start(msg.job);
      case 'written': {
        const { batch } = msg;
        for (const { finish, reason } of batch.cancelledInstead) {
          const job = this.#watching.get(finish);
          if (job) this.#start({ ...job, cancelReason: reason });
        }
        for (const finish of [...batch.written, ...batch.notWritten]) this.#watching.delete(finish);
        return;
      }
      default:
        return assertNever(msg);
    }
  }

  #start(job: CompensatedJob): void {
    const { pool } = this.#options;
    const running = pool.run(
      {
        mode: 'compensate',
        jobId: job.id,
        type: job.type,
        modulePath: job.modulePath,
        input: job.input,
        attempt: job.attempt,
        maxAttempts: job.maxAttempts,
        cancelReason: job.cancelReason ?? undefined,
      },
      { timeoutMs: job.timeoutMs ?? DEFAULT_COMPENSATE_TIMEOUT_MS, maxMemoryMb: job.maxMemoryMb },
    );
    const done = running.outcome
      .then((outcome) => this.#record(job, outcome))
      .finally(() => this.#running.delete(done));
    this.#running.add(done);
  }

  async #record(job: CompensatedJob, outcome: Outcome): Promise<void> {
    const compensation = compensationOf(outcome);
    if (compensation.state === 'succeeded') this.#stats.succeeded++;
    else this.#stats.failed++;
    try {
      // The cancelled outcome must be in the row before the compensation is added to it.
      await this.#options.outcomesWritten(OUTCOMES_WRITTEN_WAIT_MS);
      await recordCompensation(this.#options.db, this.#options.supervisorId, { id: job.id, attempt: job.attempt, compensation });
      if (compensation.state !== 'succeeded') this.logger.warn({ job: job.id, type: job.type, attempt: job.attempt, compensation }, 'compensate() did not succeed');
    } catch (err) {
      this.#stats.unrecorded++;
      this.logger.error({ err, job: job.id, type: job.type, attempt: job.attempt }, 'could not record the compensation');
    }
  }

  protected override inspect(): CompensatorState {
    return { running: this.#running.size, watching: this.#watching.size, ...this.#stats };
  }
}

/** What the job's row records of a compensate() run: its state, and its output or error. */
function compensationOf(outcome: Outcome): { state: string; output?: unknown; error?: unknown } {
  if (outcome.kind !== 'succeeded') return { state: outcome.kind, error: 'error' in outcome ? outcome.error : null };
  const json = toJson(outcome.output ?? null);
  if (json.ok) return { state: 'succeeded', output: JSON.parse(json.text) as unknown };
  return { state: 'failed', error: { name: 'OutputError', message: `compensate()'s result cannot be stored as JSON: ${json.reason}` } };
}
