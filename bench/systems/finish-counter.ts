/** Counts finished jobs and tells waiters the moment a total was reached. */
import { wallClockMs } from '../work.ts';

interface Waiter {
  total: number;
  resolve(reachedAt: number): void;
  reject(error: unknown): void;
}

/** A monotonic count of finished jobs with "wake me at N". */
export class FinishCounter {
  #count = 0;
  #waiters: Waiter[] = [];
  #failure: unknown;

  /** The jobs counted so far. */
  get count(): number {
    return this.#count;
  }

  /** Counts `n` more finished jobs. */
  add(n = 1): void {
    this.#count += n;
    this.#wake();
  }

  /** Raises the count to `total` if it is lower (for totals read from a store). */
  raiseTo(total: number): void {
    if (total <= this.#count) return;
    this.#count = total;
    this.#wake();
  }

  /** Records that a job failed: every waiter, now and later, is rejected with `error` (a benchmark job never fails). */
  fail(error: unknown): void {
    this.#failure ??= error;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.reject(error);
  }

  /** Resolves with the wallClockMs() at which the count reached `total`; rejects after `timeoutMs` or on a failure. */
  waitFor(total: number, timeoutMs: number): Promise<number> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    if (this.#count >= total) return Promise.resolve(wallClockMs());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(new Error(`timed out after ${timeoutMs} ms: ${this.#count} of ${total} jobs finished`));
      }, timeoutMs);
      const waiter: Waiter = {
        total,
        resolve: (reachedAt) => {
          clearTimeout(timer);
          resolve(reachedAt);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      this.#waiters.push(waiter);
    });
  }

  #wake(): void {
    if (this.#waiters.length === 0) return;
    // Take the time once, at the moment the count moved: that is when the total was reached.
    const now = wallClockMs();
    const ready = this.#waiters.filter((w) => w.total <= this.#count);
    if (ready.length === 0) return;
    this.#waiters = this.#waiters.filter((w) => w.total > this.#count);
    for (const w of ready) w.resolve(now);
  }
}

/**
 * Asks `check` back to back until it answers true; resolves with the
 * wallClockMs() of that answer. For systems that write completions after the
 * handler returns (batched, or not awaited): once every handler has returned,
 * the store is polled until it shows them all done, so that the clock stops
 * where it stops for the others, at a written outcome. Polling starts only
 * then, so it does not load the database during the run.
 */
export async function pollUntil(check: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const deadline = wallClockMs() + timeoutMs;
  for (;;) {
    if (await check()) return wallClockMs();
    if (wallClockMs() > deadline) throw new Error(`the store did not show the jobs done within ${timeoutMs} ms`);
  }
}
