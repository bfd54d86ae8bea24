/**
 * Follows one job to its end (`enqueue --wait`, `watch`): a live line on a TTY, plain lines otherwise.
 * The line says which attempt is running, and each attempt that ends and is retried gets a line of its
 * own: a bar back at 0% is then a new attempt, not lost progress.
 */
import type { Client } from '../client.ts';
import { NotFoundError } from '../errors.ts';
import { FINAL_STATES, type Job } from '../job.ts';
import { attemptOf, bar, ended, jobEnding } from './format.ts';
import { interruptible } from './interrupt.ts';
import { observe } from './observe.ts';

/** Exit codes of `enqueue --wait` and `watch`: 0 succeeded, 1 failed, 3 timed out, 4 cancelled. */
const EXIT_CODES = { succeeded: 0, failed: 1, timed_out: 3, cancelled: 4 } as const;

/** Follows job `id` until it ends, or until Ctrl-C (which leaves the job alone); returns the exit code. */
export async function followJob(
  client: Client,
  id: string,
  options: { json?: boolean; doing: 'waiting for' | 'watching'; known?: Job },
): Promise<number> {
  const tty = process.stderr.isTTY === true && !options.json;
  let last: Job | undefined = options.known;
  let lastLine = '';
  /** The highest attempt whose end has been printed. */
  let told = 0;
  // Before the first await: the caller may just have said "waiting", and Ctrl-C must find us listening.
  const interruption = interruptible(() => `${tty ? '\r\x1b[2K' : ''}spindle: ${stopped(id, options.doing, last)}`);
  try {
    for await (const job of observe(client.pool, {
      channels: ['spindle_progress', 'spindle_finished', 'spindle_jobs'],
      // Payloads are comma-separated ids, or a queue name (which may concern this job: read it again).
      relevant: (n) => n.channel === 'spindle_jobs' || (n.payload ?? '').split(',').includes(id),
      read: () => client.get(id),
      signal: interruption.signal,
    })) {
      last = job;
      const final = FINAL_STATES.includes(job.state);
      if (options.json) {
        if (final) break;
        continue;
      }
      // Attempts that ended before this one (or, queued, before the next): each once, from its own
      // record, even when the job went through them between two reads.
      const endedUpTo = job.state === 'queued' ? job.attempt : job.attempt - 1;
      if (endedUpTo > told) {
        for (const a of await client.attempts(id)) {
          if (a.attempt <= told || a.attempt > endedUpTo) continue;
          process.stderr.write(`${tty ? '\r\x1b[2K' : ''}${job.type} ${job.id} ${ended(`attempt ${a.attempt}`, a.outcome, a.error?.message)}\n`);
          lastLine = '';
        }
        told = endedUpTo;
      }
      if (final) break;
      const line = liveLine(job);
      if (line === lastLine) continue;
      lastLine = line;
      if (tty) process.stderr.write(`\r\x1b[2K${line.slice(0, (process.stderr.columns || 100) - 1)}`);
      else process.stderr.write(`${line}\n`);
    }
  } finally {
    interruption.dispose();
  }
  const interrupted = interruption.exitCode();
  if (interrupted !== undefined) return interrupted;
  if (tty && lastLine) process.stderr.write('\r\x1b[2K');
  if (!last) throw new NotFoundError(`no job ${id}`);
  const job = last;
  if (options.json) {
    process.stdout.write(`${JSON.stringify(job, null, 2)}\n`);
  } else if (job.state === 'succeeded') {
    process.stdout.write(`${JSON.stringify(job.output, null, 2)}\n`);
  } else {
    process.stderr.write(`${jobEnding(job)}\n`);
  }
  return EXIT_CODES[job.state as keyof typeof EXIT_CODES] ?? 1;
}

/** `primes 7 [running] attempt 2 of 3 [#####...]  40% sieving`; a queued job shows which attempt comes next. */
function liveLine(job: Job): string {
  const head = `${job.type} ${job.id} [${job.state}]`;
  if (job.state === 'running') {
    return `${head} ${attemptOf(job.attempt, job.maxAttempts)} ${bar(job.progress)}${job.progressMessage ? ` ${job.progressMessage}` : ''}`;
  }
  const later = job.runAt.getTime() > Date.now() ? ` at ${job.runAt.toISOString()}` : '';
  if (job.attempt === 0) return `${head}${later ? ` runs${later}` : ''}`;
  return `${head} ${attemptOf(job.attempt + 1, job.maxAttempts)} next${later}`;
}

/** What Ctrl-C leaves behind: the job, going on, and how to find it again. */
function stopped(id: string, doing: string, job: Job | undefined): string {
  const where =
    job === undefined ? ''
    : job.state === 'running' ? ` (running, ${attemptOf(job.attempt, job.maxAttempts)})`
    : job.attempt > 0 ? ` (queued for ${attemptOf(job.attempt + 1, job.maxAttempts)})`
    : ` (${job.state})`;
  return `stopped ${doing} job ${id}, which goes on${where}: 'spindle watch ${id}' follows it again, 'spindle job ${id}' shows it, 'spindle cancel ${id}' stops it`;
}
