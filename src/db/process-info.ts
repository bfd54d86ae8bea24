/**
 * What can be told about another process from its pid: whether it is alive, whether it is a
 * PostgreSQL server, and when it started (which tells a recycled pid from the process that had it).
 * Linux answers through /proc; elsewhere only liveness is known, and the other checks assume yes.
 */
import * as fs from 'node:fs';

/** Alive and not a zombie. EPERM counts as alive (another user's process). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const state = procStatFields(pid)?.[0];
  return state !== 'Z' && state !== 'X';
}

/** Guards against a recycled pid. Without /proc, assumes yes. */
export function isPostgresProcess(pid: number): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'postgres';
  } catch {
    return !fs.existsSync('/proc/self/comm');
  }
}

/**
 * When the process started, in clock ticks since boot (field 22 of /proc/PID/stat), as text; null
 * when unknown (no /proc, or the process is gone). Two processes that had the same pid differ here.
 */
export function processStartTime(pid: number): string | null {
  return procStatFields(pid)?.[19] ?? null;
}

/** The fields of /proc/PID/stat after the command name (field 3, the state, first). */
function procStatFields(pid: number): string[] | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name is in parentheses and may itself hold spaces and parentheses.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/**
 * The live processes whose working directory is `dir`: PostgreSQL's processes run in their data
 * directory, so these are what is left of a server there. Undefined where this cannot be known (no /proc).
 */
export function processesWorkingIn(dir: string): number[] | undefined {
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc');
  } catch {
    return undefined;
  }
  let target: string;
  try {
    target = fs.realpathSync(dir);
  } catch {
    return [];
  }
  const found: number[] = [];
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (fs.readlinkSync(`/proc/${name}/cwd`) === target && isAlive(Number(name))) found.push(Number(name));
    } catch {
      // gone, or not ours to read
    }
  }
  return found;
}
