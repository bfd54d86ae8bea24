/**
 * One embedded PostgreSQL server per state dir, and starting it (or finding it running) under the
 * state dir's start lock. Who uses it, and when it stops, is embedded.ts's part; the machine side
 * (binaries, the OS user, where the data lives) is embedded-host.ts's, the data directory
 * embedded-datadir.ts's and the postgres process embedded-process.ts's.
 *
 * Layout (non-root, or root when the postgres user can reach it):
 *   <stateDir>/pg/              the data directory (initialised once)
 *   <stateDir>/pg/spindle-password   the superuser password (0600)
 *   <stateDir>/pg/spindle-port  the port of the last start, used again so the URL stays the same
 *   <stateDir>/embedded.json    { url, port, pid, dataDir, startedAt, logFile } (0600) while running
 *   <stateDir>/embedded.lock    held while a process starts the server (file-lock.ts)
 *   <stateDir>/postgres.log     the server's stderr (appended, rotated at 10 MB)
 *
 * The server outlives the process that started it; whoever comes next finds it through
 * postmaster.pid and uses it when it answers, or stops it and starts afresh.
 */
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as net from 'node:net';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { EmbeddedPostgresError } from '../errors.ts';
import { noopLogger, type Logger } from '../logger.ts';
import { checkDataDir, initialise, readPassword, removeAbandonedInits } from './embedded-datadir.ts';
import { binaries, chooseDataDir, mkdirp, postgresUser, type Binaries, type Ids } from './embedded-host.ts';
import { HOST, launch, makeUrl, probeServer, RetryableStart, shutdownPostmaster, waitForExit } from './embedded-process.ts';
import { readPostmasterPid, readStateFile, writeState, type PostmasterPid } from './embedded-state.ts';
import { withFileLock } from './file-lock.ts';
import { isAlive, isPostgresProcess, processesWorkingIn } from './process-info.ts';

/** What is fixed about the server of one state dir: where it lives and how it runs. */
export interface ServerSite {
  stateDir: string;
  dataDir: string;
  logFile: string;
  bins: Binaries;
  /** The OS user `postgres` when running as root. */
  ids: Ids | undefined;
  log: Logger;
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

const PORT_FILE = 'spindle-port';
const LOCK_FILE = 'embedded.lock';
const LOG_FILE = 'postgres.log';
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

/** Options of startEmbedded(). */
export interface StartEmbeddedOptions {
  /** Where spindle keeps its state. Default `<cwd>/.spindle`. */
  stateDir?: string;
  /** The PostgreSQL data directory. Default `<stateDir>/pg` (or a reachable fallback as root). */
  dataDir?: string;
  /** TCP port on 127.0.0.1. Default: the port of the last start when free, else a free one. */
  port?: number;
  /** pino-compatible logger. Default: silent. */
  logger?: Logger;
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
  const log = o.logger ?? noopLogger;
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
