/**
 * Marks this supervisor seen and extends the leases of every job it holds, each tick, and reports
 * which jobs it still holds: a job missing from the answer was taken away. A beat that fails is tried
 * again soon, not a whole interval later: the leases must be renewed before they end. When no beat
 * has reached the database for a lease (a host cut off from the network, whose statements hang), the
 * leases have ended whatever the database says later: it reports every claim as lost, so the
 * supervisor stops their threads before another supervisor runs the jobs again. Each beat also
 * tells the lease keeper (lease-keeper-thread.ts) what is held, and that the main thread is alive:
 * the keeper beats in its stead while the main thread is held up.
 */
import { Worker } from 'node:worker_threads';
import { extendLeases, type HeldJob } from '../db/leases.ts';
import type { Queryable } from '../db/queryable.ts';
import { markSupervisorSeen, type SupervisorRecord } from '../db/supervisors.ts';
import type { Clock } from '../clock.ts';
import { DEAD_AFTER_HEARTBEATS } from '../liveness.ts';
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
/** A lease watch that fires this many intervals late finds a main thread that was held up (see #leaseWatchFired). */
const HELD_UP_INTERVALS = 1;

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
  /** Live supervisors in the fleet, this one included. */
  liveSupervisors: number;
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
  /** Times its leases ended with no beat reaching the database (each time, every claim was stopped). */
  leasesEnded: number;
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
  /**
   * performance.now() when the last beat that reached the database was sent (or the start): every
   * lease it extended, and every claim made since, lasts at least until this plus the lease.
   */
  #leaseFrom = performance.now();
  readonly #onLeasesEnded: (claims: HeldClaim[], silentMs: number) => void;
  readonly #stopBeforeEndMs: number;
  /** The lease watch: a plain timer, as the mailbox may be waiting on a beat that hangs. */
  #leaseWatch: ReturnType<typeof setTimeout> | undefined;
  /** The leases ended and no beat has reached the database since. */
  #leasesLapsed = false;
  #leasesEnded = 0;

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
    /**
     * No beat has reached the database for a lease (less `stopBeforeEndMs`): these claims, and the
     * workflow runs held, may be taken back at any moment, and their work must stop. Called again each
     * interval while that lasts, with what is held then.
     */
    onLeasesEnded?: (claims: HeldClaim[], silentMs: number) => void;
    /** How long before its lease ends a claim is reported lost: the time its thread takes to stop. */
    stopBeforeEndMs?: number;
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
    this.#onLeasesEnded = options.onLeasesEnded ?? (() => {});
    // At most half the lease: a grace as long as the lease would stop every job at the first missed beat.
    this.#stopBeforeEndMs = Math.min(options.stopBeforeEndMs ?? 0, Math.floor(options.leaseMs / 2));
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
    // Claims come after the start, so their leases last at least until the start plus a lease.
    this.#leaseFrom = performance.now();
    this.#armLeaseWatch(this.#leaseFrom + this.#leaseMs - this.#stopBeforeEndMs);
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
    const { inserted: registeredAgain, live: liveSupervisors } = await markSupervisorSeen(this.#db, this.#record, DEAD_AFTER_HEARTBEATS);
    const held = await extendLeases(this.#db, {
      supervisorId: this.#record.id,
      leaseMs: this.#leaseMs,
      ids: asked.map((c) => c.id),
      attempts: asked.map((c) => c.attempt),
    });
    this.#beats++;
    this.#lastBeatAt = this.clock.now();
    this.#lastOkAt = performance.now();
    this.#leaseFrom = started;
    this.#leasesLapsed = false;
    if (this.status === 'running') this.#armLeaseWatch(started + this.#leaseMs - this.#stopBeforeEndMs);
    this.#lastBeatMs = this.#lastOkAt - started;
    if (this.#failingSince !== null) {
      this.logger.info({ downMs: Math.round(this.#lastOkAt - this.#failingSince) }, 'heartbeat reaches the database again');
      this.#failingSince = null;
    }
    if (registeredAgain) {
      // The jobs whose leases had not ended are still its own; the supervisor aborts those taken back.
      this.logger.warn({ holding: asked.length, stillHeld: held.length }, 'this supervisor had been declared dead; registered it again');
    }
    const result = { asked, held, registeredAgain, liveSupervisors };
    this.#tellKeeper(asked);
    this.#onBeat(result);
    return result;
  }

  protected override onStop(): void {
    clearTimeout(this.#leaseWatch);
    void this.#keeper?.terminate();
    this.#keeper = null;
  }

  /** Sets the lease watch to fire at `at` (performance.now() time), in place of the one set before. */
  #armLeaseWatch(at: number): void {
    clearTimeout(this.#leaseWatch);
    this.#leaseWatch = setTimeout(() => this.#leaseWatchFired(at), Math.max(0, at - performance.now()));
    this.#leaseWatch.unref();
  }

  /**
   * No beat has reached the database since #leaseFrom, and the leases end now (less the time threads
   * take to stop). A watch that fires an interval or more late found the main thread held up, and the
   * lease keeper may have kept the leases meanwhile: a beat now tells, and the watch looks again soon.
   */
  #leaseWatchFired(dueAt: number): void {
    if (this.status !== 'running') return;
    const now = performance.now();
    if (now - dueAt >= HELD_UP_INTERVALS * this.#intervalMs && !this.#leasesLapsed) {
      this.send({ type: 'beat' });
      this.#armLeaseWatch(now + this.#intervalMs * RETRY_SHARE);
      return;
    }
    const silentMs = Math.round(now - this.#leaseFrom);
    const claims = this.#claims();
    if (!this.#leasesLapsed) {
      this.#leasesLapsed = true;
      this.#leasesEnded++;
      this.logger.warn(
        { silentMs, leaseMs: this.#leaseMs, claims: claims.length },
        'no heartbeat has reached the database for a lease: its claims may be taken back, so their jobs are stopped',
      );
    }
    if (claims.length > 0 || this.#runs().length > 0) this.#onLeasesEnded(claims, silentMs);
    // Until a beat reaches the database, what is claimed meanwhile is stopped too.
    this.#armLeaseWatch(now + this.#intervalMs);
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
    if (report.beats === 0) {
      // Silent because its beats failed (the database out of reach), not held up: the keeper failed too.
      this.logger.info({ silentMs: report.silentMs, keeperFailures: report.failed, lastError: report.lastError }, 'the lease keeper could not reach the database either');
      return;
    }
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
      leasesEnded: this.#leasesEnded,
    };
  }
}
