/**
 * Marks this supervisor seen and extends the leases of every job it holds, each tick, and reports
 * which jobs it still holds: a job missing from the answer was taken away. A beat that fails is tried
 * again soon, not a whole interval later: the leases must be renewed before they end. Each beat also
 * tells the lease keeper (lease-keeper-thread.ts) what is held, and that the main thread is alive:
 * the keeper beats in its stead while the main thread is held up.
 */
import { Worker } from 'node:worker_threads';
import { extendLeases, type HeldJob } from '../db/leases.ts';
import type { Queryable } from '../db/queryable.ts';
import { markSupervisorSeen, type SupervisorRecord } from '../db/supervisors.ts';
import type { Clock } from '../clock.ts';
import { Actor, assertNever } from './kernel.ts';
import type { KeeperHeld, KeeperReport, KeeperSettings } from './lease-keeper-thread.ts';

/** A failed beat is tried again after this share of the interval. */
const RETRY_SHARE = 0.25;
/**
 * How long the lease keeper may beat for a main thread that is held up (at least 4 leases): long
 * enough for a step that computes for a while, short enough that the work of a main thread that
 * never comes back goes elsewhere, and that a held-up leader's sweeps and cron wait no longer.
 */
const MAX_STAND_IN_MS = 60_000;
/** The lease keeper starts at this beat (the first comes an interval after the start, not in its busy first moments). */
const KEEPER_FROM_BEAT = 1;

/** A job as the supervisor holds it: the fence the heartbeat checks. */
export interface HeldClaim {
  id: string;
  attempt: number;
}

/** What one beat found. */
export interface BeatResult {
  /** The claims the beat asked about. */
  asked: HeldClaim[];
  /** Those still held, with any cancel request. */
  held: HeldJob[];
  /** Its row was gone (a sweep had declared it dead) and the beat registered it again. */
  registeredAgain: boolean;
}

type HeartbeatMsg = { type: 'beat' };

export interface HeartbeatState {
  intervalMs: number;
  leaseMs: number;
  beats: number;
  failures: number;
  lastBeatAt: string | null;
  lastBeatMs: number | null;
  /** Beats the lease keeper made while the main thread was held up. */
  keeperBeats: number;
}

export class Heartbeat extends Actor<HeartbeatMsg, HeartbeatState> {
  readonly #db: Queryable;
  readonly #record: SupervisorRecord;
  readonly #intervalMs: number;
  readonly #leaseMs: number;
  readonly #claims: () => HeldClaim[];
  readonly #onBeat: (result: BeatResult) => void;
  #beats = 0;
  #failures = 0;
  #lastBeatAt: number | null = null;
  #lastBeatMs: number | null = null;
  /** performance.now() of the last beat that reached the database (or of the registration before the first). */
  #lastOkAt = performance.now();
  #failingSince: number | null = null;
  readonly #runs: () => KeeperHeld['runs'];
  readonly #keeperSettings: Pick<KeeperSettings, 'connectionString' | 'transactionPooler'> | undefined;
  #keeper: Worker | null = null;
  #keeperStoodIn = 0;

  constructor(options: {
    db: Queryable;
    record: SupervisorRecord;
    intervalMs: number;
    leaseMs: number;
    /** The claims held right now. */
    claims: () => HeldClaim[];
    /** The workflow runs held right now (the lease keeper extends their leases too). */
    runs?: () => KeeperHeld['runs'];
    /** Where the lease keeper connects (through a transaction pooler or not); without it, no keeper runs. */
    keeper?: { connectionString: string; transactionPooler: boolean };
    onBeat: (result: BeatResult) => void;
    /** Stamps lastBeatAt; default the parent's clock. */
    clock?: Clock;
  }) {
    super({ name: 'heartbeat', clock: options.clock });
    this.#db = options.db;
    this.#record = options.record;
    this.#intervalMs = options.intervalMs;
    this.#leaseMs = options.leaseMs;
    this.#claims = options.claims;
    this.#onBeat = options.onBeat;
    this.#runs = options.runs ?? (() => []);
    this.#keeperSettings = options.keeper;
  }

  /**
   * True when a beat reached the database within `withinMs`. A supervisor that has not beaten for
   * longer may have been declared dead (a pause, a lost connection): it should claim nothing until a
   * beat has registered it again, or what it claims would be taken back at once.
   */
  isFresh(withinMs: number): boolean {
    return performance.now() - this.#lastOkAt < withinMs;
  }

  protected override onStart(): void {
    this.every(this.#intervalMs, () => ({ type: 'beat' }));
  }

  protected async handle(msg: HeartbeatMsg): Promise<void> {
    switch (msg.type) {
      case 'beat':
        return this.#beat();
      default:
        return assertNever(msg.type);
    }
  }

  /**
   * One beat: marks this supervisor seen, extends the leases of the claims held now and reports to
   * `onBeat` which it still holds. Throws when the database cannot be reached; the timer loop then
   * tries again soon. The loop calls it through the mailbox; a test calls it on an actor not started.
   */
  async runOnce(): Promise<BeatResult> {
    const asked = this.#claims();
    const started = performance.now();
    const registeredAgain = await markSupervisorSeen(this.#db, this.#record);
    const held = await extendLeases(this.#db, {
      supervisorId: this.#record.id,
      leaseMs: this.#leaseMs,
      ids: asked.map((c) => c.id),
      attempts: asked.map((c) => c.attempt),
    });
    this.#beats++;
    this.#lastBeatAt = this.clock.now();
    this.#lastOkAt = performance.now();
    this.#lastBeatMs = this.#lastOkAt - started;
    if (this.#failingSince !== null) {
      this.logger.info({ downMs: Math.round(this.#lastOkAt - this.#failingSince) }, 'heartbeat reaches the database again');
      this.#failingSince = null;
    }
    if (registeredAgain) {
      // The jobs whose leases had not ended are still its own; the supervisor aborts those taken back.
      this.logger.warn({ holding: asked.length, stillHeld: held.length }, 'this supervisor had been declared dead; registered it again');
    }
    const result = { asked, held, registeredAgain };
    this.#tellKeeper(asked);
    this.#onBeat(result);
    return result;
  }

  protected override onStop(): void {
    void this.#keeper?.terminate();
    this.#keeper = null;
  }

  /**
   * Tells the lease keeper what is held now, between beats: a workflow run claimed just now is
   * covered before its body may hold up the main thread.
   */
  tellKeeper(): void {
    if (this.#keeper) this.#tellKeeper(this.#claims());
  }

  /** Tells the lease keeper what is held now (starting it at KEEPER_FROM_BEAT). */
  #tellKeeper(jobs: HeldClaim[]): void {
    const settings = this.#keeperSettings;
    if (!settings || this.status !== 'running') return;
    if (!this.#keeper) {
      if (this.#beats < KEEPER_FROM_BEAT) return;
      const workerData: KeeperSettings = {
        ...settings,
        record: this.#record,
        intervalMs: this.#intervalMs,
        leaseMs: this.#leaseMs,
        maxStandInMs: Math.max(MAX_STAND_IN_MS, 4 * this.#leaseMs),
      };
      const keeper = new Worker(new URL('./lease-keeper-entry.mjs', import.meta.url), { workerData });
      keeper.unref();
      keeper.on('message', (report: KeeperReport) => this.#heardFromKeeper(report));
      keeper.on('error', (err) => this.logger.warn({ err }, 'the lease keeper failed; a new one starts at the next beat'));
      // A keeper that ended is replaced at the next beat.
      keeper.on('exit', () => {
        if (this.#keeper === keeper) this.#keeper = null;
      });
      this.#keeper = keeper;
    }
    const message: KeeperHeld = { jobs: jobs.map((j) => ({ id: j.id, attempt: j.attempt })), runs: this.#runs() };
    this.#keeper.postMessage(message);
  }

  #heardFromKeeper(report: KeeperReport): void {
    this.#keeperStoodIn += report.beats;
    this.logger.warn(
      { silentMs: report.silentMs, keeperBeats: report.beats, keeperFailures: report.failed, lastError: report.lastError },
      `the main thread was held up for about ${report.silentMs} ms; the lease keeper kept its leases meanwhile`,
    );
  }

  async #beat(): Promise<void> {
    const started = performance.now();
    try {
      await this.runOnce();
    } catch (err) {
      // Not fatal while the leases last: try again soon rather than at the next tick.
      this.#failures++;
      this.#failingSince ??= started;
      const retryInMs = Math.max(10, Math.round(this.#intervalMs * RETRY_SHARE));
      this.logger.warn({ err, failures: this.#failures, retryInMs }, 'heartbeat failed');
      this.after(retryInMs, { type: 'beat' });
    }
  }

  protected override inspect(): HeartbeatState {
    return {
      intervalMs: this.#intervalMs,
      leaseMs: this.#leaseMs,
      beats: this.#beats,
      failures: this.#failures,
      lastBeatAt: this.#lastBeatAt === null ? null : new Date(this.#lastBeatAt).toISOString(),
      lastBeatMs: this.#lastBeatMs === null ? null : Math.round(this.#lastBeatMs * 10) / 10,
      keeperBeats: this.#keeperStoodIn,
    };
  }
}
