/**
 * Leader election: the supervisor whose own connection holds an advisory lock leads, and runs the
 * singleton work (the reaper). A leader that dies loses the lock with its connection; one that stops
 * heartbeating (paused, wedged) has its session ended by the next candidate.
 */
import pg from 'pg';
import { electorApplicationName, endStaleLeader, holdsLeaderLock, releaseLeaderLock, tryLeaderLock } from '../db/leader.ts';
import { DEAD_AFTER_HEARTBEATS } from '../liveness.ts';
import type { Clock } from '../clock.ts';
import { Actor, assertNever } from './kernel.ts';

/** How long connecting may take before the tick gives up and tries again on the next one. */
const CONNECT_TIMEOUT_MS = 5_000;

type ElectorMsg = { type: 'tick' };

/** Leadership after one tick of the elector. */
export interface ElectionResult {
  /** This supervisor leads. */
  leader: boolean;
  /** The tick changed that: it won the lead, or found it lost. */
  changed: boolean;
  /** Supervisors whose leader session this tick ended (they had stopped heartbeating). */
  staleLeadersEnded: string[];
}

export interface ElectorState {
  leader: boolean;
  elections: number;
  lastChangeAt: string | null;
  staleLeadersEnded: number;
  connectionFailures: number;
}

/**
 * The elector's session: a connection of its own to this URL, or one it shares (the listener's,
 * behind a transaction pooler), which it neither opens nor closes.
 */
export type ElectorSession = { connectionString: string } | { shared: () => pg.Client | null };

export class Elector extends Actor<ElectorMsg, ElectorState> {
  readonly #session: ElectorSession;
  readonly #applicationName: string;
  readonly #intervalMs: number;
  readonly #deadAfterMs: number;
  readonly #onChange: (leader: boolean) => void;
  #client: pg.Client | null = null;
  #leader = false;
  /** performance.now() when the database last confirmed this session holds the lock. */
  #confirmedAt = -Infinity;
  #elections = 0;
  #lastChangeAt: number | null = null;
  #staleEnded = 0;
  #connectionFailures = 0;

  constructor(options: {
    session: ElectorSession;
    supervisorId: string;
    intervalMs: number;
    /** A leadership the database has not confirmed for this long is not acted on (see isLeader). */
    deadAfterMs: number;
    onChange: (leader: boolean) => void;
    /** Stamps lastChangeAt; default the parent's clock. */
    clock?: Clock;
  }) {
    super({ name: 'elector', clock: options.clock });
    this.#session = options.session;
    this.#applicationName = electorApplicationName(options.supervisorId);
    this.#intervalMs = options.intervalMs;
    this.#deadAfterMs = options.deadAfterMs;
    this.#onChange = options.onChange;
  }

  /**
   * True while this supervisor leads. A leadership the database has not confirmed lately (this
   * process was paused, or its connection hangs) does not count: another supervisor may lead by now.
   */
  get isLeader(): boolean {
    return this.#leader && performance.now() - this.#confirmedAt < Math.max(this.#deadAfterMs, 2 * this.#intervalMs);
  }

  protected override onStart(): void {
    this.send({ type: 'tick' });
    this.every(this.#intervalMs, () => ({ type: 'tick' }));
  }

  protected override async onStop(): Promise<void> {
    // Ending the session releases the lock at once, so another supervisor can lead without waiting.
    await this.#disconnect();
  }

  protected async handle(msg: ElectorMsg): Promise<void> {
    switch (msg.type) {
      case 'tick':
        await this.runOnce();
        return;
      default:
        return assertNever(msg.type);
    }
  }

  /**
   * One tick: a leader checks that its session still holds the lock; a candidate tries to take it,
   * ending the session of a leader that stopped heartbeating. A failed connection is not thrown: it
   * ends the lead (if any) and the next tick connects again. The loop calls it through the mailbox; a
   * test calls it on an actor not started.
   */
  async runOnce(): Promise<ElectionResult> {
    const before = this.#leader;
    const staleLeadersEnded: string[] = [];
    try {
      const client = await this.#connection();
      if (!client) {
        // The shared session is not up yet (or is reconnecting): the lock, if held, went with the last one.
        this.#lose();
        return { leader: false, changed: this.#leader !== before, staleLeadersEnded };
      }
      if (this.#leader) {
        if (await holdsLeaderLock(client)) this.#confirmedAt = performance.now();
        else this.#lose();
      } else if (await tryLeaderLock(client)) {
        this.#win();
      } else {
        const ended = await endStaleLeader(client, DEAD_AFTER_HEARTBEATS);
        if (ended.length > 0) {
          staleLeadersEnded.push(...ended);
          this.#staleEnded += ended.length;
          this.logger.warn({ supervisors: ended }, 'ended the session of a leader that stopped heartbeating');
          if (await tryLeaderLock(client)) this.#win();
        }
      }
    } catch (err) {
      this.#connectionFailures++;
      this.logger.warn({ err }, 'leader election connection failed; trying again next tick');
      await this.#disconnect();
    }
    return { leader: this.#leader, changed: this.#leader !== before, staleLeadersEnded };
  }

  /** The session to elect on; null while a shared one is not connected. */
  async #connection(): Promise<pg.Client | null> {
    if ('shared' in this.#session) return (this.#client = this.#session.shared());
    if (this.#client) return this.#client;
    const client = new pg.Client({
      connectionString: this.#session.connectionString,
      application_name: this.#applicationName,
      keepAlive: true,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    });
    client.on('error', (err) => {
      // A client already replaced (or never installed) may still report its end: only the current one matters.
      if (client !== this.#client) return;
      this.logger.warn({ err }, 'leader election connection lost');
      void this.#disconnect();
    });
    await client.connect().catch(async (err: unknown) => {
      await client.end().catch(() => {});
      throw err;
    });
    this.#client = client;
    return client;
  }

  #win(): void {
    this.#leader = true;
    this.#confirmedAt = performance.now();
    this.#elections++;
    this.#lastChangeAt = this.clock.now();
    this.logger.info({}, 'this supervisor is now the leader');
    this.#onChange(true);
  }

  #lose(): void {
    if (!this.#leader) return;
    this.#leader = false;
    this.#lastChangeAt = this.clock.now();
    // On a clean stop, giving up the lead is expected; any other time it is news.
    if (this.signal.aborted) this.logger.info({}, 'this supervisor gave up the lead');
    else this.logger.warn({}, 'this supervisor is no longer the leader');
    this.#onChange(false);
  }

  async #disconnect(): Promise<void> {
    const client = this.#client;
    this.#client = null;
    this.#lose();
    if (!client) return;
    // A shared session lives on: the lock is given back on it (a no-op when it is not held there).
    if ('shared' in this.#session) await releaseLeaderLock(client).catch(() => {});
    else await client.end().catch(() => {});
  }

  protected override inspect(): ElectorState {
    return {
      leader: this.isLeader,
      elections: this.#elections,
      lastChangeAt: this.#lastChangeAt === null ? null : new Date(this.#lastChangeAt).toISOString(),
      staleLeadersEnded: this.#staleEnded,
      connectionFailures: this.#connectionFailures,
    };
  }
}
