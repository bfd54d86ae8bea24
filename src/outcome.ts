/** What a finished attempt does to its job: retry later, or end in a final state. */
import { backoffDelay, type BackoffOptions } from './backoff.ts';
import type { Finish } from './db/outcomes.ts';
import type { AttemptOutcome, JobError } from './job.ts';
import type { Outcome } from './pool/pool.ts';
import { findUnstorable, MAX_ERROR_TEXT_CHARS, storableText } from './storable.ts';

/** The attempt being finished. */
export interface FinishingAttempt {
  id: string;
  attempt: number;
  maxAttempts: number;
  logs: string | null;
  /** A cancel was asked while it ran (it came as the attempt was already ending, a timeout). */
  cancelRequested: boolean;
}

/**
 * Maps an attempt's outcome to the write that records it, or null when nothing may be written
 * (the claim was lost: the job belongs to someone else now). A cancel beats a retry: a job that would
 * go back to the queue ends `cancelled` when a cancel was asked (finishJobs' statement applies the
 * same rule to a cancel only the row knows of).
 */
export function finishFor(job: FinishingAttempt, outcome: Outcome, backoff: BackoffOptions): Finish | null {
  const finish = nextStep(job, outcome, backoff);
  if (finish !== null && job.cancelRequested && finish.nextState === 'queued') finish.nextState = 'cancelled';
  return finish;
}

function nextStep(job: FinishingAttempt, outcome: Outcome, backoff: BackoffOptions): Finish | null {
  // Object literals, not spreads of a shared base: this runs once per job, and V8's spread with extra
  // properties costs about a microsecond a call.
  const { id, attempt, logs } = job;
  switch (outcome.kind) {
    case 'succeeded': {
      const json = toJson(outcome.output);
      if (json.ok) return { id, attempt, logs, outcome: 'succeeded', nextState: 'succeeded', outputJson: json.text };
      // A value a thread can return but JSON cannot hold (10n, a cycle): the same every time, so no retry.
      const error = { name: 'OutputError', message: `the handler's result cannot be stored as JSON: ${json.reason}` };
      return { id, attempt, logs, outcome: 'failed', nextState: 'failed', error: jobError(error, 'failed') };
    }
    case 'failed': {
      const error = jobError(outcome.error, 'failed');
      return outcome.permanent
        ? { id, attempt, logs, outcome: 'failed', nextState: 'failed', error }
        : retryOrEnd(job, 'failed', 'failed', error, backoff);
    }
    case 'crashed':
      return retryOrEnd(job, 'failed', 'crashed', jobError(outcome.error, 'crashed'), backoff);
    case 'timed_out':
      return retryOrEnd(job, 'timed_out', 'timed_out', jobError(abortError(outcome), 'timed_out'), backoff);
    case 'cancelled':
      return { id, attempt, logs, outcome: 'cancelled', nextState: 'cancelled', error: jobError(abortError(outcome), 'cancelled') };
    case 'interrupted':
      // Shutdown: straight back to the queue, and the attempt is given back (see finishJobs).
      return { id, attempt, logs, outcome: 'interrupted', nextState: 'queued', error: jobError(abortError(outcome), 'interrupted'), delayMs: 0 };
    case 'lost':
      return null;
  }
}

/** Another attempt after a backoff while attempts are left, else the job ends in `finalState`. */
function retryOrEnd(
  job: FinishingAttempt,
  finalState: 'failed' | 'timed_out',
  kind: AttemptOutcome,
  error: JobError,
  backoff: BackoffOptions,
): Finish {
  const { id, attempt, logs } = job;
  return attempt < job.maxAttempts
    ? { id, attempt, logs, outcome: kind, nextState: 'queued', error, delayMs: backoffDelay(attempt, backoff) }
    : { id, attempt, logs, outcome: kind, nextState: finalState, error };
}

/**
 * A value as the JSON text the database stores, or why it cannot be. Results cross from the thread by
 * structured clone, which takes what JSON does not (BigInt, cycles, NUL); the thread refuses those
 * first (storable.ts), and this checks again for a value that did not come from a thread.
 */
export function toJson(value: unknown): { ok: true; text: string } | { ok: false; reason: string } {
  let text: string;
  try {
    text = JSON.stringify(value) ?? 'null';
  } catch (err) {
    return { ok: false, reason: err instanceof Error ? err.message : String(err) };
  }
  // JSON.stringify writes NUL and lone surrogates as \u escapes: only then is a closer look needed.
  if (text.includes('\\u')) {
    const bad = findUnstorable(value, 'value');
    if (bad !== undefined) return { ok: false, reason: `${bad.path} ${bad.problem}` };
  }
  return { ok: true, text };
}

/** The error of a stopped attempt; it says so when the handler ignored its signal and its thread was terminated. */
function abortError(outcome: Extract<Outcome, { terminated: boolean }>): { name?: string; message: string; stack?: string } {
  if (!outcome.terminated) return outcome.error;
  return { ...outcome.error, message: `${outcome.error.message} (the handler did not stop at its signal: its thread was terminated)` };
}

/** The error as stored: its texts made storable and bounded (a thread did so already; the pool's own errors come here too). */
function jobError(error: { name?: string; message: string; stack?: string }, outcome: AttemptOutcome): JobError {
  const name = storableText(error.name ?? 'Error', 200);
  const message = storableText(error.message, MAX_ERROR_TEXT_CHARS);
  return error.stack ? { name, message, stack: storableText(error.stack, MAX_ERROR_TEXT_CHARS), outcome } : { name, message, outcome };
}
