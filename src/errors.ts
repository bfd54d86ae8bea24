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

/**
 * A workflow's replay reached a different call than the one recorded at this sequence number (the
 * code changed under a running run). The run fails with it; it is never retried.
 */
export class NonDeterminismError extends SpindleError {
  override name = 'NonDeterminismError';
  constructor(
    readonly runId: string,
    readonly seq: number,
    readonly recorded: string,
    readonly reached: string,
  ) {
    super(
      `workflow run ${runId} is not deterministic: step #${seq} was recorded as ${recorded} but the code now reaches ${reached}`,
    );
  }
}

/** A workflow run went past a bound (steps, step result size, total state); the run fails with it. */
export class WorkflowBoundsError extends SpindleError {
  override name = 'WorkflowBoundsError';
}

/** What `wf.run()` throws when its job did not succeed; `jobId`, `state` and the job's `error` say why. */
export class WorkflowJobError extends SpindleError {
  override name = 'WorkflowJobError';
  constructor(
    readonly jobId: string,
    readonly state: string,
    readonly jobError: unknown,
  ) {
    const detail = (jobError as { message?: unknown } | null)?.message;
    super(`job ${jobId} ${state.replace('_', ' ')}${typeof detail === 'string' ? `: ${detail}` : ''}`);
  }
}

/** What `wf.step()` throws on replay when the step's function had thrown; the message is the original one. */
export class WorkflowStepError extends SpindleError {
  override name = 'WorkflowStepError';
  constructor(
    readonly step: string,
    message: string,
    readonly originalName: string,
  ) {
    super(message);
  }
}

/**
 * The database has no spindle schema, or one of another version than this code's: the message names
 * both versions and says what to do. Thrown by the first call of a Client.
 */
export class SchemaError extends SpindleError {
  override name = 'SchemaError';
}

/** The embedded server could not be started; the message carries the reason and the log tail. */
export class EmbeddedPostgresError extends SpindleError {
  override name = 'EmbeddedPostgresError';
  constructor(
    message: string,
    readonly logTail: string = '',
  ) {
    super(logTail ? `${message}\n--- last lines of the PostgreSQL log ---\n${logTail}` : message);
  }
}
