/** The Client's workflow calls: start, read, list, send events, cancel, wait. */
import { withProducerSpan } from '../tracing.ts';
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { getWorkflowRun, insertWorkflowEvent, insertWorkflowRun, listWorkflowRuns, listWorkflowSteps, requestWorkflowCancel, type WorkflowRunRow, type WorkflowStepRow } from '../db/workflows.ts';
import { Subscription } from '../subscription.ts';
import { NotFoundError, StateError, TimeoutError, ValidationError } from '../errors.ts';
import { checkInteger, checkName, checkText, describe, MAX_REASON_CHARS, serializeInput } from '../validate.ts';

/** The states of a workflow run. */
export type WorkflowState =
  | 'running'
  | 'sleeping'
  | 'waiting'
  | 'blocked'
  | 'succeeded'
  | 'failed'
  | 'compensating'
  | 'cancelled'
  | 'compensation_failed';

/** The states a run ends in. */
export const FINAL_WORKFLOW_STATES: readonly WorkflowState[] = ['succeeded', 'failed', 'cancelled', 'compensation_failed'];

/** A workflow run. */
export interface WorkflowRun<I = unknown, O = unknown> {
  id: string;
  name: string;
  /** The module version that first ran it (null until then). */
  version: string | null;
  state: WorkflowState;
  input: I;
  output: O | null;
  error: { name?: string; message?: string; [key: string]: unknown } | null;
  /** Why a blocked run is blocked. */
  blockedReason: string | null;
  wakeAt: Date | null;
  /** What a waiting run waits for. */
  waitingFor: { job: string } | { event: string } | null;
  resumes: number;
  stepCount: number;
  cancelRequestedAt: Date | null;
  cancelReason: string | null;
  /** The steps (by seq) a cancel compensates, newest first; null until compensation begins. */
  compensationPlan: number[] | null;
  createdAt: Date;
  updatedAt: Date;
  finishedAt: Date | null;
}

/** A recorded step of a run. */
export interface WorkflowStep {
  seq: number;
  name: string;
  kind: string;
  state: 'waiting' | 'succeeded' | 'failed';
  result: unknown;
  error: unknown;
  jobId: string | null;
  until: Date | null;
  /**
   * Null for a step without a `compensate`. `state` null: not run, which is all it ever is unless
   * the run is cancelled (then it is pending until it succeeds or fails); `attempts` counts its tries.
   */
  compensation: { state: 'succeeded' | 'failed' | 'skipped' | null; attempts: number; error: unknown } | null;
  /** When it began: a step function's start, a job's enqueue, the start of a sleep or of an event wait. */
  startedAt: Date;
  /** When it was recorded done; null while it waits. */
  finishedAt: Date | null;
}

/** Options of startWorkflow(). */
export interface StartWorkflowOptions {
  /** The run's id, an idempotency key: starting the same id again returns the first run. Default: a UUID. */
  id?: string;
}

/** A filter for listWorkflows(). */
export interface WorkflowListFilter {
  state?: WorkflowState;
  name?: string;
  /** At most this many (default 50, at most 1000). */
  limit?: number;
  /** The id of the last run of the page before: the runs after it, in the same order. */
  after?: string;
}

/** What cancelWorkflow() did. */
export interface WorkflowCancelOutcome {
  id: string;
  state: WorkflowState;
  changed: boolean;
  message: string;
}

const RUN_ID = /^[A-Za-z0-9_.:@\/+=-]{1,200}$/;
const WAIT_RECHECK_MS = 5_000;
const STATES: readonly WorkflowState[] = [
  'running', 'sleeping', 'waiting', 'blocked', 'succeeded', 'failed', 'compensating', 'cancelled', 'compensation_failed',
];

function checkRunId(field: string, id: unknown): string {
  if (typeof id !== 'string' || !RUN_ID.test(id)) {
    throw new ValidationError(field, `must be 1 to 200 characters of A-Z a-z 0-9 _ . : @ / + = -, got ${describe(id)}`);
  }
  return id;
}

export function runFromRow<I, O>(row: WorkflowRunRow): WorkflowRun<I, O> {
  return {
    id: row.id,
    name: row.name,
    version: row.version,
    state: row.state as WorkflowState,
    input: row.input as I,
    output: (row.output ?? null) as O | null,
    error: (row.error ?? null) as WorkflowRun['error'],
    blockedReason: row.blocked_reason,
    wakeAt: row.wake_at,
    waitingFor: row.waiting_job ? { job: String(row.waiting_job) } : row.waiting_event ? { event: row.waiting_event } : null,
    resumes: row.resumes,
    stepCount: row.step_count,
    cancelRequestedAt: row.cancel_requested_at,
    cancelReason: row.cancel_reason,
    compensationPlan: row.compensation_plan,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    finishedAt: row.finished_at,
  };
}

function stepFromRow(row: WorkflowStepRow): WorkflowStep {
  return {
    seq: row.seq,
    name: row.name,
    kind: row.kind,
    state: row.state,
    result: row.result ?? null,
    error: row.error ?? null,
    jobId: row.job_id === null ? null : String(row.job_id),
    until: row.until,
    compensation: row.has_compensation
      ? { state: row.compensation_state, attempts: row.compensation_attempts, error: row.compensation_error ?? null }
      : null,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
  };
}

/** Starts a run (or returns the run with this id); `created` says which. */
export async function startWorkflow<I>(
  pool: pg.Pool,
  name: string,
  input: I,
  options: StartWorkflowOptions,
  maxInputBytes: number,
): Promise<{ run: WorkflowRun<I>; created: boolean }> {
  checkName('name', name);
  const id = options.id === undefined ? randomUUID() : checkRunId('options.id', options.id);
  const inputJson = serializeInput(input, maxInputBytes);
  const { row, created } = await withProducerSpan(`spindle.workflow.start ${name}`, { 'spindle.workflow.name': name, 'spindle.workflow.run': id }, (traceparent) =>
    insertWorkflowRun(pool, { id, name, inputJson, traceparent }),
  );
  if (row.name !== name) throw new StateError(`run ${id} exists already, as a run of workflow "${row.name}"`);
  return { run: runFromRow<I, unknown>(row), created };
}

/** The run with its steps, or null. */
export async function getWorkflow(pool: pg.Pool, id: string): Promise<(WorkflowRun & { steps: WorkflowStep[] }) | null> {
  const row = await getWorkflowRun(pool, checkRunId('id', id));
  if (!row) return null;
  const steps = await listWorkflowSteps(pool, id);
  return { ...runFromRow(row), steps: steps.map(stepFromRow) };
}

/** Runs, newest first. */
export async function listWorkflows(pool: pg.Pool, filter: WorkflowListFilter): Promise<WorkflowRun[]> {
  if (filter.state !== undefined && !STATES.includes(filter.state)) {
    throw new ValidationError('filter.state', `must be one of ${STATES.join(', ')}, got ${describe(filter.state)}`);
  }
  const rows = await listWorkflowRuns(pool, {
    state: filter.state,
    name: filter.name === undefined ? undefined : checkName('filter.name', filter.name),
    limit: checkInteger('filter.limit', filter.limit, 1, 1000) ?? 50,
    after: filter.after === undefined ? undefined : checkRunId('filter.after', filter.after),
  });
  return rows.map((r) => runFromRow(r));
}

/** Puts an event in the run's inbox; throws NotFoundError (no run) or StateError (run finished). */
export async function sendEvent(pool: pg.Pool, runId: string, name: string, payload: unknown, maxInputBytes: number): Promise<void> {
  checkRunId('runId', runId);
  checkText('name', name, 200);
  const payloadJson = serializeInput(payload, maxInputBytes, 'payload');
  const result = await insertWorkflowEvent(pool, { runId, name, payloadJson });
  if (!result) throw new NotFoundError(`no workflow run ${runId}`);
  if (result.eventId === null) throw new StateError(`workflow run ${runId} already ${result.state.replace('_', ' ')}; event "${name}" not delivered`);
}

/** Asks a run to cancel (compensations run newest first). */
export async function cancelWorkflow(pool: pg.Pool, runId: string, reason: string | undefined): Promise<WorkflowCancelOutcome> {
  checkRunId('runId', runId);
  const why = reason === undefined ? null : checkText('reason', reason, MAX_REASON_CHARS);
  const result = await requestWorkflowCancel(pool, runId, why);
  if (!result) throw new NotFoundError(`no workflow run ${runId}`);
  const state = result.state as WorkflowState;
  const message = result.changed
    ? state === 'blocked'
      ? `workflow run ${runId} is blocked; it will compensate once a module of its version resumes it`
      : `workflow run ${runId} will stop at its next step and compensate`
    : FINAL_WORKFLOW_STATES.includes(state)
      ? `workflow run ${runId} already ${state.replace('_', ' ')}; nothing to cancel`
      : `workflow run ${runId} is ${state}; a cancel was already requested`;
  return { id: runId, state, changed: result.changed, message };
}

/** Resolves with the run once it has ended; rejects with TimeoutError after `timeoutMs`. */
export async function waitForWorkflow(pool: pg.Pool, id: string, timeoutMs: number | undefined, signal?: AbortSignal): Promise<WorkflowRun> {
  checkRunId('id', id);
  const deadline = timeoutMs === undefined ? Infinity : Date.now() + timeoutMs;
  const subscription = await Subscription.open(pool, {
    channels: ['spindle_workflow_finished'],
    relevant: (n) => n.payload === id,
    signal,
    deadline,
  });
  try {
    for (;;) {
      const row = await subscription.read((db) => getWorkflowRun(db, id));
      if (!row) throw new NotFoundError(`no workflow run ${id}`);
      if (FINAL_WORKFLOW_STATES.includes(row.state as WorkflowState)) return runFromRow(row);
      const left = deadline - Date.now();
      if (left <= 0) throw new TimeoutError(`workflow run ${id} did not end within ${timeoutMs} ms (it is ${row.state})`);
      await subscription.wait(Math.min(WAIT_RECHECK_MS, left));
    }
  } finally {
    await subscription.close();
  }
}
