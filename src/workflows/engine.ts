/**
 * The replay engine: one resume of one claimed run. It checks that this supervisor's module can
 * replay the run, runs the body on a Replay (replay.ts), and writes how the resume ended: the run
 * suspended, finished, failed, or, after a cancel, compensated.
 *
 * Guarantees: a recorded step never runs again; a job is enqueued once (its step row is written in
 * the enqueue's transaction); a step whose function was running when the process died runs again
 * (at least once, like any side effect before its record).
 */
import type { Span } from '@opentelemetry/api';
import type pg from 'pg';
import { cancelJob } from '../db/jobs.ts';
import { beginWorkflowCompensation, blockWorkflowRun, countCompensationAttempt, finishWorkflowRun, listWorkflowSteps, recordStepCompensation, releaseWorkflowRun, skipStepCompensations, suspendWorkflowRun, type WorkflowClaim, type WorkflowRunRow } from '../db/workflows.ts';
import { NonDeterminismError, WorkflowBoundsError } from '../errors.ts';
import { isDataError } from '../db/errors.ts';
import { findUnstorable } from '../storable.ts';
import type { WorkflowModule } from './registry.ts';
import { Replay, type ReplayDeps } from './replay.ts';
import { endSpan, startResumeSpan } from '../tracing.ts';
import { Cancel, ClaimLost, errorJson, Fatal, Infra, outputError, refusedWrite, Suspend, WorkflowSignal } from './signals.ts';

/** After a database error, the run is resumed again this much later. */
const RETRY_AFTER_INFRA_ERROR_MS = 1_000;
const COMPENSATION_BACKOFF_MS = 200;

/** How a resume ended. */
export type ResumeOutcome = 'suspended' | 'succeeded' | 'failed' | 'cancelled' | 'compensation_failed' | 'blocked' | 'lost' | 'retry';

/** What a resume needs of its supervisor. */
export interface EngineDeps extends ReplayDeps {
  supervisorId: string;
}

type FinalState = 'succeeded' | 'failed' | 'cancelled' | 'compensation_failed';

/**
 * Resumes one claimed run with its module (undefined: none here, or `loadError` says why it cannot
 * load). `lost` aborts when the claim may have been taken back: the body stops at its next call.
 */
export async function resumeRun(
  deps: EngineDeps,
  row: WorkflowRunRow & { db_now: Date },
  module: WorkflowModule | undefined,
  loadError?: string,
  lost?: AbortSignal,
): Promise<ResumeOutcome> {
  const claim: WorkflowClaim = { runId: row.id, supervisorId: deps.supervisorId, claimSeq: row.claim_seq };
  const span = startResumeSpan(row.name, row.trace_context, {
    'spindle.workflow.name': row.name,
    'spindle.workflow.run': row.id,
    'spindle.workflow.resume': row.resumes,
    'spindle.supervisor': deps.supervisorId,
  });
  const outcome = await resumeIn(deps, claim, row, module, loadError, span, lost);
  span.setAttribute('spindle.workflow.outcome', outcome);
  endSpan(span, ['failed', 'compensation_failed', 'blocked'].includes(outcome) ? new Error(`workflow run ${outcome}`) : undefined);
  return outcome;
}

async function resumeIn(
  deps: EngineDeps,
  claim: WorkflowClaim,
  row: WorkflowRunRow & { db_now: Date },
  module: WorkflowModule | undefined,
  loadError: string | undefined,
  span: Span,
  lost: AbortSignal | undefined,
): Promise<ResumeOutcome> {
  try {
    if (lost?.aborted) return 'lost';
    if (!module) {
      const reason = loadError ?? `no workflow module named "${row.name}" on supervisor ${deps.supervisorId}`;
      return (await blockWorkflowRun(deps.db, claim, reason)) ? 'blocked' : 'lost';
    }
    const version = row.version ?? module.version;
    if (version !== module.version && !module.supports.includes(version)) {
      const reason =
        `run started with version "${version}"; module ${module.path} is version "${module.version}"` +
        ` and does not list "${version}" in its supports export`;
      return (await blockWorkflowRun(deps.db, claim, reason)) ? 'blocked' : 'lost';
    }
    // A run with no step recorded (step_count counts every row written) has none to read.
    const steps = row.step_count === 0 ? [] : await listWorkflowSteps(deps.db, row.id);
    const replay = new Replay(deps, claim, row, version, steps, span);
    const lose = () => replay.lose();
    lost?.addEventListener('abort', lose, { once: true });
    // Lost while its steps were read: the listener came too late to hear it.
    if (lost?.aborted) lose();
    try {
      return await execute(deps, claim, row, replay, module);
    } finally {
      lost?.removeEventListener('abort', lose);
    }
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

/** Runs the body and writes how this resume ended. */
async function execute(deps: EngineDeps, claim: WorkflowClaim, row: WorkflowRunRow, replay: Replay, module: WorkflowModule): Promise<ResumeOutcome> {
  let output: unknown;
  let thrown: unknown;
  let threw = false;
  const idle = replay.watchIdle();
  try {
    output = await Promise.race([module.run(row.input, replay.api), replay.idleGaveUp]);
  } catch (error) {
    threw = true;
    thrown = error;
  } finally {
    idle.stop();
  }
  // A lost claim does not wait for its calls under way: their writes are refused, or stand if no
  // other supervisor took the run meanwhile.
  const abandoned = replay.stopped instanceof ClaimLost ? 0 : await replay.settle();
  if (abandoned > 0) {
    deps.logger.warn(
      { run: row.id, calls: abandoned, maxIdleMs: deps.limits.maxIdleMs },
      'calls of a workflow body were still running maxIdleMs after it ended; the resume ends without them',
    );
  }
  const signal = replay.stopped ?? (thrown instanceof WorkflowSignal ? thrown : null);
  const finish = (state: FinalState, outputJson: string | null, errJson: string | null) => finishRun(deps.db, claim, state, outputJson, errJson);
  if (signal instanceof ClaimLost) return 'lost';
  if (signal instanceof Infra) throw signal.error;
  // A run that cannot replay while it compensates cannot compensate either.
  if (signal instanceof Fatal) return finish(row.state === 'compensating' ? 'compensation_failed' : 'failed', null, errorJson(signal.error));
  if (signal instanceof Cancel || row.state === 'compensating') return compensate(deps, claim, row, replay);
  // A wait of a branch that lost a race does not hold up a body that has ended on its own.
  const bodyEnded = !(thrown instanceof WorkflowSignal);
  if (signal instanceof Suspend && !bodyEnded) return (await suspendWorkflowRun(deps.db, claim, signal.wait)) ? 'suspended' : 'lost';
  if (threw) return finish('failed', null, errorJson(thrown));
  const bad = findUnstorable(output, 'output');
  if (bad !== undefined) {
    const error = outputError(`the result of workflow run ${row.id} cannot be stored: ${bad.path} ${bad.problem}`);
    return finish('failed', null, errorJson(error));
  }
  const json = JSON.stringify(output ?? null);
  if (Buffer.byteLength(json) > deps.limits.maxStateBytes) {
    const error = new WorkflowBoundsError(
      `the output of workflow run ${row.id} is ${Buffer.byteLength(json)} bytes, over maxStateBytes (${deps.limits.maxStateBytes})`,
    );
    return finish('failed', null, errorJson(error));
  }
  return finish('succeeded', json, null);
}

async function finishRun(db: pg.Pool, claim: WorkflowClaim, state: FinalState, outputJson: string | null, errJson: string | null): Promise<ResumeOutcome> {
  return (await finishWorkflowRun(db, claim, { state, outputJson, errorJson: errJson })) ? state : 'lost';
}

/**
 * Writes the plan (completed steps with a compensate, newest first) and runs what is left of it, one
 * attempt per step and resume: a failed attempt lets the run go until its backoff has passed (the
 * attempts are counted in the step's row, so a crash or a restart loses no count). A compensation
 * that fails for good ends the run `compensation_failed`, the ones after it skipped, unless its step
 * asked to continue past its error.
 */
async function compensate(deps: EngineDeps, claim: WorkflowClaim, row: WorkflowRunRow, replay: Replay): Promise<ResumeOutcome> {
  const { db, limits, logger } = deps;
  const runId = row.id;
  for (const job of replay.frontierJobs) await cancelJob(db, job, 'its workflow run was cancelled').catch(() => undefined);
  let plan = row.compensation_plan;
  const failed: { step: string; seq: number; attempts: number; error: unknown }[] = [];
  try {
    if (!plan) {
      const newestFirst = replay.compensable();
      await replay.inClaim((c) => beginWorkflowCompensation(c, runId, newestFirst));
      plan = newestFirst;
    }
    for (const [index, seq] of plan.entries()) {
      const rec = replay.recorded(seq);
      if (rec?.compensation_state === 'succeeded' || rec?.compensation_state === 'skipped') continue;
      const compensation = replay.compensation(seq);
      if (!compensation) {
        const error = new NonDeterminismError(runId, seq, `step "${rec?.name ?? '?'}" with a compensate`, 'no such step on replay');
        return finishRun(db, claim, 'compensation_failed', null, errorJson(error));
      }
      if (rec?.compensation_state === 'failed') {
        failed.push({ step: compensation.name, seq, attempts: rec.compensation_attempts, error: rec.compensation_error });
        if (compensation.continueOnError) continue;
        break;
      }
      const attempt = await replay.inClaim((c) => countCompensationAttempt(c, runId, seq));
      try {
        await compensation.fn(compensation.result);
        await replay.inClaim((c) => recordStepCompensation(c, { runId, seq, state: 'succeeded', errorJson: null }));
        continue;
      } catch (error) {
        if (error instanceof WorkflowSignal) throw error;
        logger.warn({ run: runId, step: compensation.name, attempt, err: error }, 'compensation failed');
        if (attempt < limits.compensationAttempts) {
          const backoffMs = COMPENSATION_BACKOFF_MS * 2 ** (attempt - 1);
          return (await releaseWorkflowRun(db, claim, backoffMs)) ? 'suspended' : 'lost';
        }
        const errJson = errorJson(error);
        // Its failure and the skips it causes are one write: a resume after it finds both.
        const skipped = compensation.continueOnError ? [] : plan.slice(index + 1);
        await replay.inClaim(async (c) => {
          await recordStepCompensation(c, { runId, seq, state: 'failed', errorJson: errJson });
          if (skipped.length > 0) await skipStepCompensations(c, runId, skipped);
        });
        failed.push({ step: compensation.name, seq, attempts: attempt, error: JSON.parse(errJson) as unknown });
        if (compensation.continueOnError) continue;
        break;
      }
    }
  } catch (error) {
    if (error instanceof ClaimLost) return 'lost';
    if (error instanceof Infra) throw error.error;
    throw error;
  }
  if (failed.length > 0) {
    const first = failed[0]!;
    const detail = { ...(first.error as object), step: first.step, seq: first.seq, attempts: first.attempts, failed };
    return finishRun(db, claim, 'compensation_failed', null, JSON.stringify(detail));
  }
  const reason = { name: 'Cancelled', message: row.cancel_reason ?? 'cancelled', compensated: plan.length };
  return finishRun(db, claim, 'cancelled', null, JSON.stringify(reason));
}
