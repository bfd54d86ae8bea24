/** The Client: enqueue and manage jobs from any process. */
import pg from 'pg';
import { embeddedPool } from './db/embedded-client.ts';
import { resolveStateDir } from './db/embedded-state.ts';
import { cancelJob, enqueueJob, enqueueJobs, getJob, insertJobs, listAttempts, listJobs, retryJob } from './db/jobs.ts';
import { endPool, type Queryable } from './db/queryable.ts';
import { listSupervisors, type SupervisorInfo } from './db/supervisors.ts';
import { clearOperatorLimits, listLimits, setOperatorLimits, setPaused, waitingFor, type LimitRow } from './db/limits.ts';
import { checkFlowLimits, parseScope, type FlowLimitsUpdate, type LimitScope } from './limits.ts';
import { checkSchemaVersion } from './db/schema-version.ts';
import { NotFoundError, StateError, TimeoutError, ValidationError } from './errors.ts';
import { DEAD_AFTER_HEARTBEATS } from './liveness.ts';
import { Subscription } from './subscription.ts';
import { trace } from '@opentelemetry/api';
import { withProducerSpan } from './tracing.ts';
import { attemptFromRow, FINAL_STATES, jobFromRow, type Attempt, type Job, type JobState } from './job.ts';
import {
  checkEnqueueOptions,
  checkId,
  checkInteger,
  checkName,
  checkState,
  checkText,
  DEFAULT_MAX_INPUT_BYTES,
  MAX_REASON_CHARS,
  describe,
  serializeInput,
  type EnqueueOptions,
} from './validate.ts';
import * as wf from './workflows/client.ts';

/** Options of createClient(). */
export interface ClientOptions {
  /**
   * PostgreSQL URL; defaults to DATABASE_URL, else the embedded PostgreSQL that `spindle start` (or a
   * supervisor) runs for `stateDir`, whose URL is in `<stateDir>/embedded.json`.
   */
  connectionString?: string;
  /** Where to look for the embedded PostgreSQL when there is no URL; default SPINDLE_STATE_DIR, else `./.spindle`. */
  stateDir?: string;
  /** Use this pool instead of making one (it is not closed by close()). */
  pool?: pg.Pool;
  /** Largest JSON input accepted, in bytes; default 1 MiB. */
  maxInputBytes?: number;
  /** Connections in the Client's own pool; default 10. */
  maxConnections?: number;
}

/** Options of one enqueue; `client` runs it inside the caller's transaction. */
export interface EnqueueCallOptions extends EnqueueOptions {
  /** A pg client inside the caller's transaction: the job exists if and only if that transaction commits. */
  client?: Pick<pg.ClientBase, 'query'>;
}

/** A type or queue to limit or pause: `'resize'` (a type), `'type:resize'`, `'queue:emails'`, `{ type }` or `{ queue }`. */
export type ScopeArg = string | { type: string } | { queue: string } | LimitScope;

/** One job to enqueue with enqueueMany(). */
export interface JobSpec {
  type: string;
  input?: unknown;
  options?: EnqueueOptions;
}

/** A filter for list(). */
export interface ListFilter {
  state?: JobState;
  type?: string;
  queue?: string;
  /** At most this many (default 50, at most 1000). */
  limit?: number;
  /** The id of the last job of the previous page: list() returns newest first. */
  after?: string;
}

/** What cancel() did. */
export interface CancelOutcome {
  id: string;
  /** The job's state after the call ('running' means the holder was asked to stop it). */
  state: JobState;
  /** False when the job had already finished (or a cancel was already requested). */
  changed: boolean;
  /** A sentence for people. */
  message: string;
}

/** One step of watch(): what a person watching the job sees. */
export interface JobUpdate {
  state: JobState;
  progress: number | null;
  message: string | null;
  data: unknown;
  job: Job;
}

export type { SupervisorInfo };

/** Checks a job again this often even without a notification, in case one was missed. */
const WAIT_RECHECK_MS = 5_000;

/** Creates a Client. Call close() when done. */
export function createClient(options: ClientOptions = {}): Client {
  return new Client(options);
}

/** Enqueues, reads, cancels and retries jobs. */
export class Client {
  readonly #pool: pg.Pool;
  readonly #ownsPool: boolean;
  #closing: Promise<void> | undefined;
  /** Aborted by close(): waits under way end with a StateError and give their connections back. */
  readonly #closed = new AbortController();
  readonly #maxInputBytes: number;
  /** Set once the database's schema was found to be this code's (checked on the first call). */
  #schemaChecked = false;
  #schemaCheck: Promise<void> | undefined;

  constructor(options: ClientOptions = {}) {
    if (typeof options !== 'object' || options === null) {
      throw new ValidationError('options', `must be an object, got ${describe(options)}`);
    }
    this.#maxInputBytes =
      checkInteger('options.maxInputBytes', options.maxInputBytes, 1, 256 * 1024 * 1024) ?? DEFAULT_MAX_INPUT_BYTES;
    if (options.pool) {
      this.#pool = options.pool;
      this.#ownsPool = false;
    } else {
      const connectionString = options.connectionString ?? (process.env.DATABASE_URL || undefined);
      if (connectionString !== undefined && (typeof connectionString !== 'string' || connectionString === '')) {
        throw new ValidationError('options.connectionString', `must be a PostgreSQL URL, got ${describe(connectionString)}`);
      }
      if (options.stateDir !== undefined && (typeof options.stateDir !== 'string' || options.stateDir === '')) {
        throw new ValidationError('options.stateDir', `must be a directory, got ${describe(options.stateDir)}`);
      }
      const max = checkInteger('options.maxConnections', options.maxConnections, 1, 1000) ?? 10;
      this.#pool =
        connectionString === undefined
          ? embeddedPool(resolveStateDir(options.stateDir), max)
          : new pg.Pool({ connectionString, max });
      // An idle connection that dies (a restarted server) must not crash the caller's process.
      this.#pool.on('error', () => {});
      this.#ownsPool = true;
    }
  }

  /**
   * Enqueues one job and returns it; with `options.key` of a live job, returns that job; with
   * `options.throttle` inside an open window, the job that opened it; with `options.debounce`, the
   * queued job of the key once this enqueue has made it its own.
   */
  async enqueue<I = unknown>(type: string, input?: I, options: EnqueueCallOptions = {}): Promise<Job<I>> {
    checkName('type', type);
    const inputJson = serializeInput(input, this.#maxInputBytes);
    const checked = checkEnqueueOptions(options);
    const db = this.#queryable(options.client);
    if (!this.#schemaChecked) await this.#checkSchema();
    const attributes = { 'spindle.job.type': type, 'spindle.job.queue': checked.queue ?? 'default' };
    const row = await withProducerSpan(`spindle.enqueue ${type}`, attributes, async (traceparent) => {
      const job = await sqlErrors(() => enqueueJob(db, type, inputJson, traceparent ? { ...checked, traceparent } : checked));
      trace.getActiveSpan()?.setAttribute('spindle.job.id', String(job.id));
      return job;
    });
    return jobFromRow<I>(row);
  }

  /** Enqueues many jobs in one statement; all or none. Returns them in the order given. */
  async enqueueMany(specs: JobSpec[], options: { client?: Pick<pg.ClientBase, 'query'> } = {}): Promise<Job[]> {
    if (!Array.isArray(specs)) throw new ValidationError('specs', `must be an array, got ${describe(specs)}`);
    const checked = specs.map((spec, i) => {
      if (typeof spec !== 'object' || spec === null) {
        throw new ValidationError(`specs[${i}]`, `must be an object, got ${describe(spec)}`);
      }
      try {
        return {
          type: checkName('type', spec.type),
          inputJson: serializeInput(spec.input, this.#maxInputBytes),
          options: checkEnqueueOptions(spec.options),
        };
      } catch (error) {
        if (error instanceof ValidationError) {
          throw new ValidationError(`specs[${i}].${error.field}`, error.message.slice(error.field.length + 1));
        }
        throw error;
      }
    });
    if (checked.length === 0) return [];
    const db = this.#queryable(options.client);
    if (!this.#schemaChecked) await this.#checkSchema();
    const keyed = checked.some(({ options: o }) => o.key !== undefined || o.throttle !== undefined || o.debounce !== undefined);
    const rows = await withProducerSpan('spindle.enqueue_many', { 'spindle.jobs': checked.length }, (traceparent) => {
      if (traceparent) for (const spec of checked) spec.options.traceparent = traceparent;
      return sqlErrors(() => (keyed ? enqueueJobs(db, checked) : insertJobs(db, checked)));
    });
    return rows.map((row) => jobFromRow(row));
  }

  /** The job, or null when there is none with this id. */
  async get<I = unknown, O = unknown>(id: string | number): Promise<Job<I, O> | null> {
    const jobId = checkId('id', id);
    const row = await getJob(await this.#db(), jobId);
    return row ? jobFromRow<I, O>(row) : null;
  }

  /** Jobs, newest first. */
  async list(filter: ListFilter = {}): Promise<Job[]> {
    const filters = {
      state: filter.state === undefined ? undefined : checkState('filter.state', filter.state),
      type: filter.type === undefined ? undefined : checkName('filter.type', filter.type),
      queue: filter.queue === undefined ? undefined : checkName('filter.queue', filter.queue),
      limit: checkInteger('filter.limit', filter.limit, 1, 1000) ?? 50,
      after: filter.after === undefined ? undefined : checkId('filter.after', filter.after),
    };
    const rows = await listJobs(await this.#db(), filters);
    return rows.map((row) => jobFromRow(row));
  }

  /** Every registered supervisor, oldest first: where it runs, what it serves, whether it is alive. */
  async supervisors(): Promise<SupervisorInfo[]> {
    return listSupervisors(await this.#db(), DEAD_AFTER_HEARTBEATS);
  }

  /** Every attempt of a job, oldest first. */
  async attempts(id: string | number): Promise<Attempt[]> {
    const jobId = checkId('id', id);
    const rows = await listAttempts(await this.#db(), jobId);
    return rows.map(attemptFromRow);
  }

  /**
   * Cancels a job. A queued job ends at once; a running one is marked and the supervisor holding it
   * stops its thread. A job that already finished is left alone, and the result says so.
   */
  async cancel(id: string | number, reason?: string): Promise<CancelOutcome> {
    const jobId = checkId('id', id);
    const why = reason === undefined ? null : checkText('reason', reason, MAX_REASON_CHARS);
    const result = await cancelJob(await this.#db(), jobId, why);
    if (!result.found) throw new NotFoundError(`no job ${jobId}`);
    const state = result.state!;
    const changed = result.changed === true;
    const message =
      state === 'cancelled' && changed
        ? `job ${jobId} cancelled`
        : state === 'running'
          ? changed
            ? `job ${jobId} is running; its supervisor was asked to stop it`
            : `job ${jobId} is running; a cancel was already requested`
          : `job ${jobId} already ${state.replace('_', ' ')}; nothing to cancel`;
    return { id: jobId, state, changed, message };
  }

  /** Puts a failed, timed-out or cancelled job back in the queue. */
  async retry(id: string | number): Promise<Job> {
    const jobId = checkId('id', id);
    const db = await this.#db();
    const row = await sqlErrors(() => retryJob(db, jobId));
    if (row) return jobFromRow(row);
    const current = await getJob(db, jobId);
    if (!current) throw new NotFoundError(`no job ${jobId}`);
    throw new StateError(
      `job ${jobId} is ${current.state.replace('_', ' ')}; only failed, timed-out or cancelled jobs can be retried`,
    );
  }

  /**
   * Resolves with the job once it has finished (succeeded, failed, timed out or cancelled), woken by
   * LISTEN rather than polling. Rejects with TimeoutError after `timeoutMs` (default: never).
   */
  async waitFor<I = unknown, O = unknown>(id: string | number, options: { timeoutMs?: number } = {}): Promise<Job<I, O>> {
    const jobId = checkId('id', id);
    const timeoutMs = checkInteger('options.timeoutMs', options.timeoutMs, 1, 2_147_483_647);
    for await (const update of this.#follow(jobId, ['spindle_finished'], timeoutMs)) {
      if (FINAL_STATES.includes(update.state)) return update.job as Job<I, O>;
    }
    throw new NotFoundError(`no job ${jobId}`);
  }

  /**
   * Yields the job's state and progress each time they change, ending after it finishes.
   * Progress arrives as often as the supervisor writes it (every progressFlushMs).
   */
  async *watch(id: string | number, options: { timeoutMs?: number } = {}): AsyncGenerator<JobUpdate> {
    const jobId = checkId('id', id);
    const timeoutMs = checkInteger('options.timeoutMs', options.timeoutMs, 1, 2_147_483_647);
    yield* this.#follow(jobId, ['spindle_progress', 'spindle_finished', 'spindle_jobs'], timeoutMs);
  }

  async *#follow(jobId: string, channels: string[], timeoutMs: number | undefined): AsyncGenerator<JobUpdate> {
    // Payloads are comma-separated ids, or a queue name (which may concern our job: read it again).
    const deadline = timeoutMs === undefined ? Infinity : Date.now() + timeoutMs;
    const subscription = await Subscription.open(await this.#db(), {
      channels,
      relevant: (n) => n.channel === 'spindle_jobs' || (n.payload ?? '').split(',').includes(jobId),
      signal: this.#closed.signal,
      deadline,
    });
    let last = '';
    try {
      for (;;) {
        const row = await subscription.read((db) => getJob(db, jobId));
        if (!row) return;
        const job = jobFromRow(row);
        const seen = JSON.stringify([job.state, job.progress, job.progressMessage, job.progressData, job.attempt]);
        if (seen !== last) {
          last = seen;
          yield { state: job.state, progress: job.progress, message: job.progressMessage, data: job.progressData, job };
        }
        if (FINAL_STATES.includes(job.state)) return;
        const left = deadline - Date.now();
        if (left <= 0) throw new TimeoutError(`job ${jobId} did not finish within ${timeoutMs} ms`);
        await subscription.wait(Math.min(WAIT_RECHECK_MS, left));
      }
    } finally {
      await subscription.close();
    }
  }

  // ---- flow control -------------------------------------------------------------------

  /**
   * Sets limits on a job type or queue (`'resize'`, `'type:resize'`, `'queue:emails'` or
   * `{ queue: 'emails' }`), across every supervisor, over what its worker module declares; a field
   * set to null lifts the module's limit of that name. Returns the limits in force after.
   */
  async setLimits(scope: ScopeArg, limits: FlowLimitsUpdate): Promise<LimitRow> {
    const where = parseScope('scope', scope);
    const checked = checkFlowLimits('limits', limits, where.kind, true);
    if (Object.keys(checked).length === 0) throw new ValidationError('limits', 'sets nothing: give at least one limit');
    return setOperatorLimits(await this.#db(), where, checked);
  }

  /** Drops the limits set on a scope by setLimits(): its module's apply again. False when it had none. */
  async clearLimits(scope: ScopeArg): Promise<boolean> {
    return clearOperatorLimits(await this.#db(), parseScope('scope', scope));
  }

  /** Stops every supervisor claiming jobs of a type or queue (running ones finish); false when it was paused already. */
  async pause(scope: ScopeArg): Promise<boolean> {
    return setPaused(await this.#db(), parseScope('scope', scope), true);
  }

  /** Lets a paused type or queue be claimed again; false when it was not paused. */
  async resume(scope: ScopeArg): Promise<boolean> {
    return setPaused(await this.#db(), parseScope('scope', scope), false);
  }

  /** Every type and queue with limits or a pause: what is in force, running and waiting. */
  async limits(): Promise<LimitRow[]> {
    return listLimits(await this.#db());
  }

  /** Why a queued job is held back by flow control (`waiting for a slot: key customer-42 at 1/1`), or null. */
  async waitingFor(id: string | number): Promise<string | null> {
    const jobId = checkId('id', id);
    return (await waitingFor(await this.#db(), [jobId])).get(jobId) ?? null;
  }

  /** waitingFor() of many jobs at once: id -> why, for those held back. */
  async waitingForMany(ids: (string | number)[]): Promise<Map<string, string>> {
    return waitingFor(await this.#db(), ids.map((id, i) => checkId(`ids[${i}]`, id)));
  }

  // ---- workflows ----------------------------------------------------------------------

  /** Starts a workflow run; `options.id` is an idempotency key (the same id returns the first run, `created` false). */
  async startWorkflow<I = unknown>(name: string, input?: I, options: wf.StartWorkflowOptions = {}): Promise<{ run: wf.WorkflowRun<I>; created: boolean }> {
    return wf.startWorkflow(await this.#db(), name, input as I, options, this.#maxInputBytes);
  }

  /** A workflow run with its recorded steps, or null. */
  async getWorkflow(id: string): Promise<(wf.WorkflowRun & { steps: wf.WorkflowStep[] }) | null> {
    return wf.getWorkflow(await this.#db(), id);
  }

  /** Workflow runs, newest first. */
  async listWorkflows(filter: wf.WorkflowListFilter = {}): Promise<wf.WorkflowRun[]> {
    return wf.listWorkflows(await this.#db(), filter);
  }

  /** Sends an event to a run's inbox (kept until a wait takes it); NotFoundError / StateError for an unknown / finished run. */
  async sendEvent(runId: string, name: string, payload?: unknown): Promise<void> {
    return wf.sendEvent(await this.#db(), runId, name, payload ?? null, this.#maxInputBytes);
  }

  /** Cancels a run at its next step (at once when suspended); its completed steps are compensated newest first. */
  async cancelWorkflow(runId: string, reason?: string): Promise<wf.WorkflowCancelOutcome> {
    return wf.cancelWorkflow(await this.#db(), runId, reason);
  }

  /** Resolves with the run once it has ended (succeeded, failed, cancelled, compensation_failed). */
  async waitForWorkflow(id: string, options: { timeoutMs?: number } = {}): Promise<wf.WorkflowRun> {
    const timeoutMs = checkInteger('options.timeoutMs', options.timeoutMs, 1, 2_147_483_647);
    return wf.waitForWorkflow(await this.#db(), id, timeoutMs, this.#closed.signal);
  }

  /** The pool the Client uses, for callers that want to share it. */
  get pool(): pg.Pool {
    return this.#pool;
  }

  /**
   * Closes the Client's connections (not those of a pool passed in), and resolves once they have
   * closed; calling it again waits for the same close. Waits under way (waitFor, watch,
   * waitForWorkflow) reject with a StateError, and so does any call after.
   */
  close(): Promise<void> {
    if (!this.#closed.signal.aborted) this.#closed.abort(new StateError('this Client was closed while waiting'));
    if (!this.#ownsPool) return Promise.resolve();
    return (this.#closing ??= endPool(this.#pool));
  }

  /** The pool, once the database's schema has been checked. */
  async #db(): Promise<pg.Pool> {
    this.#checkOpen();
    if (!this.#schemaChecked) await this.#checkSchema();
    return this.#pool;
  }

  /** Checks the schema version once per Client; a failed check is made again by the next call. */
  #checkSchema(): Promise<void> {
    this.#schemaCheck ??= checkSchemaVersion(this.#pool).then(
      () => {
        this.#schemaChecked = true;
      },
      (error: unknown) => {
        this.#schemaCheck = undefined;
        throw error;
      },
    );
    return this.#schemaCheck;
  }

  /** After close(), a call says so, rather than pg's "Cannot use a pool after calling end on the pool". */
  #checkOpen(): void {
    if (this.#closed.signal.aborted) throw new StateError('this Client is closed: create another to go on');
  }

  #queryable(client: unknown): Queryable {
    if (client === undefined) {
      this.#checkOpen();
      return this.#pool;
    }
    if (typeof client !== 'object' || client === null || typeof (client as pg.ClientBase).query !== 'function') {
      throw new ValidationError('options.client', 'must be a pg client (with a query method)');
    }
    return client as pg.ClientBase;
  }
}

/** Turns spindle's own SQL validation errors into ValidationError, and a key clash on retry into StateError. */
async function sqlErrors<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    const e = error as { code?: string; detail?: string; message: string; constraint?: string };
    if (e.code === '22023' && e.detail?.startsWith('spindle:')) {
      const field = e.detail.slice('spindle:'.length);
      throw new ValidationError(field, e.message.slice(field.length + 1));
    }
    if (e.code === '23505' && e.constraint === 'jobs_key_idx') {
      throw new StateError('another queued or running job has the same key');
    }
    throw error;
  }
}
