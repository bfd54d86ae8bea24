/** `spindle jobs`, `job ID`, `watch ID`, `cancel ID`, `retry ID`. */
import { SpindleError } from '../errors.ts';
import type { Attempt, Job, JobState } from '../job.ts';
import { checkState } from '../validate.ts';
import { intFlag, parse } from './args.ts';
import { withClient } from './connect.ts';
import { attemptOf, brief, duration, jobElapsed, jobsTable, previousAttempt, print, table } from './format.ts';

export async function jobsCommand(args: string[]): Promise<number> {
  const { values } = parse('jobs', args);
  const state = values.state === undefined ? undefined : (checkState('--state', values.state) as JobState);
  const limit = intFlag('limit', values.limit, 1, 1_000) ?? 20;
  return withClient(values, async (client) => {
    const jobs = await client.list({ state, type: values.type, queue: values.queue, limit });
    const waiting = await client.waitingForMany(jobs.filter((j) => j.state === 'queued').map((j) => j.id));
    print(
      values.json,
      jobs.map((j) => (j.state === 'queued' ? { ...j, waitingFor: waiting.get(j.id) ?? null } : j)),
      () => (jobs.length ? jobsTable(jobs, waiting) : 'no jobs'),
    );
    return 0;
  });
}

export async function jobCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse('job', args);
  return withClient(values, async (client) => {
    const job = await client.get(positionals[0]!);
    if (!job) throw new SpindleError(`no job ${positionals[0]}`);
    const attempts = await client.attempts(job.id);
    const waitingFor = job.state === 'queued' ? await client.waitingFor(job.id) : null;
    print(values.json, { ...job, waitingFor, attempts }, () => describeJob(job, attempts, waitingFor));
    return 0;
  });
}

/** A job as `spindle job` shows it: what belongs to its current attempt, and its earlier ones apart. */
export function describeJob(job: Job, attempts: Attempt[], waitingFor: string | null = null): string {
  const final = job.state !== 'queued' && job.state !== 'running';
  const previous = previousAttempt(job);
  const lines = [
    `job ${job.id}  ${job.type}  [${job.state}]`,
    `  queue ${job.queue}, priority ${job.priority}${job.key ? `, key ${job.key}` : ''}${job.concurrencyKey ? `, concurrency key ${job.concurrencyKey}` : ''}`,
    `  ${attemptLine(job)}`,
    waitingFor ? `  waiting: ${waitingFor}` : '',
    previous ? `  ${previous}` : '',
    `  created ${job.createdAt.toISOString()}, run at ${job.runAt.toISOString()}`,
    // Queued again, the job still holds the last attempt's start and progress: they are not this one's.
    job.startedAt && job.state !== 'queued' ? `  started ${job.startedAt.toISOString()}, ran ${duration(jobElapsed(job))}` : '',
    job.progress !== null && job.state !== 'queued'
      ? `  progress ${Math.round(job.progress)}%${job.progressMessage ? ` ${job.progressMessage}` : ''}`
      : '',
    `  input  ${brief(job.input, 200)}`,
    job.output !== null ? `  output ${brief(job.output, 200)}` : '',
    final && job.error ? `  error  ${job.error.message}` : '',
    job.cancelReason && !(final && job.error?.message.includes(job.cancelReason)) ? `  cancel reason: ${job.cancelReason}` : '',
    job.compensation ? `  compensation ${brief(job.compensation, 200)}` : '',
  ].filter(Boolean);
  if (attempts.length) {
    lines.push('', table(
      ['ATTEMPT', 'OUTCOME', 'WORKER', 'TIME', 'ERROR'],
      attempts.map((a) => [
        a.attempt,
        a.outcome,
        a.supervisorId,
        a.startedAt ? duration(a.finishedAt.getTime() - a.startedAt.getTime()) : '-',
        a.error?.message ?? '',
      ]),
    ));
    const logs = attempts.at(-1)?.logs;
    if (logs) lines.push('', `logs of attempt ${attempts.at(-1)!.attempt}:`, logs.trimEnd());
  }
  return lines.join('\n');
}

/** Which attempt the job is at: none yet, the current one, or the next one while it waits for it. */
function attemptLine(job: Job): string {
  if (job.state === 'queued' && job.attempt === 0) {
    return job.maxAttempts === null
      ? "no attempt yet (at most its worker module's maxAttempts, 3 by default)"
      : `no attempt yet (at most ${job.maxAttempts})`;
  }
  if (job.state === 'queued') return `${attemptOf(job.attempt + 1, job.maxAttempts)} is next, at ${job.runAt.toISOString()}`;
  return attemptOf(job.attempt, job.maxAttempts);
}

export async function watchCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse('watch', args);
  return withClient(values, async (client) => {
    const { followJob } = await import('./follow.ts');
    return followJob(client, positionals[0]!, { json: values.json, doing: 'watching' });
  });
}

export async function cancelCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse('cancel', args);
  return withClient(values, async (client) => {
    const result = await client.cancel(positionals[0]!, values.reason);
    print(values.json, result, () => result.message);
    return 0;
  });
}

export async function retryCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse('retry', args);
  return withClient(values, async (client) => {
    const job = await client.retry(positionals[0]!);
    print(values.json, job, () => `job ${job.id} is queued again: ${nextAttempt(job)}`);
    return 0;
  });
}

/** The attempt a queued job will run as. */
function nextAttempt(job: Job): string {
  return job.attempt === 0 ? 'its first attempt' : attemptOf(job.attempt + 1, job.maxAttempts);
}
