/**
 * A lock that one process (or one caller in a process) at a time holds, across processes: a file
 * created whole, with its holder's pid, the process's start time and a token of its own. A lock whose
 * holder died (kill -9 mid-start) is taken over; the start time tells a recycled pid from its holder.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { TimeoutError } from '../errors.ts';
import { isAlive, processStartTime } from './process-info.ts';

/** What the lock file says. */
interface Holder {
  pid: number;
  /** processStartTime(pid) when taken; null where it cannot be known. */
  start: string | null;
  token: string;
}

/** How often a waiter looks at the lock again. */
const POLL_MS = 25;
/** A lock file that cannot be read is being written for at most this long; older, its writer died. */
const UNREADABLE_STALE_MS = 5_000;

/** Runs `fn` holding the lock `file`; waits at most `timeoutMs` for it, then throws TimeoutError naming the holder. */
export async function withFileLock<T>(file: string, timeoutMs: number, fn: () => Promise<T>): Promise<T> {
  const token = await acquire(file, timeoutMs);
  try {
    return await fn();
  } finally {
    release(file, token);
  }
}

async function acquire(file: string, timeoutMs: number): Promise<string> {
  const me: Holder = { pid: process.pid, start: processStartTime(process.pid), token: randomBytes(8).toString('hex') };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (tryCreate(file, me)) return me.token;
    const holder = readHolder(file);
    if (holder === undefined) continue; // released between the two calls
    if (holder === 'unreadable' ? isOld(file) : !holderAlive(holder)) {
      breakStale(file, holder === 'unreadable' ? undefined : holder.token);
      continue;
    }
    if (Date.now() > deadline) {
      const who = holder === 'unreadable' ? 'another process' : `process ${holder.pid}`;
      throw new TimeoutError(`${file} has been held by ${who} for more than ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/** Creates the lock with its content in one step (a hard link of a written file), so no reader sees it empty. */
function tryCreate(file: string, me: Holder): boolean {
  const tmp = `${file}.${process.pid}-${me.token}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(me), { mode: 0o600 });
  try {
    fs.linkSync(tmp, file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

function release(file: string, token: string): void {
  const holder = readHolder(file);
  if (typeof holder === 'object' && holder.token === token) fs.rmSync(file, { force: true });
}

/** The holder; undefined when there is no lock; 'unreadable' when its content is not a holder. */
function readHolder(file: string): Holder | 'unreadable' | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const h = JSON.parse(text) as Holder;
    if (Number.isInteger(h.pid) && typeof h.token === 'string') return h;
  } catch {
    // below
  }
  return 'unreadable';
}

function holderAlive(h: Holder): boolean {
  if (!isAlive(h.pid)) return false;
  const start = processStartTime(h.pid);
  return h.start === null || start === null || start === h.start;
}

function isOld(file: string): boolean {
  try {
    return Date.now() - fs.statSync(file).mtimeMs > UNREADABLE_STALE_MS;
  } catch {
    return false;
  }
}

/**
 * Removes a dead holder's lock. It is moved aside first and checked: when another waiter broke it a
 * moment before and a live process has taken the lock since, the file moved is that live lock, and it
 * is put back (a link fails if the lock was taken again meanwhile, which then stands).
 */
function breakStale(file: string, staleToken: string | undefined): void {
  const aside = `${file}.stale-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    fs.renameSync(file, aside);
  } catch {
    return; // another waiter broke it first
  }
  const moved = readHolder(aside);
  if (typeof moved === 'object' && moved.token !== staleToken && holderAlive(moved)) {
    try {
      fs.linkSync(aside, file);
    } catch {
      // taken again already
    }
  }
  fs.rmSync(aside, { force: true });
}
