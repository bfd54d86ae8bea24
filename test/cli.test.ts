import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dateFlag, intFlag, parse, UsageError } from '../src/cli/args.ts';
import type { CommandName } from '../src/cli/commands.ts';
import { messageNamingFlags } from '../src/cli/flag-names.ts';
import { ValidationError } from '../src/errors.ts';
import { createClient, type Client } from '../src/client.ts';
import { startSupervisor, type SupervisorHandle } from '../src/start.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';
import { eventually } from './helpers/processes.ts';

const BIN = fileURLToPath(new URL('../bin/spindle.mjs', import.meta.url));

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  await db?.drop();
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The CLI in a child process: its end, and a wait for what it has written on stderr so far. */
function launch(args: string[], env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: db.url }) {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let stdout = '';
  let stderr = '';
  const seen = new Set<() => void>();
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => {
    stderr += d;
    for (const check of seen) check();
  });
  const done = new Promise<Run>((resolve) => child.on('exit', (code) => resolve({ code, stdout, stderr })));
  /** Resolves once stderr matches `pattern` (rejects if the process ends first). */
  const stderrMatches = (pattern: RegExp) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (!pattern.test(stderr)) return;
        seen.delete(check);
        resolve();
      };
      seen.add(check);
      check();
      void done.then((run) => reject(new Error(`exited ${run.code} before stderr matched ${pattern}: ${run.stderr}`)));
    });
  return { child, done, stderrMatches, stderr: () => stderr };
}

function spindle(args: string[], env?: NodeJS.ProcessEnv): Promise<Run> {
  return launch(args, env).done;
}

describe('spindle commands against a database', () => {
  it('migrate says the database is up to date', async () => {
    const out = await spindle(['migrate']);
    expect(out).toMatchObject({ code: 0, stdout: 'the database is up to date\n' });
  });

  it('enqueue, jobs, job, cancel and retry', async () => {
    const enqueued = await spindle(['enqueue', 'resize', '{"w":640}', '--priority', '3', '--queue', 'images', '--json']);
    expect(enqueued.code).toBe(0);
    const job = JSON.parse(enqueued.stdout);
    expect(job).toMatchObject({ type: 'resize', input: { w: 640 }, priority: 3, queue: 'images', state: 'queued' });

    const listed = await spindle(['jobs', '--queue', 'images']);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/^ID\s+TYPE\s+QUEUE\s+STATE/);
    expect(listed.stdout).toMatch(new RegExp(`^${job.id}\\s+resize\\s+images\\s+queued`, 'm'));

    const shown = await spindle(['job', job.id]);
    expect(shown.stdout).toMatch(new RegExp(`job ${job.id}  resize  \\[queued\\]`));

    const cancelled = await spindle(['cancel', job.id, '--reason', 'not needed']);
    expect(cancelled).toMatchObject({ code: 0, stdout: `job ${job.id} cancelled\n` });
    const again = await spindle(['cancel', job.id]);
    expect(again.stdout).toBe(`job ${job.id} already cancelled; nothing to cancel\n`);

    const retried = await spindle(['retry', job.id, '--json']);
    expect(JSON.parse(retried.stdout)).toMatchObject({ id: job.id, state: 'queued' });
    const states = await spindle(['jobs', '--state', 'queued', '--json']);
    expect(JSON.parse(states.stdout).map((j: { id: string }) => j.id)).toContain(job.id);
  });

  it('supervisors says when none run', async () => {
    expect((await spindle(['supervisors'])).stdout).toBe('no supervisors running\n');
  });
});

describe('errors are one clear line and a non-zero exit', () => {
  const cases: [string, string[], number, RegExp][] = [
    ['an unknown command', ['frobnicate'], 2, /^spindle: unknown command "frobnicate"\n/],
    ['an unknown flag', ['jobs', '--colour'], 2, /^spindle: unknown flag --colour\nRun 'spindle jobs --help' for usage\.\n$/],
    ['a missing argument', ['job'], 2, /^spindle: expected ID\n/],
    ['a bad job type', ['enqueue', 'bad type'], 1, /^spindle: type must be 1 to 128 characters/],
    ['bad JSON input', ['enqueue', 't', '{oops'], 1, /^spindle: input is not valid JSON/],
    ['a bad option value', ['enqueue', 't', '--priority', 'high'], 2, /^spindle: --priority must be a decimal integer from -2147483648 to 2147483647, got "high"\n/],
    ['a bad date', ['enqueue', 't', '--run-at', 'someday'], 2, /^spindle: --run-at must be an ISO 8601 date/],
    ['a throttle key too long', ['enqueue', 't', '--throttle-key', 'x'.repeat(129), '--throttle-ms', '5'], 1, /^spindle: --throttle-key must be a string of 1 to 128 characters/],
    ['a job that does not exist', ['job', '424242'], 1, /^spindle: no job 424242\n$/],
    ['a bad job id', ['cancel', 'abc'], 1, /^spindle: id must be a job id/],
    ['a bad state', ['jobs', '--state', 'done'], 1, /^spindle: --state must be one of/],
    ['retrying a queued job', ['retry', '1'], 1, /^spindle: (job 1 is queued; only failed|no job 1)/],
  ];
  it.each(cases)('%s', async (_name, args, code, message) => {
    const out = await spindle(args);
    expect(out.code).toBe(code);
    expect(out.stderr).toMatch(message);
    expect(out.stderr.split('\n').filter(Boolean)[0]).toMatch(/^spindle: /);
  });

  it('a database that cannot be reached', async () => {
    const out = await spindle(['jobs', '--database-url', 'postgres://postgres@127.0.0.1:1/nothing']);
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/^spindle: cannot reach PostgreSQL/);
  });
});

describe('numeric and date flags take only what they show', () => {
  const PRIORITY = '--priority must be a decimal integer from -2147483648 to 2147483647';
  const RUN_AT = '--run-at must be an ISO 8601 date (2026-12-02) or date-time with a time zone (2026-12-02T10:00:00Z), from year 1 to 9999';
  // Every command and flag kind once through the real CLI (a process each); the full tables of
  // values below go through the same parsers in this process.
  const bad: [string[], string][] = [
    ...['', '1e3', '0x10'].map((v): [string[], string] => [['enqueue', 't', '--priority', v], `${PRIORITY}, got ${JSON.stringify(v)}`]),
    [['enqueue', 't', '--priority=-1e3'], `${PRIORITY}, got "-1e3"`],
    [['enqueue', 't', '--timeout', '0'], '--timeout must be a decimal integer from 1 to 2147483647, got "0"'],
    [['enqueue', 't', '--delay', '1e3'], '--delay must be a decimal integer from 0 to 3155760000000, got "1e3"'],
    [['enqueue', 't', '--max-attempts', '1000001'], '--max-attempts must be a decimal integer from 1 to 1000000, got "1000001"'],
    [['enqueue', 't', '--run-at', 'epoch'], `${RUN_AT}, got "epoch"`],
    [['enqueue', 't', '--run-at', '2026-12-02', '--delay', '5'], 'give --run-at or --delay, not both'],
    [['enqueue', 't', '--throttle-key', 'k', '--throttle-ms', '0'], '--throttle-ms must be a decimal integer from 1 to 3155760000000, got "0"'],
    [['enqueue', 't', '--debounce-key', 'k'], 'give --debounce-key and --debounce-ms together'],
    [['enqueue', 't', '--debounce-key', 'k', '--debounce-ms', '5', '--delay', '5'], 'give --debounce-key or --delay, not both: --debounce-ms decides when the job runs'],
    [['enqueue', 't', '--key', 'k', '--throttle-key', 'k', '--throttle-ms', '5'], 'give one of --key, --throttle-key and --debounce-key, not --key and --throttle-key'],
    [['jobs', '--limit', '0x10'], '--limit must be a decimal integer from 1 to 1000, got "0x10"'],
    [['workflows', '--limit', ''], '--limit must be a decimal integer from 1 to 1000, got ""'],
    [['start', '--concurrency', '1025'], '--concurrency must be a decimal integer from 1 to 1024, got "1025"'],
    [['start', '--http-port', '-1'], '--http-port must be a decimal integer from 0 to 65535, got "-1"'],
    [['demo', '--jobs', '0'], '--jobs must be a decimal integer from 1 to 10000, got "0"'],
    [['inspect', '--port', '0'], '--port must be a decimal integer from 1 to 65535, got "0"'],
  ];

  it.each(['', ' ', '1e3', '0x10', '1.5', '+3', '12abc', 'Infinity', '2147483648', '-2147483649', '-1e3'])(
    'intFlag refuses %j for --priority',
    (v) => {
      expect(() => intFlag('priority', v, -2147483648, 2147483647)).toThrow(`${PRIORITY}, got ${JSON.stringify(v)}`);
    },
  );

  it.each(['epoch', 'infinity', 'now', '12/02/2026', '2026-12-02T10:00:00', '2026-02-30', '2026-12-02T24:00:00Z', '0000-01-01'])(
    'dateFlag refuses %j',
    (v) => {
      expect(() => dateFlag('run-at', v)).toThrow(`${RUN_AT}, got ${JSON.stringify(v)}`);
    },
  );

  const jobCount = async () => Number((await db.pool.query('SELECT count(*) FROM spindle.jobs')).rows[0].count);

  it.each(bad)('%j', async (args, line) => {
    const before = await jobCount();
    const out = await spindle(args);
    expect(out.code).toBe(2);
    expect(out.stdout).toBe('');
    expect(out.stderr.split('\n')[0]).toBe(`spindle: ${line}`);
    expect(await jobCount()).toBe(before);
  });

  it('takes negative values after a space or an =, and -- before a negative positional', async () => {
    const spaced = await spindle(['enqueue', 't', '--priority', '-5', '--json']);
    expect(JSON.parse(spaced.stdout)).toMatchObject({ priority: -5 });
    const joined = await spindle(['enqueue', 't', '--priority=-2147483648', '--json']);
    expect(JSON.parse(joined.stdout)).toMatchObject({ priority: -2147483648 });
    const positional = await spindle(['enqueue', 't', '--priority', '-0', '--json', '--', '-5']);
    expect(JSON.parse(positional.stdout)).toMatchObject({ priority: 0, input: -5 });
  });

  it('takes an ISO 8601 date-time with its offset', async () => {
    const out = await spindle(['enqueue', 't', '--run-at', '2036-12-02T10:00:00+01:00', '--timeout', '2147483647', '--json']);
    expect(JSON.parse(out.stdout)).toMatchObject({ runAt: '2036-12-02T09:00:00.000Z', timeoutMs: 2147483647 });
  });

  it.each([
    ['0', 0],
    ['-0', 0],
    ['007', 7],
    ['-5', -5],
    ['9007199254740991', 9007199254740991],
  ])('intFlag reads %j as %d', (text, n) => {
    expect(intFlag('x', text, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER)).toBe(n);
  });

  it('intFlag refuses what Number() would round', () => {
    expect(() => intFlag('x', '9007199254740993', 0, Number.MAX_SAFE_INTEGER)).toThrow(/^--x must be a decimal integer/);
  });

  it.each([
    ['2026-12-02', '2026-12-02T00:00:00.000Z'],
    ['2028-02-29T10:00Z', '2028-02-29T10:00:00.000Z'],
    ['2026-12-02T10:00:00.123456789Z', '2026-12-02T10:00:00.123Z'],
    ['2026-12-02T10:00:00.5+0530', '2026-12-02T04:30:00.500Z'],
    ['2026-12-02 10:00:00+01:00', '2026-12-02T09:00:00.000Z'],
    ['2026-12-02T10:00:00-08', '2026-12-02T18:00:00.000Z'],
    ['0001-01-01T00:00:00Z', '0001-01-01T00:00:00.000Z'],
  ])('dateFlag reads %s as %s', (text, iso) => {
    expect(dateFlag('run-at', text)?.toISOString()).toBe(iso);
  });
});

describe('the CLI explains itself', () => {
  it('prints the commands for --help, and a command\'s usage, flags and example for CMD --help and help CMD', async () => {
    const [overall, enqueue, start] = await Promise.all([spindle(['--help']), spindle(['enqueue', '--help']), spindle(['help', 'start'])]);
    for (const run of [overall, enqueue, start]) expect(run).toMatchObject({ code: 0, stderr: '' });
    for (const command of ['start', 'enqueue', 'jobs', 'job', 'watch', 'cancel', 'retry', 'supervisors', 'start-workflow', 'workflows', 'workflow', 'signal', 'cancel-workflow', 'inspect', 'migrate', 'demo']) {
      expect(overall.stdout).toMatch(new RegExp(`^  ${command} +[a-z]`, 'm'));
    }
    expect(enqueue.stdout).toMatch(/^Usage: spindle enqueue TYPE \[JSON\] \[FLAGS\]\n/);
    expect(enqueue.stdout).toMatch(/^ {2}--priority N +higher runs first \(default 0\); a decimal integer, may be negative$/m);
    expect(enqueue.stdout).toMatch(/^ {2}--database-url URL +PostgreSQL URL/m);
    expect(enqueue.stdout).toMatch(/^Examples:\n {2}spindle enqueue primes /m);
    expect(start.stdout).toMatch(/^ {2}--workflows DIR +directory of workflow modules/m);
    expect(start.stdout).toMatch(/^ {2}--debug-port N +/m);
  });

  it('names the closest flag to an unknown one and the flag typed in an error from the library, and reads negative numbers as values', async () => {
    const [stat, runAt, negative] = await Promise.all([
      spindle(['jobs', '--stat', 'failed']),
      // A valid date whose time in UTC is before year 1: only the Client refuses it, as options.runAt.
      spindle(['enqueue', 't', '--run-at', '0001-01-01T00:30:00+01:00']),
      // A negative number is a value, after a flag or as an argument, also without --.
      spindle(['enqueue', 't', '-5', '--priority', '-3', '--queue', 'parked', '--json']),
    ]);
    expect(stat).toMatchObject({ code: 2, stderr: "spindle: unknown flag --stat; did you mean --state?\nRun 'spindle jobs --help' for usage.\n" });
    expect(runAt).toMatchObject({ code: 1, stderr: 'spindle: --run-at must be a date from year 1 to 9999, got 0000-12-31T23:30:00.000Z\n' });
    expect(JSON.parse(negative.stdout)).toMatchObject({ input: -5, priority: -3 });
  });

  // The same parser and error naming in this process: every case without a process start each.
  it.each([
    [['enqueue', 't', '--max', '3'], 'unknown flag --max; did you mean --max-attempts?'],
    [['enqueue', 't', '--prority', '3'], 'unknown flag --prority; did you mean --priority?'],
    [['jobs', '--colour'], 'unknown flag --colour'],
    [['jobs', '-x'], 'unknown flag -x'],
    [['enqueue', 't', '--wait=yes'], '--wait takes no value'],
    [['enqueue', 't', '--queue'], '--queue needs a value (Q)'],
    [['enqueue', 't', '--queue', '--wait'], "--queue needs a value (Q); for a value that starts with '-', write --queue=VALUE"],
    [['job', '1', '2'], 'unexpected argument "2" (expected ID)'],
  ])('parse(%j) refuses with %j', ([command, ...args], message) => {
    expect(() => parse(command as CommandName, args)).toThrow(new UsageError(message));
  });

  it('names the flags the user gave in library errors, and leaves fields that came from elsewhere', () => {
    const named = (command: CommandName, args: string[], error: Error) => messageNamingFlags(error, command, args);
    expect(named('enqueue', ['t', '--queue', 'a b'], new ValidationError('options.queue', 'must be 1 to 128 characters'))).toBe(
      '--queue must be 1 to 128 characters',
    );
    expect(named('start', ['--queues=a,b c'], new ValidationError('options.queues[1]', 'must be 1 to 128 characters'))).toBe(
      '--queues must be 1 to 128 characters',
    );
    expect(named('enqueue', ['t', '--run-at', 'x', '--delay', '5'], new ValidationError('options.runAt', 'cannot be combined with options.delayMs'))).toBe(
      '--run-at cannot be combined with --delay',
    );
    expect(named('start', [], new ValidationError('options.concurrency', 'must be an integer'))).toBe('options.concurrency must be an integer');
  });

  it('refuses a missing --workflows directory, as it does a missing --workers one, before starting anything', async () => {
    const missing = join(tmpdir(), 'spindle-cli-no-such-dir');
    const workflows = await spindle(['start', '--workflows', missing, '--no-socket']);
    expect(workflows).toMatchObject({ code: 2, stdout: '' });
    expect(workflows.stderr.split('\n')[0]).toBe(`spindle: --workflows must be a directory: ${missing} does not exist`);
  });
});

describe('enqueue says what it did, and who will run it', () => {
  it('warns when no supervisor runs, and says a second enqueue with the same --key was deduplicated, naming what was not applied', async () => {
    const first = await spindle(['enqueue', 'report', '{"day":1}', '--key', 'cli-dedupe']);
    expect(first.stdout).toMatch(/^enqueued job (\d+) \(report, queue default\)\n$/);
    expect(first.stderr).toBe(`spindle: warning: no supervisor is running: the job waits until one that serves "report" starts ('spindle start')\n`);
    const id = /job (\d+)/.exec(first.stdout)![1];

    const second = await spindle(['enqueue', 'report', '{"day":1}', '--key', 'cli-dedupe', '--priority', '5']);
    expect(second.stdout).toBe(`job ${id} (report, queue default) is already queued with key "cli-dedupe": deduplicated, nothing enqueued\n`);
    expect(second.stderr.split('\n')[0]).toBe(`spindle: warning: not applied to job ${id}, which keeps its own: --priority 5 (it has 0)`);
    const { rows } = await db.pool.query("SELECT priority FROM spindle.jobs WHERE key = 'cli-dedupe'");
    expect(rows).toEqual([{ priority: 0 }]);
  });

  it('says a throttled enqueue returned the job that opened the window, and a debounced one moved its job', async () => {
    const throttle = ['--throttle-key', 'cli-throttle', '--throttle-ms', '60000'];
    const first = await spindle(['enqueue', 'report', '{"day":1}', ...throttle]);
    expect(first.stdout).toMatch(/^enqueued job (\d+) \(report, queue default\); it opens a 60000 ms window of throttle key "cli-throttle"\n$/);
    const id = /job (\d+)/.exec(first.stdout)![1];
    const second = await spindle(['enqueue', 'report', '{"day":2}', ...throttle]);
    expect(second.stdout).toBe(`throttled: job ${id} (report, queue default) opened this window of key "cli-throttle" and is queued; nothing enqueued\n`);
    expect(second.stderr).toContain(`spindle: warning: not applied to job ${id}, which keeps its own: the JSON input (it has its own)\n`);

    const debounce = ['--debounce-key', 'cli-debounce', '--debounce-ms', '60000'];
    const made = await spindle(['enqueue', 'report', '{"day":3}', ...debounce, '--json']);
    const job = JSON.parse(made.stdout);
    expect(job).toMatchObject({ debounceKey: 'cli-debounce', deduplicated: false, throttled: false, debounced: false });
    const moved = await spindle(['enqueue', 'report', '{"day":4}', ...debounce]);
    const { rows } = await db.pool.query<{ run_at: Date; input: unknown }>('SELECT run_at, input FROM spindle.jobs WHERE id = $1', [job.id]);
    expect(rows[0]!.input).toEqual({ day: 4 });
    expect(moved.stdout).toBe(`debounced: job ${job.id} (report, queue default) now runs at ${rows[0]!.run_at.toISOString()}, with this input and options\n`);
  });

  it('--wait with no supervisor says so; Ctrl-C stops the wait, says the job goes on and how to follow it', async () => {
    const cli = launch(['enqueue', 'report', '--wait']);
    await cli.stderrMatches(/waiting anyway/);
    cli.child.kill('SIGINT');
    const out = await cli.done;
    const id = /enqueued job (\d+)/.exec(out.stderr)![1];
    expect(out.code).toBe(130);
    expect(out.stderr).toContain(`spindle: warning: no supervisor is running: the job waits until one that serves "report" starts ('spindle start'); waiting anyway (Ctrl-C stops the wait, not the job)\n`);
    expect(out.stderr).toContain(`spindle: stopped waiting for job ${id}, which goes on (queued): 'spindle watch ${id}' follows it again`);
    expect((await db.pool.query('SELECT state FROM spindle.jobs WHERE id = $1', [id])).rows).toEqual([{ state: 'queued' }]);
  });
});

describe('with no database configured', () => {
  it('starts the embedded PostgreSQL for the command, and finds the data again next time', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spindle-cli-'));
    chmodSync(dir, 0o755);
    const env = { ...process.env };
    delete env.DATABASE_URL;
    try {
      const stateDir = join(dir, '.spindle');
      const enqueued = await spindle(['enqueue', 'noop', '{"n":1}', '--state-dir', stateDir], env);
      expect(enqueued.stderr).toMatch(/^spindle: warning: no supervisor is running/);
      expect(enqueued.stdout).toMatch(/^enqueued job 1 \(noop, queue default\)\n$/);
      const listed = await spindle(['jobs', '--state-dir', stateDir, '--json'], env);
      expect(JSON.parse(listed.stdout)).toMatchObject([{ id: '1', type: 'noop', input: { n: 1 } }]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('with a supervisor running', () => {
  const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
  let handle: SupervisorHandle;
  let client: Client;

  beforeAll(async () => {
    handle = await startSupervisor({
      databaseUrl: db.url,
      workers: {
        echo: join(FIXTURES, 'workers/echo.ts'),
        cooperative: join(FIXTURES, 'workers/cooperative.ts'),
        exits: join(FIXTURES, 'termination-workers/exits.ts'),
      },
      workflows: { greet: join(FIXTURES, 'workflows/greet-v1.ts') },
      queues: ['live'],
      concurrency: 2,
      socket: false,
      logLevel: 'silent',
      backoff: { baseMs: 10, maxMs: 10 },
      // The jobs of the tests above have types nobody serves: they are not the reaper's to fail here.
      unknownTypeGraceMs: 600_000,
    });
    client = createClient({ connectionString: db.url });
  });

  afterAll(async () => {
    await client?.close();
    await handle?.stop();
  });

  it('enqueue of a type, or on a queue, that no live supervisor serves warns, naming what they serve', async () => {
    const [type, queue] = await Promise.all([
      spindle(['enqueue', 'nope', '--queue', 'live']),
      spindle(['enqueue', 'echo', '--queue', 'elsewhere']),
    ]);
    expect(type.stderr).toBe(
      'spindle: warning: no live supervisor serves "nope" (they serve "cooperative", "echo", "exits"); ' +
        'unless one that serves it starts, the leader fails the job as an unknown type (after 60 s by default)\n',
    );
    expect(queue.stderr).toBe('spindle: warning: no live supervisor serves "echo" on queue "elsewhere": those that serve "echo" serve the queues "live"\n');
  });

  it('supervisors lists it, as the leader once it leads', async () => {
    await eventually(() => handle.supervisor.isLeader, 10_000);
    const out = await spindle(['supervisors']);
    const [header, row, ...rest] = out.stdout.trimEnd().split('\n');
    expect(rest).toEqual([]);
    expect(header!.split(/\s+/)).toEqual(['ID', 'ROLE', 'HOST', 'PID', 'RUNNING', 'THREADS', 'QUEUES', 'TYPES', 'UP', 'LAST', 'SEEN']);
    expect(row!.split(/\s+/).slice(0, 4)).toEqual([handle.id, 'leader', hostname(), String(process.pid)]);
  });

  it('--wait says which attempt ended and how before the one that succeeded', async () => {
    const out = await spindle(['enqueue', 'exits', '{"code":3,"succeedOn":2}', '--queue', 'live', '--max-attempts', '2', '--wait']);
    expect(out.code).toBe(0);
    expect(JSON.parse(out.stdout)).toEqual({ attempt: 2 });
    const id = /enqueued job (\d+)/.exec(out.stderr)![1];
    expect(out.stderr).toContain(`exits ${id} attempt 1 crashed: worker thread exited with code 3\n`);
  });

  it('--wait on a job cancelled while it runs ends with its reason, said once', async () => {
    const cli = launch(['enqueue', 'cooperative', '{"ms":30000}', '--queue', 'live', '--wait']);
    await cli.stderrMatches(/\[running\]/);
    const id = /enqueued job (\d+)/.exec(cli.stderr())![1]!;
    await client.cancel(id, 'not needed');
    const out = await cli.done;
    expect(out.code).toBe(4);
    expect(out.stderr.trimEnd().split('\n').at(-1)).toBe(`job ${id} cancelled: not needed`);
  });

  it('start-workflow starts a run, --wait prints its output, and the same --id is not started again', async () => {
    const cli = launch(['start-workflow', 'greet', '{"to":"ana"}', '--id', 'cli-greet', '--wait']);
    await cli.stderrMatches(/^started workflow run cli-greet \(greet\); waiting for it to end\n/);
    await client.sendEvent('cli-greet', 'go');
    const out = await cli.done;
    expect(out).toMatchObject({ code: 0, stderr: 'started workflow run cli-greet (greet); waiting for it to end\n' });
    expect(JSON.parse(out.stdout)).toEqual({ bye: 'bye' });
    const again = await spindle(['start-workflow', 'greet', '--id', 'cli-greet']);
    expect(again).toMatchObject({ code: 0, stdout: 'workflow run cli-greet (greet, succeeded) exists already: not started again\n', stderr: '' });
  });
});
