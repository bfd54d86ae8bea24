/**
 * Writes finished attempts in batches: while one batch is being written, the next collects, so many
 * jobs finish in one statement under load and a lone job is written at once. A finish the database
 * refuses for its data is split off from its batch and recorded as a failure of that job alone: one
 * bad value never holds up the others.
 */
import { isDataError, writeIsolating } from '../db/errors.ts';
import { finishJobs, recordedAttempts, type Finish, type FinishedJobs } from '../db/outcomes.ts';
import type { Queryable } from '../db/queryable.ts';
import { loggerWith } from '../logger.ts';
import { storableText } from '../storable.ts';
import { Actor, assertNever } from './kernel.ts';

/** Most finishes written by one statement. */
export const MAX_BATCH = 500;
/** Wait before retrying a batch whose write failed (a dropped connection, a restarting server). */
const RETRY_MS = [100, 250, 500, 1_000, 2_000, 5_000];

type CompleterMsg =
  | { type: 'flush' }
  /** Resolves once everything added before it is written (or given up on). */
  | { type: 'drain' };

export interface CompleterState {
  pending: number;
  written: number;
  /** Finishes whose fenced write matched nothing: the claim had been lost. */
  notWritten: number;
  batches: number;
  failedWrites: number;
  /** Finishes the database refused for their data, recorded as failures instead. */
  refused: number;
}

/** The outcome of one batch, for the supervisor's counters, events and compensations. */
export interface CompletedBatch {
  written: Finish[];
  notWritten: Finish[];
  /** Written retries that the database ended cancelled (a cancel had come meanwhile), with its reason. */
  cancelledInstead: { finish: Finish; reason: string | null }[];
}

export class Completer extends Actor<CompleterMsg, CompleterState> {
  readonly #db: Queryable;
  readonly #supervisorId: string;
  readonly #onBatch: (batch: CompletedBatch) => void;
  #pending: Finish[] = [];
  /** The batch being written now. */
  #writing: Finish[] = [];
  #flushQueued = false;
  #failures = 0;
  /** Finishes whose write failed without a reply: the statement may have been applied all the same. */
  readonly #uncertain = new WeakSet<Finish>();
  #stats = { written: 0, notWritten: 0, batches: 0, failedWrites: 0, refused: 0 };

  constructor(options: { db: Queryable; supervisorId: string; onBatch: (batch: CompletedBatch) => void }) {
    super({ name: 'completer' });
    this.#db = options.db;
    this.#supervisorId = options.supervisorId;
    this.#onBatch = options.onBatch;
  }

  /**
   * Queues a finished attempt for the next batch. It joins the batch directly, not as a message of
   * its own (that message, with progress's `forget`, was a quarter of what the supervisor's main
   * thread allocated per no-op job). A completer that is stopping or has stopped takes nothing more,
   * as it would drop the message.
   */
  add(finish: Finish): void {
    if (!this.acceptsMessages) return;
    this.#pending.push(finish);
    this.#queueFlush();
  }

  /**
   * The attempts whose outcome is not written yet. The supervisor still holds them: the heartbeat
   * keeps extending their leases, so a write delayed by a database fault is not overtaken by the reaper.
   */
  held(): { id: string; attempt: number }[] {
    return [...this.#writing, ...this.#pending].map((f) => ({ id: f.id, attempt: f.attempt }));
  }

  /** Resolves when every finish added so far has been written. */
  drain(timeoutMs: number): Promise<void> {
    return this.ask({ type: 'drain' }, { timeoutMs });
  }

  protected async handle(msg: CompleterMsg): Promise<void> {
    switch (msg.type) {
      case 'flush':
        this.#flushQueued = false;
        await this.#flush();
        return;
      case 'drain':
        while (this.#pending.length > 0 && !this.signal.aborted) await this.#flush();
        return;
      default:
        return assertNever(msg);
    }
  }

  #queueFlush(): void {
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    this.send({ type: 'flush' });
  }

  /** Writes one batch, and after a failed write waits before the next try. */
  async #flush(): Promise<void> {
    const jobs = Math.min(this.#pending.length, MAX_BATCH);
    try {
      await this.runOnce();
      this.#failures = 0;
    } catch (err) {
      const delay = RETRY_MS[Math.min(this.#failures++, RETRY_MS.length - 1)]!;
      this.logger.warn({ err, jobs, retryInMs: delay }, 'could not record finished jobs; retrying');
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
    if (this.#pending.length > 0) this.#queueFlush();
  }

  /**
   * Writes the oldest pending finishes (up to MAX_BATCH) in one fenced statement and reports the
   * batch to `onBatch`; returns it, or null when nothing was pending. Throws when the write fails:
   * the batch is back at the head of the queue, to be written whole by the next try. The loop calls
   * it through the mailbox; a test calls it on an actor not started.
   */
  async runOnce(): Promise<CompletedBatch | null> {
    if (this.#pending.length === 0) return null;
    const batch = this.#pending.splice(0, MAX_BATCH);
    this.#writing = batch;
    try {
      const result = await this.#write(batch);
      const ids = new Set(result.ids);
      await this.#settleUncertain(batch, ids);
      const written = batch.filter((f) => ids.has(f.id));
      const notWritten = batch.filter((f) => !ids.has(f.id));
      const reasons = new Map(result.cancelled.map((c) => [c.id, c.reason]));
      const cancelledInstead = written.filter((f) => reasons.has(f.id)).map((finish) => ({ finish, reason: reasons.get(finish.id)! }));
      this.#stats.batches++;
      this.#stats.written += written.length;
      this.#stats.notWritten += notWritten.length;
      const completed = { written, notWritten, cancelledInstead };
      this.#onBatch(completed);
      return completed;
    } catch (err) {
      // Fenced writes are safe to repeat: one that was applied matches nothing the second time.
      // Put the batch back for the next try.
      this.#stats.failedWrites++;
      for (const f of batch) this.#uncertain.add(f);
      this.#writing = [];
      this.#pending.unshift(...batch);
      throw err;
    } finally {
      this.#writing = [];
    }
  }

  /**
   * Writes a batch; a finish the database refuses for its data is recorded as a failure instead (see
   * writeIsolating). Any other error ends the write: the caller retries the whole batch (what was
   * written matches nothing the second time).
   */
  #write(batch: Finish[]): Promise<FinishedJobs> {
    return writeIsolating(
      batch,
      (finishes) => finishJobs(this.#db, this.#supervisorId, finishes),
      (finish, err) => this.#writeRefused(finish, err),
      (a, b) => ({ ids: [...a.ids, ...b.ids], cancelled: [...a.cancelled, ...b.cancelled] }),
    );
  }

  /**
   * A finish the database refused: the attempt is recorded as failed with what the database said, not
   * retried (its outcome would be refused again), without the output, logs and last progress that
   * may have been refused. The finish is changed in place, so a retry after a lost connection writes
   * the same.
   */
  async #writeRefused(finish: Finish, err: unknown): Promise<FinishedJobs> {
    this.#stats.refused++;
    const reason = storableText(err instanceof Error ? err.message : String(err), 1_000);
    const log = finish.about?.log ?? loggerWith(this.logger, { job: finish.id, attempt: finish.attempt });
    log.error({ err }, 'the database refused the outcome of a job; recording it as failed');
    finish.outcome = 'failed';
    finish.nextState = 'failed';
    finish.error = {
      name: 'StorageError',
      message: `the outcome of attempt ${finish.attempt} could not be stored: ${reason}`,
      outcome: 'failed',
    };
    delete finish.outputJson;
    delete finish.delayMs;
    delete finish.progress;
    finish.logs = null;
    try {
      return await finishJobs(this.#db, this.#supervisorId, [finish]);
    } catch (again) {
      if (!isDataError(again)) throw again;
      // Cannot happen with the fields above; if it does, the lease ends and the reaper takes the job back.
      log.error({ err: again }, 'could not record even the failure of a job; its lease will expire');
      return { ids: [], cancelled: [] };
    }
  }

  /**
   * A retried finish that matched nothing was either applied by the try whose reply was lost, or its
   * claim was lost meanwhile: the attempts table tells which, so the first is not counted as a lost claim.
   */
  async #settleUncertain(batch: Finish[], ids: Set<string>): Promise<void> {
    const unsure = batch.filter((f) => !ids.has(f.id) && this.#uncertain.has(f));
    if (unsure.length === 0) return;
    try {
      for (const id of await recordedAttempts(this.#db, this.#supervisorId, unsure)) ids.add(id);
    } catch (err) {
      this.logger.warn({ err, jobs: unsure.length }, 'could not check retried outcomes; counting them as lost claims');
    }
  }

  protected override inspect(): CompleterState {
    return { pending: this.#pending.length, ...this.#stats };
  }
}
