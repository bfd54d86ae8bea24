/** Base class of every error spindle throws on purpose. */
export class SpindleError extends Error {
  override name = 'SpindleError';
}

/** Bad input to a public function or option; `field` names what was wrong. Nothing was written. */
export class ValidationError extends SpindleError {
  override name = 'ValidationError';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field} ${message}`);
  }
}

/** Thrown by a handler to fail its job without retrying it. */
export class PermanentError extends Error {
  override name = 'PermanentError';
  /** Marks the error across the thread boundary, where `instanceof` does not survive cloning. */
  readonly permanent = true;
}

/** A job, run or supervisor that does not exist. */
export class NotFoundError extends SpindleError {
  override name = 'NotFoundError';
}

/** An `ask` or a wait that did not get its answer in time. */
export class TimeoutError extends SpindleError {
  override name = 'TimeoutError';
}

/** An operation refused because of the current state (for example retrying a running job). */
export class StateError extends SpindleError {
  override name = 'StateError';
}

/** An actor gave its crash to its parent (policy `escalate`); `actor` is the child's path, `cause` its error. */
export class ActorCrashError extends SpindleError {
  override name = 'ActorCrashError';
  constructor(
    readonly actor: string,
    cause: unknown,
  ) {
    super(`actor "${actor}" crashed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}
