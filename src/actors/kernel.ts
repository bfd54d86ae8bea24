/**
 * The actor kernel: the base class of every spindle actor (supervisor, heartbeat,
 * progress, reaper, listener, elector, debug server).
 *
 * An actor owns a FIFO mailbox drained one message at a time by `handle()`.
 * Messages are discriminated unions on `type`; write the handler as an exhaustive
 * switch so a new message type is a compile error until it is handled:
 *
 * ```ts
 * type ReaperMsg = { type: 'sweep' } | { type: 'count' };
 *
 * class Reaper extends Actor<ReaperMsg, { swept: number }> {
 *   private swept = 0;
 *   protected override onStart(): void {
 *     this.every(1_000, () => ({ type: 'sweep' }));
 *   }
 *   protected async handle(msg: ReaperMsg): Promise<number | void> {
 *     switch (msg.type) {
 *       case 'sweep': this.swept += await sweepExpiredLeases(); return;
 *       case 'count': return this.swept;            // the reply to `ask`
 *       default: return assertNever(msg);
 *     }
 *   }
 *   protected override inspect() { return { swept: this.swept }; }
 * }
 * ```
 *
 * Replies: the value `handle()` returns (or resolves to) is the reply to an
 * `ask`; for a `send` it is ignored. A handler that throws rejects the `ask`
 * with that error, and the actor crashes.
 *
 * Status (`snapshot().status`) is described at `ActorStatus` (snapshot.ts). A crash halts the actor
 * and its parent's policy for it applies (supervision.ts); a root actor that crashes fails.
 * Nothing the kernel does throws out of a timer or leaves a promise rejection unhandled.
 *
 * Children live for one run of their parent: spawn them in `onStart()` (or in
 * `handle()`); they are stopped and forgotten whenever the parent stops or
 * crashes, so a restarted parent spawns fresh ones from its `onStart()`.
 *
 * Its events (`ActorEvents`, snapshot.ts) are emitted on the actor and on every ancestor.
 *
 * Deadlocks to avoid: `stop()` waits for the message in progress and for a
 * start in progress, so `handle()` and `onStart()` must not await their own
 * actor's `stop()` (call `void this.stop()`), and a handler's `ask` to its own
 * actor can only time out.
 */
import { EventEmitter } from 'eventemitter3';
import { systemClock, type Clock } from '../clock.ts';
import { ActorCrashError, StateError, TimeoutError, ValidationError } from '../errors.ts';
import { noopLogger, type Logger } from '../logger.ts';
import { Mailbox, type Envelope } from './mailbox.ts';
import type { ActorEventBase, ActorEvents, ActorSnapshot, ActorStatus } from './snapshot.ts';
import { decide, supervisionFrom, type Decision, type FailReason, type SpawnOptions, type Supervision } from './supervision.ts';
import { RunTimers } from './timers.ts';

/** Options of every actor. */
export interface ActorOptions {
  /** Unique among siblings; no `/`. Shown in snapshots and events. */
  name: string;
  /** Defaults to the parent's logger, or a no-op logger for a root. */
  logger?: Logger;
  /** Defaults to the parent's clock, or the system clock for a root. */
  clock?: Clock;
}

/** Options of `ask`. */
export interface AskOptions {
  /** Required: reject with `TimeoutError` after this many milliseconds. */
  timeoutMs: number;
}

/** Ends an exhaustive `switch (msg.type)`: compiles only when every case is handled. */
export function assertNever(x: never): never {
  let shown: string;
  try {
    shown = JSON.stringify(x);
  } catch {
    shown = String(x);
  }
  throw new TypeError(`unexpected message: ${shown}`);
}

/** Any actor, whatever its messages and state (for code that holds children or walks a tree). */
export type AnyActor = Actor<{ type: string }, unknown>;

const noop = (): void => {};

/** An actor: a mailbox drained one message at a time, a lifecycle, children and a snapshot. */
export abstract class Actor<Msg extends { type: string }, State = unknown> extends EventEmitter<ActorEvents> {
  /** The actor's name, unique among its siblings. */
  readonly name: string;

  #logger: Logger | undefined;
  #clock: Clock | undefined;
  #path: string;
  #status: ActorStatus = 'idle';
  readonly #mailbox = new Mailbox<Msg>();
  #processed = 0;
  #restarts = 0;
  #lastError: { message: string; at: string } | null = null;
  #lastCrash: Error | null = null;
  #parent: AnyActor | null = null;
  #supervision: Supervision | null = null;
  #children: AnyActor[] = [];
  #childStarts: Promise<void>[] = [];
  readonly #timers = new RunTimers();
  #backoff: ReturnType<typeof setTimeout> | null = null;
  #restartTimes: number[] = [];
  #recovering: Decision | null = null;
  #draining = false;
  #idle: Promise<void> = Promise.resolve();
  #lifecycle: Promise<void> = Promise.resolve();
  #started = false;
  #abort = new AbortController();

  constructor(options: ActorOptions) {
    super();
    if (typeof options?.name !== 'string' || options.name === '' || options.name.includes('/')) {
      throw new ValidationError('options.name', 'must be a non-empty string without "/"');
    }
    this.name = options.name;
    this.#path = options.name;
    this.#logger = options.logger;
    this.#clock = options.clock;
  }

  /** Handles one message; its return value is the reply to an `ask`. Throwing crashes the actor. */
  protected abstract handle(msg: Msg): unknown;

  /** Runs on start and on each restart, before any message; spawn children and timers here. */
  protected onStart(): Promise<void> | void {}

  /** Runs when the actor halts (stop or crash) after an `onStart()` that completed; release resources here. */
  protected onStop(): Promise<void> | void {}

  /** The actor's own state for `snapshot()`; must be JSON-safe. */
  protected inspect(): State | null {
    return null;
  }

  /** The logger (the parent's unless one was given). */
  protected get logger(): Logger {
    return this.#logger ?? noopLogger;
  }

  /** The clock (the parent's unless one was given). */
  protected get clock(): Clock {
    return this.#clock ?? systemClock;
  }

  /** Aborted when this run of the actor ends (stop or crash); pass it to long waits in `handle()`. */
  protected get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** The current status. */
  get status(): ActorStatus {
    return this.#status;
  }

  /** Names from the root down, joined by `/`. */
  get path(): string {
    return this.#path;
  }

  /** Starts the actor (idempotent); rejects with the error if `onStart()` throws. */
  start(): Promise<void> {
    return this.#lifecycleOp(() => this.#doStart());
  }

  /** Stops the actor (idempotent): waits for the message in progress, drops the rest, stops the children. Never rejects. */
  stop(): Promise<void> {
    return this.#lifecycleOp(() => this.#doStop());
  }

  /** Queues a message; returns false (and counts it as dropped) if the actor is stopping, stopped or failed. */
  send(msg: Msg): boolean {
    return this.#enqueue({ msg });
  }

  /**
   * Queues a message and resolves with what `handle()` returns for it. Rejects
   * with `TimeoutError` after `timeoutMs` (the message stays queued and is still
   * handled), with `StateError` if the actor stops before handling it, or with
   * the handler's error. `R` is the caller's statement of the reply's type.
   */
  ask<R = unknown>(msg: Msg, options: AskOptions): Promise<R> {
    const timeoutMs = options?.timeoutMs;
    if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs <= 0) {
      return Promise.reject(
        new ValidationError('options.timeoutMs', 'must be a positive number of milliseconds (ask always takes a timeout)'),
      );
    }
    return new Promise<R>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new TimeoutError(`actor "${this.#path}" did not answer "${msg.type}" within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#enqueue({
        msg,
        reply: {
          resolve: (value) => {
            clearTimeout(timer);
            resolve(value as R);
          },
          reject: (error) => {
            clearTimeout(timer);
            reject(error);
          },
        },
      });
    });
  }

  /** A JSON-safe view of the actor and its children. */
  snapshot(): ActorSnapshot<State> {
    let state: State | null = null;
    try {
      state = this.inspect();
    } catch (err) {
      this.logger.warn({ actor: this.#path, err }, 'actor inspect() threw');
    }
    return {
      name: this.name,
      path: this.#path,
      status: this.#status,
      mailbox: this.#mailbox.size,
      processed: this.#processed,
      dropped: this.#mailbox.dropped,
      restarts: this.#restarts,
      lastError: this.#lastError ? { ...this.#lastError } : null,
      state,
      children: this.#children.map((child) => child.snapshot()),
    };
  }

  /**
   * Adds a supervised child and starts it (from `onStart()` the parent's start
   * waits for it). Call from `onStart()` or `handle()`; returns the child.
   */
  protected spawn<C extends AnyActor>(child: C, options: SpawnOptions): C {
    if (this.#status !== 'starting' && this.#status !== 'running') {
      throw new StateError(`actor "${this.#path}" can spawn children only from onStart() or handle() (it is ${this.#status})`);
    }
    if ((child as AnyActor) === (this as AnyActor) || child.#parent !== null) {
      throw new StateError(`actor "${child.name}" already has a parent`);
    }
    if (child.#status !== 'idle' && child.#status !== 'stopped' && child.#status !== 'failed') {
      throw new StateError(`actor "${child.name}" must not be started before it is spawned (it is ${child.#status})`);
    }
    if (this.#children.some((sibling) => sibling.name === child.name)) {
      throw new StateError(`actor "${this.#path}" already has a child named "${child.name}"`);
    }
    child.#supervision = supervisionFrom(options);
    child.#parent = this as AnyActor;
    child.#path = `${this.#path}/${child.name}`;
    child.#logger ??= this.#logger;
    child.#clock ??= this.#clock;
    this.#children.push(child);
    const started = child.#lifecycleOp(() => child.#doStart()).catch(noop);
    if (this.#status === 'starting') this.#childStarts.push(started);
    return child;
  }

  /** Sends `message()` to self every `ms`, skipping a tick while the previous one is still queued; cleared on stop and crash. Returns a cancel function. */
  protected every(ms: number, message: () => Msg): () => void {
    if (!this.#timersAllowed('every', ms)) return noop;
    return this.#timers.every(ms, (entry) => {
      let msg: Msg;
      try {
        msg = message();
      } catch (err) {
        this.#crash(toError(err));
        return;
      }
      // Set before enqueueing: the drain may take the tick (and clear the flag) synchronously; a drop clears it too.
      entry.pending = true;
      this.#enqueue({ msg, timer: entry });
    });
  }

  /** Sends `msg` to self once after `ms`; cleared on stop and crash. Returns a cancel function. */
  protected after(ms: number, msg: Msg): () => void {
    if (!this.#timersAllowed('after', ms)) return noop;
    return this.#timers.after(ms, () => this.#enqueue({ msg }));
  }

  #timersAllowed(what: string, ms: number): boolean {
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms <= 0) {
      throw new ValidationError('ms', `of ${what}() must be a positive number of milliseconds`);
    }
    if (this.#status === 'idle') {
      throw new StateError(`actor "${this.#path}" can set timers only from onStart() or handle()`);
    }
    // A handler finishing while the actor halts may still ask: its timer would be cleared at once.
    return this.#status === 'starting' || this.#status === 'running';
  }

  /** False while stopping, stopped or failed: a message sent now would be dropped. */
  protected get acceptsMessages(): boolean {
    const status = this.#status;
    return status !== 'stopping' && status !== 'stopped' && status !== 'failed';
  }

  #enqueue(envelope: Envelope<Msg>): boolean {
    if (!this.acceptsMessages) {
      this.#drop(envelope);
      return false;
    }
    this.#mailbox.put(envelope);
    this.#schedule();
    return true;
  }

  #drop(envelope: Envelope<Msg>): void {
    this.logger.debug({ actor: this.#path, type: envelope.msg.type }, 'actor dropped a message');
    this.#mailbox.drop(envelope, new StateError(`actor "${this.#path}" is ${this.#status}: message "${envelope.msg.type}" dropped`));
  }

  #dropMailbox(): void {
    for (const envelope of this.#mailbox.takeAll()) this.#drop(envelope);
  }

  #schedule(): void {
    if (this.#draining || this.#status !== 'running' || this.#mailbox.size === 0) return;
    // The flag is set before #drain runs, because a synchronous handler can finish the whole drain before it returns.
    this.#draining = true;
    this.#idle = this.#drain().catch((err: unknown) => {
      this.logger.error({ actor: this.#path, err }, 'actor mailbox loop failed');
    });
  }

  async #drain(): Promise<void> {
    try {
      while (this.#status === 'running') {
        const envelope = this.#mailbox.take();
        if (!envelope) break;
        let result: unknown;
        try {
          result = await this.handle(envelope.msg);
        } catch (raw) {
          this.#processed++;
          const error = toError(raw);
          envelope.reply?.reject(error);
          this.#crash(error);
          continue;
        }
        this.#processed++;
        envelope.reply?.resolve(result);
      }
    } finally {
      this.#draining = false;
    }
  }

  /** Serialises start, stop and recovery, so each sees the status the previous one left. */
  #lifecycleOp(op: () => Promise<void>): Promise<void> {
    const run = this.#lifecycle.then(op);
    this.#lifecycle = run.then(noop, noop);
    return run;
  }

  #background(promise: Promise<void>): void {
    promise.catch((err: unknown) => {
      this.logger.error({ actor: this.#path, err }, 'actor lifecycle step failed');
    });
  }

  async #doStart(): Promise<void> {
    const status = this.#status;
    if (status === 'starting' || status === 'running' || status === 'restarting' || this.#recovering) return;
    this.#restartTimes = [];
    await this.#boot();
    this.logger.debug({ actor: this.#path }, 'actor started');
    this.#emit('actor:start', this.#eventBase());
  }

  /** Runs onStart and waits for the children it spawned; throws if the actor did not reach `running`. */
  async #boot(): Promise<void> {
    this.#status = 'starting';
    this.#abort = new AbortController();
    try {
      await this.onStart();
    } catch (raw) {
      const error = toError(raw);
      this.#crash(error);
      throw error;
    }
    this.#started = true;
    const childStarts = this.#childStarts;
    this.#childStarts = [];
    await Promise.all(childStarts);
    // A child that escalated while we were starting has crashed us already.
    if (this.#status !== 'starting') {
      throw this.#lastCrash ?? new StateError(`actor "${this.#path}" did not start`);
    }
    this.#status = 'running';
    this.#schedule();
  }

  async #doStop(): Promise<void> {
    const status = this.#status;
    if (status === 'idle') {
      this.#dropMailbox();
      this.#status = 'stopped';
      return;
    }
    if (status === 'stopped' || (status === 'failed' && !this.#recovering)) return;
    this.#recovering = null;
    this.#status = 'stopping';
    await this.#halt(true);
    this.#status = 'stopped';
    this.logger.debug({ actor: this.#path }, 'actor stopped');
    this.#emit('actor:stop', { ...this.#eventBase(), status: 'stopped' });
  }

  /** Ends this run: timers, in-flight message, children (reverse order), onStop. */
  async #halt(dropMailbox: boolean): Promise<void> {
    this.#timers.clear();
    if (this.#backoff) {
      clearTimeout(this.#backoff);
      this.#backoff = null;
    }
    this.#abort.abort();
    if (dropMailbox) this.#dropMailbox();
    await this.#idle;
    const children = this.#children.reverse();
    this.#children = [];
    this.#childStarts = [];
    for (const child of children) {
      await child.stop();
      child.#parent = null;
      child.#supervision = null;
    }
    if (this.#started) {
      this.#started = false;
      try {
        await this.onStop();
      } catch (err) {
        this.logger.error({ actor: this.#path, err }, 'actor onStop() threw');
      }
    }
  }

  /** Records a crash and hands it to the supervision policy; does nothing more unless the actor was starting or running. */
  #crash(error: Error): void {
    this.#lastError = { message: error.message, at: new Date(this.clock.now()).toISOString() };
    this.#lastCrash = error;
    if (this.#status !== 'running' && this.#status !== 'starting') {
      this.logger.warn({ actor: this.#path, err: error, status: this.#status }, 'actor threw while halting');
      return;
    }
    this.#timers.clear();
    const decision = this.#decide();
    this.#recovering = decision;
    this.#status = decision.action === 'restart' ? 'restarting' : 'failed';
    this.logger.error({ actor: this.#path, err: error, action: decision.action }, 'actor crashed');
    this.#emit('actor:crash', { ...this.#eventBase(), error, action: decision.action });
    this.#background(this.#lifecycleOp(() => this.#recover(decision, error)));
  }

  #decide(): Decision {
    const { decision, restartTimes } = decide(this.#parent ? this.#supervision : null, this.#restartTimes, this.clock);
    this.#restartTimes = restartTimes;
    return decision;
  }

  async #recover(decision: Decision, error: Error): Promise<void> {
    // A stop() that ran first has already halted the actor.
    if (this.#recovering !== decision) return;
    this.#recovering = null;
    await this.#halt(decision.action !== 'restart');
    if (decision.action === 'restart') {
      this.#backoff = setTimeout(() => {
        this.#backoff = null;
        this.#background(this.#lifecycleOp(() => this.#restart(decision.delayMs)));
      }, decision.delayMs);
      return;
    }
    const reason: FailReason = decision.action === 'escalate' ? 'escalated' : decision.reason;
    this.logger.error({ actor: this.#path, err: error, reason }, 'actor failed');
    this.#emit('actor:fail', { ...this.#eventBase(), error, reason });
    this.#emit('actor:stop', { ...this.#eventBase(), status: 'failed' });
    const parent = this.#parent;
    if (decision.action === 'escalate' && parent) parent.#crash(new ActorCrashError(this.#path, error));
  }

  async #restart(delayMs: number): Promise<void> {
    if (this.#status !== 'restarting') return;
    this.#restarts++;
    this.#restartTimes.push(this.clock.now());
    try {
      await this.#boot();
    } catch {
      return; // crashed again: #crash has applied the policy
    }
    this.logger.info({ actor: this.#path, restarts: this.#restarts, delayMs }, 'actor restarted');
    this.#emit('actor:restart', { ...this.#eventBase(), restarts: this.#restarts, delayMs });
  }

  #eventBase(): ActorEventBase {
    return { name: this.name, path: this.#path, at: new Date(this.clock.now()).toISOString() };
  }

  /** Emits on this actor and each ancestor; a listener that throws is logged, never propagated. */
  #emit<K extends keyof ActorEvents>(event: K, payload: ActorEvents[K][0]): void {
    for (let actor: AnyActor | null = this as AnyActor; actor; actor = actor.#parent) {
      try {
        (actor.emit as (event: K, payload: ActorEvents[K][0]) => boolean).call(actor, event, payload);
      } catch (err) {
        this.logger.error({ actor: this.#path, err, event }, 'actor event listener threw');
      }
    }
  }
}

function toError(value: unknown): Error {
  if (value instanceof Error) return value;
  let message: string;
  try {
    message = typeof value === 'string' ? value : JSON.stringify(value);
  } catch {
    message = String(value);
  }
  return new Error(message);
}
