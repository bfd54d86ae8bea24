/**
 * One embedded PostgreSQL shared by supervisors, CLI commands and Clients, each in its own process:
 * who started it does not matter, the last user stops it, a killed server is brought back, and a
 * Client given no URL finds it. The tests share one state dir (one initdb), one after the other.
 */
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type Client } from '../src/client.ts';
import { readEmbeddedState } from '../src/db/embedded.ts';
import { alive, eventually } from './helpers/processes.ts';
import { SupervisorProcess } from './helpers/supervisor-process.ts';

const BIN = fileURLToPath(new URL('../bin/spindle.mjs', import.meta.url));
const WORKERS = fileURLToPath(new URL('./fixtures/ops-workers', import.meta.url));
/** The environment of every process here: no DATABASE_URL, so each uses the embedded server. */
const ENV = { ...process.env, DATABASE_URL: '' };
const START_MS = 60_000;

let root: string;
let stateDir: string;
const supervisors: SupervisorProcess[] = [];
const clients: Client[] = [];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'spindle-sharing-'));
  // As root PostgreSQL runs as the OS user `postgres`, which must traverse the dir (mkdtemp makes it 0700).
  await chmod(root, 0o755);
  stateDir = join(root, '.spindle');
});

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  for (const s of supervisors.splice(0)) await s.stop();
});

afterAll(async () => {
  const left = readEmbeddedState(stateDir);
  if (left) process.kill(left.pid, 'SIGINT');
  await rm(root, { recursive: true, force: true });
});

/** A supervisor on the embedded server of the shared state dir, serving ops-workers (`quick`). */
function supervisor(): Promise<SupervisorProcess> {
  const s = new SupervisorProcess({ stateDir, workers: WORKERS, concurrency: 1, logLevel: 'info' }, ENV);
  supervisors.push(s);
  return s.ready(START_MS);
}

/** createClient() with no URL and no DATABASE_URL: it finds the server through SPINDLE_STATE_DIR. */
function clientWithoutUrl(): Client {
  const client = withEnv({ DATABASE_URL: undefined, SPINDLE_STATE_DIR: stateDir }, () => createClient());
  clients.push(client);
  return client;
}

/** Runs `fn` with these environment variables set (undefined: unset), then puts them back. */
function withEnv<T>(vars: Record<string, string | undefined>, fn: () => T): T {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const apply = (values: Record<string, string | undefined>) => {
    for (const [k, v] of Object.entries(values)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
  apply(vars);
  try {
    return fn();
  } finally {
    apply(saved);
  }
}

/** Enqueues a `quick` job and resolves once `by` has finished it. */
async function runJob(client: Client, by: SupervisorProcess): Promise<void> {
  const job = await client.enqueue('quick', { at: Date.now() });
  await by.waitFor((l) => l.event === 'job:finished' && l.id === job.id, 20_000, `job ${job.id} finished`);
  expect(await client.waitFor(job.id, { timeoutMs: 10_000 })).toMatchObject({ state: 'succeeded' });
}

const said = (s: SupervisorProcess, msg: string) => s.lines.find((l) => l.msg === msg);

describe('supervisors sharing the embedded server', () => {
  it('the one that started it stops first: the other keeps working, and stops the server last', async () => {
    const a = await supervisor();
    const b = await supervisor();
    expect(said(a, 'embedded PostgreSQL running')).toMatchObject({ reused: false });
    expect(said(b, 'embedded PostgreSQL running')).toMatchObject({ reused: true });
    const server = readEmbeddedState(stateDir)!;

    await a.stop();
    expect(alive(server.pid)).toBe(true);
    await runJob(clientWithoutUrl(), b);
    expect(said(b, 'embedded PostgreSQL went away; starting it again (or joining the user that does)')).toBeUndefined();
    expect(b.stderr).toBe('');

    await b.stop();
    expect(alive(server.pid)).toBe(false);
    expect(readEmbeddedState(stateDir)).toBeUndefined();
  });

  it('kill -9 of the one that started it, then of the server: the other carries on, starting it again', async () => {
    const a = await supervisor();
    const b = await supervisor();
    const client = clientWithoutUrl();
    a.signal('SIGKILL');
    await a.exited;
    const first = readEmbeddedState(stateDir)!;
    expect(alive(first.pid)).toBe(true);
    await runJob(client, b);

    process.kill(first.pid, 'SIGKILL');
    await b.waitFor((l) => l.msg === 'embedded PostgreSQL is back', 30_000, 'the server back');
    const second = readEmbeddedState(stateDir)!;
    expect(second.pid).not.toBe(first.pid);
    expect(second.url).toBe(first.url);
    await runJob(client, b); // the same Client, through the restart

    await b.stop();
    expect(alive(second.pid)).toBe(false);
  });
});

describe('a CLI command on the embedded server', () => {
  it('Ctrl-C during `spindle enqueue --wait` that started the server stops it', async () => {
    const child = spawn(process.execPath, [BIN, 'enqueue', 'quick', '{}', '--wait', '--state-dir', stateDir], {
      env: ENV,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(await eventually(() => readEmbeddedState(stateDir) !== undefined, START_MS), output).toBe(true);
    const server = readEmbeddedState(stateDir)!;
    // No supervisor runs, so once its job is in the database the command is waiting for it.
    const client = clientWithoutUrl();
    expect(await eventually(async () => (await jobCount(client)) > 0, START_MS), output).toBe(true);

    child.kill('SIGINT');
    expect(await exited, output).toBe(130);
    expect(alive(server.pid)).toBe(false);
    expect(readEmbeddedState(stateDir)).toBeUndefined();
  });

  it('createClient() with no URL and no server says what to do', () => {
    expect(() => withEnv({ DATABASE_URL: undefined }, () => createClient({ stateDir: join(root, 'nothing-here') }))).toThrow(
      `no database to connect to: pass options.connectionString, set DATABASE_URL, or run \`spindle start\` ` +
        `(it starts the embedded PostgreSQL and records its URL in ${join(root, 'nothing-here', 'embedded.json')}); ` +
        `no embedded PostgreSQL is running for ${join(root, 'nothing-here')}`,
    );
  });
});

/** Jobs in the database; 0 while the command has not migrated it yet. */
async function jobCount(client: Client): Promise<number> {
  try {
    return (await client.list()).length;
  } catch {
    return 0;
  }
}
