/** A job a supervisor holds, as the supervisor and the pool see it. */
import type { Span } from '@opentelemetry/api';
import type { EventEmitter } from 'eventemitter3';
import type { ClaimedJob } from '../db/claims.ts';
import type { Finish } from '../db/outcomes.ts';
import type { RunOptions, RunningJob } from '../pool/pool.ts';
import type { Outcome } from '../pool/running-job.ts';
import type { AbortReason } from '../pool/protocol.ts';
import type { WorkerModuleInfo } from '../pool/registry.ts';
import { loggerWith, type HasLog, type Logger } from '../logger.ts';
import type { InFlightView, RuntimeEvents } from '../runtime-events.ts';
import { startAttemptSpan, traceFields, traceparentOf } from '../tracing.ts';
import type { CompensatedJob } from './compensator.ts';

/** Bound on the log lines kept per attempt (the oldest are dropped). */
const MAX_LOG_BYTES = 64 * 1024;

/** What an InFlight job reports to, besides itself. */
export interface InFlightHost {
  readonly events: EventEmitter<RuntimeEvents>;
  readonly supervisorId: string;
  readonly logger: Logger;
  /** The supervisor's clock, in ms since the epoch. */
  now(): number;
  reportProgress(job: InFlight): void;
}

/**
 * A job this supervisor holds: claimed, waiting for a thread or running. It is also the pool's
 * RunOptions for the job: the thread's reports arrive as its methods, so that no closures are made
 * for each job on the supervisor's main thread.
 */
export class InFlight implements RunOptions, HasLog {
  readonly id: string;
  readonly type: string;
  readonly attempt: number;
  readonly maxAttempts: number;
  readonly input: unknown;
  readonly info: WorkerModuleInfo;
  /** The job's timeout, from its thread's start; undefined: none. */
  readonly timeoutMs: number | undefined;
  /** Its module's heap limit: the pool runs it in a small pool kept for that limit. */
  readonly maxMemoryMb: number | undefined;
  /** Why its module cannot load: the pool fails it at once with this, on no thread. */
  readonly loadError: string | undefined;
  running!: RunningJob;
  readonly claimedAt: number;
  deadlineAt: number | null = null;
  threadId: number | null = null;
  startedAt: number | null = null;
  percent: number | null = null;
  message: string | null = null;
  data: unknown = null;
  logs = '';
  /** Why we stopped it, if we did. */
  abortedFor: AbortReason | null = null;
  cancelReason: string | null = null;
  /** A cancel was requested for this attempt, perhaps after it had begun to stop for another reason. */
  cancelRequested = false;
  /** Claimed under a flow-control limit: its outcome wakes every supervisor, as it frees a slot. */
  wakesOthers = false;
  /** The attempt's consumer span (a no-op without an OpenTelemetry SDK), ended with its outcome. */
  readonly span: Span;
  /** The span's W3C trace context: the handler's `ctx.traceparent`. */
  readonly traceparent: string | undefined;
  readonly #host: InFlightHost;
  #log: Logger | undefined;

  constructor(row: ClaimedJob, info: WorkerModuleInfo, timeoutMs: number | undefined, host: InFlightHost) {
    this.id = String(row.id);
    this.type = row.type;
    this.attempt = row.attempt;
    this.maxAttempts = row.max_attempts;
    this.input = row.input;
    this.info = info;
    this.timeoutMs = timeoutMs;
    this.maxMemoryMb = info.options.maxMemoryMb;
    this.loadError = info.loadError;
    this.#host = host;
    this.claimedAt = host.now();
    this.span = startAttemptSpan(row.type, row.trace_context, {
      'spindle.job.id': this.id,
      'spindle.job.type': row.type,
      'spindle.job.queue': row.queue,
      'spindle.job.attempt': row.attempt,
      'spindle.supervisor': host.supervisorId,
      'spindle.queue_wait_ms': row.wait_ms,
    });
    this.traceparent = traceparentOf(this.span);
  }

  onStart(threadId: number): void {
    this.threadId = threadId;
    this.startedAt = this.#host.now();
    if (this.timeoutMs !== undefined) this.deadlineAt = this.startedAt + this.timeoutMs;
    const thread = this.running.thread!;
    this.span.addEvent('thread started', { 'thread.id': threadId, 'spindle.thread_hop_ms': this.startedAt - this.claimedAt });
    this.#host.events.emit('job:started', { id: this.id, type: this.type, attempt: this.attempt, threadId, thread });
  }

  onProgress(percent: number, message?: string, data?: unknown): void {
    this.percent = percent;
    this.message = message ?? null;
    this.data = data ?? null;
    this.#host.reportProgress(this);
    this.#host.events.emit('job:progress', { id: this.id, percent, message: this.message });
  }

  /** A `ctx.log()` line: kept with the job, and written to the supervisor's log as the job's. */
  onLog(line: string): void {
    this.logs = boundLog(this.logs + line + '\n');
    this.#host.reportProgress(this);
    this.log.info({ source: 'handler' }, line);
  }

  /**
   * The logger for lines about this attempt: each carries the job, its type and attempt, and its
   * trace when traced. Made at the first line, so a job nothing is said about costs no child logger.
   */
  get log(): Logger {
    return (this.#log ??= loggerWith(this.#host.logger, {
      job: this.id,
      type: this.type,
      attempt: this.attempt,
      ...traceFields(this.span),
    }));
  }

  /**
   * The line about an attempt that did not succeed: a warning when it failed, timed out or crashed,
   * with what comes next; a note when it was cancelled or put back at a shutdown. A success is
   * counted in metrics and events, not logged (one line per job would cost more than the job).
   */
  logEnd(outcome: Outcome, finish: Finish | null, ms: number): void {
    if (outcome.kind === 'succeeded' || finish === null) return;
    const fields = { outcome: outcome.kind, err: outcome.error, ms, next: finish.nextState };
    if (outcome.kind === 'cancelled' || outcome.kind === 'interrupted') {
      this.log.info(fields, outcome.kind === 'cancelled' ? 'job cancelled' : 'job put back in the queue at shutdown');
    } else if (finish.nextState === 'queued') {
      this.log.warn({ ...fields, retryInMs: finish.delayMs ?? 0 }, `job ${outcome.kind.replace('_', ' ')}; it will be retried`);
    } else {
      this.log.warn(fields, `job ${outcome.kind.replace('_', ' ')}`);
    }
  }

  /** What inspectors see of it. */
  view(now: number): InFlightView {
    return {
      id: this.id,
      type: this.type,
      attempt: this.attempt,
      maxAttempts: this.maxAttempts,
      threadId: this.threadId,
      thread: this.running.thread ?? null,
      claimedAt: new Date(this.claimedAt).toISOString(),
      startedAt: this.startedAt === null ? null : new Date(this.startedAt).toISOString(),
      elapsedMs: now - (this.startedAt ?? this.claimedAt),
      deadline: this.deadlineAt === null ? null : new Date(this.deadlineAt).toISOString(),
      progress: this.percent,
      message: this.message,
      aborting: this.running.abortReason ?? null,
    };
  }

  /** What the compensator needs of it. */
  compensated(): CompensatedJob {
    return {
      id: this.id,
      type: this.type,
      modulePath: this.info.path,
      input: this.input,
      attempt: this.attempt,
      maxAttempts: this.maxAttempts,
      cancelReason: this.cancelReason,
      timeoutMs: this.info.options.timeoutMs,
      maxMemoryMb: this.maxMemoryMb,
    };
  }
}

/** Keeps the last MAX_LOG_BYTES of a log, cut at a line start. */
function boundLog(text: string): string {
  if (text.length <= MAX_LOG_BYTES) return text;
  const cut = text.slice(text.length - MAX_LOG_BYTES);
  const newline = cut.indexOf('\n');
  return `[earlier lines dropped]\n${newline >= 0 ? cut.slice(newline + 1) : cut}`;
}
