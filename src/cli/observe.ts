/**
 * Follows a row as it changes: reads it, waits for a notification about it (or a recheck interval,
 * in case one was missed), reads it again. Like the Client's watch() and waitForWorkflow(), with one
 * difference a CLI needs: an AbortSignal ends the wait at once, and gives its connection back.
 */
import type pg from 'pg';
import { Subscription } from '../subscription.ts';

/** Reads again this often even without a notification. */
const RECHECK_MS = 5_000;

/** What to follow and how. */
export interface Observation<T> {
  /** The channels to LISTEN on, and which of their notifications concern the row. */
  channels: readonly string[];
  relevant: (notification: pg.Notification) => boolean;
  /** Reads the row; null when it does not exist, which ends the observation. */
  read: () => Promise<T | null>;
  /** Ends the observation: a wait in progress returns at once. */
  signal: AbortSignal;
}

/** Yields the row at first and after every relevant notification, until the caller stops, the row is gone, or the signal aborts. */
export async function* observe<T>(pool: pg.Pool, o: Observation<T>): AsyncGenerator<T> {
  // LISTEN before the first read: a change between the two is then a notification, not lost.
  const subscription = await Subscription.open(pool, o.channels, o.relevant);
  const aborted = new Promise<void>((resolve) => {
    if (o.signal.aborted) resolve();
    else o.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  try {
    while (!o.signal.aborted) {
      const value = await o.read();
      if (value === null) return;
      yield value;
      await Promise.race([subscription.wait(RECHECK_MS), aborted]);
    }
  } finally {
    await subscription.close();
  }
}
