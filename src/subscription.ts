/**
 * A pooled connection that LISTENs, for callers that wait for a row to change: they read the row,
 * then wait() until a relevant notification arrives (or a recheck interval passes, in case one was
 * missed), and read again. An abort signal (the Client's close) ends a wait with its reason, so the
 * caller gives the connection back.
 */
import type pg from 'pg';
import { listen, unlistenAll } from './db/notifications.ts';

export class Subscription {
  readonly connection: pg.PoolClient;
  readonly #relevant: (n: pg.Notification) => boolean;
  /** A relevant notification arrived since the last wait(): the next one returns at once. */
  #pending = false;
  #wake: () => void = () => {};
  #lost: Error | undefined;
  readonly #signal: AbortSignal | undefined;

  private constructor(connection: pg.PoolClient, relevant: (n: pg.Notification) => boolean, signal: AbortSignal | undefined) {
    this.connection = connection;
    this.#relevant = relevant;
    this.#signal = signal;
    signal?.addEventListener('abort', this.#onAbort);
    connection.on('notification', this.#onNotification);
    // A checked-out client has no pool 'error' listener: without this one, a connection that drops
    // while we wait (a restarted server) would crash the process. The next query fails instead.
    connection.on('error', this.#onError);
  }

  /** Checks out a connection and LISTENs on `channels`; `relevant` picks the notifications that wake wait(). */
  static async open(
    pool: pg.Pool,
    channels: readonly string[],
    relevant: (n: pg.Notification) => boolean,
    signal?: AbortSignal,
  ): Promise<Subscription> {
    signal?.throwIfAborted();
    const subscription = new Subscription(await pool.connect(), relevant, signal);
    try {
      await listen(subscription.connection, channels);
    } catch (error) {
      await subscription.close();
      throw error;
    }
    return subscription;
  }

  /**
   * Resolves when a relevant notification has arrived since the last call, the connection failed, or
   * after `ms`; rejects with the signal's reason once it is aborted.
   */
  async wait(ms: number): Promise<void> {
    this.#signal?.throwIfAborted();
    await this.#nextWake(ms);
    this.#signal?.throwIfAborted();
  }

  #nextWake(ms: number): Promise<void> {
    if (this.#pending || this.#lost) {
      this.#pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done() {
        clearTimeout(timer);
        self.#wake = () => {};
        self.#pending = false;
        resolve();
      }
      this.#wake = done;
    });
  }

  /** Stops listening and gives the connection back (or discards it, if it failed). */
  async close(): Promise<void> {
    this.#signal?.removeEventListener('abort', this.#onAbort);
    this.connection.off('notification', this.#onNotification);
    if (!this.#lost) await unlistenAll(this.connection).catch(() => {});
    this.connection.release(this.#lost);
    this.connection.off('error', this.#onError);
  }

  #onNotification = (n: pg.Notification): void => {
    if (!this.#relevant(n)) return;
    this.#pending = true;
    this.#wake();
  };

  #onAbort = (): void => {
    this.#wake();
  };

  #onError = (error: Error): void => {
    this.#lost = error;
    this.#wake();
  };
}
