/**
 * A pooled connection that LISTENs, for callers that wait for a row to change: they read() the row,
 * then wait() until a relevant notification arrives (or a recheck interval passes, in case one was
 * missed), and read again. A connection that drops (a restarted server, a terminated backend) is
 * replaced by the next read, which LISTENs again and then reads: a wait outlives an outage of the
 * database. An abort signal (the Client's close) ends a wait or a read with its reason, and the
 * caller gives the connection back.
 */
import type pg from 'pg';
import { listen, unlistenAll } from './db/notifications.ts';
import { hearDrops } from './db/queryable.ts';

/** Pauses between tries to reach the database again, the last repeated. */
const RETRY_MS = [100, 250, 500, 1_000, 2_000];

/** Node's codes for a connection that could not be made or was cut. */
const SOCKET_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);

/**
 * True for an error that says the connection is gone rather than that a statement was wrong:
 * SQLSTATE classes 08 (connection exception) and 57P (the server shut down or ended the session),
 * a socket error, or pg's own words for a connection that ended or could not be made in time.
 */
function isConnectionLoss(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && (code.startsWith('08') || code.startsWith('57P') || SOCKET_ERRORS.has(code))) return true;
  return /^Connection terminated|timeout exceeded when trying to connect/.test(error.message);
}

export interface SubscriptionOptions {
  /** The channels to LISTEN on. */
  channels: readonly string[];
  /** Which of their notifications wake wait(). */
  relevant: (n: pg.Notification) => boolean;
  /** Ends a wait or a read under way, with the signal's reason. */
  signal?: AbortSignal;
  /** Past this time (ms since the epoch) a read stops trying to reach the database and throws. */
  deadline?: number;
}

export class Subscription {
  readonly #pool: pg.Pool;
  readonly #o: SubscriptionOptions;
  #connection: pg.PoolClient | undefined;
  /** A relevant notification arrived since the last wait(): the next one returns at once. */
  #pending = false;
  #wake: () => void = () => {};
  /** Why the connection was lost; the next read replaces it. */
  #lost: Error | undefined;

  private constructor(pool: pg.Pool, options: SubscriptionOptions) {
    this.#pool = pool;
    this.#o = options;
    options.signal?.addEventListener('abort', this.#onAbort);
  }

  /** Checks out a connection and LISTENs on the channels; fails at once if the database cannot be reached. */
  static async open(pool: pg.Pool, options: SubscriptionOptions): Promise<Subscription> {
    options.signal?.throwIfAborted();
    const subscription = new Subscription(pool, options);
    try {
      await subscription.#connect();
    } catch (error) {
      await subscription.close();
      throw error;
    }
    return subscription;
  }

  /**
   * Runs `read` on the subscription's connection. After the connection was lost, or when `read`
   * fails because it was, it first connects and LISTENs again, trying with pauses until the
   * database answers, the deadline passes (the last error is thrown) or the signal aborts.
   */
  async read<T>(read: (db: pg.ClientBase) => Promise<T>): Promise<T> {
    for (let failures = 0; ; failures++) {
      this.#o.signal?.throwIfAborted();
      try {
        if (this.#connection === undefined || this.#lost) await this.#reconnect();
        return await read(this.#connection!);
      } catch (error) {
        if (!(this.#lost || isConnectionLoss(error))) throw error;
        this.#lost ??= error as Error;
        const pause = RETRY_MS[Math.min(failures, RETRY_MS.length - 1)]!;
        if (Date.now() + pause > (this.#o.deadline ?? Infinity)) throw error;
        await this.#pause(pause);
      }
    }
  }

  /**
   * Resolves when a relevant notification has arrived since the last call, the connection failed, or
   * after `ms`; rejects with the signal's reason once it is aborted.
   */
  async wait(ms: number): Promise<void> {
    this.#o.signal?.throwIfAborted();
    if (this.#pending || this.#lost) {
      this.#pending = false;
      return;
    }
    await this.#pause(ms);
    this.#pending = false;
    this.#o.signal?.throwIfAborted();
  }

  /** Stops listening and gives the connection back (or discards it, if it failed). */
  async close(): Promise<void> {
    this.#o.signal?.removeEventListener('abort', this.#onAbort);
    await this.#release();
  }

  async #connect(): Promise<void> {
    const connection = await this.#pool.connect();
    this.#connection = connection;
    this.#lost = undefined;
    connection.on('notification', this.#onNotification);
    // A checked-out client has no pool 'error' listener: without this one, a connection that drops
    // while we wait would crash the process. The next read connects again instead.
    connection.on('error', this.#onError);
    await listen(connection, this.#o.channels);
  }

  async #reconnect(): Promise<void> {
    await this.#release();
    await this.#connect();
    // What was notified while the connection was down is read now.
    this.#pending = true;
  }

  async #release(): Promise<void> {
    const connection = this.#connection;
    if (connection === undefined) return;
    this.#connection = undefined;
    connection.off('notification', this.#onNotification);
    if (!this.#lost) await unlistenAll(connection).catch((error: Error) => (this.#lost = error));
    connection.off('error', this.#onError);
    // Discarded, a failed connection may still emit 'error', which nothing else hears now.
    if (this.#lost) hearDrops(connection);
    connection.release(this.#lost);
  }

  /** Waits `ms`, or less when woken by a notification, a lost connection or the signal. */
  #pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done() {
        clearTimeout(timer);
        self.#wake = () => {};
        resolve();
      }
      this.#wake = done;
    });
  }

  #onNotification = (n: pg.Notification): void => {
    if (!this.#o.relevant(n)) return;
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
