/** Text rendering for the CLI: tables, bars, durations, and what a job's state and attempts say. */
import type { AttemptOutcome, Job } from '../job.ts';

/** Prints `value` as JSON with --json, else `text()`. */
export function print(json: boolean | undefined, value: unknown, text: () => string): void {
  process.stdout.write(`${json ? JSON.stringify(value, null, 2) : text()}\n`);
}

/** A plain aligned table; `null`/`undefined` cells print as '-'. */
export function table(headers: string[], rows: unknown[][]): string {
  const cells = rows.map((r) => r.map((c) => (c === null || c === undefined || c === '' ? '-' : String(c))));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i]!.length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(headers), ...cells.map(line)].join('\n');
}

/** `[#######.........]  42%` */
export function bar(percent: number | null | undefined, width = 24): string {
  const p = Math.max(0, Math.min(100, percent ?? 0));
  const filled = Math.round((p / 100) * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${p.toFixed(0).padStart(3)}%`;
}

/** 1.2s, 340ms, 3m05s */
export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '-';
  if (ms < 1_000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)}s`;
  const m = Math.floor(ms / 60_000);
  return `${m}m${String(Math.round((ms % 60_000) / 1_000)).padStart(2, '0')}s`;
}

/** `text` on one line, cut to `max` characters. */
export function clip(text: string, max: number): string {
  const line = text.replace(/\s+/g, ' ');
  return line.length > max ? `${line.slice(0, max - 3)}...` : line;
}

/** A short rendering of a JSON value for a table cell. */
export function brief(value: unknown, max = 40): string {
  if (value === null || value === undefined) return '-';
  const text = JSON.stringify(value);
  return text.length > max ? `${text.slice(0, max - 3)}...` : text;
}

/**
 * The time the job's current attempt ran or has been running. None while it is queued: a job queued
 * again after an attempt still holds that attempt's start time.
 */
export function jobElapsed(job: Job, now = Date.now()): number | null {
  if (!job.startedAt || job.state === 'queued') return null;
  return (job.finishedAt?.getTime() ?? now) - job.startedAt.getTime();
}

/** `attempt 2 of 3`; the most attempts is unknown until the job is first claimed. */
export function attemptOf(attempt: number, maxAttempts: number | null): string {
  return maxAttempts === null ? `attempt ${attempt}` : `attempt ${attempt} of ${maxAttempts}`;
}

/**
 * How an attempt that ended is told, and the start of its error message that says the same (an
 * abort's message: 'job timed out after 5000 ms'), so it is not said twice.
 */
const ENDINGS: Record<AttemptOutcome, { verb: string; said?: string }> = {
  succeeded: { verb: 'succeeded' },
  failed: { verb: 'failed' },
  crashed: { verb: 'crashed' },
  timed_out: { verb: 'timed out', said: 'job timed out' },
  cancelled: { verb: 'cancelled', said: 'job cancelled' },
  lost: { verb: 'was lost', said: 'job lease lost' },
  interrupted: { verb: 'was interrupted by shutdown', said: 'job interrupted by shutdown' },
};

/** `job 7 timed out after 5000 ms`, `attempt 1 failed: boom`: who, how it ended, and why, once. */
export function ended(subject: string, outcome: AttemptOutcome, message: string | null | undefined): string {
  const { verb, said } = ENDINGS[outcome];
  if (!message) return `${subject} ${verb}`;
  if (said !== undefined && message.startsWith(said)) return `${subject} ${verb}${message.slice(said.length)}`;
  return `${subject} ${verb}: ${message}`;
}

/** How a finished job ended: `job 7 cancelled: not needed`. */
export function jobEnding(job: Job): string {
  const outcome: AttemptOutcome = job.state === 'timed_out' || job.state === 'cancelled' || job.state === 'succeeded' ? job.state : 'failed';
  return ended(`job ${job.id}`, outcome, job.error?.message ?? job.cancelReason);
}

/**
 * The attempt before the current one, when it ended badly: a job queued again or running again still
 * holds that attempt's error, which must not read as the current one's. Undefined for a finished job
 * (its error is its last attempt's) and for one with no earlier attempt.
 */
export function previousAttempt(job: Job): string | undefined {
  if ((job.state !== 'queued' && job.state !== 'running') || job.error === null) return undefined;
  const attempt = job.state === 'running' ? job.attempt - 1 : job.attempt;
  if (attempt < 1) return undefined;
  return ended(`attempt ${attempt}`, job.error.outcome ?? 'failed', job.error.message);
}

/** The ATTEMPT cell of a job: `-` before its first, `2/3 next` when queued for its second. */
function attemptCell(job: Job): string {
  const max = job.maxAttempts ?? '-';
  if (job.state === 'queued') return job.attempt === 0 ? '-' : `${job.attempt + 1}/${max} next`;
  return `${job.attempt}/${max}`;
}

/** The jobs table of `spindle jobs`. */
export function jobsTable(jobs: Job[], waiting: ReadonlyMap<string, string> = new Map()): string {
  return table(
    ['ID', 'TYPE', 'QUEUE', 'STATE', 'ATTEMPT', 'PROGRESS', 'TIME', 'CREATED', 'ERROR / OUTPUT / WAITING FOR'],
    jobs.map((j) => [
      j.id,
      j.type,
      j.queue,
      j.state,
      attemptCell(j),
      // A queued job's progress is its previous attempt's.
      j.progress === null || j.state === 'queued' ? '-' : `${Math.round(j.progress)}%`,
      duration(jobElapsed(j)),
      j.createdAt.toISOString().replace('T', ' ').slice(0, 19),
      clip(waiting.get(j.id) ?? previousAttempt(j) ?? (j.error ? j.error.message : brief(j.output, 50)), 50),
    ]),
  );
}
