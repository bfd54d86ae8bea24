/**
 * The replay of one resume: the body runs from the start; each `wf.*` call takes the next sequence
 * number and, when a step is recorded under it, returns the record. The first call that must wait (a
 * job, a sleep, an event) records what it waits for and stops the body with a signal (signals.ts).
 * Every write is fenced on the claim (lockWorkflowClaim in the same transaction), so a resume whose
 * claim was taken writes nothing.
 */
import type pg from 'pg';
import { enqueueJob, getJob } from '../db/jobs.ts';
import { inTransaction } from '../db/queryable.ts';
import { consumeWorkflowEvent, lockWorkflowClaim, writeWorkflowStep, type StepWrite, type WorkflowClaim, type WorkflowRunRow, type WorkflowStepRow } from '../db/workflows.ts';
import { NonDeterminismError, ValidationError, WorkflowBoundsError, WorkflowJobError } from '../errors.ts';
import { FINAL_STATES, type JobState } from '../job.ts';
import { isDataError } from '../db/errors.ts';
import { findUnstorable } from '../storable.ts';
import { checkEnqueueOptions, checkName, checkText, DEFAULT_MAX_INPUT_BYTES, serializeInput } from '../validate.ts';
import type { WorkflowLimits } from './limits.ts';
import { Cancel, ClaimLost, errorJson, Fatal, Infra, jobError, outputError, refusedWrite, stepError, Suspend, WorkflowSignal } from './signals.ts';
import type { EventResult, StepOptions, WaitOptions, WorkflowContext, WorkflowJobOptions } from './types.ts';

/** A completed step's compensate, with the result it is called with. */
export interface Compensation {
  name: string;
  fn: (result: unknown) => unknown;
  result: unknown;
}

/**
 * The calls of one resume of a run: each `wf.*` call takes the next sequence number and returns what
 * is recorded under it, or does its work and records it, fenced on the claim.
 */
export class Replay {
  readonly #db: pg.Pool;
  readonly #limits: WorkflowLimits;
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

  constructor(
    db: pg.Pool,
    limits: WorkflowLimits,
    claim: WorkflowClaim,
    row: WorkflowRunRow & { db_now: Date },
    version: string,
    steps: WorkflowStepRow[],
  ) {
    this.#db = db;
    this.#limits = limits;
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

  /** Waits for the calls the body started but did not await (Promise.all with a rejection), so their writes are done. */
  async settle(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }

  /** The signal that stopped the body, if one did (the body may have caught it). */
  get stopped(): WorkflowSignal | null {
    return this.#signal;
  }

  /** An unfinished job at the point where a cancel took effect: it is cancelled too. */
  get frontierJob(): string | null {
    return this.#frontierJob;
  }

  /** The record under `seq`, as it was when the resume began. */
  recorded(seq: number): WorkflowStepRow | undefined {
    return this.#recorded.get(seq);
  }

  /** The completed steps of this replay that have a compensate, newest first. */
  compensable(): number[] {
    return [...this.#compensations.keys()].sort((a, b) => b - a);
  }

  /** The compensate of the step under `seq`, with its result; undefined when the replay did not reach one there. */
  compensation(seq: number): Compensation | undefined {
    return this.#compensations.get(seq);
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
      jobId = await this.inClaim(async (db) => {
        const job = await enqueueJob(db, type, inputJson, opts);
        const id = String(job.id);
        await this.#writeOn(db, { seq, name: type, kind: 'job', state: 'waiting', resultJson: null, errorJson: null, jobId: id });
        return id;
      });
    }
    const job = await this.#guard(() => getJob(this.#db, jobId!));
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
    const got = await this.inClaim(async (db, dbNow) => {
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
    if (!rec && seq > this.#limits.maxSteps) {
      throw this.#stop(
        new Fatal(new WorkflowBoundsError(`workflow run ${this.#row.id} reached maxSteps (${this.#limits.maxSteps}) at ${kind} "${name}"`)),
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
    const { maxStepResultBytes, maxStateBytes } = this.#limits;
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
  async inClaim<T>(body: (db: pg.PoolClient, dbNow: Date) => Promise<T>): Promise<T> {
    try {
      return await inTransaction(this.#db, async (db) => {
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
    return this.inClaim((db) => this.#writeOn(db, step));
  }

  async #writeOn(db: pg.PoolClient, step: StepWrite): Promise<void> {
    this.#stateBytes = await writeWorkflowStep(db, this.#row.id, step);
  }
}

function checkStepName(field: string, name: unknown): void {
  checkText(field, name, 200);
}
