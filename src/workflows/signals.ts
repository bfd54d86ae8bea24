/**
 * How a resume stops the body of a run: a signal thrown through it (never seen by users unless they
 * catch everything), and the JSON error records a run's failures are written as.
 */
import { WorkflowJobError, WorkflowStepError } from '../errors.ts';
import type { WorkflowWait, WorkflowStepRow } from '../db/workflows.ts';
import { findUnstorable, MAX_ERROR_TEXT_CHARS, storableText } from '../storable.ts';

/** Ends the body of a run; which one says what the resume writes. */
export class WorkflowSignal extends Error {}

/** The run waits (a job, a sleep, an event): the wait is written and the resume ends. */
export class Suspend extends WorkflowSignal {
  override name = 'WorkflowSuspended';
  constructor(readonly wait: WorkflowWait) {
    super('the workflow run is suspended (do not catch this)');
  }
}
/** A requested cancel took effect: the run compensates. */
export class Cancel extends WorkflowSignal {
  override name = 'WorkflowCancelled';
  constructor() {
    super('the workflow run was cancelled (do not catch this)');
  }
}
/** Another resume holds the run now: this one writes nothing more. */
export class ClaimLost extends WorkflowSignal {
  override name = 'WorkflowClaimLost';
  constructor() {
    super('the claim on this workflow run was lost');
  }
}
/** The run fails with `error`, whatever the body does with it. */
export class Fatal extends WorkflowSignal {
  override name = 'WorkflowFatal';
  constructor(readonly error: Error) {
    super(error.message);
  }
}
/** A database error: the run is let go and resumed again later. */
export class Infra extends WorkflowSignal {
  override name = 'WorkflowInfrastructureError';
  constructor(readonly error: unknown) {
    super(`database error: ${String((error as Error)?.message ?? error)}`);
  }
}

/** Why a run fails when the database refused one of its writes for what it carried. */
export function refusedWrite(runId: string, error: unknown): string {
  return `the database refused a write of workflow run ${runId}: ${storableText((error as Error).message, 1_000)}`;
}

/** The error of a value that cannot be stored (a step's result, a run's output). */
export function outputError(message: string): Error {
  const error = new Error(message);
  error.name = 'OutputError';
  return error;
}

/** A JSON error record of anything thrown, its texts made storable (see storable.ts). */
export function errorJson(error: unknown): string {
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

/** The error a step's recorded failure is thrown into the body as. */
export function stepError(step: string, recorded: unknown): WorkflowStepError {
  const e = (recorded ?? {}) as { name?: string; message?: string };
  return new WorkflowStepError(step, e.message ?? 'the step failed', e.name ?? 'Error');
}

/** The error a job's recorded failure is thrown into the body as. */
export function jobError(rec: WorkflowStepRow): WorkflowJobError {
  const e = (rec.error ?? {}) as { jobId?: string; state?: string; error?: unknown };
  return new WorkflowJobError(e.jobId ?? String(rec.job_id), e.state ?? 'failed', e.error ?? null);
}
