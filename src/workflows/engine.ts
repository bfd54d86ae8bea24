/**
 * The replay engine: one resume of one claimed run. The body runs from the start; each `wf.*` call
 * takes the next sequence number and, when a step is recorded under it, returns the record. The
 * first call that must wait (a job, a sleep, an event) records what it waits for and suspends the
 * run: it throws an internal signal that ends the body, and the engine writes the wait. Every write
 * is fenced on the claim (lockWorkflowClaim in the same transaction), so a resume whose claim was
 * taken writes nothing.
 *
 * Guarantees: a recorded step never runs again; a job is enqueued once (its step row is written in
 * the enqueue's transaction); a step whose function was running when the process died runs again
 * (at least once, like any side effect before its record).
 */
import type pg from 'pg';
import { cancelJob, enqueueJob, getJob } from '../db/jobs.ts';
import { inTransaction } from '../db/queryable.ts';
import { beginWorkflowCompensation, blockWorkflowRun, consumeWorkflowEvent, countCompensationAttempt, finishWorkflowRun, listWorkflowSteps, lockWorkflowClaim, recordStepCompensation, releaseWorkflowRun, setWorkflowVersion, suspendWorkflowRun, writeWorkflowStep, type StepWrite, type WorkflowClaim, type WorkflowRunRow, type WorkflowStepRow, type WorkflowWait } from '../db/workflows.ts';
import {
  NonDeterminismError,
  ValidationError,
  WorkflowBoundsError,
  WorkflowJobError,
  WorkflowStepError,
} from '../errors.ts';
import { FINAL_STATES, type JobState } from '../job.ts';
import type { Logger } from '../logger.ts';
import { isDataError } from '../db/errors.ts';
import { findUnstorable, MAX_ERROR_TEXT_CHARS, storableText } from '../storable.ts';
import { checkEnqueueOptions, checkName, checkText, DEFAULT_MAX_INPUT_BYTES, serializeInput } from '../validate.ts';
import type { WorkflowModule } from './registry.ts';
import type { EventResult, StepOptions, WaitOptions, WorkflowContext, WorkflowJobOptions } from './types.ts';

/** Bounds on one run; a run that goes past one fails with WorkflowBoundsError. */
export interface WorkflowLimits {
  /** Recorded calls (steps, jobs, sleeps, events, now, random, patches) per run. */
  maxSteps: number;
  /** JSON bytes of one step's result. */
  maxStepResultBytes: number;
  /** JSON bytes of all results of a run together, and of its output. */
  maxStateBytes: number;
  /** Attempts of each compensation before the run ends `compensation_failed`. */
  compensationAttempts: number;
}

/** Default WorkflowLimits. */
export const DEFAULT_WORKFLOW_LIMITS: WorkflowLimits = {
  maxSteps: 10_000,
  maxStepResultBytes: 256 * 1024,
  maxStateBytes: 16 * 1024 * 1024,
  compensationAttempts: 3,
};

/** After a database error, the run is resumed again this much later. */
const RETRY_AFTER_INFRA_ERROR_MS = 1_000;
const COMPENSATION_BACKOFF_MS = 200;

/** How a resume ended. */
export type ResumeOutcome = 'suspended' | 'succeeded' | 'failed' | 'cancelled' | 'compensation_failed' | 'blocked' | 'lost' | 'retry';

export interface EngineDeps {
  db: pg.Pool;
  workerId: string;
  limits: WorkflowLimits;
  logger: Logger;
}

// ---- signals: thrown through the body, never seen by users unless they catch everything ----------

class WorkflowSignal extends Error {}
class Suspend extends WorkflowSignal {
  override name = 'WorkflowSuspended';
  constructor(readonly wait: WorkflowWait) {
    super('the workflow run is suspended (do not catch this)');
  }
}
class Cancel extends WorkflowSignal {
  override name = 'WorkflowCancelled';
  constructor() {
    super('the workflow run was cancelled (do not catch this)');
  }
}
class ClaimLost extends WorkflowSignal {
  override name = 'WorkflowClaimLost';
  constructor() {
    super('the claim on this workflow run was lost');
  }
}
class Fatal extends WorkflowSignal {
  override name = 'WorkflowFatal';
  constructor(readonly error: Error) {
    super(error.message);
  }
}
class Infra extends WorkflowSignal {
  override name = 'WorkflowInfrastructureError';
  constructor(readonly error: unknown) {
    super(`database error: ${String((error as Error)?.message ?? error)}`);
  }
}

interface Compensation {
  name: string;
  fn: (result: unknown) => unknown;
  result: unknown;
}

/** Resumes one claimed run with its module (undefined: none here, or `loadError` says why it cannot load). */
export async function resumeRun(
  deps: EngineDeps,
  row: WorkflowRunRow & { db_now: Date },
  module: WorkflowModule | undefined,
  loadError?: string,
): Promise<ResumeOutcome> {
  const claim: WorkflowClaim = { runId: row.id, workerId: deps.workerId, claimSeq: row.claim_seq };
  try {
    if (!module) {
      const reason = loadError ?? `no workflow module named "${row.name}" on supervisor ${deps.workerId}`;
      return (await blockWorkflowRun(deps.db, claim, reason)) ? 'blocked' : 'lost';
    }
    const version = row.version ?? module.version;
    if (version !== module.version && !module.supports.includes(version)) {
      const reason =
        `run started with version "${version}"; module ${module.path} is version "${module.version}"` +
        ` and does not list "${version}" in its supports export`;
      return (await blockWorkflowRun(deps.db, claim, reason)) ? 'blocked' : 'lost';
    }
    if (row.version === null) await setWorkflowVersion(deps.db, claim, module.version);
    const steps = await listWorkflowSteps(deps.db, row.id);
    const replay = new Replay(deps, claim, row, version, steps);
    return await replay.execute(module);
  } catch (error) {
    // A write refused for what it carried would be refused at every resume: the run fails instead.
    if (isDataError(error)) {
      const message = refusedWrite(row.id, error);
      deps.logger.error({ err: error, run: row.id }, 'workflow run failed: a write of it was refused');
      const failed = await finishWorkflowRun(deps.db, claim, { state: 'failed', outputJson: null, errorJson: JSON.stringify({ name: 'StorageError', message }) }).catch(() => false);
      if (failed) return 'failed';
    }
    // A database error outside the body: let the claim go and try again later.
    deps.logger.warn({ err: error, run: row.id }, 'workflow resume failed; it will be resumed again');
    await releaseWorkflowRun(deps.db, claim, RETRY_AFTER_INFRA_ERROR_MS).catch(() => {});
    return 'retry';
  }
}

class Replay {
  readonly #deps: EngineDeps;
  readonly #claim: WorkflowClaim;
  readonly #row: WorkflowRunRow;
  readonly #recorded = new Map<number, WorkflowStepRow>();
  readonly #compensations = new Map<number, Compensation>();
  readonly #pending = new Set<Promise<unknown>>();
  #seq = 0;
  #signal: WorkflowSignal | null = null;
  #cancelRequested: boolean;
  /** The database's clock at the claim, and the local one then: dbNow() is the database's time. */
  readonly #dbBase: number;
  readonly #localBase = Date.now();
  #stateBytes: number;
  /** An unfinished job at the point where a cancel took effect: it is cancelled too. */
  #frontierJob: string | null = null;
  readonly api: WorkflowContext;

  constructor(deps: EngineDeps, claim: WorkflowClaim, row: WorkflowRunRow & { db_now: Date }, version: string, steps: WorkflowStepRow[]) {
    this.#deps = deps;
    this.#claim = claim;
    this.#row = row;
    for (const step of steps) this.#recorded.set(step.seq, step);
    this.#cancelRequested = row.cancel_requested_at !== null || row.state === 'compensating';
    this.#dbBase = row.db_now.getTime();
    this.#stateBytes = Number(row.state_bytes);
    const self = this;
    this.api = Object.freeze({
      runId: row.id,
      name: row.name,
      version,
      step: <T>(name: string, fn: () => T | Promise<T>, options?: StepOptions<T>) => self.#track(self.#step(name, fn, options)),
      run: <O>(type: string, input?: unknown, options?: WorkflowJobOptions) => self.#track(self.#run(type, input, options)) as Promise<O>,
      sleep: (name: string, duration: number | { until: Date }) => self.#track(self.#sleep(name, duration)),
      waitForEvent: <P>(name: string, options?: WaitOptions) =>
        self.#track(self.#waitForEvent(name, options)) as Promise<EventResult<P>>,
      now: () => self.#track(self.#recordedValue('now', () => Date.now())).then((ms) => new Date(ms as number)),
      random: () => self.#track(self.#recordedValue('random', () => Math.random())) as Promise<number>,
      patched: (id: string) => self.#track(self.#patched(id)),
    });
  }

  /** Runs the body and writes how this resume ended. */
  async execute(module: WorkflowModule): Promise<ResumeOutcome> {
    let output: unknown;
    let thrown: unknown;
    let threw = false;
    try {
      output = await module.run(this.#row.input, this.api);
    } catch (error) {
      threw = true;
      thrown = error;
    }
    // Calls the body started but did not await (Promise.all with a rejection) finish their writes first.
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
    const signal = this.#signal ?? (thrown instanceof WorkflowSignal ? thrown : null);
    const { db } = this.#deps;
    const claim = this.#claim;
    if (signal instanceof ClaimLost) return 'lost';
    if (signal instanceof Infra) throw signal.error;
    if (signal instanceof Fatal) return this.#finish('failed', null, errorJson(signal.error));
    if (signal instanceof Cancel || this.#row.state === 'compensating') return this.#compensate();
    if (signal instanceof Suspend) return (await suspendWorkflowRun(db, claim, signal.wait)) ? 'suspended' : 'lost';
    if (threw) return this.#finish('failed', null, errorJson(thrown));
    const bad = findUnstorable(output, 'output');
    if (bad !== undefined) {
      const error = outputError(`the result of workflow run ${this.#row.id} cannot be stored: ${bad.path} ${bad.problem}`);
      return this.#finish('failed', null, errorJson(error));
    }
    const json = JSON.stringify(output ?? null);
    if (Buffer.byteLength(json) > this.#deps.limits.maxStateBytes) {
      const error = new WorkflowBoundsError(
        `the output of workflow run ${this.#row.id} is ${Buffer.byteLength(json)} bytes, over maxStateBytes (${this.#deps.limits.maxStateBytes})`,
      );
      return this.#finish('failed', null, errorJson(error));
    }
    return this.#finish('succeeded', json, null);
  }

  async #finish(state: 'succeeded' | 'failed' | 'cancelled' | 'compensation_failed', outputJson: string | null, errJson: string | null) {
    return (await finishWorkflowRun(this.#deps.db, this.#claim, { state, outputJson, errorJson: errJson })) ? state : 'lost';
  }

  // ---- the wf.* calls -------------------------------------------------------------------------

  async #step<T>(name: string, fn: () => T | Promise<T>, options: StepOptions<T> | undefined): Promise<T> {
    checkStepName('name', name);
    if (options?.compensate !== undefined && typeof options.compensate !== 'function') {
      throw new ValidationError('options.compensate', 'must be a function');
    }
    const { seq, rec } = this.#next('step', name);
    if (rec?.state === 'failed') throw stepError(name, rec.error);
    if (rec?.state === 'succeeded') {
      this.#remember(seq, name, rec.result, options?.compensate);
      return rec.result as T;
    }
    this.#frontier();
    // The step is recorded once its function is done: its start is taken now, or it would last 0 ms.
    const startedAt = new Date(this.#dbNow());
    let value: unknown;
    try {
      value = await fn();
    } catch (error) {
      return this.#stepFailed(seq, name, startedAt, error);
    }
    // The function ran, but what it returned cannot be recorded: the step fails, as if it had thrown.
    const bad = findUnstorable(value, 'result');
    if (bad !== undefined) {
      const error = outputError(`step "${name}" returned a value that cannot be stored: ${bad.path} ${bad.problem}`);
      return this.#stepFailed(seq, name, startedAt, error);
    }
    const json = this.#checkResult(name, value);
    const hasCompensation = !!options?.compensate;
    await this.#write({ seq, name, kind: 'step', state: 'succeeded', resultJson: json, errorJson: null, hasCompensation, startedAt });
    const result = JSON.parse(json) as T;
    this.#remember(seq, name, result, options?.compensate);
    return result;
  }

  /** Records a failed step and throws its error into the body. */
  async #stepFailed(seq: number, name: string, startedAt: Date, error: unknown): Promise<never> {
    const errJson = errorJson(error);
    await this.#write({ seq, name, kind: 'step', state: 'failed', resultJson: null, errorJson: errJson, startedAt });
    throw stepError(name, JSON.parse(errJson));
  }

  async #run(type: string, input: unknown, options: WorkflowJobOptions = {}): Promise<unknown> {
    checkName('type', type);
    const { seq, rec } = this.#next('job', type);
    if (rec?.state === 'succeeded') return rec.result;
    if (rec?.state === 'failed') throw jobError(rec);
    if (this.#cancelRequested && rec?.job_id) this.#frontierJob = String(rec.job_id);
    this.#frontier();
    let jobId = rec?.job_id == null ? null : String(rec.job_id);
    if (jobId === null) {
      const inputJson = serializeInput(input, DEFAULT_MAX_INPUT_BYTES);
      const { queue, priority, maxAttempts, timeoutMs } = options;
      const opts = checkEnqueueOptions({ queue, priority, maxAttempts, timeoutMs, key: `wf:${this.#row.id}:${seq}` });
      jobId = await this.#tx(async (db) => {
        const job = await enqueueJob(db, type, inputJson, opts);
        const id = String(job.id);
        await this.#writeOn(db, { seq, name: type, kind: 'job', state: 'waiting', resultJson: null, errorJson: null, jobId: id });
        return id;
      });
    }
    const job = await this.#guard(() => getJob(this.#deps.db, jobId!));
    const state = job?.state as JobState | undefined;
    if (job && state && !FINAL_STATES.includes(state)) throw this.#stop(new Suspend({ state: 'waiting', wakeAt: null, jobId }));
    if (job && state === 'succeeded') {
      const json = this.#checkResult(type, job.output);
      await this.#write({ seq, name: type, kind: 'job', state: 'succeeded', resultJson: json, errorJson: null, jobId });
      return JSON.parse(json);
    }
    const failure = { jobId, state: state ?? 'deleted', error: job?.error ?? { message: 'the job no longer exists' } };
    await this.#write({ seq, name: type, kind: 'job', state: 'failed', resultJson: null, errorJson: JSON.stringify(failure), jobId });
    throw new WorkflowJobError(jobId, failure.state, failure.error);
  }

  async #sleep(name: string, duration: number | { until: Date }): Promise<void> {
    checkStepName('name', name);
    let untilMs: number;
    if (typeof duration === 'number' && Number.isFinite(duration) && duration >= 0) untilMs = this.#dbNow() + duration;
    else if (typeof duration === 'object' && duration?.until instanceof Date && !Number.isNaN(duration.until.getTime())) {
      untilMs = duration.until.getTime();
    } else throw new ValidationError('duration', 'must be a number of milliseconds or { until: Date }');
    const { seq, rec } = this.#next('sleep', name);
    if (rec?.state === 'succeeded') return;
    this.#frontier();
    const until = rec?.until ?? new Date(untilMs);
    if (!rec) await this.#write({ seq, name, kind: 'sleep', state: 'waiting', resultJson: null, errorJson: null, until });
    if (this.#dbNow() >= until.getTime()) {
      await this.#write({ seq, name, kind: 'sleep', state: 'succeeded', resultJson: null, errorJson: null, until });
      return;
    }
    throw this.#stop(new Suspend({ state: 'sleeping', wakeAt: until }));
  }

  async #waitForEvent(name: string, options: WaitOptions = {}): Promise<EventResult> {
    checkStepName('name', name);
    if (options.timeoutMs !== undefined && options.until !== undefined) {
      throw new ValidationError('options', 'takes timeoutMs or until, not both');
    }
    if (options.timeoutMs !== undefined && !(Number.isFinite(options.timeoutMs) && options.timeoutMs >= 0)) {
      throw new ValidationError('options.timeoutMs', 'must be a non-negative number of milliseconds');
    }
    const { seq, rec } = this.#next('event', name);
    if (rec?.state === 'succeeded') return rec.result as EventResult;
    this.#frontier();
    const deadline =
      rec?.until ??
      (options.timeoutMs !== undefined ? new Date(this.#dbNow() + options.timeoutMs) : (options.until ?? null));
    const got = await this.#tx(async (db, dbNow) => {
      const event = await consumeWorkflowEvent(db, { runId: this.#row.id, name, seq });
      let result: EventResult | null = null;
      if (event) result = { timedOut: false, payload: event.payload };
      else if (deadline && dbNow.getTime() >= deadline.getTime()) result = { timedOut: true, payload: null };
      if (result) {
        const json = this.#checkResult(name, result);
        await this.#writeOn(db, { seq, name, kind: 'event', state: 'succeeded', resultJson: json, errorJson: null, until: deadline });
      } else if (!rec) {
        await this.#writeOn(db, { seq, name, kind: 'event', state: 'waiting', resultJson: null, errorJson: null, until: deadline });
      }
      return result;
    });
    if (got) return got;
    throw this.#stop(new Suspend({ state: 'waiting', wakeAt: deadline, event: name }));
  }

  async #recordedValue(kind: 'now' | 'random', make: () => number): Promise<number> {
    const { seq, rec } = this.#next(kind, kind);
    if (rec) return rec.result as number;
    this.#frontier();
    const value = make();
    await this.#write({ seq, name: kind, kind, state: 'succeeded', resultJson: JSON.stringify(value), errorJson: null });
    return value;
  }

  async #patched(id: string): Promise<boolean> {
    checkStepName('id', id);
    if (this.#signal) throw this.#signal;
    const rec = this.#recorded.get(this.#seq + 1);
    if (rec && !(rec.kind === 'patch' && rec.name === id)) return false; // recorded before the patch existed
    const { seq } = this.#next('patch', id);
    if (!rec) await this.#write({ seq, name: id, kind: 'patch', state: 'succeeded', resultJson: 'true', errorJson: null });
    return true;
  }

  // ---- helpers --------------------------------------------------------------------------------

  /** Takes the next sequence number; a record of another call there fails the run. */
  #next(kind: string, name: string): { seq: number; rec: WorkflowStepRow | undefined } {
    if (this.#signal) throw this.#signal;
    const seq = ++this.#seq;
    const rec = this.#recorded.get(seq);
    if (rec && (rec.kind !== kind || rec.name !== name)) {
      throw this.#stop(new Fatal(new NonDeterminismError(this.#row.id, seq, `${rec.kind} "${rec.name}"`, `${kind} "${name}"`)));
    }
    if (!rec && seq > this.#deps.limits.maxSteps) {
      throw this.#stop(
        new Fatal(new WorkflowBoundsError(`workflow run ${this.#row.id} reached maxSteps (${this.#deps.limits.maxSteps}) at ${kind} "${name}"`)),
      );
    }
    return { seq, rec };
  }

  /** At a call not recorded yet: a requested cancel takes effect here. */
  #frontier(): void {
    if (this.#cancelRequested) throw this.#stop(new Cancel());
  }

  #stop(signal: WorkflowSignal): WorkflowSignal {
    this.#signal ??= signal;
    return this.#signal;
  }

  #track<T>(promise: Promise<T>): Promise<T> {
    this.#pending.add(promise);
    const forget = () => this.#pending.delete(promise);
    promise.then(forget, forget);
    return promise;
  }

  #remember(seq: number, name: string, result: unknown, fn: ((result: never) => unknown) | undefined): void {
    if (fn) this.#compensations.set(seq, { name, fn: fn as (result: unknown) => unknown, result });
  }

  #dbNow(): number {
    return this.#dbBase + (Date.now() - this.#localBase);
  }

  /** The JSON of a result, within the bounds. */
  #checkResult(name: string, value: unknown): string {
    let json: string;
    try {
      json = JSON.stringify(value === undefined ? null : value);
    } catch (error) {
      throw new ValidationError(`the result of step "${name}"`, `must be JSON-serialisable: ${(error as Error).message}`);
    }
    const bytes = Buffer.byteLength(json);
    const { maxStepResultBytes, maxStateBytes } = this.#deps.limits;
    if (bytes > maxStepResultBytes) {
      throw this.#stop(
        new Fatal(new WorkflowBoundsError(`the result of step "${name}" is ${bytes} bytes, over maxStepResultBytes (${maxStepResultBytes})`)),
      );
    }
    if (this.#stateBytes + bytes > maxStateBytes) {
      throw this.#stop(
        new Fatal(
          new WorkflowBoundsError(
            `workflow run ${this.#row.id} would hold ${this.#stateBytes + bytes} bytes of results with step "${name}", over maxStateBytes (${maxStateBytes})`,
          ),
        ),
      );
    }
    return json;
  }

  /** Runs `body` in a transaction under the claim; a lost claim or a database error stops the run. */
  async #tx<T>(body: (db: pg.PoolClient, dbNow: Date) => Promise<T>): Promise<T> {
    try {
      return await inTransaction(this.#deps.db, async (db) => {
        const lock = await lockWorkflowClaim(db, this.#claim);
        if (!lock) throw new ClaimLost();
        // A cancel that comes now takes effect at the next call: this one's record is written.
        if (lock.cancelRequested) this.#cancelRequested = true;
        return body(db, lock.dbNow);
      });
    } catch (error) {
      if (error instanceof Fatal || error instanceof ValidationError) throw error;
      // Refused for what it carries, the write would be refused at every resume: the run fails instead.
      if (isDataError(error)) {
        throw this.#stop(new Fatal(new Error(refusedWrite(this.#row.id, error))));
      }
      throw this.#stop(error instanceof WorkflowSignal ? error : new Infra(error));
    }
  }

  async #guard<T>(read: () => Promise<T>): Promise<T> {
    try {
      return await read();
    } catch (error) {
      throw this.#stop(new Infra(error));
    }
  }

  #write(step: StepWrite): Promise<void> {
    return this.#tx((db) => this.#writeOn(db, step));
  }

  async #writeOn(db: pg.PoolClient, step: StepWrite): Promise<void> {
    this.#stateBytes = await writeWorkflowStep(db, this.#row.id, step);
  }

  // ---- cancel and compensation ----------------------------------------------------------------

  /** Writes the plan (completed steps with a compensate, newest first) and runs what is left of it. */
  async #compensate(): Promise<ResumeOutcome> {
    const { db, limits, logger } = this.#deps;
    const runId = this.#row.id;
    if (this.#frontierJob) await cancelJob(db, this.#frontierJob, 'its workflow run was cancelled').catch(() => undefined);
    let plan = this.#row.compensation_plan;
    try {
      if (!plan) {
        const newestFirst = [...this.#compensations.keys()].sort((a, b) => b - a);
        await this.#tx((c) => beginWorkflowCompensation(c, runId, newestFirst));
        plan = newestFirst;
      }
      for (const seq of plan) {
        const rec = this.#recorded.get(seq);
        if (rec?.compensation_state === 'succeeded') continue;
        const compensation = this.#compensations.get(seq);
        if (!compensation) {
          const error = new NonDeterminismError(runId, seq, `step "${rec?.name ?? '?'}" with a compensate`, 'no such step on replay');
          return this.#finish('compensation_failed', null, errorJson(error));
        }
        for (;;) {
          const attempt = await this.#tx((c) => countCompensationAttempt(c, runId, seq));
          try {
            await compensation.fn(compensation.result);
            await this.#tx((c) => recordStepCompensation(c, { runId, seq, state: 'succeeded', errorJson: null }));
            break;
          } catch (error) {
            if (error instanceof WorkflowSignal) throw error;
            logger.warn({ run: runId, step: compensation.name, attempt, err: error }, 'compensation failed');
            if (attempt >= limits.compensationAttempts) {
              const errJson = errorJson(error);
              await this.#tx((c) => recordStepCompensation(c, { runId, seq, state: 'failed', errorJson: errJson }));
              const detail = { ...(JSON.parse(errJson) as object), step: compensation.name, seq, attempts: attempt };
              return this.#finish('compensation_failed', null, JSON.stringify(detail));
            }
            await new Promise((resolve) => setTimeout(resolve, COMPENSATION_BACKOFF_MS * 2 ** (attempt - 1)));
          }
        }
      }
    } catch (error) {
      if (error instanceof ClaimLost) return 'lost';
      if (error instanceof Infra) throw error.error;
      throw error;
    }
    const reason = { name: 'Cancelled', message: this.#row.cancel_reason ?? 'cancelled', compensated: plan.length };
    return this.#finish('cancelled', null, JSON.stringify(reason));
  }
}

function checkStepName(field: string, name: unknown): void {
  checkText(field, name, 200);
}

/** Why a run fails when the database refused one of its writes for what it carried. */
function refusedWrite(runId: string, error: unknown): string {
  return `the database refused a write of workflow run ${runId}: ${storableText((error as Error).message, 1_000)}`;
}

/** The error of a value that cannot be stored (a step's result, a run's output). */
function outputError(message: string): Error {
  const error = new Error(message);
  error.name = 'OutputError';
  return error;
}

/** A JSON error record of anything thrown, its texts made storable (see storable.ts). */
function errorJson(error: unknown): string {
  if (error instanceof Error) {
    const extra: Record<string, unknown> = {};
    for (const key of ['seq', 'recorded', 'reached', 'jobId', 'state', 'step'] as const) {
      if (!(key in error)) continue;
      const value = (error as unknown as Record<string, unknown>)[key];
      // A member of the user's own error may hold anything: kept only when it can be stored.
      if (typeof value === 'string') extra[key] = storableText(value, MAX_ERROR_TEXT_CHARS);
      else if (findUnstorable(value, key) === undefined) extra[key] = value;
    }
    const text = (t: unknown) => (typeof t === 'string' ? storableText(t, MAX_ERROR_TEXT_CHARS) : undefined);
    return JSON.stringify({ name: text(error.name), message: text(error.message), stack: text(error.stack), ...extra });
  }
  return JSON.stringify({ name: 'Error', message: storableText(String(error), MAX_ERROR_TEXT_CHARS) });
}

function stepError(step: string, recorded: unknown): WorkflowStepError {
  const e = (recorded ?? {}) as { name?: string; message?: string };
  return new WorkflowStepError(step, e.message ?? 'the step failed', e.name ?? 'Error');
}

function jobError(rec: WorkflowStepRow): WorkflowJobError {
  const e = (rec.error ?? {}) as { jobId?: string; state?: string; error?: unknown };
  return new WorkflowJobError(e.jobId ?? String(rec.job_id), e.state ?? 'failed', e.error ?? null);
}
