/**
 * The root actor: claims jobs, runs each on a worker thread, turns the end of each thread into an
 * outcome, and supervises the actors that keep the claims honest (heartbeat, reaper, elector,
 * listener) and the ones that write in batches (completer, progress). Actors of its caller's (the
 * ops servers, see start.ts) run beside them as its children, known here only as actors.
 */
import { hostname } from 'node:os';
import { EventEmitter } from 'eventemitter3';
import type pg from 'pg';
import type { SupervisorConfig } from '../config.ts';
import { claimJobs, claimQueryable, releaseJobs, type ClaimType, type ClaimedJob } from '../db/claims.ts';
import type { Queryable } from '../db/queryable.ts';
import { activeScopes, claimLimited, LIMITS_CHANNEL, writeModuleLimits, type ActiveScopes } from '../db/limits.ts';
import { flowLimitsOf } from '../limits.ts';
import { limitedRoom, planFlow, type LimitedCall } from '../policy/flow-plan.ts';
import { electorApplicationName } from '../db/leader.ts';
import { cancelRequests, type HeldJob } from '../db/leases.ts';
import type { ReapedJob } from '../db/maintenance.ts';
import { registerSupervisor, removeSupervisor, type SupervisorRecord } from '../db/supervisors.ts';
import { finishFor } from '../outcome.ts';
import { endAttemptSpan } from '../tracing.ts';
import type { Outcome, WorkerPool } from '../pool/pool.ts';
import type { Registry } from '../pool/registry.ts';
import type { AttemptOutcome } from '../job.ts';
import type { AbortReason } from '../pool/protocol.ts';
import { holdLimit, keepWithinBudget, planClaim, wantsClaim, type ServedType } from '../policy/claim-plan.ts';
import { NoticePacing } from '../policy/notice-pacing.ts';
import type { InFlightView, RuntimeEvents } from '../runtime-events.ts';
import { Compensator } from './compensator.ts';
import { Completer, type CompletedBatch } from './completer.ts';
import { Elector } from './elector.ts';
import { InFlight, type InFlightHost } from './in-flight.ts';
import { LimitedClaims, type LimitedScopeView } from './limited-claims.ts';
import { DEAD_AFTER_HEARTBEATS } from '../liveness.ts';
import { Heartbeat, type BeatResult, type HeldClaim } from './heartbeat.ts';
import type { Clock } from '../clock.ts';
import { loggerWith, type Logger } from '../logger.ts';
import { Actor, assertNever, type AnyActor } from './kernel.ts';
import type { SpawnOptions } from './supervision.ts';
import { Listener } from './listener.ts';
import { Progress } from './progress.ts';
import { Reaper } from './reaper.ts';
import { Scheduler } from './scheduler.ts';
import { WorkflowRegistry } from '../workflows/registry.ts';
import type { ScheduleEntry } from '../workflows/schedules.ts';

const RETRY_CLAIM_MS = [100, 250, 500, 1_000, 2_000, 5_000];

type SupervisorMsg =
  /** `rateWindow`: a rate limit's window has let a start go. `notice`: a paced notice of new jobs is due. */
  | { type: 'claim'; rateWindow?: boolean; notice?: boolean }
  | { type: 'limits' }
  | { type: 'finished'; id: string; outcome: Outcome }
  | { type: 'beat'; result: BeatResult }
  | { type: 'cancel'; id: string; attempt: number | null; reason: string | null }
  | { type: 'sweepCancels' };

export interface SupervisorState {
  id: string;
  draining: boolean;
  leader: boolean;
  concurrency: number;
  inFlight: number;
  types: string[];
  queues: string[];
  claims: number;
  claimed: number;
  finished: Record<string, number>;
  lostClaims: number;
  claimErrors: number;
  /** Claimed jobs given back at once: more of a slow type than this supervisor should hold. */
  released: number;
  /** The flow-control scopes it claims only through limited claims, and what each one's last claim found. */
  limitedScopes: LimitedScopeView[];
}

export interface SupervisorDeps {
  id: string;
  config: SupervisorConfig;
  databaseUrl: string;
  /** Where LISTEN and the leader lock keep their session (a transaction pooler cannot); default databaseUrl. */
  sessionDatabaseUrl?: string;
  db: pg.Pool;
  /**
   * Connections for claims, lease extensions and progress (see start.ts), and every statement of this
   * actor's own: their short bound keeps its mailbox from waiting long on a link that went down.
   */
  fastDb: pg.Pool;
  registry: Registry;
  pool: WorkerPool;
  version: string;
  logger?: Logger;
  /**
   * Actors of the caller's to run as children (start.ts: the ops servers), spawned after the
   * supervisor's own, so stopped before them. Called at each start, for fresh ones.
   */
  children?: () => readonly ChildActor[];
  /** The workflow modules this supervisor can resume (when it leads). */
  workflows?: WorkflowRegistry;
  /** The cron schedules of its worker and workflow modules (fired when it leads). */
  schedules?: ScheduleEntry[];
  /** The time of the decisions made here and in its children (the database keeps its own); default the system clock. */
  clock?: Clock;
}

/** An actor of the caller's that the supervisor runs as a child, and how it is supervised. */
export interface ChildActor {
  actor: AnyActor;
  supervision: SpawnOptions;
}

export class Supervisor extends Actor<SupervisorMsg, SupervisorState> {
  /** Claims, outcomes, progress and lost claims, for inspectors. */
  readonly events = new EventEmitter<RuntimeEvents>();
  readonly id: string;
  readonly #d: SupervisorDeps;
  readonly #record: SupervisorRecord;
  readonly #inFlight = new Map<string, InFlight>();
  readonly #jobHost: InFlightHost;
  /** Where claims run, with the claim settings in force (db/claims.ts). */
  readonly #claimDb: Queryable;
  #completer!: Completer;
  #compensator!: Compensator;
  #progress!: Progress;
  #elector!: Elector;
  #reaper!: Reaper;
  #scheduler: Scheduler | undefined;
  #heartbeat!: Heartbeat;
  /** A claim was skipped because no heartbeat reached the database lately: the next beat wakes it. */
  #claimWaitsForBeat = false;
  #draining = false;
  #claimQueued = false;
  /** A claim may find more work: set by wake-ups and full batches, cleared by a short batch. */
  #maybeMore = true;
  #claimFailures = 0;
  /** The types and queues that only limited claims take (flow control), as last read. */
  #activeScopes: ActiveScopes = { types: new Set(), queues: new Set(), paused: new Set() };
  /** What its last limited claim in each scope found, for its snapshot (`spindle inspect`). */
  readonly #limitedClaims = new LimitedClaims();
  /** A claim is due when a rate window lets the next start go. */
  #rateTimer = false;
  /** How soon notices of new jobs are answered in a large fleet (policy/notice-pacing.ts). */
  readonly #noticePacing = new NoticePacing();
  /** Live supervisors, this one included, as the last beat counted them. */
  #liveSupervisors = 1;
  /** The next claim answers a notice: what it finds paces the next ones. */
  #answersNotice = false;
  /** A paced notice's claim is due (a timer). */
  #noticeTimer = false;
  #idleWaiters: (() => void)[] = [];
  #stats = { claims: 0, claimed: 0, released: 0, lostClaims: 0, claimErrors: 0 };
  #finishedBy: Record<string, number> = {};

  constructor(deps: SupervisorDeps) {
    super({ name: 'supervisor', logger: deps.logger, clock: deps.clock });
    this.#d = deps;
    this.id = deps.id;
    this.#claimDb = claimQueryable(deps.fastDb, deps.config.pooler === 'transaction');
    this.#jobHost = {
      events: this.events,
      supervisorId: deps.id,
      logger: this.logger,
      now: () => this.clock.now(),
      reportProgress: (job) => this.#reportProgress(job),
    };
    this.#record = {
      id: deps.id,
      host: hostname(),
      pid: process.pid,
      version: deps.version,
      queues: deps.config.queues,
      types: [...deps.registry.keys()],
      concurrency: deps.config.concurrency,
      heartbeatMs: deps.config.heartbeatMs,
    };
  }

  // ---- lifecycle ----------------------------------------------------------------

  protected override async onStart(): Promise<void> {
    const { config, db, fastDb, databaseUrl } = this.#d;
    const sessionDatabaseUrl = this.#d.sessionDatabaseUrl ?? databaseUrl;
    // Behind a transaction pooler every session counts against PostgreSQL's connections, so LISTEN
    // and the leader lock share one, named as the elector's (how candidates find the leader).
    const oneSession = config.pooler === 'transaction';
    const declared = [...this.#d.registry.values()]
      .filter((m) => m.loadError === undefined)
      .map((m) => ({ type: m.type, limits: flowLimitsOf(m.options) }));
    // Side by side, both before the first claim: the registration (it also ends the leases of jobs a
    // former run under this id held, which must not catch this run's claims), and the module limits,
    // then the scopes they make limited, which the claim plan reads.
    const [, scopes] = await Promise.all([
      registerSupervisor(db, this.#record),
      writeModuleLimits(db, declared).then(() => activeScopes(db)),
    ]);
    this.#activeScopes = scopes;
    const deadAfterMs = DEAD_AFTER_HEARTBEATS * config.heartbeatMs;
    this.#completer = this.spawn(
      new Completer({ db, supervisorId: this.id, onBatch: (batch) => this.#onBatch(batch) }),
      { policy: 'restart' },
    );
    this.#compensator = this.spawn(
      new Compensator({
        pool: this.#d.pool,
        db,
        supervisorId: this.id,
        outcomesWritten: (timeoutMs) => this.#completer.drain(timeoutMs),
      }),
      { policy: 'restart' },
    );
    this.#progress = this.spawn(new Progress({ db: fastDb, supervisorId: this.id, flushMs: config.progressFlushMs }), {
      policy: 'restart',
    });
    this.#heartbeat = this.spawn(
      new Heartbeat({
        db: fastDb,
        record: this.#record,
        intervalMs: config.heartbeatMs,
        leaseMs: config.leaseMs,
        // Finished attempts whose outcome is not written yet are still ours: their leases are kept too.
        claims: () => [
          ...[...this.#inFlight.values()].map((j) => ({ id: j.id, attempt: j.attempt })),
          ...this.#completer.held(),
        ],
        onBeat: (result) => this.send({ type: 'beat', result }),
        // Called directly, not through the mailbox: that may wait on a statement that hangs as well.
        onLeasesEnded: (claims, silentMs) => this.#leasesEnded(claims, silentMs),
        // Aborted this long before their leases end, the threads are stopped when another supervisor may take the jobs.
        stopBeforeEndMs: config.abortGraceMs,
        runs: () => this.#scheduler?.heldRuns() ?? [],
        keeper: { connectionString: databaseUrl, transactionPooler: config.pooler === 'transaction' },
      }),
      { policy: 'restart' },
    );
    const listener = this.spawn(
      new Listener({
        connectionString: sessionDatabaseUrl,
        channels: ['spindle_jobs', 'spindle_cancel', 'spindle_workflows', LIMITS_CHANNEL],
        applicationName: oneSession ? electorApplicationName(this.id) : `spindle:listener:${this.id}`,
        onNotification: (channel, payload) => this.#onNotification(channel, payload),
        onConnect: (reconnected) => {
          // Whatever was notified while the connection was down is looked for now.
          this.#wake();
          this.#scheduler?.wake();
          if (reconnected) this.send({ type: 'sweepCancels' });
          // A change of limits told before this connection listened (or while it was down) is read now.
          this.send({ type: 'limits' });
        },
      }),
      { policy: 'restart' },
    );
    this.#elector = this.spawn(
      new Elector({
        session: oneSession ? { shared: () => listener.session() } : { connectionString: sessionDatabaseUrl },
        supervisorId: this.id,
        intervalMs: Math.max(250, Math.min(config.heartbeatMs, 2_000)),
        deadAfterMs,
        onChange: (leader) => {
          this.events.emit('leader:changed', { leader });
          if (leader) this.#reaper?.sweepNow();
          if (leader) this.#scheduler?.wake();
        },
      }),
      { policy: 'restart' },
    );
    this.#reaper = this.spawn(
      new Reaper({
        db,
        selfId: this.id,
        intervalMs: config.reaperIntervalMs,
        unknownTypeGraceMs: config.unknownTypeGraceMs,
        backoff: config.backoff,
        backoffByType: Object.fromEntries(
          [...this.#d.registry.values()].flatMap((m) => (m.options.backoff === undefined ? [] : [[m.type, m.options.backoff]])),
        ),
        retentionMs: config.retentionMs,
        isLeader: () => this.#elector.isLeader,
        onReaped: (jobs) => this.#onReaped(jobs),
      }),
      { policy: 'restart' },
    );
    this.#scheduler = this.spawn(
      new Scheduler({
        db,
        selfId: this.id,
        workflows: this.#d.workflows ?? new WorkflowRegistry(),
        schedules: this.#d.schedules ?? [],
        limits: config.workflowLimits,
        leaseMs: config.leaseMs,
        pollMs: config.pollMs,
        isLeader: () => this.#elector.isLeader,
        onClaimed: () => this.#heartbeat.tellKeeper(),
      }),
      { policy: 'restart' },
    );
    for (const { actor, supervision } of this.#d.children?.() ?? []) this.spawn(actor, supervision);
    this.every(config.pollMs, () => {
      this.#maybeMore = true;
      return { type: 'claim' };
    });
    // The first claim is the first message, once every child has started: a caller of
    // startSupervisor() hears of every job it runs (its runtime events).
    this.#wake();
  }

  /**
   * Graceful shutdown: stop claiming, let running jobs finish for up to `shutdownTimeoutMs`, stop the
   * rest and put them back in the queue (outcome `interrupted`), write everything, deregister.
   */
  async shutdown(): Promise<void> {
    if (this.status !== 'running' && this.status !== 'restarting') {
      await this.stop();
      return;
    }
    const { config } = this.#d;
    this.#draining = true;
    this.logger.info({ running: this.#inFlight.size, timeoutMs: config.shutdownTimeoutMs }, 'shutting down');
    if (!(await this.#whenIdle(config.shutdownTimeoutMs))) {
      this.logger.warn({ running: this.#inFlight.size }, 'shutdown timeout: putting running jobs back in the queue');
      for (const job of this.#inFlight.values()) this.#abort(job, 'shutdown');
      await this.#whenIdle(config.abortGraceMs + 10_000);
    }
    await this.#compensator.settled();
    await this.#completer.drain(30_000).catch((err) => this.logger.error({ err }, 'could not write every outcome'));
    await this.#progress.flush(5_000).catch(() => {});
    await this.stop();
    await removeSupervisor(this.#d.db, this.id).catch((err) =>
      this.logger.warn({ err }, 'could not deregister; the reaper will remove this supervisor'),
    );
  }

  /** True once shutdown() has begun. */
  get draining(): boolean {
    return this.#draining;
  }

  /** True while this supervisor is the leader. */
  get isLeader(): boolean {
    return this.#elector?.isLeader ?? false;
  }

  #whenIdle(timeoutMs: number): Promise<boolean> {
    if (this.#inFlight.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.#idleWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  // ---- messages -------------------------------------------------------------------

  protected async handle(msg: SupervisorMsg): Promise<void> {
    switch (msg.type) {
      case 'claim':
        if (msg.rateWindow) {
          this.#rateTimer = false;
          this.#maybeMore = true;
        } else if (msg.notice) {
          this.#noticeTimer = false;
          this.#maybeMore = true;
          this.#answersNotice = true;
        } else {
          this.#claimQueued = false;
        }
        return this.#claim();
      case 'limits':
        return this.#readLimits();
      case 'finished':
        return this.#finished(msg.id, msg.outcome);
      case 'beat':
        this.#liveSupervisors = msg.result.liveSupervisors;
        this.#checkHeld(msg.result);
        if (this.#claimWaitsForBeat) {
          this.#claimWaitsForBeat = false;
          this.#wake();
        }
        return;
      case 'cancel': {
        const job = this.#inFlight.get(msg.id);
        if (job && (msg.attempt === null || msg.attempt === job.attempt)) {
          job.cancelReason = msg.reason;
          job.cancelRequested = true;
          this.#abort(job, 'cancel', msg.reason ?? undefined);
        }
        return;
      }
      case 'sweepCancels':
        try {
          for (const held of await cancelRequests(this.#d.fastDb, this.id)) this.#cancelHeld(held);
        } catch (err) {
          this.logger.warn({ err }, 'could not look for cancel requests');
        }
        return;
      default:
        return assertNever(msg);
    }
  }

  #wake(): void {
    this.#maybeMore = true;
    if (this.#claimQueued || this.#draining) return;
    // Set before sending: an idle mailbox handles the claim (and clears the flag) inside send().
    this.#claimQueued = true;
    if (!this.send({ type: 'claim' })) this.#claimQueued = false;
  }

  /** Claims on a notice of new jobs: at once, or, in a large fleet after empty claims, a little later. */
  #answerNotice(): void {
    const delay = this.#noticePacing.delayMs(this.#liveSupervisors);
    if (delay === 0) {
      this.#answersNotice = true;
      this.#wake();
    } else if (!this.#noticeTimer) {
      this.#noticeTimer = true;
      this.after(delay, { type: 'claim', notice: true });
    }
  }

  #onNotification(channel: string, payload: string): void {
    if (channel === 'spindle_jobs') {
      const queues = this.#d.config.queues;
      if (queues.length === 0 || queues.includes(payload)) this.#answerNotice();
      return;
    }
    if (channel === LIMITS_CHANNEL) {
      this.send({ type: 'limits' });
      return;
    }
    if (channel === 'spindle_workflows') {
      this.#scheduler?.wake();
      return;
    }
    if (channel === 'spindle_cancel') {
      try {
        // The payload's field is named by the SQL that sends it (migrations 0001, 0003).
        const note = JSON.parse(payload) as { id: string; workerId: string | null; attempt: number; reason: string | null };
        if (note.workerId === this.id) {
          this.send({ type: 'cancel', id: String(note.id), attempt: note.attempt, reason: note.reason ?? null });
        }
      } catch (err) {
        this.logger.warn({ err, payload }, 'ignored a malformed cancel notification');
      }
    }
  }

  // ---- claiming -------------------------------------------------------------------

  async #claim(): Promise<void> {
    const { config } = this.#d;
    if (this.#draining || !this.#maybeMore) return;
    // Unseen for 3 heartbeats (paused, cut off), we may have been declared dead, and our leases may
    // be ending: wait for a beat to register us again before claiming more.
    if (!this.#heartbeat.isFresh(DEAD_AFTER_HEARTBEATS * config.heartbeatMs)) {
      this.#claimWaitsForBeat = true;
      return;
    }
    const plan = planClaim(config, this.#d.pool.runTimes, this.#servedTypes(), this.#heldByType());
    let free = plan.free;
    const answersNotice = this.#answersNotice;
    this.#answersNotice = false;
    if (free <= 0) return;
    const found = () => this.#stats.claimed + this.#stats.released;
    const foundBefore = found();

    // Consumed here, not overwritten after the claim: a wake-up that arrives while this claim is in
    // flight (jobs committed after its snapshot) sets it again and must not be lost.
    this.#maybeMore = false;
    // A type left out at its budget may have more waiting: claim again as its jobs finish.
    let full = plan.atBudget;
    const take = async (types: ClaimType[], limit: number) => {
      const { kept, released } = await this.#claimBatch(types, limit);
      free -= kept;
      // A full batch may have left more behind; jobs given back certainly did.
      if (kept + released === limit || released > 0) full = true;
    };
    const flow = planFlow(plan, this.#activeScopes, config.queues, limitedRoom(config.concurrency, this.#inFlight.values()));
    try {
      for (const call of flow.calls) {
        if (free <= 0) break;
        if (await this.#claimLimited(call, Math.min(free, call.want))) full = true;
      }
      free = Math.min(free, holdLimit(config, this.#d.pool.runTimes.all) - this.#inFlight.size);
      if (flow.unlimited.length > 0 && free > 0) await take(flow.unlimited, free);
      for (const { type, free: typeFree } of flow.perSupervisor) {
        if (free > 0) await take([type], Math.min(free, typeFree));
      }
      this.#claimFailures = 0;
    } catch (err) {
      this.#stats.claimErrors++;
      this.#maybeMore = true;
      const delay = RETRY_CLAIM_MS[Math.min(this.#claimFailures++, RETRY_CLAIM_MS.length - 1)]!;
      this.logger.warn({ err, retryInMs: delay }, 'claim failed; retrying');
      this.after(delay, { type: 'claim' });
      return;
    }
    // A batch that filled every free slot may have left more behind.
    if (full) this.#maybeMore = true;
    if (found() > foundBefore) this.#noticePacing.claimedSome();
    else if (answersNotice) this.#noticePacing.claimedNothing();
  }

  /**
   * One limited claim (flow control); true when it may have left jobs behind that a later claim can
   * take (it took fewer than asked): a slot freed by this supervisor's own jobs, or a rate window
   * passing (a timer), calls the claim again.
   */
  async #claimLimited(call: LimitedCall, want: number): Promise<boolean> {
    if (want <= 0) return true;
    const { config } = this.#d;
    this.#stats.claims++;
    const { jobs, retryMs } = await claimLimited(this.#claimDb, {
      scope: call.scope,
      supervisorId: this.id,
      queues: config.queues,
      types: call.types,
      want,
      leaseMs: config.leaseMs,
    });
    this.#limitedClaims.record(call.scope, want, jobs.length, retryMs, this.clock.now());
    for (const row of jobs) {
      this.#run(row).wakesOthers = true;
      this.#stats.claimed++;
    }
    if (jobs.length > 0) this.#heartbeat.tellKeeper();
    if (retryMs !== null && !this.#rateTimer) {
      this.#rateTimer = true;
      this.after(Math.max(1, Math.ceil(retryMs)), { type: 'claim', rateWindow: true });
    }
    return jobs.length < want;
  }

  /** Reads which scopes are limited or paused; a claim follows, as a resumed or lifted scope has work. */
  async #readLimits(): Promise<void> {
    try {
      this.#activeScopes = await activeScopes(this.#d.fastDb);
    } catch (err) {
      this.logger.warn({ err }, 'could not read the flow-control limits; keeping the last ones read');
    }
    this.#wake();
  }

  /** The types it serves, as the claim plan needs them. */
  *#servedTypes(): Iterable<ServedType> {
    for (const info of this.#d.registry.values()) {
      yield { type: info.type, maxAttempts: info.options.maxAttempts ?? 3, concurrency: info.options.concurrency };
    }
  }

  /** The jobs it holds, by type. */
  #heldByType(): Map<string, number> {
    const held = new Map<string, number>();
    for (const job of this.#inFlight.values()) held.set(job.type, (held.get(job.type) ?? 0) + 1);
    return held;
  }

  /** Claims up to `limit` jobs and runs them; returns how many it kept and how many it gave back. */
  async #claimBatch(types: ClaimType[], limit: number): Promise<{ kept: number; released: number }> {
    const { config, fastDb } = this.#d;
    this.#stats.claims++;
    const byType = this.#activeScopes.types.size + this.#activeScopes.queues.size > 0;
    const rows = await claimJobs(this.#claimDb, { supervisorId: this.id, queues: config.queues, types, limit, leaseMs: config.leaseMs, byType });
    // What its type's budget does not allow is given back at once for other supervisors, rather
    // than held behind busy threads.
    const { kept, excess } = keepWithinBudget(config, this.#d.pool.runTimes, rows, this.#heldByType());
    for (const row of kept) {
      this.#run(row);
      this.#stats.claimed++;
    }
    // The lease keeper learns of them now, not at the next beat: the main thread may be held up before.
    if (kept.length > 0) this.#heartbeat.tellKeeper();
    if (excess.length > 0) {
      this.#stats.released += await releaseJobs(fastDb, this.id, excess.map((r) => ({ id: r.id, attempt: r.attempt })));
    }
    return { kept: rows.length - excess.length, released: excess.length };
  }

  #run(row: ClaimedJob): InFlight {
    const { config, registry, pool } = this.#d;
    const info = registry.get(row.type)!;
    const timeoutMs = row.timeout_ms ?? info.options.timeoutMs ?? (config.defaultTimeoutMs || undefined);
    const job = new InFlight(row, info, timeoutMs, this.#jobHost);
    const { id } = job;
    job.running = pool.run(
      {
        mode: 'run',
        jobId: id,
        type: row.type,
        modulePath: info.path,
        input: row.input,
        attempt: row.attempt,
        maxAttempts: job.maxAttempts,
        traceparent: job.traceparent,
      },
      job,
    );
    this.#inFlight.set(id, job);
    this.events.emit('job:claimed', { id, type: row.type, attempt: row.attempt, waitMs: row.wait_ms });
    job.running.outcome.then(
      (outcome) => this.send({ type: 'finished', id, outcome }),
      (err: unknown) =>
        this.send({
          type: 'finished',
          id,
          outcome: { kind: 'crashed', error: { name: 'Error', message: `worker pool failed: ${String(err)}` } },
        }),
    );
    return job;
  }

  #reportProgress(job: InFlight): void {
    this.#progress.report({
      id: job.id,
      attempt: job.attempt,
      percent: job.percent ?? 0,
      message: job.message,
      data: job.data,
      logs: job.logs === '' ? null : job.logs,
      about: job,
    });
  }

  // ---- outcomes -------------------------------------------------------------------

  #finished(id: string, outcome: Outcome): void {
    const job = this.#inFlight.get(id);
    if (!job) return;
    this.#inFlight.delete(id);
    // Only a job that reported progress or logs can have some pending there.
    if (job.percent !== null || job.logs !== '') this.#progress.forget(id);
    const elapsed = this.clock.now() - (job.startedAt ?? job.claimedAt);
    const finish = finishFor(
      { id, attempt: job.attempt, maxAttempts: job.maxAttempts, logs: job.logs === '' ? null : job.logs, cancelRequested: job.cancelRequested },
      outcome,
      job.info.options.backoff ?? this.#d.config.backoff,
    );
    // The outcome's write carries the last progress (the pool delivers it before the outcome): what
    // the progress writer still held of this job is dropped, and a write of it still under way is
    // fenced out by the outcome.
    if (finish && job.percent !== null) finish.progress = { percent: job.percent, message: job.message, data: job.data };
    if (finish && job.wakesOthers) finish.wakes = true;
    if (finish) finish.about = job;
    if (finish) {
      this.#completer.add(finish);
    } else {
      this.#lostClaim(job, 'lease lost');
    }
    job.logEnd(outcome, finish, elapsed);
    const kind = outcome.kind as AttemptOutcome;
    endAttemptSpan(job.span, kind, 'error' in outcome ? outcome.error : null);
    this.#finishedBy[kind] = (this.#finishedBy[kind] ?? 0) + 1;
    this.events.emit('job:finished', {
      id,
      type: job.type,
      attempt: job.attempt,
      outcome: kind,
      state: finish?.nextState ?? null,
      ms: elapsed,
    });
    if (finish?.nextState === 'cancelled' && job.info.hasCompensate) this.#compensator.compensate(job.compensated());
    // A cancel this supervisor has not heard of yet may still turn the retry into a cancel (finishJobs).
    if (finish?.nextState === 'queued' && job.info.hasCompensate) this.#compensator.watchRetry(finish, job.compensated());
    if (this.#inFlight.size === 0) for (const resolve of this.#idleWaiters.splice(0)) resolve();
    if (this.#maybeMore && wantsClaim(this.#d.config, this.#d.pool.runTimes, this.#inFlight.size)) this.#wake();
  }

  #onBatch(batch: CompletedBatch): void {
    this.#compensator.written(batch);
    for (const finish of batch.notWritten) {
      this.#stats.lostClaims++;
      const log = finish.about?.log ?? loggerWith(this.logger, { job: finish.id, attempt: finish.attempt });
      log.warn({}, 'lost claim: the outcome was not recorded');
      this.events.emit('claim:lost', { id: finish.id, attempt: finish.attempt, reason: 'fenced write matched nothing' });
    }
  }

  // ---- leases ---------------------------------------------------------------------

  #checkHeld({ asked, held }: BeatResult): void {
    const still = new Map(held.map((h) => [h.id, h]));
    for (const claim of asked) {
      const job = this.#inFlight.get(claim.id);
      if (!job || job.attempt !== claim.attempt) continue;
      const h = still.get(claim.id);
      if (!h) {
        this.#abort(job, 'lost', 'the job was taken back by another supervisor');
        continue;
      }
      if (h.cancel_requested) this.#cancelHeld(h);
    }
  }

  /** No beat has reached the database for a lease: the claims may be taken back, so their work stops. */
  #leasesEnded(claims: HeldClaim[], silentMs: number): void {
    this.#scheduler?.leasesEnded(silentMs);
    for (const claim of claims) {
      const job = this.#inFlight.get(claim.id);
      if (job && job.attempt === claim.attempt) {
        this.#abort(job, 'lost', `no heartbeat reached the database for ${silentMs} ms, so its lease has ended`);
      }
    }
  }

  #cancelHeld(held: HeldJob): void {
    const job = this.#inFlight.get(held.id);
    if (!job || job.attempt !== held.attempt || job.abortedFor) return;
    job.cancelReason = held.cancel_reason;
    job.cancelRequested = true;
    this.#abort(job, 'cancel', held.cancel_reason ?? undefined);
  }

  #abort(job: InFlight, reason: AbortReason, detail?: string): void {
    if (job.abortedFor) return;
    job.abortedFor = reason;
    job.running.abort(reason, detail);
  }

  #lostClaim(job: InFlight, reason: string): void {
    this.#stats.lostClaims++;
    job.log.warn({ reason }, 'lost claim: result dropped');
    this.events.emit('claim:lost', { id: job.id, attempt: job.attempt, reason });
  }

  #onReaped(jobs: ReapedJob[]): void {
    for (const j of jobs) {
      this.events.emit('job:reaped', { id: j.id, attempt: j.attempt, supervisorId: j.worker_id, state: j.state });
    }
    this.#wake();
  }

  // ---- inspection -----------------------------------------------------------------

  /** The jobs running now, for `spindle inspect` and the debug socket. */
  jobs(): InFlightView[] {
    const now = this.clock.now();
    return [...this.#inFlight.values()].map((job) => job.view(now));
  }

  protected override inspect(): SupervisorState {
    return {
      id: this.id,
      draining: this.#draining,
      leader: this.isLeader,
      concurrency: this.#d.config.concurrency,
      inFlight: this.#inFlight.size,
      types: this.#record.types,
      queues: this.#d.config.queues,
      ...this.#stats,
      finished: { ...this.#finishedBy },
      limitedScopes: this.#limitedClaims.view(this.#activeScopes),
    };
  }
}
