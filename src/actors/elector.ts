/**
 * Leader election: the supervisor whose own connection holds an advisory lock leads, and runs the
 * singleton work (the reaper). A leader that dies loses the lock with its connection; one that stops
 * heartbeating (paused, wedged) has its session ended by the next candidate.
 */
import pg from 'pg';
import { endStaleLeader, holdsLeaderLock, tryLeaderLock } from '../db/queries.ts';
import { Actor, assertNever } from './kernel.ts';

type ElectorMsg = { type: 'tick' };

export interface ElectorState {
  leader: boolean;
  elections: number;
  lastChangeAt: string | null;
  staleLeadersEnded: number;
}

export class Elector extends Actor<ElectorMsg, ElectorState> {
  readonly #connectionString: string;
  readonly #supervisorId: string;
  readonly #intervalMs: number;
  readonly #deadAfterMs: number;
  readonly #onChange: (leader: boolean) => void;
  #client: pg.Client | null = null;
  #leader = false;
  #elections = 0;
  #lastChangeAt: number | null = null;
  #staleEnded = 0;

  constructor(options: {
    connectionString: string;
    supervisorId: string;
    intervalMs: number;
    /** A leader not seen for this long is ended. */
    deadAfterMs: number;
    onChange: (leader: boolean) => void;
  }) {
    super({ name: 'elector' });
    this.#connectionString = options.connectionString;
    this.#supervisorId = options.supervisorId;
    this.#intervalMs = options.intervalMs;
    this.#deadAfterMs = options.deadAfterMs;
    this.#onChange = options.onChange;
  }

  /** True while this supervisor leads. */
  get isLeader(): boolean {
    return this.#leader;
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
        return this.#tick();
      default:
        return assertNever(msg.type);
    }
  }

  async #tick(): Promise<void> {
    try {
      const client = await this.#connection();
      if (this.#leader) {
        if (!(await holdsLeaderLock(client))) await this.#lose();
        return;
      }
      if (await tryLeaderLock(client)) {
        this.#win();
        return;
      }
      const ended = await endStaleLeader(client, this.#deadAfterMs);
      if (ended.length > 0) {
        this.#staleEnded += ended.length;
        this.logger.warn({ supervisors: ended }, 'ended the session of a leader that stopped heartbeating');
        if (await tryLeaderLock(client)) this.#win();
      }
    } catch (err) {
      this.logger.warn({ err }, 'leader election connection failed');
      await this.#disconnect();
    }
  }

  async #connection(): Promise<pg.Client> {
    if (this.#client) return this.#client;
    const client = new pg.Client({
      connectionString: this.#connectionString,
      application_name: `spindle:elector:${this.#supervisorId}`,
      keepAlive: true,
    });
    client.on('error', (err) => {
      this.logger.warn({ err }, 'leader election connection lost');
      void this.#disconnect();
    });
    await client.connect();
    this.#client = client;
    return client;
  }

  #win(): void {
    this.#leader = true;
    this.#elections++;
    this.#lastChangeAt = Date.now();
    this.logger.info({}, 'this supervisor is now the leader');
    this.#onChange(true);
  }

  async #lose(): Promise<void> {
    if (!this.#leader) return;
    this.#leader = false;
    this.#lastChangeAt = Date.now();
    this.logger.warn({}, 'this supervisor is no longer the leader');
    this.#onChange(false);
  }

  async #disconnect(): Promise<void> {
    const client = this.#client;
    this.#client = null;
    await this.#lose();
    if (client) await client.end().catch(() => {});
  }

  protected override inspect(): ElectorState {
    return {
      leader: this.#leader,
      elections: this.#elections,
      lastChangeAt: this.#lastChangeAt === null ? null : new Date(this.#lastChangeAt).toISOString(),
      staleLeadersEnded: this.#staleEnded,
    };
  }
}
