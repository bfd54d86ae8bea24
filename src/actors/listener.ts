/**
 * The LISTEN connection: wake-ups on enqueue, cancel requests, and finished-job notices. It reconnects
 * with backoff when the connection drops, and says so, because notifications sent meanwhile are lost.
 */
import pg from 'pg';
import { listen } from '../db/notifications.ts';
import { Actor, assertNever } from './kernel.ts';

const RECONNECT_MS = [100, 250, 500, 1_000, 2_000, 5_000];
/** How long connecting may take before it counts as a failed attempt. */
const CONNECT_TIMEOUT_MS = 5_000;

/** `lost` names the client it is about: a closed client may still report its end after a new one is up. */
type ListenerMsg = { type: 'connect' } | { type: 'lost'; client: pg.Client; error: Error };

/** What one connect step did. */
export interface ListenResult {
  /** This step opened the connection and ran LISTEN; false when it was open already. */
  connected: boolean;
  /** It had been connected before: what was notified while it was away is lost (`onConnect(true)`). */
  reconnected: boolean;
  /** The channels it listens on. */
  channels: readonly string[];
}

export interface ListenerState {
  connected: boolean;
  channels: readonly string[];
  notifications: number;
  reconnects: number;
}

export class Listener extends Actor<ListenerMsg, ListenerState> {
  readonly #connectionString: string;
  readonly #channels: readonly string[];
  readonly #applicationName: string;
  readonly #onNotification: (channel: string, payload: string) => void;
  readonly #onConnect: (reconnected: boolean) => void;
  #client: pg.Client | null = null;
  #attempts = 0;
  #everConnected = false;
  #notifications = 0;
  #reconnects = 0;

  constructor(options: {
    connectionString: string;
    channels: readonly string[];
    applicationName: string;
    onNotification: (channel: string, payload: string) => void;
    /** Called on every (re)connect: anything notified while away must be looked for. */
    onConnect: (reconnected: boolean) => void;
  }) {
    super({ name: 'listener' });
    this.#connectionString = options.connectionString;
    this.#channels = options.channels;
    this.#applicationName = options.applicationName;
    this.#onNotification = options.onNotification;
    this.#onConnect = options.onConnect;
  }

  protected override async onStart(): Promise<void> {
    this.send({ type: 'connect' });
  }

  protected override async onStop(): Promise<void> {
    await this.#close();
  }

  protected async handle(msg: ListenerMsg): Promise<void> {
    switch (msg.type) {
      case 'connect':
        return this.#connect();
      case 'lost':
        if (msg.client !== this.#client) return;
        this.logger.warn({ err: msg.error }, 'LISTEN connection lost; reconnecting');
        await this.#close();
        this.#retry();
        return;
      default:
        return assertNever(msg);
    }
  }

  /** Connects, or after a failure tries again with backoff. */
  async #connect(): Promise<void> {
    try {
      await this.runOnce();
    } catch (err) {
      // Connected, so it was onConnect that threw: a fault of the caller's, left to supervision.
      if (this.#client) throw err;
      this.logger.warn({ err }, 'cannot LISTEN; retrying');
      this.#retry();
    }
  }

  /**
   * Opens the LISTEN connection if it is not open: connects, LISTENs on every channel and calls
   * `onConnect`; from then on each notification goes to `onNotification` as it arrives. Throws when it
   * cannot connect or LISTEN (the loop tries again with backoff). The loop calls it through the
   * mailbox; a test calls it on an actor not started.
   */
  async runOnce(): Promise<ListenResult> {
    if (this.#client) return { connected: false, reconnected: false, channels: this.#channels };
    const client = new pg.Client({
      connectionString: this.#connectionString,
      application_name: this.#applicationName,
      keepAlive: true,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    });
    client.on('notification', (n) => {
      this.#notifications++;
      try {
        this.#onNotification(n.channel, n.payload ?? '');
      } catch (err) {
        this.logger.error({ err, channel: n.channel }, 'notification handler threw');
      }
    });
    client.on('error', (error) => this.send({ type: 'lost', client, error }));
    client.on('end', () => this.send({ type: 'lost', client, error: new Error('connection ended') }));
    try {
      await client.connect();
      await listen(client, this.#channels);
    } catch (err) {
      client.removeAllListeners('end');
      await client.end().catch(() => {});
      throw err;
    }
    this.#client = client;
    this.#attempts = 0;
    const reconnected = this.#everConnected;
    if (reconnected) this.#reconnects++;
    this.#everConnected = true;
    this.#onConnect(reconnected);
    return { connected: true, reconnected, channels: this.#channels };
  }

  /**
   * The session, while it is connected and listening: the elector shares it behind a transaction
   * pooler (one session per supervisor). A new one after each reconnect.
   */
  session(): pg.Client | null {
    return this.#client;
  }

  #retry(): void {
    const delay = RECONNECT_MS[Math.min(this.#attempts++, RECONNECT_MS.length - 1)]!;
    this.after(delay, { type: 'connect' });
  }

  async #close(): Promise<void> {
    const client = this.#client;
    this.#client = null;
    if (!client) return;
    client.removeAllListeners('end');
    client.removeAllListeners('notification');
    client.on('error', () => {});
    await client.end().catch(() => {});
  }

  protected override inspect(): ListenerState {
    return {
      connected: this.#client !== null,
      channels: this.#channels,
      notifications: this.#notifications,
      reconnects: this.#reconnects,
    };
  }
}
