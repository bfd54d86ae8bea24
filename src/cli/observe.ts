/**
 * Follows a row as it changes: reads it, waits for a notification about it (or a recheck interval,
 * in case one was missed), reads it again. Like the Client's watch() and waitForWorkflow(), with one
 * difference a CLI needs: its AbortSignal (Ctrl-C) ends the observation quietly, not with an error.
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
  if (o.signal.aborted) return;
  // LISTEN before the first read: a change between the two is then a notification, not lost.
  const subscription = await Subscription.open(pool, { channels: o.channels, relevant: o.relevant, signal: o.signal });
  try {
    for (;;) {
      const value = await subscription.read(() => o.read());
      if (value === null) return;
      yield value;
      await subscription.wait(RECHECK_MS);
    }
  } catch (error) {
    // Stopped by the caller: the observation ends, quietly.
    if (o.signal.aborted) return;
    throw error;
  } finally {
    await subscription.close();
  }
}
