/**
 * The timers of one run of an actor (`every`, `after`): all of them end with the run, on stop and
 * on crash, so no tick of an old run reaches a restarted one.
 */
import type { TimerEntry } from './mailbox.ts';

/** The timers an actor has set in its current run. */
export class RunTimers {
  readonly #entries = new Set<TimerEntry>();

  /** Calls `tick` every `ms`, skipping a tick while the last one is pending; returns a cancel function. */
  every(ms: number, tick: (entry: TimerEntry) => void): () => void {
    const entry: TimerEntry = { handle: undefined, pending: false };
    entry.handle = setInterval(() => {
      if (!entry.pending) tick(entry);
    }, ms);
    this.#entries.add(entry);
    return () => this.#cancel(entry);
  }

  /** Calls `fire` once after `ms`; returns a cancel function. */
  after(ms: number, fire: () => void): () => void {
    const entry: TimerEntry = { handle: undefined, pending: false };
    entry.handle = setTimeout(() => {
      this.#entries.delete(entry);
      fire();
    }, ms);
    this.#entries.add(entry);
    return () => this.#cancel(entry);
  }

  /** Clears every timer of the run. */
  clear(): void {
    for (const entry of this.#entries) clearTimeout(entry.handle);
    this.#entries.clear();
  }

  #cancel(entry: TimerEntry): void {
    clearTimeout(entry.handle);
    this.#entries.delete(entry);
  }
}
