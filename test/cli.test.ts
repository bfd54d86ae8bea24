import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dateFlag, intFlag } from '../src/cli/main.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';

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

function spindle(args: string[], env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: db.url }): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
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
    ['an unknown flag', ['jobs', '--colour'], 2, /^spindle: Unknown option '--colour'/],
    ['a missing argument', ['job'], 2, /^spindle: expected ID\n/],
    ['a bad job type', ['enqueue', 'bad type'], 1, /^spindle: type must be 1 to 128 characters/],
    ['bad JSON input', ['enqueue', 't', '{oops'], 1, /^spindle: input is not valid JSON/],
    ['a bad option value', ['enqueue', 't', '--priority', 'high'], 2, /^spindle: --priority must be a decimal integer from -2147483648 to 2147483647, got "high"\n/],
    ['a bad date', ['enqueue', 't', '--run-at', 'someday'], 2, /^spindle: --run-at must be an ISO 8601 date/],
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

describe('with no database configured', () => {
  it('starts the embedded PostgreSQL for the command, and finds the data again next time', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spindle-cli-'));
    chmodSync(dir, 0o755);
    const env = { ...process.env };
    delete env.DATABASE_URL;
    try {
      const stateDir = join(dir, '.spindle');
      const enqueued = await spindle(['enqueue', 'noop', '{"n":1}', '--state-dir', stateDir], env);
      expect(enqueued.stderr).toBe('');
      expect(enqueued.stdout).toMatch(/^enqueued job 1 \(noop, queue default\)\n$/);
      const listed = await spindle(['jobs', '--state-dir', stateDir, '--json'], env);
      expect(JSON.parse(listed.stdout)).toMatchObject([{ id: '1', type: 'noop', input: { n: 1 } }]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
