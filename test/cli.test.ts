import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
    ['a bad option value', ['enqueue', 't', '--priority', 'high'], 2, /^spindle: --priority must be an integer/],
    ['a bad date', ['enqueue', 't', '--run-at', 'someday'], 1, /^spindle: options\.runAt must be a valid Date/],
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
