/**
 * The leader's sweep: supervisors that stopped heartbeating are removed from the list of the living;
 * jobs whose lease ended are taken back (a supervisor's jobs are safe while it renews their leases,
 * whatever its row says); jobs of types nobody serves fail; old finished jobs are deleted in small
 * batches. Every time it compares is the database's (`now()`).
 */
import type { BackoffOptions } from '../backoff.ts';
import { deleteOldCronTicks } from '../db/cron.ts';
import {
  deleteEndedThrottleWindows,
  deleteFinishedJobs,
  failUnknownTypes,
  reapLostJobs,
  removeDeadSupervisors,
  type ReapedJob,
} from '../db/maintenance.ts';
import type { Queryable } from '../db/queryable.ts';
import { deleteFinishedRuns } from '../db/workflows.ts';
import type { JobState } from '../job.ts';
import { DEAD_AFTER_HEARTBEATS } from '../liveness.ts';
import type { Clock } from '../clock.ts';
import { Actor, assertNever } from './kernel.ts';

/** Rows per statement, so a sweep never holds many locks for long. */
export const REAP_BATCH = 500;
/** Rows deleted per retention statement: small, so a big backlog never holds a long transaction. */
export const RETENTION_BATCH = 200;
/** Retention runs on every n-th sweep: it is not urgent. */
const RETENTION_EVERY = 15;

type ReaperMsg = { type: 'sweep' };

export interface ReaperOptions {
  db: Queryable;
  /** The supervisor this reaper runs in: never declared dead by its own sweep. */
  selfId: string;
  intervalMs: number;
  unknownTypeGraceMs: number;
  backoff: BackoffOptions;
  /** The types whose worker module sets its own backoff. */
  backoffByType: Record<string, BackoffOptions>;
  retentionMs: Partial<Record<JobState, number>>;
  isLeader: () => boolean;
  onReaped: (jobs: ReapedJob[]) => void;
  /** Stamps lastSweepAt; default the parent's clock. */
  clock?: Clock;
}

/** What one sweep did. */
export interface SweepResult {
  /** False when this supervisor does not lead: the sweep did nothing. */
  leader: boolean;
  /** Supervisors removed from the list of the living. */
  deadSupervisors: string[];
  /** Jobs taken back; each one's `state` says whether it was retried (`queued`), failed or cancelled. */
  reaped: ReapedJob[];
  /** Queued jobs failed because no supervisor serves their type. */
  unknownTypeFailed: string[];
  /** Finished jobs deleted past their retention (retention runs on every RETENTION_EVERY-th sweep). */
  deleted: number;
  /** Finished workflow runs deleted past their retention, with their steps and events. */
  deletedRuns: number;
  /** Cron ticks deleted past the longest retention (each schedule's newest is kept). */
  deletedCronTicks: number;
  /** Throttle windows deleted once ended. */
  deletedThrottleWindows: number;
}

export interface ReaperState {
  sweeps: number;
  reaped: number;
  deadSupervisors: number;
  unknownTypeFailures: number;
  deleted: number;
  failedSweeps: number;
  lastSweepAt: string | null;
}

export class Reaper extends Actor<ReaperMsg, ReaperState> {
  readonly #o: ReaperOptions;
  #stats = { sweeps: 0, reaped: 0, deadSupervisors: 0, unknownTypeFailures: 0, deleted: 0, failedSweeps: 0 };
  #lastSweepAt: number | null = null;

  constructor(options: ReaperOptions) {
    super({ name: 'reaper', clock: options.clock });
    this.#o = options;
  }

  /** Sweeps now (when leader) instead of at the next tick. */
  sweepNow(): void {
    this.send({ type: 'sweep' });
  }

  protected override onStart(): void {
    this.every(this.#o.intervalMs, () => ({ type: 'sweep' }));
  }

  protected async handle(msg: ReaperMsg): Promise<void> {
    switch (msg.type) {
      case 'sweep':
        try {
          await this.runOnce();
        } catch (err) {
          this.#stats.failedSweeps++;
          this.logger.warn({ err }, 'reaper sweep failed; trying again next tick');
        }
        return;
      default:
        return assertNever(msg.type);
    }
  }

  /**
   * One sweep, when this supervisor leads. Throws when a statement fails (the timer loop counts it
   * and sweeps again at the next tick). The loop calls it through the mailbox; a test calls it on an
   * actor not started.
   */
  async runOnce(): Promise<SweepResult> {
    const result: SweepResult = {
      leader: this.#o.isLeader(),
      deadSupervisors: [],
      reaped: [],
      unknownTypeFailed: [],
      deleted: 0,
      deletedRuns: 0,
      deletedCronTicks: 0,
      deletedThrottleWindows: 0,
    };
    if (!result.leader) return result;
    const { db } = this.#o;
    this.#stats.sweeps++;
    this.#lastSweepAt = this.clock.now();
    const dead = await removeDeadSupervisors(db, { deadAfterBeats: DEAD_AFTER_HEARTBEATS, selfId: this.#o.selfId });
    result.deadSupervisors = dead;
    if (dead.length) {
      this.#stats.deadSupervisors += dead.length;
      this.logger.warn({ supervisors: dead }, 'removed supervisors that stopped heartbeating');
    }
    for (;;) {
      const reaped = await reapLostJobs(db, {
        limit: REAP_BATCH,
        deadAfterBeats: DEAD_AFTER_HEARTBEATS,
        backoff: this.#o.backoff,
        backoffByType: this.#o.backoffByType,
      });
      if (reaped.length === 0) break;
      result.reaped.push(...reaped);
      this.#stats.reaped += reaped.length;
      const orphaned = reaped.filter((j) => j.orphaned).length;
      this.logger.warn(
        { jobs: reaped.map((j) => j.id), count: reaped.length, orphaned, leaseExpired: reaped.length - orphaned },
        'took back jobs whose lease ended',
      );
      this.#o.onReaped(reaped);
      if (reaped.length < REAP_BATCH || this.signal.aborted) break;
    }
    const unknown = await failUnknownTypes(db, this.#o.unknownTypeGraceMs, REAP_BATCH);
    result.unknownTypeFailed = unknown;
    if (unknown.length) {
      this.#stats.unknownTypeFailures += unknown.length;
      this.logger.warn({ jobs: unknown }, 'failed jobs of a type no supervisor serves');
    }
    if (this.#stats.sweeps % RETENTION_EVERY === 1) {
      result.deleted = await this.#retention('jobs', (state, ms) => deleteFinishedJobs(db, state, ms, RETENTION_BATCH));
      // A run's final states take the retention of the job state of the same name (a run that failed
      // its compensation, that of failed).
      result.deletedRuns = await this.#retention('workflow runs', (state, ms) =>
        deleteFinishedRuns(db, state === 'failed' ? ['failed', 'compensation_failed'] : [state], ms, RETENTION_BATCH),
      );
      const longest = Math.max(...Object.values(this.#o.retentionMs));
      if (Number.isFinite(longest)) {
        result.deletedCronTicks = await this.#deleteAll(() => deleteOldCronTicks(db, longest, RETENTION_BATCH));
      }
      result.deletedThrottleWindows = await this.#deleteAll(() => deleteEndedThrottleWindows(db, RETENTION_BATCH));
    }
    return result;
  }

  /** Deletes finished rows of each state past its retention, with `remove`; returns how many. */
  async #retention(what: string, remove: (state: JobState, olderThanMs: number) => Promise<number>): Promise<number> {
    let total = 0;
    for (const [state, ms] of Object.entries(this.#o.retentionMs) as [JobState, number][]) {
      const deleted = await this.#deleteAll(() => remove(state, ms));
      total += deleted;
      if (deleted > 0) this.logger.info({ state, deleted, olderThanMs: ms }, `deleted finished ${what} past their retention`);
    }
    return total;
  }

  /** Runs a deletion of one batch until it deletes less than a batch; returns how many in all. */
  async #deleteAll(batch: () => Promise<number>): Promise<number> {
    let deleted = 0;
    for (;;) {
      const n = await batch();
      deleted += n;
      this.#stats.deleted += n;
      if (n < RETENTION_BATCH || this.signal.aborted || !this.#o.isLeader()) return deleted;
    }
  }

  protected override inspect(): ReaperState {
    return {
      ...this.#stats,
      lastSweepAt: this.#lastSweepAt === null ? null : new Date(this.#lastSweepAt).toISOString(),
    };
  }
}
