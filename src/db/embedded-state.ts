/**
 * Where the embedded server of a state dir is found: `<stateDir>/embedded.json`, written by the
 * process that starts (or finds) the server and removed by the one that stops it, checked against
 * the server's own `postmaster.pid`. Reading it loads nothing of PostgreSQL, so a Client and the CLI
 * can look for the server cheaply.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isAlive, isPostgresProcess } from './process-info.ts';

/** What `<stateDir>/embedded.json` holds. */
export interface EmbeddedState {
  url: string;
  port: number;
  /** The postmaster's pid. */
  pid: number;
  dataDir: string;
  startedAt: string;
  logFile: string;
}

/** postmaster.pid, as far as spindle reads it. */
export interface PostmasterPid {
  pid: number;
  dataDir: string;
  port: number;
  /** 'starting', 'ready', 'stopping' or 'standby'. */
  status: string;
}

/** The file that holds the URL of the running embedded server. */
export const STATE_FILE = 'embedded.json';

/** `<cwd>/.spindle` */
export function defaultStateDir(cwd: string = process.cwd()): string {
  return path.resolve(cwd, '.spindle');
}

/** The state dir a command or a Client uses: the one given, else SPINDLE_STATE_DIR, else `./.spindle` (absolute). */
export function resolveStateDir(explicit?: string): string {
  const chosen = explicit ?? (process.env.SPINDLE_STATE_DIR || undefined);
  return chosen === undefined ? defaultStateDir() : path.resolve(chosen);
}

/**
 * The state of the embedded server started from `stateDir`, or undefined when there is none or its
 * process is gone (or is no longer that server).
 */
export function readEmbeddedState(stateDir: string = defaultStateDir()): EmbeddedState | undefined {
  const state = readStateFile(stateDir);
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

/** embedded.json as written, unchecked. */
export function readStateFile(stateDir: string): EmbeddedState | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(stateDir, STATE_FILE), 'utf8')) as EmbeddedState;
  } catch {
    return undefined;
  }
}

/** Writes embedded.json whole (a rename), 0600: the URL holds the password. */
export function writeState(stateDir: string, state: EmbeddedState): void {
  const file = path.join(stateDir, STATE_FILE);
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  fs.chmodSync(tmp, 0o600);
  fs.renameSync(tmp, file);
}

/** Removes embedded.json when it describes the server `match` picks (not one started since). */
export function removeStateIf(stateDir: string, match: (s: EmbeddedState) => boolean): void {
  const s = readStateFile(stateDir);
  if (s && match(s)) fs.rmSync(path.join(stateDir, STATE_FILE), { force: true });
}

/** postmaster.pid, parsed; undefined when absent or unparsable, null when unreadable (permissions). */
export function readPostmasterPid(dataDir: string): PostmasterPid | undefined | null {
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
