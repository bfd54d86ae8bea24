/** `spindle enqueue TYPE [JSON]`: one job, said to be new, deduplicated, throttled or debounced, and who will run it. */
import type { Client } from '../client.ts';
import { inTransaction } from '../db/queryable.ts';
import type { Job } from '../job.ts';
import { MAX_DELAY_MS, type EnqueueOptions } from '../validate.ts';
import { dateFlag, INT32_MAX, intFlag, jsonArgument, parse, UsageError } from './args.ts';
import { withClient } from './connect.ts';
import { print } from './format.ts';
import { liveSupervisors, noServerWarning } from './supervisors.ts';

/** The enqueue options as the flags gave them (runAt a Date). */
type GivenOptions = EnqueueOptions & { runAt?: Date };

export async function enqueueCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse('enqueue', args);
  const [type, json] = positionals as [string, string | undefined];
  const input = jsonArgument('input', json);
  // Checked before withClient, so a bad flag opens (or starts) no database; the ranges are the
  // Client's, and what it still refuses is named after the flag (flag-names.ts).
  const options: GivenOptions = {
    queue: values.queue,
    priority: intFlag('priority', values.priority, -INT32_MAX - 1, INT32_MAX),
    runAt: dateFlag('run-at', values['run-at']),
    delayMs: intFlag('delay', values.delay, 0, MAX_DELAY_MS),
    timeoutMs: intFlag('timeout', values.timeout, 1, INT32_MAX),
    maxAttempts: intFlag('max-attempts', values['max-attempts'], 1, 1_000_000),
    key: values.key,
    concurrencyKey: values['concurrency-key'],
    throttle: keyAndMs('throttle', values['throttle-key'], values['throttle-ms'], (key, ms) => ({ key, windowMs: ms })),
    debounce: keyAndMs('debounce', values['debounce-key'], values['debounce-ms'], (key, ms) => ({ key, delayMs: ms })),
  };
  if (options.runAt !== undefined && options.delayMs !== undefined) throw new UsageError('give --run-at or --delay, not both');
  const deciders = (['key', 'throttle-key', 'debounce-key'] as const).filter((flag) => values[flag] !== undefined);
  if (deciders.length > 1) throw new UsageError(`give one of --key, --throttle-key and --debounce-key, not --${deciders.join(' and --')}`);
  const timing = options.runAt !== undefined ? '--run-at' : options.delayMs !== undefined ? '--delay' : undefined;
  if (options.debounce !== undefined && timing !== undefined) {
    throw new UsageError(`give --debounce-key or ${timing}, not both: --debounce-ms decides when the job runs`);
  }
  return withClient(values, async (client) => {
    // Loaded before the enqueue: a short job could otherwise run while the module compiles, unseen.
    const follow = values.wait ? await import('./follow.ts') : undefined;
    const { job, created } = await enqueueOnce(client, type, input, options);
    // Asked before anything is printed: once "waiting" is on the screen, Ctrl-C must find followJob listening.
    const noServer = job.state === 'queued' ? noServerWarning(await liveSupervisors(client), job.type, job.queue) : undefined;
    const what = whatEnqueueDid(job, created, options);
    const returned = (given: unknown) => !created && given !== undefined;
    const shown = { ...job, deduplicated: returned(options.key), throttled: returned(options.throttle), debounced: returned(options.debounce) };
    if (follow === undefined) print(values.json, shown, () => what);
    else if (!values.json) process.stderr.write(`${what}; waiting for it to finish\n`);
    // A debounced job took everything this enqueue gave; a deduplicated or throttled one kept its own.
    if (!created && options.debounce === undefined) {
      const ignored = notApplied(job, options, json === undefined ? undefined : input);
      if (ignored.length) warn(`not applied to job ${job.id}, which keeps its own: ${ignored.join(', ')}`);
    }
    if (noServer !== undefined) warn(follow ? `${noServer}; waiting anyway (Ctrl-C stops the wait, not the job)` : noServer);
    return follow === undefined ? 0 : follow.followJob(client, job.id, { json: values.json, doing: 'waiting for', known: job });
  });
}

/** A key flag and its duration flag (`--throttle-key K --throttle-ms MS`): both or neither. */
function keyAndMs<T>(name: string, key: string | undefined, ms: string | undefined, make: (key: string, ms: number) => T): T | undefined {
  if (key === undefined && ms === undefined) return undefined;
  if (key === undefined || ms === undefined) throw new UsageError(`give --${name}-key and --${name}-ms together`);
  return make(key, intFlag(`${name}-ms`, ms, 1, MAX_DELAY_MS)!);
}

/** The line that says what the enqueue did: a new job, or the one a key, a throttle or a debounce returned. */
function whatEnqueueDid(job: Job, created: boolean, options: GivenOptions): string {
  const which = `job ${job.id} (${job.type}, queue ${job.queue})`;
  if (created) {
    if (options.throttle !== undefined) return `enqueued ${which}; it opens a ${options.throttle.windowMs} ms window of throttle key "${options.throttle.key}"`;
    if (options.debounce !== undefined) return `enqueued ${which} to run at ${job.runAt.toISOString()}, unless debounce key "${options.debounce.key}" is enqueued again`;
    return `enqueued ${which}`;
  }
  if (options.throttle !== undefined) return `throttled: ${which} opened this window of key "${options.throttle.key}" and is ${job.state}; nothing enqueued`;
  if (options.debounce !== undefined) return `debounced: ${which} now runs at ${job.runAt.toISOString()}, with this input and options`;
  return `${which} is already ${job.state} with key "${job.key}": deduplicated, nothing enqueued`;
}

/**
 * Enqueues, and tells a new job from the one a `key`, a throttle or a debounce returned. The enqueue
 * runs in a transaction and the job is then read on another connection: a job this call created is
 * not committed yet, so is not seen there; one that was there before is (a debounced one as it was).
 */
async function enqueueOnce(client: Client, type: string, input: unknown, options: GivenOptions): Promise<{ job: Job; created: boolean }> {
  if (options.key === undefined && options.throttle === undefined && options.debounce === undefined) {
    return { job: await client.enqueue(type, input, options), created: true };
  }
  return inTransaction(client.pool, async (tx) => {
    const job = await client.enqueue(type, input, { ...options, client: tx });
    return { job, created: (await client.get(job.id)) === null };
  });
}

/** The flags of a deduplicated enqueue that the job it returned does not have, each with what it has. */
function notApplied(job: Job, given: GivenOptions, input: unknown): string[] {
  const out: string[] = [];
  if (given.queue !== undefined && given.queue !== job.queue) out.push(`--queue ${given.queue} (it is in ${job.queue})`);
  if (given.priority !== undefined && given.priority !== job.priority) out.push(`--priority ${given.priority} (it has ${job.priority})`);
  if (given.runAt !== undefined && given.runAt.getTime() !== job.runAt.getTime()) {
    out.push(`--run-at ${given.runAt.toISOString()} (it runs at ${job.runAt.toISOString()})`);
  }
  // Its run_at cannot show whether it was delayed by as much: a delay never applies to a job that exists.
  if (given.delayMs !== undefined) out.push(`--delay ${given.delayMs} (it runs at ${job.runAt.toISOString()})`);
  if (given.timeoutMs !== undefined && given.timeoutMs !== job.timeoutMs) {
    out.push(`--timeout ${given.timeoutMs} (it has ${job.timeoutMs ?? "its worker module's"})`);
  }
  if (given.maxAttempts !== undefined && given.maxAttempts !== job.maxAttempts) {
    out.push(`--max-attempts ${given.maxAttempts} (it has ${job.maxAttempts ?? "its worker module's"})`);
  }
  if (input !== undefined && canonical(input) !== canonical(job.input)) out.push('the JSON input (it has its own)');
  return out;
}

/** JSON text with object keys sorted: stored JSON (jsonb) does not keep their order. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

function warn(message: string): void {
  process.stderr.write(`spindle: warning: ${message}\n`);
}
