/**
 * What a parent does when a child crashes: the policy given to `spawn`, checked once there, and the
 * decision it leads to at each crash. Pure: the kernel measures (its clock, its restart times) and
 * carries the decision out.
 *
 * When `handle()` or `onStart()` throws, the actor halts (timers cleared, `signal` aborted,
 * children stopped in reverse order, `onStop()` run if `onStart()` had completed) and its parent's
 * policy for it applies:
 * - `restart`: start again after `backoffMs`, doubling per restart within `windowMs`, capped at
 *   `maxBackoffMs`; after `maxRestarts` restarts within `windowMs` it fails instead.
 * - `stop`: it fails; the parent carries on.
 * - `escalate`: it fails and its parent crashes with an `ActorCrashError`, to which the
 *   grandparent's policy applies.
 * A root actor (no parent) that crashes fails: it stops its children and emits `actor:fail` with
 * reason `unsupervised`.
 */
import type { Clock } from '../clock.ts';
import { ValidationError } from '../errors.ts';

/** What a parent does when a child crashes. */
export type SupervisionPolicy = 'restart' | 'stop' | 'escalate';

/** How a parent supervises a child, given to `spawn`. */
export interface SpawnOptions {
  /** What to do when the child crashes. */
  policy: SupervisionPolicy;
  /** Restarts allowed within `windowMs` before the child fails instead; default 5. */
  maxRestarts?: number;
  /** The window in which restarts are counted, in ms; default 60 000. */
  windowMs?: number;
  /** Delay before the first restart, doubled for each restart in the window; default 100 ms. */
  backoffMs?: number;
  /** Cap on the restart delay; default 5 000 ms. */
  maxBackoffMs?: number;
}

/** Default of `SpawnOptions.maxRestarts`. */
export const DEFAULT_MAX_RESTARTS = 5;
/** Default of `SpawnOptions.windowMs`. */
export const DEFAULT_RESTART_WINDOW_MS = 60_000;
/** Default of `SpawnOptions.backoffMs`. */
export const DEFAULT_BACKOFF_MS = 100;
/** Default of `SpawnOptions.maxBackoffMs`. */
export const DEFAULT_MAX_BACKOFF_MS = 5_000;

/** Why an actor ended up `failed`. */
export type FailReason = 'policy' | 'max-restarts' | 'escalated' | 'unsupervised';

/** `SpawnOptions` checked, with every default filled in. */
export interface Supervision {
  policy: SupervisionPolicy;
  maxRestarts: number;
  windowMs: number;
  backoffMs: number;
  maxBackoffMs: number;
}

/** What a crash leads to. */
export type Decision =
  | { action: 'restart'; delayMs: number }
  | { action: 'stop'; reason: FailReason }
  | { action: 'escalate' };

/** Checks `options` and fills in the defaults; throws a `ValidationError` naming the field at fault. */
export function supervisionFrom(options: SpawnOptions): Supervision {
  const policy = options?.policy;
  if (policy !== 'restart' && policy !== 'stop' && policy !== 'escalate') {
    throw new ValidationError('options.policy', "must be 'restart', 'stop' or 'escalate'");
  }
  const maxRestarts = options.maxRestarts ?? DEFAULT_MAX_RESTARTS;
  if (!Number.isInteger(maxRestarts) || maxRestarts < 0) {
    throw new ValidationError('options.maxRestarts', 'must be a non-negative integer');
  }
  return {
    policy,
    maxRestarts,
    windowMs: positive('options.windowMs', options.windowMs ?? DEFAULT_RESTART_WINDOW_MS),
    backoffMs: positive('options.backoffMs', options.backoffMs ?? DEFAULT_BACKOFF_MS),
    maxBackoffMs: positive('options.maxBackoffMs', options.maxBackoffMs ?? DEFAULT_MAX_BACKOFF_MS),
  };
}

/**
 * The decision for a crash of an actor supervised as `supervision` (null: it has no parent), whose
 * earlier restarts were at `restartTimes`; also returns those times still inside the window, the
 * only ones a later crash counts.
 */
export function decide(
  supervision: Supervision | null,
  restartTimes: number[],
  clock: Clock,
): { decision: Decision; restartTimes: number[] } {
  if (!supervision) return { decision: { action: 'stop', reason: 'unsupervised' }, restartTimes };
  switch (supervision.policy) {
    case 'stop':
      return { decision: { action: 'stop', reason: 'policy' }, restartTimes };
    case 'escalate':
      return { decision: { action: 'escalate' }, restartTimes };
    case 'restart': {
      const now = clock.now();
      const recent = restartTimes.filter((t) => now - t < supervision.windowMs);
      if (recent.length >= supervision.maxRestarts) return { decision: { action: 'stop', reason: 'max-restarts' }, restartTimes: recent };
      const delayMs = Math.min(supervision.maxBackoffMs, supervision.backoffMs * 2 ** recent.length);
      return { decision: { action: 'restart', delayMs }, restartTimes: recent };
    }
  }
}

function positive(field: string, value: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new ValidationError(field, 'must be a positive number of milliseconds');
  }
  return value;
}
