/**
 * spindle as a user meets it: packed, installed into an app of its own (test/fixtures/consumer-app),
 * type-checked there under strict NodeNext, and run there: an ES module and a CommonJS script that
 * enqueue and wait, and the package's `spindle start` serving the app's TypeScript and JavaScript
 * worker modules and a TypeScript workflow.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as api from '../src/index.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const APP_FIXTURE = fileURLToPath(new URL('./fixtures/consumer-app/', import.meta.url));
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc');
const START_MS = 20_000;
/** This Node first on PATH: the package's bin runs under `#!/usr/bin/env node`. */
const PATH = `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}`;

let dir: string;
let app: string;
let db: TestDatabase;
const supervisors: ChildProcess[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'spindle-consumer-'));
  // As root, an embedded PostgreSQL runs as the OS user postgres, which must reach the app's .spindle/.
  chmodSync(dir, 0o755);
  app = join(dir, 'app');
  cpSync(APP_FIXTURE, app, { recursive: true });
  db = await createTestDatabase();
  // What `prepare` does when npm packs, done only when dist/ is older than the source (npm ci built it).
  if (!isBuilt()) await run('npm', ['run', 'build'], { cwd: ROOT, env: { ...process.env, PATH } });
  const { stdout } = await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dir], {
    cwd: ROOT,
    env: { ...process.env, PATH },
  });
  const [{ filename }] = JSON.parse(stdout) as { filename: string }[];
  await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', join(dir, filename!)], { cwd: app, env: { ...process.env, PATH } });
}, 180_000);

afterAll(async () => {
  for (const child of supervisors) child.kill('SIGKILL');
  await db?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** dist/ was built after the last change to what it is built from. */
function isBuilt(): boolean {
  const built = join(ROOT, 'dist/index.js');
  if (!existsSync(built)) return false;
  const inputs = ['package.json', 'tsconfig.json', 'tsconfig.build.json', 'scripts/build.mjs'].map((f) => join(ROOT, f));
  for (const path of readdirSync(join(ROOT, 'src'), { recursive: true, encoding: 'utf8' })) inputs.push(join(ROOT, 'src', path));
  const builtAt = statSync(built).mtimeMs;
  return inputs.every((file) => statSync(file).mtimeMs <= builtAt);
}

/** `spindle start` from the app's node_modules/.bin, resolved once it has started. */
async function startSpindle(args: string[], env: NodeJS.ProcessEnv): Promise<ChildProcess> {
  const child = spawn(join(app, 'node_modules/.bin/spindle'), ['start', ...args], {
    cwd: app,
    env: { ...env, PATH },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  supervisors.push(child);
  let said = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`spindle start did not start within ${START_MS} ms:\n${said}`)), START_MS);
    // pino's lines go to stderr or stdout, depending on where the CLI sends its logs.
    for (const output of [child.stdout!, child.stderr!]) {
      createInterface({ input: output }).on('line', (line) => {
        said += `${line}\n`;
        if (line.includes('"supervisor started"')) {
          clearTimeout(timer);
          resolve();
        }
      });
    }
    child.on('exit', (code) => reject(new Error(`spindle start exited with ${code}:\n${said}`)));
  });
  return child;
}

async function node(script: string, env: NodeJS.ProcessEnv): Promise<unknown> {
  const { stdout } = await run(process.execPath, [script], { cwd: app, env });
  return JSON.parse(stdout);
}

/** Stops a `spindle start` as Ctrl-C does, and resolves with its exit code. */
function interrupt(child: ChildProcess): Promise<number | null> {
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGINT');
  return exited;
}

/** This process's environment without DATABASE_URL: the app then finds the embedded server. */
function withoutDatabaseUrl(): NodeJS.ProcessEnv {
  const { DATABASE_URL: _, ...env } = process.env;
  return env;
}

describe('spindle installed into an app of its own', () => {
  it('type-checks an app that names every public export, on strict NodeNext with no extra options', async () => {
    const result = await run(process.execPath, [TSC, '-p', app]).catch((error: { stdout: string }) => error);
    expect(result.stdout).toBe('');
  });

  it("serves the app's TypeScript and JavaScript modules; an ES module and a CommonJS script enqueue and wait", { timeout: 60_000 }, async () => {
    const env = { ...process.env, DATABASE_URL: db.url };
    await startSpindle(['--workers', 'workers', '--workflows', 'workflows', '--no-socket'], env);
    expect(await node('enqueue.mjs', env)).toEqual({
      exports: Object.keys(api).sort(),
      outputs: { double: 42, triple: 15, greet: 'hello esm, 4' },
    });
    expect(await node('enqueue.cjs', env)).toEqual({ state: 'succeeded', output: 21 });
  });

  it('runs two `spindle start` on one embedded server with no DATABASE_URL; stopping the first leaves the second working', { timeout: 90_000 }, async () => {
    const env = withoutDatabaseUrl();
    const first = await startSpindle(['--workers', 'workers', '--socket', '.spindle/first.sock'], env);
    const second = await startSpindle(['--workers', 'workers', '--socket', '.spindle/second.sock'], env);
    expect(await node('enqueue.cjs', env)).toEqual({ state: 'succeeded', output: 21 });
    expect(await interrupt(first)).toBe(0);
    expect(await node('enqueue.cjs', env)).toEqual({ state: 'succeeded', output: 21 });
    expect(await interrupt(second)).toBe(0);
    // The last user gone, the server is stopped and its URL withdrawn.
    expect(existsSync(join(app, '.spindle/embedded.json'))).toBe(false);
  });
});
