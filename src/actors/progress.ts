/**
 * Keeps the latest progress of each running job and writes all that changed in one statement every
 * `flushMs`: however often handlers report, the database sees one UPDATE per interval. A report the
 * database refuses for its data is split off and dropped; the others are written.
 */
import { writeIsolating } from '../db/errors.ts';
import { writeProgress, type ProgressUpdate } from '../db/progress.ts';
import type { Queryable } from '../db/queryable.ts';
import { loggerWith } from '../logger.ts';
import { Actor, assertNever } from './kernel.ts';

type ProgressMsg = { type: 'report'; report: ProgressUpdate } | { type: 'forget'; id: string } | { type: 'flush' };

/** What one flush did. */
export interface ProgressFlush {
  /** Jobs whose latest progress the flush tried to write. */
  updates: number;
  /** Rows written: a job finished or taken back meanwhile is fenced out. */
  rowsWritten: number;
  /** The write failed: the updates are kept for the next flush (unless a newer report came). */
  failed: boolean;
}

export interface ProgressState {
  flushMs: number;
  dirty: number;
  reports: number;
  statements: number;
  rowsWritten: number;
  failedWrites: number;
  /** Reports the database refused for their data: dropped. */
  refused: number;
}

export class Progress extends Actor<ProgressMsg, ProgressState> {
  readonly #db: Queryable;
  readonly #supervisorId: string;
  readonly #flushMs: number;
  #dirty = new Map<string, ProgressUpdate>();
  #stats = { reports: 0, statements: 0, rowsWritten: 0, failedWrites: 0, refused: 0 };

  constructor(options: { db: Queryable; supervisorId: string; flushMs: number }) {
    super({ name: 'progress' });
    this.#db = options.db;
    this.#supervisorId = options.supervisorId;
    this.#flushMs = options.flushMs;
  }

  /** Records the latest progress of a job; written at the next flush. */
  report(update: ProgressUpdate): void {
    this.send({ type: 'report', report: update });
  }

  /** Drops what is pending for a job that finished: its final write carries the rest. */
  forget(id: string): void {
    this.send({ type: 'forget', id });
  }

  /** Writes what is pending now, after the reports sent before. */
  flush(timeoutMs: number): Promise<ProgressFlush> {
    return this.ask({ type: 'flush' }, { timeoutMs });
  }

  protected override onStart(): void {
    this.every(this.#flushMs, () => ({ type: 'flush' }));
  }

  protected async handle(msg: ProgressMsg): Promise<ProgressFlush | void> {
    switch (msg.type) {
      case 'report': {
        this.#stats.reports++;
        const { report } = msg;
        const previous = this.#dirty.get(report.id);
        // A newer attempt replaces an older one; an older one never replaces a newer one.
        if (!previous || previous.attempt <= report.attempt) this.#dirty.set(report.id, report);
        return;
      }
      case 'forget':
        this.#dirty.delete(msg.id);
        return;
      case 'flush':
        return this.runOnce();
      default:
        return assertNever(msg);
    }
  }

  /**
   * Writes the latest progress of every job that reported since the last flush, in one statement. A
   * failed write is not thrown: progress is advisory, and what was not written is kept for the next
   * flush. The timer loop calls it through the mailbox (as `flush()` does); a test calls it directly.
   */
  async runOnce(): Promise<ProgressFlush> {
    if (this.#dirty.size === 0) return { updates: 0, rowsWritten: 0, failed: false };
    const updates = [...this.#dirty.values()];
    this.#dirty = new Map();
    try {
      const rowsWritten = await this.#write(updates);
      this.#stats.rowsWritten += rowsWritten;
      return { updates: updates.length, rowsWritten, failed: false };
    } catch (err) {
      // Keep what is newest and try again at the next tick.
      this.#stats.failedWrites++;
      for (const u of updates) if (!this.#dirty.has(u.id)) this.#dirty.set(u.id, u);
      this.logger.warn({ err, jobs: updates.length }, 'could not write progress; will retry');
      return { updates: updates.length, rowsWritten: 0, failed: true };
    }
  }

  /** Writes the updates; a report the database refuses for its data is dropped (see writeIsolating). */
  #write(updates: ProgressUpdate[]): Promise<number> {
    return writeIsolating(
      updates,
      (batch) => {
        this.#stats.statements++;
        return writeProgress(this.#db, this.#supervisorId, batch);
      },
      async (update, err) => {
        this.#stats.refused++;
        const log = update.about?.log ?? loggerWith(this.logger, { job: update.id, attempt: update.attempt });
        log.warn({ err }, 'the database refused a progress report; dropped it');
        return 0;
      },
      (a, b) => a + b,
    );
  }

  protected override inspect(): ProgressState {
    return { flushMs: this.#flushMs, dirty: this.#dirty.size, ...this.#stats };
  }
}
