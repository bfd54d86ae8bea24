/**
 * The replay of one resume: the body runs from the start; each `wf.*` call is told by its kind, its
 * name and how many calls of that kind and name the body made before it (the second `step "fetch"`),
 * so branches that run side by side find their own records whatever order they call in. A recorded
 * call returns its record, in the order the body first saw the calls end (replay-gate.ts); a call
 * not recorded yet takes the next sequence number, does its work and records it. The first call that
 * must wait (a job, a sleep, an event) records what it waits for and stops the body with a signal
 * (signals.ts). Every write is fenced on the claim (in its statement, or lockWorkflowClaim in its
 * transaction), so a resume whose claim was taken writes nothing.
 */
import type { Span } from '@opentelemetry/api';
import type pg from 'pg';
import { enqueueJob, getJob } from '../db/jobs.ts';
import { endSpan, startStepSpan, traceparentOf } from '../tracing.ts';
import { inTransaction } from '../db/queryable.ts';
import { consumeWorkflowEvent, lockWorkflowClaim, writeWorkflowStepsFenced, type StepWrite, type WorkflowClaim, type WorkflowRunRow, type WorkflowStepRow } from '../db/workflows.ts';
import { backoffDelay, type BackoffOptions } from '../backoff.ts';
import { NonDeterminismError, TimeoutError, ValidationError, WorkflowBoundsError, WorkflowJobError } from '../errors.ts';
import { FINAL_STATES, type JobState } from '../job.ts';
import { isDataError } from '../db/errors.ts';
import { findUnstorable } from '../storable.ts';
import { checkEnqueueOptions, checkName, checkText, DEFAULT_MAX_INPUT_BYTES, serializeInput } from '../validate.ts';
import type { Logger } from '../logger.ts';
import type { WorkflowLimits } from './limits.ts';
import { ReplayGate } from './replay-gate.ts';
import type { StepWriter } from './step-writer.ts';
import { Cancel, ClaimLost, errorJson, Fatal, Infra, jobError, outputError, refusedWrite, stepError, Suspend, WorkflowSignal } from './signals.ts';
import type { EventResult, StepOptions, WaitOptions, WorkflowContext, WorkflowJobOptions } from './types.ts';

/** A completed step's compensate, with the result it is called with. */
export interface Compensation {
  name: string;
  fn: (result: unknown) => unknown;
  result: unknown;
  /** When it fails for good, the compensations of the steps before it still run. */
  continueOnError: boolean;
}

/** What a resume's calls use of their supervisor. */
export interface ReplayDeps {
  db: pg.Pool;
  /** Writes steps, grouped with other runs' (one per supervisor). */
  stepWriter: StepWriter;
  limits: WorkflowLimits;
  logger: Logger;
}

/**
 * The calls of one resume of a run: each `wf.*` call returns what is recorded for it, or does its
 * work and records it, fenced on the claim.
 */
export class Replay {
  readonly #db: pg.Pool;
  readonly #stepWriter: StepWriter;
  /** This resume's span (tracing.ts): steps run now are its children, child jobs continue it. */
  readonly #span: Span;
  readonly #logger: Logger;
  /** The version of the module the run is recorded with (its first write records it). */
  readonly #version: string;
  readonly #limits: WorkflowLimits;
  readonly #claim: WorkflowClaim;
  readonly #row: WorkflowRunRow;
  readonly #recorded = new Map<number, WorkflowStepRow>();
  /** The records of each call (callKey), in the order the body made the calls. */
  readonly #recordedByCall = new Map<string, WorkflowStepRow[]>();
  /** Calls made so far in this resume, by callKey. */
  readonly #made = new Map<string, number>();
  /** Calls made so far that have a record. */
  #matched = 0;
  readonly #gate: ReplayGate;
  readonly #compensations = new Map<number, Compensation>();
  readonly #pending = new Set<Promise<unknown>>();
  /** Since when no wf.* call is in progress; null while one is. */
  #idleSince: number | null = Date.now();
  readonly #idle = rejectable();
  /** The highest sequence number taken: a new call takes the next. */
  #seq = 0;
  /** The highest done_seq given: the next call to end takes the next. */
  #done = 0;
  /** The ends written so far, in order: the body sees each after the one before (see #ending). */
  #endings: Promise<unknown> = Promise.resolve();
  #signal: WorkflowSignal | null = null;
  #cancelRequested: boolean;
  /** The database's clock at the claim, and the local one then: dbNow() is the database's time. */
  readonly #dbBase: number;
  readonly #localBase = Date.now();
  #stateBytes: number;
  /** The unfinished jobs at the points where a cancel took effect: they are cancelled too. */
  #frontierJobs: string[] = [];
  readonly api: WorkflowContext;

  constructor(
    deps: ReplayDeps,
    claim: WorkflowClaim,
    row: WorkflowRunRow & { db_now: Date },
    version: string,
    steps: WorkflowStepRow[],
    span: Span,
  ) {
    this.#span = span;
    this.#logger = deps.logger;
    this.#version = version;
    this.#db = deps.db;
    this.#stepWriter = deps.stepWriter;
    this.#limits = deps.limits;
    this.#claim = claim;
    this.#row = row;
    const ended: WorkflowStepRow[] = [];
    for (const step of steps) {
      this.#recorded.set(step.seq, step);
      const key = callKey(step.kind, step.name);
      const calls = this.#recordedByCall.get(key);
      if (calls) calls.push(step);
      else this.#recordedByCall.set(key, [step]);
      if (step.state !== 'waiting') ended.push(step);
      this.#seq = Math.max(this.#seq, step.seq);
      this.#done = Math.max(this.#done, step.done_seq ?? 0);
    }
    // Rows written before done_seq existed ended before every row that has one; among themselves they
    // are in the order of their calls, which for the sequential bodies that wrote them is the same.
    ended.sort((a, b) => (a.done_seq ?? 0) - (b.done_seq ?? 0) || a.seq - b.seq);
    this.#gate = new ReplayGate(
      ended.map((step) => ({ seq: step.seq, label: callLabel(step.kind, step.name) })),
      (due, reached) => this.#stop(new Fatal(new NonDeterminismError(row.id, due.seq, due.label, reached ?? 'no further call'))),
    );
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

  /**
   * After the body returned or threw: waits for the calls it started but did not await (Promise.all
   * with a rejection, the losers of a race), so their writes are done; for at most `maxIdleMs`, so a
   * call that never settles does not hold the run. Returns how many it gave up on.
   */
  async settle(): Promise<number> {
    this.#gate.bodySettled();
    const deadline = Date.now() + this.#limits.maxIdleMs;
    while (this.#pending.size > 0) {
      const left = deadline - Date.now();
      if (left <= 0) return this.#pending.size;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const bound = new Promise<void>((resolve) => (timer = setTimeout(resolve, left)));
      await Promise.race([Promise.allSettled([...this.#pending]), bound]);
      clearTimeout(timer);
    }
    return 0;
  }

  /**
   * The claim may be taken back (no heartbeat reached the database for a lease): the body's next
   * `wf.*` call throws, so no new step starts here while another supervisor may run it, and the
   * resume ends without waiting for what is under way (its writes are fenced).
   */
  lose(): void {
    this.#stop(new ClaimLost());
    this.#idle.reject(this.#signal);
  }

  /** The signal that stopped the body, if one did (the body may have caught it). */
  get stopped(): WorkflowSignal | null {
    return this.#signal;
  }

  /** The unfinished jobs at the points where a cancel took effect: they are cancelled too. */
  get frontierJobs(): readonly string[] {
    return this.#frontierJobs;
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
    const attempts = checkStepOptions(options);
    const { seq, rec } = await this.#next('step', name);
    if (rec?.state === 'failed') throw stepError(name, rec.error);
    if (rec?.state === 'succeeded') {
      this.#remember(seq, name, rec.result, options as StepOptions<never> | undefined);
      return rec.result as T;
    }
    this.#frontier();
    // The step is recorded once its function is done: its start is taken now, or it would last 0 ms.
    const startedAt = new Date(this.#dbNow());
    let value: unknown;
    const span = startStepSpan(this.#span, name);
    for (let attempt = 1; ; attempt++) {
      try {
        value = await attemptStep(name, this.#timed(name, fn), options?.timeoutMs);
        span.setAttribute('spindle.step.attempts', attempt);
        endSpan(span);
        break;
      } catch (error) {
        if (attempt >= attempts.max) {
          span.setAttribute('spindle.step.attempts', attempt);
          endSpan(span, error);
          return this.#stepFailed(seq, name, startedAt, error, attempt);
        }
        await new Promise((resolve) => setTimeout(resolve, backoffDelay(attempt, attempts.backoff)));
        if (this.#signal) {
          endSpan(span, this.#signal);
          throw this.#signal;
        }
      }
    }
    // The function ran, but what it returned cannot be recorded: the step fails, as if it had thrown.
    const bad = findUnstorable(value, 'result');
    if (bad !== undefined) {
      const error = outputError(`step "${name}" returned a value that cannot be stored: ${bad.path} ${bad.problem}`);
      return this.#stepFailed(seq, name, startedAt, error);
    }
    const json = this.#checkResult(name, value);
    const hasCompensation = !!options?.compensate;
    await this.#ending((doneSeq) =>
      this.#write({ seq, name, kind: 'step', state: 'succeeded', resultJson: json, errorJson: null, hasCompensation, startedAt, doneSeq }),
    );
    const result = JSON.parse(json) as T;
    this.#remember(seq, name, result, options as StepOptions<never> | undefined);
    return result;
  }

  /**
   * `fn`, timed: a step whose function holds the event loop past BLOCKING_WARN_MS is warned of, since
   * the supervisor's heartbeats, claims and other runs wait meanwhile.
   */
  #timed<T>(name: string, fn: () => T | Promise<T>): () => T | Promise<T> {
    return () => {
      const began = performance.now();
      try {
        return fn();
      } finally {
        const blockedMs = Math.round(performance.now() - began);
        if (blockedMs >= BLOCKING_WARN_MS) {
          this.#logger.warn(
            { run: this.#row.id, step: name, blockedMs },
            `step "${name}" held the event loop for ${blockedMs} ms: the supervisor's heartbeats and claims waited; CPU work belongs in wf.run, on a thread`,
          );
        }
      }
    };
  }

  /** Records a failed step (with how many times its function ran) and throws its error into the body. */
  async #stepFailed(seq: number, name: string, startedAt: Date, error: unknown, attempts = 1): Promise<never> {
    const errJson = attempts === 1 ? errorJson(error) : JSON.stringify({ ...(JSON.parse(errorJson(error)) as object), attempts });
    await this.#ending((doneSeq) => this.#write({ seq, name, kind: 'step', state: 'failed', resultJson: null, errorJson: errJson, startedAt, doneSeq }));
    throw stepError(name, JSON.parse(errJson));
  }

  async #run(type: string, input: unknown, options: WorkflowJobOptions = {}): Promise<unknown> {
    checkName('type', type);
    const { seq, rec } = await this.#next('job', type);
    if (rec?.state === 'succeeded') return rec.result;
    if (rec?.state === 'failed') throw jobError(rec);
    if (this.#cancelRequested && rec?.job_id) this.#frontierJobs.push(String(rec.job_id));
    this.#frontier();
    let jobId = rec?.job_id == null ? null : String(rec.job_id);
    if (jobId === null) {
      const inputJson = serializeInput(input, DEFAULT_MAX_INPUT_BYTES);
      const { queue, priority, maxAttempts, timeoutMs } = options;
      const opts = checkEnqueueOptions({ queue, priority, maxAttempts, timeoutMs, key: `wf:${this.#row.id}:${seq}` });
      // The child job's attempts continue this resume's trace.
      const traceparent = traceparentOf(this.#span);
      if (traceparent) opts.traceparent = traceparent;
      this.#span.addEvent('job enqueued', { 'spindle.job.type': type });
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
      await this.#ending((doneSeq) => this.#write({ seq, name: type, kind: 'job', state: 'succeeded', resultJson: json, errorJson: null, jobId, doneSeq }));
      return JSON.parse(json);
    }
    const failure = { jobId, state: state ?? 'deleted', error: job?.error ?? { message: 'the job no longer exists' } };
    const failureJson = JSON.stringify(failure);
    await this.#ending((doneSeq) => this.#write({ seq, name: type, kind: 'job', state: 'failed', resultJson: null, errorJson: failureJson, jobId, doneSeq }));
    throw new WorkflowJobError(jobId, failure.state, failure.error);
  }

  async #sleep(name: string, duration: number | { until: Date }): Promise<void> {
    checkStepName('name', name);
    let untilMs: number;
    if (typeof duration === 'number' && Number.isFinite(duration) && duration >= 0) untilMs = this.#dbNow() + duration;
    else if (typeof duration === 'object' && duration?.until instanceof Date && !Number.isNaN(duration.until.getTime())) {
      untilMs = duration.until.getTime();
    } else throw new ValidationError('duration', 'must be a number of milliseconds or { until: Date }');
    const { seq, rec } = await this.#next('sleep', name);
    if (rec?.state === 'succeeded') return;
    this.#frontier();
    const until = rec?.until ?? new Date(untilMs);
    if (!rec) await this.#write({ seq, name, kind: 'sleep', state: 'waiting', resultJson: null, errorJson: null, until });
    if (this.#dbNow() >= until.getTime()) {
      await this.#ending((doneSeq) => this.#write({ seq, name, kind: 'sleep', state: 'succeeded', resultJson: null, errorJson: null, until, doneSeq }));
      return;
    }
    this.#span.addEvent('sleep', { 'spindle.step': name, 'spindle.until': until.toISOString() });
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
    const { seq, rec } = await this.#next('event', name);
    if (rec?.state === 'succeeded') return rec.result as EventResult;
    this.#frontier();
    const deadline =
      rec?.until ??
      (options.timeoutMs !== undefined ? new Date(this.#dbNow() + options.timeoutMs) : (options.until ?? null));
    const got = await this.#ending((doneSeq) => this.inClaim(async (db, dbNow) => {
      const event = await consumeWorkflowEvent(db, { runId: this.#row.id, name, seq });
      let result: EventResult | null = null;
      if (event) result = { timedOut: false, payload: event.payload };
      else if (deadline && dbNow.getTime() >= deadline.getTime()) result = { timedOut: true, payload: null };
      if (result) {
        const json = this.#checkResult(name, result);
        await this.#writeOn(db, { seq, name, kind: 'event', state: 'succeeded', resultJson: json, errorJson: null, until: deadline, doneSeq });
      } else if (!rec) {
        await this.#writeOn(db, { seq, name, kind: 'event', state: 'waiting', resultJson: null, errorJson: null, until: deadline });
      }
      return result;
    }));
    if (got) return got;
    this.#span.addEvent('wait for event', { 'spindle.event': name });
    throw this.#stop(new Suspend({ state: 'waiting', wakeAt: deadline, event: name }));
  }

  async #recordedValue(kind: 'now' | 'random', make: () => number): Promise<number> {
    const { seq, rec } = await this.#next(kind, kind);
    if (rec) return rec.result as number;
    this.#frontier();
    const value = make();
    await this.#ending((doneSeq) => this.#write({ seq, name: kind, kind, state: 'succeeded', resultJson: JSON.stringify(value), errorJson: null, doneSeq }));
    return value;
  }

  async #patched(id: string): Promise<boolean> {
    checkStepName('id', id);
    if (this.#signal) throw this.#signal;
    const key = callKey('patch', id);
    const rec = this.#recordedByCall.get(key)?.[this.#made.get(key) ?? 0];
    // Unreached records and none of this patch: the run went past this point before the patch existed.
    if (!rec && this.#matched < this.#recorded.size) return false;
    const { seq } = await this.#next('patch', id);
    if (!rec) {
      await this.#ending((doneSeq) => this.#write({ seq, name: id, kind: 'patch', state: 'succeeded', resultJson: 'true', errorJson: null, doneSeq }));
    }
    return true;
  }

  // ---- helpers --------------------------------------------------------------------------------

  /**
   * The record of this call, when its turn comes (replay-gate.ts); or, for a call not recorded yet,
   * the next sequence number once every recorded result has been handed back.
   */
  async #next(kind: string, name: string): Promise<{ seq: number; rec: WorkflowStepRow | undefined }> {
    if (this.#signal) throw this.#signal;
    const key = callKey(kind, name);
    const made = this.#made.get(key) ?? 0;
    this.#made.set(key, made + 1);
    const rec = this.#recordedByCall.get(key)?.[made];
    if (rec) this.#matched += 1;
    if (!this.#gate.open) {
      const label = callLabel(kind, name);
      await (rec && rec.state !== 'waiting' ? this.#gate.turn(rec.seq, label) : this.#gate.pass(label));
      if (this.#signal) throw this.#signal;
    }
    if (rec) return { seq: rec.seq, rec };
    const seq = ++this.#seq;
    if (seq > this.#limits.maxSteps) {
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
    this.#gate.fail(this.#signal);
    return this.#signal;
  }

  /**
   * Writes how a call ended, as `write(doneSeq)`. The body sees the ends in the order of their
   * done_seq, each after it has reacted to the one before (a macrotask), as a replay hands them back:
   * so the interleaving of concurrent branches is the same in both.
   */
  #ending<T>(write: (doneSeq: number) => Promise<T>): Promise<T> {
    const written = write(++this.#done);
    // Handled at its turn; until then its failure must not count as an unhandled rejection.
    written.catch(() => {});
    const inOrder = this.#endings.then(() => written);
    const reacted = () => new Promise<void>((resolve) => setImmediate(resolve));
    this.#endings = inOrder.then(reacted, reacted);
    return inOrder;
  }

  #track<T>(promise: Promise<T>): Promise<T> {
    this.#pending.add(promise);
    this.#idleSince = null;
    const forget = () => {
      this.#pending.delete(promise);
      if (this.#pending.size === 0) this.#idleSince = Date.now();
    };
    promise.then(forget, forget);
    return promise;
  }

  /**
   * Fails the run, through the body, once it has waited `maxIdleMs` with no `wf.*` call in progress:
   * it awaits something no record could ever resume. Call `stop()` once the body has settled.
   */
  watchIdle(): { stop(): void } {
    const limit = this.#limits.maxIdleMs;
    const timer = setInterval(() => {
      if (this.#idleSince === null || Date.now() - this.#idleSince < limit) return;
      clearInterval(timer);
      this.#stop(
        new Fatal(
          new WorkflowBoundsError(
            `workflow run ${this.#row.id} waited ${limit} ms (maxIdleMs) on something that is not a wf.* call: ` +
              'a workflow body may wait only on wf.* calls (I/O and timers belong in a step)',
          ),
        ),
      );
      this.#idle.reject(this.#signal);
    }, Math.min(1_000, Math.max(10, limit / 4)));
    timer.unref();
    return { stop: () => clearInterval(timer) };
  }

  /** Rejects when watchIdle() gives up on the body. */
  get idleGaveUp(): Promise<never> {
    return this.#idle.promise;
  }

  #remember(seq: number, name: string, result: unknown, options: StepOptions<never> | undefined): void {
    const fn = options?.compensate;
    if (!fn) return;
    this.#compensations.set(seq, { name, fn: fn as (result: unknown) => unknown, result, continueOnError: options.continueOnError === true });
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
      throw this.#writeFailed(error);
    }
  }

  /** What stops the run when a write under the claim failed with `error`. */
  #writeFailed(error: unknown): unknown {
    if (error instanceof Fatal || error instanceof ValidationError) return error;
    // Refused for what it carries, the write would be refused at every resume: the run fails instead.
    if (isDataError(error)) return this.#stop(new Fatal(new Error(refusedWrite(this.#row.id, error))));
    return this.#stop(error instanceof WorkflowSignal ? error : new Infra(error));
  }

  async #guard<T>(read: () => Promise<T>): Promise<T> {
    try {
      return await read();
    } catch (error) {
      throw this.#stop(new Infra(error));
    }
  }

  /** Writes a step under the claim (the supervisor's StepWriter groups it with other runs' writes). */
  async #write(step: StepWrite): Promise<void> {
    let written;
    try {
      written = await this.#stepWriter.write({ claim: this.#claim, version: this.#version, step });
    } catch (error) {
      throw this.#writeFailed(error);
    }
    if (!written) throw this.#stop(new ClaimLost());
    // A cancel that comes now takes effect at the next call: this one's record is written.
    if (written.cancelRequested) this.#cancelRequested = true;
    this.#stateBytes = written.stateBytes;
  }

  /** Writes a step in the transaction of inClaim(), which holds the claim's lock. */
  async #writeOn(db: pg.PoolClient, step: StepWrite): Promise<void> {
    const written = (await writeWorkflowStepsFenced(db, [{ claim: this.#claim, version: this.#version, step }])).get(this.#claim.runId);
    if (!written) throw new ClaimLost();
    this.#stateBytes = written.stateBytes;
  }
}

function checkStepName(field: string, name: unknown): void {
  checkText(field, name, 200);
}

/** How a call is told from the others of its run, with how many of it came before. */
function callKey(kind: string, name: string): string {
  return `${kind}\u0000${name}`;
}

/** How a call reads in an error: `step "charge"`. */
function callLabel(kind: string, name: string): string {
  return `${kind} "${name}"`;
}

/** A step function that holds the event loop this long (ms) at once is warned of. */
const BLOCKING_WARN_MS = 1_000;
/** The default wait between the attempts of a step with `retry`. */
const STEP_BACKOFF: BackoffOptions = { baseMs: 1_000, maxMs: 60_000 };
/** The longest a timer can wait (setTimeout fires at once past it). */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** The most attempts a step may ask for. */
const MAX_STEP_ATTEMPTS = 100;

/** A step's attempts and backoff from its options, its timeoutMs checked too (each bad field named). */
function checkStepOptions(options: Pick<StepOptions<unknown>, 'retry' | 'timeoutMs'> | undefined): { max: number; backoff: BackoffOptions } {
  const retry = options?.retry;
  if (options?.timeoutMs !== undefined && !(Number.isInteger(options.timeoutMs) && options.timeoutMs > 0 && options.timeoutMs <= MAX_TIMER_MS)) {
    throw new ValidationError('options.timeoutMs', `must be an integer of milliseconds from 1 to ${MAX_TIMER_MS}, got ${String(options.timeoutMs)}`);
  }
  if (retry === undefined) return { max: 1, backoff: STEP_BACKOFF };
  const max = retry?.maxAttempts;
  if (!(Number.isInteger(max) && max >= 1 && max <= MAX_STEP_ATTEMPTS)) {
    throw new ValidationError('options.retry.maxAttempts', `must be an integer from 1 to ${MAX_STEP_ATTEMPTS}, got ${String(max)}`);
  }
  const backoff = retry.backoff ?? STEP_BACKOFF;
  for (const field of ['baseMs', 'maxMs'] as const) {
    const value = backoff[field];
    if (!(Number.isInteger(value) && value >= 0 && value <= MAX_TIMER_MS)) {
      throw new ValidationError(`options.retry.backoff.${field}`, `must be an integer of milliseconds from 0 to ${MAX_TIMER_MS}, got ${String(value)}`);
    }
  }
  return { max, backoff };
}

/** One run of a step's function, failed with a TimeoutError past `timeoutMs` (the function goes on, unheard). */
async function attemptStep<T>(name: string, fn: () => T | Promise<T>, timeoutMs: number | undefined): Promise<T> {
  if (timeoutMs === undefined) return fn();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`step "${name}" took longer than its timeoutMs (${timeoutMs} ms)`)), timeoutMs);
  });
  try {
    return await Promise.race([Promise.resolve().then(fn), timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/** A promise to reject later; never resolves, and an unheard rejection is not an error. */
function rejectable(): { promise: Promise<never>; reject(error: unknown): void } {
  let reject!: (error: unknown) => void;
  const promise = new Promise<never>((_, no) => (reject = no));
  promise.catch(() => {});
  return { promise, reject };
}
