/** The embedded PostgreSQL: real servers, each on its own temp dir. */
import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import * as fs from 'node:fs';
import { appendFile, chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { connectionStringFor, readEmbeddedState, startEmbedded, type EmbeddedServer } from '../src/db/embedded.ts';
import { EmbeddedPostgresError } from '../src/errors.ts';
import type { Logger } from '../src/logger.ts';
import { alive, eventually } from './helpers/processes.ts';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..');
const ownerScript = join(here, 'fixtures', 'embedded-owner.ts');
const isRoot = process.getuid?.() === 0;

const dirs: string[] = [];
const servers: EmbeddedServer[] = [];
const strayPids = new Set<number>();

afterAll(async () => {
  for (const s of servers) await s.stop().catch(() => {});
  for (const pid of strayPids) {
    try {
      process.kill(pid, 'SIGCONT');
      process.kill(pid, 'SIGINT');
    } catch {
      // gone
    }
  }
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'spindle-embedded-'));
  await chmod(d, 0o755);
  dirs.push(d);
  return d;
}

function recorder(): Logger & { lines: Array<{ level: string; msg: string; obj: object }> } {
  const lines: Array<{ level: string; msg: string; obj: object }> = [];
  const at = (level: string) => (obj: object, msg?: string) => void lines.push({ level, msg: msg ?? '', obj });
  return { lines, info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') };
}

async function start(...args: Parameters<typeof startEmbedded>): Promise<EmbeddedServer> {
  const s = await startEmbedded(...args);
  servers.push(s);
  strayPids.add(s.pid!);
  return s;
}

async function selectOne(url: string): Promise<number> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  await c.connect();
  try {
    const { rows } = await c.query<{ one: number }>('SELECT 1 AS one');
    return rows[0]!.one;
  } finally {
    await c.end();
  }
}

interface Owner {
  pid: number;
  url: string;
  port: number;
  ownerPid: number;
  /** SIGKILLs the owner process; the server stays behind. */
  kill(): Promise<void>;
}

/** Runs the fixture that starts a server on stateDir, then SIGKILLs it: the server stays behind. */
async function orphanServer(stateDir: string): Promise<Owner> {
  const owner = await ownerProcess(stateDir);
  await owner.kill();
  return owner;
}

/** A separate Node process that owns the server on stateDir. */
async function ownerProcess(stateDir: string): Promise<Owner> {
  const child = spawn(process.execPath, ['--import', 'tsx', ownerScript, stateDir], {
    cwd: repo,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const line = await new Promise<string>((resolveLine, reject) => {
    const rl = createInterface({ input: child.stdout });
    rl.once('line', resolveLine);
    child.once('exit', (code) => reject(new Error(`owner exited (${code}) before printing: ${stderr}`)));
    setTimeout(() => reject(new Error(`owner printed nothing in 20 s: ${stderr}`)), 20_000);
  });
  const info = JSON.parse(line) as { pid: number; url: string; port: number; ownerPid: number };
  strayPids.add(info.pid);
  const exited = new Promise((r) => child.once('exit', r));
  return {
    ...info,
    async kill() {
      child.kill('SIGKILL');
      await exited;
      expect(alive(info.pid)).toBe(true); // the server outlives its owner
    },
  };
}

describe('startEmbedded on a fresh state dir', () => {
  let stateDir: string;

  it('initialises, starts, answers SELECT 1, records embedded.json, stops', async () => {
    stateDir = join(await tempDir(), '.spindle');
    const log = recorder();
    const s = await start({ stateDir, logger: log, fast: true });
    expect(s.reused).toBe(false);
    expect(s.dataDir).toBe(join(stateDir, 'pg'));
    expect(s.url).toMatch(/^postgres:\/\/postgres:[^@]+@127\.0\.0\.1:\d+\/postgres$/);
    expect(s.port).not.toBe(5432);
    expect(await selectOne(s.url)).toBe(1);
    expect(log.lines.some((l) => /initialising/.test(l.msg))).toBe(true);

    const c = new pg.Client(s.url);
    await c.connect();
    await c.query('CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)');
    await c.end();

    const file = join(stateDir, 'embedded.json');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const state = readEmbeddedState(stateDir);
    expect(state).toMatchObject({ url: s.url, port: s.port, pid: s.pid, dataDir: s.dataDir });
    expect(connectionStringFor(stateDir)).toBe(s.url);

    const t0 = performance.now();
    await s.stop();
    const stopMs = performance.now() - t0;
    expect(stopMs).toBeLessThan(5_000);
    expect(alive(s.pid!)).toBe(false);
    expect(fs.existsSync(file)).toBe(false);
    expect(readEmbeddedState(stateDir)).toBeUndefined();
    await s.stop(); // idempotent
  });

  it('reuses the initialised data dir on the next start (no initdb, data kept)', async () => {
    const log = recorder();
    const t0 = performance.now();
    const s = await start({ stateDir, logger: log, fast: true });
    const ms = performance.now() - t0;
    expect(log.lines.some((l) => /initialis/.test(l.msg))).toBe(false);
    const c = new pg.Client(s.url);
    await c.connect();
    expect((await c.query('SELECT v FROM kept')).rows).toEqual([{ v: 42 }]);
    await c.end();
    expect(ms).toBeLessThan(2_000);
    await s.stop();
  });

  it('readEmbeddedState ignores an embedded.json whose server is gone', async () => {
    await writeFile(
      join(stateDir, 'embedded.json'),
      JSON.stringify({ url: 'postgres://x@127.0.0.1:1/postgres', port: 1, pid: 999_999_999, dataDir: join(stateDir, 'pg') }),
    );
    expect(readEmbeddedState(stateDir)).toBeUndefined();
    expect(connectionStringFor(stateDir)).toBeUndefined();
    await rm(join(stateDir, 'embedded.json'));
  });

  it('reuses a server left running by a SIGKILLed owner', async () => {
    const orphan = await orphanServer(stateDir);
    // Another shell finds it through embedded.json while it runs.
    expect(readEmbeddedState(stateDir)?.pid).toBe(orphan.pid);

    const s = await start({ stateDir, fast: true });
    expect(s.reused).toBe(true);
    expect(s.pid).toBe(orphan.pid);
    expect(s.port).toBe(orphan.port);
    expect(await selectOne(s.url)).toBe(1);

    await s.stop();
    expect(await eventually(() => !alive(orphan.pid))).toBe(true);
    expect(readEmbeddedState(stateDir)).toBeUndefined();
  });

  it('shares the server of a live owner and leaves it running on stop', async () => {
    const owner = await ownerProcess(stateDir);
    try {
      const s = await start({ stateDir, fast: true });
      expect(s.reused).toBe(true);
      expect(s.pid).toBe(owner.pid);
      expect(await selectOne(s.url)).toBe(1);
      await s.stop();
      expect(alive(owner.pid)).toBe(true); // its other user still holds it
      expect(readEmbeddedState(stateDir)?.pid).toBe(owner.pid);
    } finally {
      await owner.kill();
    }
    // its owner is gone now: the next start takes the server over, and stops it
    const s = await start({ stateDir, fast: true });
    expect(s.reused).toBe(true);
    expect(s.pid).toBe(owner.pid);
    await s.stop();
    expect(await eventually(() => !alive(owner.pid))).toBe(true);
  });

  it('stays up while any user holds it, and stops with the last, whichever started it', async () => {
    const a = await start({ stateDir, fast: true });
    const b = await start({ stateDir, fast: true });
    expect(b).toMatchObject({ reused: true, pid: a.pid, url: a.url });
    await a.stop(); // the user that started it leaves first
    expect(alive(a.pid)).toBe(true);
    expect(await selectOne(b.url)).toBe(1);
    expect(connectionStringFor(stateDir)).toBe(b.url);
    await b.stop();
    expect(alive(a.pid)).toBe(false);
    expect(readEmbeddedState(stateDir)).toBeUndefined();
  });

  it('users that come and go at once share one server and leave none behind', async () => {
    const users = await Promise.all([1, 2, 3, 4].map(() => start({ stateDir, fast: true })));
    expect(new Set(users.map((u) => u.pid)).size).toBe(1);
    expect(users.filter((u) => !u.reused)).toHaveLength(1);
    const { pid, url } = users[0]!;
    // One joins while all the others leave: it is counted, or it sees the server stop and starts it again.
    const [late] = await Promise.all([start({ stateDir, fast: true }), ...users.map((u) => u.stop())]);
    expect(late!.url).toBe(url); // the same port again
    expect(await selectOne(late!.url)).toBe(1);
    await late!.stop();
    expect(alive(late!.pid)).toBe(false);
    expect(alive(pid)).toBe(false);
  });

  it('its users bring a killed server back on the same port, one starting it and the other joining', async () => {
    const logs = [recorder(), recorder()];
    const [a, b] = [await start({ stateDir, fast: true, logger: logs[0] }), await start({ stateDir, fast: true, logger: logs[1] })];
    const { pid, url } = a!;
    process.kill(pid, 'SIGKILL');
    const back = (log: ReturnType<typeof recorder>) => log.lines.find((l) => l.msg === 'embedded PostgreSQL is back');
    expect(await eventually(() => logs.every(back), 20_000)).toBe(true);
    expect(logs.map((log) => (back(log)!.obj as { restartedHere: boolean }).restartedHere).sort()).toEqual([false, true]);
    expect(a!.pid).not.toBe(pid);
    expect(b!.pid).toBe(a!.pid);
    expect([a!.url, b!.url]).toEqual([url, url]);
    expect(readEmbeddedState(stateDir)?.pid).toBe(a!.pid);
    expect(await selectOne(url)).toBe(1);
    await a!.stop();
    await b!.stop();
    expect(alive(b!.pid)).toBe(false);
  });

  it('takes over the start lock of a process that died holding it, or whose pid was reused', async () => {
    const lock = join(stateDir, 'embedded.lock');
    for (const holder of [
      { pid: spawnSync('true').pid!, start: null, token: 'dead' },
      { pid: process.pid, start: 'not this process', token: 'reused pid' },
    ]) {
      await writeFile(lock, JSON.stringify(holder));
      const s = await start({ stateDir, fast: true });
      expect(fs.existsSync(lock)).toBe(false);
      await s.stop();
    }
  });

  it('replaces a left-behind server that does not answer', async () => {
    const orphan = await orphanServer(stateDir);
    process.kill(orphan.pid, 'SIGSTOP'); // alive, holds the data dir, answers nothing
    const log = recorder();
    const s = await start({ stateDir, fast: true, probeTimeoutMs: 500, logger: log });
    expect(s.reused).toBe(false);
    expect(s.pid).not.toBe(orphan.pid);
    expect(alive(orphan.pid)).toBe(false);
    expect(log.lines.some((l) => l.level === 'warn' && /does not answer/.test(l.msg))).toBe(true);
    expect(await selectOne(s.url)).toBe(1);
    await s.stop();
  });

  it('removes a stale postmaster.pid whose process is dead', async () => {
    const dead = spawnSync('true').pid!;
    const pidFile = join(stateDir, 'pg', 'postmaster.pid');
    await writeFile(pidFile, `${dead}\n${join(stateDir, 'pg')}\n0\n5999\n\n127.0.0.1\n0 0\nready   \n`);
    const s = await start({ stateDir, fast: true });
    expect(s.reused).toBe(false);
    expect(await selectOne(s.url)).toBe(1);
    await s.stop();
  });

  it('gives up on a start that times out with a clear error, leaving no server', async () => {
    const err = await startEmbedded({ stateDir, fast: true, startTimeoutMs: 1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EmbeddedPostgresError);
    expect((err as Error).message).toMatch(/did not become ready within 1 ms/);
    expect((err as Error).message).toContain(join(stateDir, 'pg'));
    const pm = fs.existsSync(join(stateDir, 'pg', 'postmaster.pid'))
      ? Number(fs.readFileSync(join(stateDir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0])
      : undefined;
    if (pm !== undefined) expect(await eventually(() => !alive(pm))).toBe(true);
    // and the next normal start works
    const s = await start({ stateDir, fast: true });
    expect(await selectOne(s.url)).toBe(1);
    await s.stop();
  });

  it('a broken postgresql.conf fails fast with the PostgreSQL log tail in the message', async () => {
    const conf = join(stateDir, 'pg', 'postgresql.conf');
    const original = fs.readFileSync(conf);
    await appendFile(conf, '\nthis line = is not ( valid\n');
    try {
      const t0 = performance.now();
      const err = await startEmbedded({ stateDir, fast: true }).catch((e: unknown) => e);
      expect(performance.now() - t0).toBeLessThan(10_000);
      expect(err).toBeInstanceOf(EmbeddedPostgresError);
      const msg = (err as Error).message;
      expect(msg).toMatch(/did not start: postgres exited during startup/);
      expect(msg).toMatch(/last lines of the PostgreSQL log/);
      expect(msg).toMatch(/syntax error in file .*postgresql\.conf/);
      expect(msg).not.toMatch(/undefined/);
    } finally {
      await writeFile(conf, original);
    }
  });

  it('a data dir of another PostgreSQL version gives a clear error', async () => {
    const versionFile = join(stateDir, 'pg', 'PG_VERSION');
    const original = fs.readFileSync(versionFile);
    await writeFile(versionFile, 'garbage\n');
    try {
      await expect(startEmbedded({ stateDir, fast: true })).rejects.toThrow(/PostgreSQL "garbage" data directory; the embedded server is PostgreSQL 18/);
    } finally {
      await writeFile(versionFile, original);
    }
  });
});

describe('data dir the postgres OS user cannot reach', () => {
  it('falls back to a reachable place (root) or uses the dir as it is (non-root)', async () => {
    const priv = join(await tempDir(), 'private');
    await mkdir(priv, { mode: 0o700 });
    await chmod(priv, 0o700);
    const stateDir = join(priv, '.spindle');
    const log = recorder();
    const s = await start({ stateDir, logger: log, fast: true });
    try {
      expect(await selectOne(s.url)).toBe(1);
      expect(readEmbeddedState(stateDir)?.pid).toBe(s.pid);
      if (isRoot) {
        expect(s.dataDir).not.toContain(priv);
        expect(s.dataDir).toMatch(/spindle-0-[0-9a-f]{12}\/pg$/);
        const warn = log.lines.find((l) => l.level === 'warn' && /cannot reach/.test(l.msg));
        expect(warn?.msg).toContain(s.dataDir);
        expect(warn?.msg).toContain(`${priv} has mode 0700`);
        expect((await stat(priv)).mode & 0o777).toBe(0o700); // the user's dir is left alone
      } else {
        expect(s.dataDir).toBe(join(stateDir, 'pg'));
      }
    } finally {
      await s.stop();
      if (isRoot) await rm(dirname(s.dataDir), { recursive: true, force: true });
    }
  });

  it.runIf(isRoot)('an explicit data dir under a 0700 dir fails at once with a clear message (root)', async () => {
    const priv = join(await tempDir(), 'private');
    await mkdir(priv, { mode: 0o700 });
    await chmod(priv, 0o700);
    await expect(startEmbedded({ stateDir: join(await tempDir(), 's'), dataDir: join(priv, 'pg') })).rejects.toThrow(
      new RegExp(`cannot reach the data dir ${priv}/pg: ${priv} has mode 0700`),
    );
  });
});

describe('global setup', () => {
  it('provides a database URL that works (embedded when DATABASE_URL is unset)', async () => {
    const url = inject('databaseUrl');
    expect(url).toMatch(/^postgres(ql)?:\/\//);
    if (process.env.DATABASE_URL) {
      expect(url).toBe(process.env.DATABASE_URL);
    } else {
      expect(await selectOne(url)).toBe(1);
    }
  });
});
