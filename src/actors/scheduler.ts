/**
 * The workflow scheduler of every supervisor: claims runs that can go on (wake time passed, their job
 * ended, their event came, their claim's lease ended) with FOR UPDATE SKIP LOCKED and a lease, of
 * the names and versions its modules serve, resumes each (src/workflows/engine.ts), keeps the leases
 * of the resumes in progress, and lets blocked runs go again when it has a module that serves them.
 * So workflow throughput grows with supervisors, and a run goes on wherever it is claimed. The
 * leader also claims the runs nobody here serves (to block them, visibly, with the reason) and fires
 * cron ticks. Woken by NOTIFY (spindle_workflows: a run started, an event came, a job of a run
 * ended) and by a timer, since a notification can be missed.
 */
import type pg from 'pg';
import type { Clock } from '../clock.ts';
import { fireCronJob, fireCronWorkflow, lastCronTicks } from '../db/cron.ts';
import { claimWorkflowRuns, extendWorkflowLeases, unblockWorkflowRuns } from '../db/workflows.ts';
import { ticksBetween } from '../workflows/cron.ts';
import { resumeRun, type ResumeOutcome } from '../workflows/engine.ts';
import type { WorkflowLimits } from '../workflows/limits.ts';
import { StepWriter } from '../workflows/step-writer.ts';
import type { WorkflowRegistry } from '../workflows/registry.ts';
import type { ScheduleEntry } from '../workflows/schedules.ts';
import { Actor, assertNever } from './kernel.ts';

/** Resumes in progress at once, per supervisor. */
export const DEFAULT_MAX_RESUMES = 32;
/** Free resume slots at which an ended resume leads to a claim (fewer wait for more, or the tick). */
const CLAIM_WHEN_FREE = 8;
/** How often cron schedules are checked. */
export const CRON_CHECK_MS = 250;
/** How far back a schedule looks for missed ticks (bounds the work after a long outage). */
const CRON_LOOKBACK_MS = { seconds: 3_600_000, minutes: 7 * 86_400_000 };
/** How long the last resumes may take to finish on stop. */
const STOP_GRACE_MS = 10_000;

type SchedulerMsg = { type: 'claim' } | { type: 'tick' } | { type: 'cron' } | { type: 'done'; runId: string; outcome: ResumeOutcome };

export interface SchedulerOptions {
  db: pg.Pool;
  selfId: string;
  workflows: WorkflowRegistry;
  schedules: ScheduleEntry[];
  limits: WorkflowLimits;
  leaseMs: number;
  pollMs: number;
  isLeader: () => boolean;
  maxResumes?: number;
  /** The time cron ticks are computed from; default the parent's clock. */
  clock?: Clock;
  /** Called when runs were claimed, before they are resumed (the lease keeper learns of them). */
  onClaimed?: () => void;
  /** Called after each resume (tests and the debug socket watch it). */
  onResume?: (runId: string, outcome: ResumeOutcome) => void;
}

/** What one cron check did. */
export interface CronCheck {
  /** False when this supervisor does not lead: nothing was checked. */
  leader: boolean;
  /** The ticks this check fired: the job or run it created for each (a tick fired elsewhere is not here). */
  fired: { schedule: string; tickAt: Date; id: string }[];
  /** Missed ticks it let go (beyond a schedule's catchUp). */
  skipped: number;
}

export interface SchedulerState {
  leader: boolean;
  resuming: string[];
  resumes: Record<string, number>;
  claims: number;
  cronFired: number;
  cronSkipped: number;
  cronChecks: number;
  errors: number;
}

export class Scheduler extends Actor<SchedulerMsg, SchedulerState> {
  readonly #o: SchedulerOptions;
  /** Resumes in progress: run id -> claim sequence. */
  readonly #resuming = new Map<string, { claimSeq: number; done: Promise<void>; lost: AbortController }>();
  /** Per schedule, the time up to which this leader has fired (or skipped) every tick. */
  readonly #cronCheckedUpTo = new Map<string, number>();
  #stats = { claims: 0, cronFired: 0, cronSkipped: 0, cronChecks: 0, errors: 0 };
  readonly #stepWriter: StepWriter;
  #outcomes: Record<string, number> = {};
  #wasLeader = false;
  #claimQueued = false;
  /** The names and versions its modules serve. */
  readonly #servable: { name: string; version: string }[];

  constructor(options: SchedulerOptions) {
    super({ name: 'scheduler', clock: options.clock });
    this.#o = options;
    this.#stepWriter = new StepWriter(options.db);
    this.#servable = [...options.workflows.values()].flatMap((m) =>
      [m.version, ...m.supports].map((version) => ({ name: m.name, version })),
    );
  }

  /** The runs being resumed now, with their claims (the lease keeper extends their leases too). */
  heldRuns(): { runId: string; claimSeq: number }[] {
    return [...this.#resuming].map(([runId, r]) => ({ runId, claimSeq: r.claimSeq }));
  }

  /**
   * No heartbeat has reached the database for a lease: the runs being resumed may be taken back by
   * another supervisor, so their bodies stop at their next call. Called directly (the mailbox may
   * wait on a statement that hangs).
   */
  leasesEnded(silentMs: number): void {
    const runs = [...this.#resuming].filter(([, r]) => !r.lost.signal.aborted);
    if (runs.length === 0) return;
    this.logger.warn({ runs: runs.map(([id]) => id), silentMs }, 'no heartbeat reached the database for a lease: these workflow runs stop at their next call');
    for (const [, r] of runs) r.lost.abort();
  }

  /** Looks for runs to resume now (a notification came). */
  wake(): void {
    // With its resumes nearly all busy it claims when enough of them end (see 'done'), not at every
    // notification: a claim scans the runnable runs.
    if (this.#resuming.size === 0 || this.#free() >= CLAIM_WHEN_FREE) this.#queueClaim();
  }

  /** Queues one claim; wake-ups and ended resumes meanwhile share it. */
  #queueClaim(): void {
    if (this.#claimQueued) return;
    // Set before sending: an idle mailbox handles the claim (and clears the flag) inside send().
    this.#claimQueued = true;
    if (!this.send({ type: 'claim' })) this.#claimQueued = false;
  }

  protected override onStart(): void {
    this.every(this.#o.pollMs, () => ({ type: 'tick' }));
    if (this.#o.schedules.length > 0) this.every(CRON_CHECK_MS, () => ({ type: 'cron' }));
    this.send({ type: 'tick' });
  }

  protected override async onStop(): Promise<void> {
    const running = [...this.#resuming.values()].map((r) => r.done);
    if (running.length === 0) return;
    await Promise.race([Promise.allSettled(running), new Promise((resolve) => setTimeout(resolve, STOP_GRACE_MS).unref())]);
  }

  protected async handle(msg: SchedulerMsg): Promise<void> {
    switch (msg.type) {
      case 'claim':
        this.#claimQueued = false;
        return this.#guarded(() => this.#claim());
      case 'tick':
        return this.#guarded(() => this.#tick());
      case 'cron':
        return this.#guarded(async () => {
          await this.runOnce();
        });
      case 'done':
        this.#resuming.delete(msg.runId);
        this.#outcomes[msg.outcome] = (this.#outcomes[msg.outcome] ?? 0) + 1;
        // A run that suspended may be runnable at once (its event was already there). Claimed once
        // enough resumes have ended: a claim scans the runnable runs, so one per ended resume would
        // cost the database more than the resumes themselves.
        if (this.#resuming.size === 0 || this.#free() >= CLAIM_WHEN_FREE) this.#queueClaim();
        return;
      default:
        return assertNever(msg);
    }
  }

  async #guarded(run: () => Promise<void>): Promise<void> {
    try {
      await run();
    } catch (err) {
      this.#stats.errors++;
      this.logger.warn({ err }, 'workflow scheduler step failed; trying again next tick');
    }
  }

  async #tick(): Promise<void> {
    const leader = this.#o.isLeader();
    const became = leader && !this.#wasLeader;
    this.#wasLeader = leader;
    const { db, selfId, leaseMs } = this.#o;
    if (this.#resuming.size > 0) {
      const claims = [...this.#resuming].map(([runId, r]) => ({ runId, claimSeq: r.claimSeq }));
      await extendWorkflowLeases(db, selfId, claims, leaseMs);
    }
    if (this.#servable.length > 0) {
      const unblocked = await unblockWorkflowRuns(db, this.#servable);
      if (unblocked.length > 0) this.logger.info({ runs: unblocked }, 'blocked workflow runs can go on: a module serves them');
    }
    if (became) this.logger.info({}, 'leading: also resuming the workflow runs no module here serves, to block them');
    await this.#claim();
  }

  /** Resumes it may start now. */
  #free(): number {
    return (this.#o.maxResumes ?? DEFAULT_MAX_RESUMES) - this.#resuming.size;
  }

  async #claim(): Promise<void> {
    const { db, selfId, leaseMs } = this.#o;
    const any = this.#o.isLeader();
    if (!any && this.#servable.length === 0) return;
    for (;;) {
      const free = this.#free();
      if (free <= 0 || this.signal.aborted) return;
      this.#stats.claims++;
      const exclude = [...this.#resuming.keys()];
      const rows = await claimWorkflowRuns(db, { supervisorId: selfId, limit: free, leaseMs, exclude, servable: this.#servable, any });
      for (const row of rows) this.#resuming.set(row.id, { claimSeq: row.claim_seq, done: Promise.resolve(), lost: new AbortController() });
      if (rows.length > 0) this.#o.onClaimed?.();
      for (const row of rows) {
        const { lost } = this.#resuming.get(row.id)!;
        const deps = { db, supervisorId: selfId, limits: this.#o.limits, logger: this.logger, stepWriter: this.#stepWriter };
        const done = resumeRun(deps, row, this.#o.workflows.get(row.name), this.#o.workflows.broken.get(row.name), lost.signal).then(
          (outcome) => {
            this.#o.onResume?.(row.id, outcome);
            this.send({ type: 'done', runId: row.id, outcome });
          },
          (err: unknown) => {
            this.logger.error({ err, run: row.id }, 'workflow resume threw');
            this.send({ type: 'done', runId: row.id, outcome: 'retry' });
          },
        );
        this.#resuming.set(row.id, { claimSeq: row.claim_seq, done, lost });
      }
      if (rows.length < free) return;
    }
  }

  /**
   * One cron check, when this supervisor leads: fires the due ticks of every schedule as of the
   * clock's now, at most `catchUp` per schedule after a gap. A tick fires once whoever fires it (its
   * cron_ticks row). Workflow resumes are not part of it: they run on their own ticks and wake-ups.
   * The cron timer calls it through the mailbox; a test calls it on an actor not started.
   */
  async runOnce(): Promise<CronCheck> {
    const check: CronCheck = { leader: this.#o.isLeader(), fired: [], skipped: 0 };
    if (!check.leader) return check;
    const { db, schedules } = this.#o;
    const now = this.clock.now();
    const last = await lastCronTicks(db, schedules.map((s) => s.key));
    for (const entry of schedules) {
      try {
        await this.#fireDue(entry, now, last.get(entry.key)?.getTime(), check);
      } catch (err) {
        // One schedule that cannot fire now does not hold up the others; it is tried at the next check.
        this.logger.warn({ err, schedule: entry.key }, 'could not fire a cron schedule');
      }
    }
    this.#stats.cronChecks++;
    return check;
  }

  /** Fires the due ticks of one schedule, adding them to `check`. */
  async #fireDue(entry: ScheduleEntry, now: number, lastFired: number | undefined, check: CronCheck): Promise<void> {
    const { db } = this.#o;
    const { cron, catchUp, input } = entry.schedule;
    const lookback = now - (cron.seconds ? CRON_LOOKBACK_MS.seconds : CRON_LOOKBACK_MS.minutes);
    const checked = this.#cronCheckedUpTo.get(entry.key);
    // A schedule never fired starts now: its first tick is the next one.
    const from = Math.max(lastFired ?? checked ?? now, checked ?? -Infinity, lookback);
    const { ticks, skipped } = ticksBetween(cron, from, now, Math.max(catchUp, 1));
    // catchUp 0: only a tick that is due now (within a check interval or two) fires.
    const due = catchUp === 0 ? ticks.filter((t) => now - t < 4 * CRON_CHECK_MS) : ticks;
    const missed = skipped + ticks.length - due.length;
    if (missed > 0) {
      check.skipped += missed;
      this.#stats.cronSkipped += missed;
      this.logger.warn({ schedule: entry.key, skipped: missed }, 'skipped missed cron ticks');
    }
    const inputJson = JSON.stringify(input ?? null);
    for (const tick of due) {
      const tickAt = new Date(tick);
      const fired =
        entry.target.kind === 'job'
          ? await fireCronJob(db, { schedule: entry.key, tickAt, type: entry.target.type, inputJson })
          : await fireCronWorkflow(db, {
              schedule: entry.key,
              tickAt,
              name: entry.target.name,
              runId: `cron:${entry.target.name}:${tickAt.toISOString()}`,
              inputJson,
            });
      if (fired !== undefined) {
        check.fired.push({ schedule: entry.key, tickAt, id: fired });
        this.#stats.cronFired++;
      }
    }
    this.#cronCheckedUpTo.set(entry.key, now);
  }

  protected override inspect(): SchedulerState {
    return {
      leader: this.#o.isLeader(),
      resuming: [...this.#resuming.keys()],
      resumes: { ...this.#outcomes },
      ...this.#stats,
    };
  }
}
